"""Texts longer than the model's window, planned as windows (runtime/explanation/windows.py).

Every unit of a request that reads long texts as windows is tokenized whole (up to the
server's document limit) and cut into windows; the windows of all units are the units of one
window request, planned by ``plan_rows`` like any request's texts, so all windows of all texts
share the batcher's padded calls. A unit's sentence variants are the whole document without one
sentence, tokenized and cut into windows again: their rows join the same forward work.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.feeds import Row
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.entities import MarkedSpan
from gradlight.runtime.explanation.request_plan import (
    RequestPlan,
    ResolvedRequest,
    plan_rows,
    sentence_variants,
)
from gradlight.runtime.explanation.sentences import SentenceSpan, removal_range
from gradlight.runtime.explanation.windows import (
    Layout,
    Window,
    Windowing,
    default_stride,
    room,
    split,
)
from gradlight.wire.errors import RequestError


@dataclass
class Document:
    """One unit read as windows: its whole encoding (a focused entity's: its one window), its
    windows (units ``first`` on of the window request), and its sentences with, per sentence,
    the forward rows of its variant's windows (None: the windows would not change)."""

    encoded: EncodedText
    windows: list[Window]
    first: int
    focused: bool
    spans: list[SentenceSpan]
    variants: list[list[int] | None]

    @property
    def units(self) -> range:
        return range(self.first, self.first + len(self.windows))


@dataclass
class DocumentsPlan:
    documents: list[Document]
    request: ResolvedRequest  # the windows, as units
    plan: RequestPlan  # the windows' rows, and the sentence variants' windows in ``forward``


def encode_documents(
    engine: Engine, request: ResolvedRequest, windowing: Windowing
) -> list[EncodedText]:
    """Each unit tokenized whole; a text over the document limit is refused, naming it."""
    texts = [text for text, _ in request.units]
    budget = windowing.max_tokens + engine.encoder.num_special_tokens
    encoded = engine.encode(texts, budget)
    for unit, document in enumerate(encoded):
        if document.truncated:
            raise RequestError(
                _field(request, unit),
                f"has more than {windowing.max_tokens} tokens, this server's limit per text "
                "read as windows: split the text, or send long_texts 'truncate'",
            )
    return encoded


def fits(encoded: list[EncodedText], max_length: int) -> bool:
    """Whether every unit fits one window (then the request is planned as it is)."""
    return all(len(document) <= max_length for document in encoded)


def plan_documents(
    engine: Engine,
    max_batch_size: int,
    request: ResolvedRequest,
    windowing: Windowing,
    encoded: list[EncodedText],
) -> DocumentsPlan:
    """The windows of every unit as one window request's units, and each unit's sentence
    variants' windows in its forward rows."""
    documents: list[Document] = []
    units: list[tuple[str, MarkedSpan | None]] = []
    for unit, document in enumerate(encoded):
        text, marked = request.units[unit]
        stride = _stride(request, windowing, document)
        focus = _focus(document, marked.kept) if marked is not None else None
        try:
            windows = split(document, request.max_length, stride, focus)
        except ValueError:
            raise RequestError(
                _field(request, unit).replace("texts", "entities"),
                f"an entity span takes {focus[1] - focus[0]} tokens with its markers, more "
                f"than a window of {request.max_length} holds: mark a shorter span",
            ) from None
        focused = focus is not None and len(windows[0].encoded) < len(document)
        shown = replace(windows[0].encoded, truncated=True) if focused else document
        documents.append(Document(shown, windows, len(units), focused, [], []))
        units.extend([(text, marked)] * len(windows))
    count = len(units)
    if count > windowing.max_windows:
        raise RequestError(
            "texts",
            f"needs {count} windows; this server reads at most {windowing.max_windows} per "
            "request: send fewer or shorter texts, or a larger window_stride",
        )
    options = replace(request.options, faithfulness=False)  # the documents', after
    windows_request = replace(request, units=units, options=options)
    window_rows = [window.encoded for d in documents for window in d.windows]
    none: list[list[EncodedText | None]] = [[] for _ in window_rows]
    plan = plan_rows(
        engine, max_batch_size, windows_request, window_rows, none, [[] for _ in window_rows]
    )
    if request.options.sentence_attributions:
        _plan_sentences(engine, request, windowing, encoded, documents, plan)
    return DocumentsPlan(documents, windows_request, plan)


def windows_of(
    document: Document, request: ResolvedRequest, windowing: Windowing, variant: EncodedText
) -> list[EncodedText]:
    """A variant of ``document`` (a sentence or words removed) cut into windows as the
    document was: a focused entity's variant in one window centred on the entity."""
    if document.focused:  # the variant of the one window the entity is read in
        return [variant]
    stride = _stride(request, windowing, variant)
    return [window.encoded for window in split(variant, request.max_length, stride)]


def _plan_sentences(
    engine: Engine,
    request: ResolvedRequest,
    windowing: Windowing,
    encoded: list[EncodedText],
    documents: list[Document],
    plan: RequestPlan,
) -> None:
    """Each document's sentences, and its variants' windows as forward rows."""
    budget = windowing.max_tokens + engine.encoder.num_special_tokens
    spans, removed, variants = sentence_variants(engine, request, encoded, budget)
    for unit, document in enumerate(documents):
        document.spans = spans[unit]
        marked = request.units[unit][1]
        for index, variant in enumerate(variants[unit]):
            if variant is None:
                document.variants.append(None)
                continue
            if document.focused:
                assert marked is not None
                kept = _shifted(marked.kept, removal_range(removed[unit], index))
                focus = _focus(variant, kept)
                window = split(variant, request.max_length, 1, focus)[0].encoded
                rows = [window]
            else:
                rows = windows_of(document, request, windowing, variant)
            document.variants.append(list(range(len(plan.forward), len(plan.forward) + len(rows))))
            plan.forward.extend(Row(row, unit=document.first) for row in rows)
        if document.focused:  # the sentences the entity's window reads a part of
            assert marked is not None
            _keep_read(document, marked)


def _keep_read(document: Document, marked: MarkedSpan) -> None:
    """Keep the sentences (original text positions) that a focused entity's window reads a
    part of."""
    contents = [
        span
        for span, special in zip(document.encoded.offsets, document.encoded.special, strict=True)
        if not special
    ]
    start = marked.to_original(min((s for s, _ in contents), default=0))
    end = marked.to_original(max((e for _, e in contents), default=0))
    read = [i for i, span in enumerate(document.spans) if span.start < end and span.end > start]
    document.spans = [document.spans[i] for i in read]
    document.variants = [document.variants[i] for i in read]


def _shifted(kept: tuple[int, int], removed: tuple[int, int]) -> tuple[int, int]:
    """The marked span's range after ``removed`` (never inside it) is taken out."""
    if removed[1] <= kept[0]:
        return kept[0] - (removed[1] - removed[0]), kept[1] - (removed[1] - removed[0])
    return kept


def _focus(encoded: EncodedText, kept: tuple[int, int]) -> tuple[int, int]:
    """The token positions ``[first, last)`` of the marked span's characters ``kept``."""
    inside = [
        position
        for position, ((start, end), special) in enumerate(
            zip(encoded.offsets, encoded.special, strict=True)
        )
        if not special and start < kept[1] and end > kept[0]
    ]
    return inside[0], inside[-1] + 1


def _stride(request: ResolvedRequest, windowing: Windowing, document: EncodedText) -> int:
    layout = Layout.of(document)
    width = room(request.max_length, layout)
    if windowing.stride > width:
        raise RequestError(
            "window_stride",
            f"is {windowing.stride}, more than the {width} text tokens a window holds: windows "
            "would skip tokens; use at most that (0: half a window)",
        )
    return windowing.stride or default_stride(request.max_length, layout)


def _field(request: ResolvedRequest, unit: int) -> str:
    text = request.text_of[unit] if request.text_of else unit
    return f"texts[{text}]"
