"""What a request asks for, checked field by field (errors name the field and the index)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gradlight.wire.errors import RequestError, shown
from gradlight.wire.methods import with_fields


@dataclass(frozen=True)
class _Options:
    max_length: int = 0  # 0 = the model's maximum
    token_attributions: bool = True
    sentence_attributions: bool = False
    labels: tuple[str, ...] = ()  # empty = every label
    raw_scores: bool = False
    # Texts longer than the window (runtime/explanation/windows.py): "truncate" or "windows"
    # ("": the server's default), text tokens between windows' starts (0: half a window), the
    # rule aggregating windows' logits ("": the model's default).
    long_texts: str = ""
    window_stride: int = 0
    aggregation: str = ""

    @property
    def attributions(self) -> bool:
        return self.token_attributions or self.sentence_attributions


AttributeOptions = with_fields("AttributeOptions", __name__, _Options)
"""What a request asks: the fields above, then the method and faithfulness fields as the
request has them, unset by default (gradlight.wire.methods' ``FIELDS``: their meaning,
defaults and checks)."""


@dataclass(frozen=True)
class ModelLimits:
    labels: tuple[str, ...]
    max_length: int
    min_length: int  # special tokens + 1
    max_texts: int


def check_texts(texts: Sequence[str], limits: ModelLimits, *, need_content: bool) -> None:
    if not texts:
        raise RequestError("texts", "is empty; send at least one text")
    if len(texts) > limits.max_texts:
        raise RequestError(
            "texts",
            f"has {len(texts)} texts; the limit is {limits.max_texts} per request: split the "
            "request (or use AttributeStream)",
        )
    if need_content:
        for index, text in enumerate(texts):
            if not text.strip():
                raise RequestError(
                    f"texts[{index}]",
                    "is empty or whitespace only; attributions need some text",
                )


def resolve_max_length(requested: int, limits: ModelLimits) -> int:
    if requested == 0:
        return limits.max_length
    if requested < 0:
        raise RequestError("max_length", f"is {requested}; use 0 (the model's) or a positive value")
    if requested > limits.max_length:
        raise RequestError(
            "max_length",
            f"is {requested}, above the model's maximum of {limits.max_length}; "
            "use 0 for the model's maximum",
        )
    if requested < limits.min_length:
        raise RequestError(
            "max_length",
            f"is {requested}; at least {limits.min_length} is needed for special tokens and text",
        )
    return requested


def resolve_labels(requested: Sequence[str], limits: ModelLimits) -> tuple[int, ...]:
    """Indices of the requested labels in the model's order (all labels when none)."""
    if not requested:
        return tuple(range(len(limits.labels)))
    index_of = {label: index for index, label in enumerate(limits.labels)}
    seen: set[str] = set()
    indices = []
    for position, label in enumerate(requested):
        if label not in index_of:
            listed = ", ".join(repr(name) for name in limits.labels[:20])
            more = " ..." if len(limits.labels) > 20 else ""
            raise RequestError(
                f"labels[{position}]",
                f"unknown label {shown(label)}; the model's labels are {listed}{more}",
            )
        if label in seen:
            raise RequestError(f"labels[{position}]", f"label {shown(label)} is listed twice")
        seen.add(label)
        indices.append(index_of[label])
    return tuple(indices)
