"""What a classifier is, as the exporter reads it from its config and the manifest records it:
one definition of the fields both hold (torch-free, so the runtime reads it too)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL)

INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
TOKEN_TYPE_IDS = "token_type_ids"


@dataclass(frozen=True)
class ModelSpec:
    """A sequence classifier: its labels and problem type, the longest input it reads, its
    padding id and the inputs its graphs take (``input_ids``, ``attention_mask`` and, where the
    architecture has them, ``token_type_ids``)."""

    model_type: str
    architecture: str
    labels: tuple[str, ...]
    problem_type: str
    max_length: int
    pad_token_id: int
    model_inputs: tuple[str, ...]

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    @property
    def multi_label(self) -> bool:
        return self.problem_type == MULTI_LABEL

    @property
    def uses_token_type_ids(self) -> bool:
        return TOKEN_TYPE_IDS in self.model_inputs

    def problems(self) -> list[str]:
        """What makes this spec unusable (empty when it is fine)."""
        found = []
        labels = self.labels
        if len(labels) < 2 or not all(isinstance(label, str) and label.strip() for label in labels):
            found.append(f"labels must be a list of 2 or more non-blank strings, got {labels!r}")
        elif len(set(labels)) != len(labels):
            twice = sorted({label for label in labels if labels.count(label) > 1})
            found.append(f"labels must be distinct; listed twice: {twice}")
        if self.problem_type not in PROBLEM_TYPES:
            found.append(
                f"unknown problem_type {self.problem_type!r}; expected {SINGLE_LABEL!r} or "
                f"{MULTI_LABEL!r}"
            )
        if self.max_length < 2:
            found.append(f"max_length must be at least 2, got {self.max_length}")
        if self.model_inputs[:2] != (INPUT_IDS, ATTENTION_MASK):
            found.append(
                f"model_inputs must start with {INPUT_IDS!r} and {ATTENTION_MASK!r}, got "
                f"{list(self.model_inputs)}"
            )
        return found


def model_spec_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The ``ModelSpec`` fields of a JSON object (a manifest), typed; KeyError, TypeError or
    ValueError when one is missing or of the wrong kind."""
    return {
        "model_type": str(data["model_type"]),
        "architecture": str(data["architecture"]),
        "labels": tuple(_listed(data["labels"], "labels")),
        "problem_type": data["problem_type"],
        "max_length": int(data["max_length"]),
        "pad_token_id": int(data["pad_token_id"]),
        "model_inputs": tuple(_listed(data["model_inputs"], "model_inputs")),
    }


def _listed(value: Any, name: str) -> list[Any]:
    """A JSON list as it is (a string or an object would pass through tuple() silently)."""
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a JSON list, got {type(value).__name__}")
    return value
