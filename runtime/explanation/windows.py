"""A text longer than the model's window, read as overlapping windows of its tokens.

The document is tokenized once, whole. Its content tokens (all but the special tokens the
tokenizer puts at its start and end) are cut into windows of ``size - specials`` tokens, one
starting every ``stride`` tokens, the last ending at the document's end; each window is a row
with the document's own special tokens around it, so a window's tokens are exactly the
document's (no retokenizing at a cut). A text that fits one window is read as it is.

- The document's logits are an aggregate of its windows' logits per label (``aggregate``):
  ``mean`` (single-label models' default) or ``max`` (multi-label models').
- Each token's scores come from the one window in which it is most central (``owners``): the
  largest distance to that window's nearer edge; a tie goes to the earlier window. The special
  tokens at the start take the first window's, those at the end the last window's.
- An entity-marked text is read in one window centred on the marked span (``focus``), so the
  entity is never cut and gets as much context on both sides as the window holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.settings import LONG_TEXTS, DocumentSettings
from gradlight.wire.errors import RequestError, shown

TRUNCATE, WINDOWS = LONG_TEXTS
MEAN = "mean"
MAX = "max"
AGGREGATIONS = (MEAN, MAX)


@dataclass(frozen=True)
class Windowing:
    """How a request reads texts longer than its window: the stride between windows' starts
    (0: half a window's content), the rule that aggregates windows' logits, and the server's
    limits (tokens per document, windows per request)."""

    stride: int
    aggregation: str
    max_tokens: int
    max_windows: int


@dataclass(frozen=True)
class Window:
    """One window as the model reads it, and where its content lies in the document's
    tokens: positions ``[start, end)``."""

    encoded: EncodedText
    start: int
    end: int


@dataclass(frozen=True)
class Layout:
    """How a document's tokens are laid out: special tokens before and after the content."""

    lead: int
    trail: int

    @staticmethod
    def of(encoded: EncodedText) -> Layout:
        special = encoded.special
        lead = 0
        while lead < len(special) and special[lead]:
            lead += 1
        trail = 0
        while trail < len(special) - lead and special[len(special) - 1 - trail]:
            trail += 1
        return Layout(lead, trail)


def room(size: int, layout: Layout) -> int:
    """Content tokens a window of ``size`` tokens holds."""
    return size - layout.lead - layout.trail


def default_stride(size: int, layout: Layout) -> int:
    """Half a window's content: every token is scored from a window that reads at least a
    quarter window on each side of it (but at the document's ends)."""
    return max(1, room(size, layout) // 2)


def starts(content: int, width: int, stride: int) -> list[int]:
    """The content offsets where windows of ``width`` tokens start: every ``stride``, the last
    flush with the end."""
    if content <= width:
        return [0]
    found = list(range(0, content - width, stride))
    found.append(content - width)
    return found


def split(
    document: EncodedText, size: int, stride: int, focus: tuple[int, int] | None = None
) -> list[Window]:
    """``document``'s windows of ``size`` tokens, special tokens included. ``focus``: token
    positions ``[first, last)`` to read in one window, centred (an entity's marked span)."""
    layout = Layout.of(document)
    width = room(size, layout)
    content = len(document) - layout.lead - layout.trail
    if content <= width:
        return [Window(document, layout.lead, layout.lead + content)]
    if focus is None:
        offsets = starts(content, width, stride)
    else:
        first, last = focus[0] - layout.lead, focus[1] - layout.lead
        if last - first > width:
            raise ValueError(f"a span of {last - first} tokens does not fit {width}")
        centred = first - (width - (last - first)) // 2
        offsets = [min(max(centred, 0), content - width)]
    return [_window(document, layout, layout.lead + offset, width) for offset in offsets]


def _window(document: EncodedText, layout: Layout, start: int, width: int) -> Window:
    end = start + width
    tail = len(document) - layout.trail
    picked = [*range(layout.lead), *range(start, end), *range(tail, len(document))]
    index = np.asarray(picked, dtype=np.int64)
    encoded = replace(
        document,
        ids=document.ids[index],
        type_ids=document.type_ids[index],
        tokens=tuple(document.tokens[i] for i in picked),
        offsets=tuple(document.offsets[i] for i in picked),
        special=tuple(document.special[i] for i in picked),
        truncated=False,
        markers=tuple(document.markers[i] for i in picked) if document.markers else (),
    )
    return Window(encoded, start, end)


def owners(length: int, windows: Sequence[Window]) -> tuple[np.ndarray, np.ndarray]:
    """For each of the document's ``length`` positions: the window its scores come from and
    its position in that window (the rule in the module docstring)."""
    lead = windows[0].start
    trail = length - windows[-1].end
    window = np.zeros(length, dtype=np.int64)
    position = np.arange(length, dtype=np.int64)  # the first window's specials: themselves
    best = np.full(length, -1, dtype=np.int64)
    for index, item in enumerate(windows):
        covered = np.arange(item.start, item.end)
        centrality = np.minimum(covered - item.start, item.end - 1 - covered)
        better = centrality > best[covered]
        chosen = covered[better]
        window[chosen] = index
        position[chosen] = lead + chosen - item.start
        best[chosen] = centrality[better]
    last = len(windows) - 1
    window[length - trail :] = last
    width = len(windows[last].encoded)
    position[length - trail :] = np.arange(width - trail, width)
    return window, position


def stitch(length: int, windows: Sequence[Window], scores: Sequence[np.ndarray]) -> np.ndarray:
    """The document's ``[K, length]`` scores from each window's ``[K, S_window]``."""
    window, position = owners(length, windows)
    stacked = np.zeros((scores[0].shape[0], length), dtype=scores[0].dtype)
    for index, window_scores in enumerate(scores):
        mine = window == index
        stacked[:, mine] = window_scores[:, position[mine]]
    return stacked


def aggregate(logits: np.ndarray, rule: str) -> np.ndarray:
    """The document's logits ``[L]`` from its windows' ``[W, L]``."""
    if rule == MEAN:
        return logits.mean(axis=0)
    if rule == MAX:
        return logits.max(axis=0)
    raise ValueError(f"unknown aggregation {rule!r}")


def default_aggregation(multi_label: bool) -> str:
    """``max`` for multi-label models (a label present in any window is present in the
    document), ``mean`` for single-label ones (one decision for the whole document)."""
    return MAX if multi_label else MEAN


def resolve_windowing(
    long_texts: str,
    stride: int,
    aggregation: str,
    settings: DocumentSettings,
    multi_label: bool,
) -> Windowing | None:
    """A request's fields with the server's ``settings``: None where long texts are
    truncated."""
    if long_texts and long_texts not in LONG_TEXTS:
        raise RequestError(
            "long_texts", f"is {shown(long_texts)}; use 'truncate', 'windows' or '' (the server's)"
        )
    if stride < 0:
        raise RequestError("window_stride", f"is {stride}; use 0 (half a window) or more")
    if aggregation and aggregation not in AGGREGATIONS:
        raise RequestError(
            "aggregation", f"is {shown(aggregation)}; use 'mean', 'max' or '' (the model's)"
        )
    if (long_texts or settings.long_texts) != WINDOWS:
        for name, value in (("window_stride", stride), ("aggregation", aggregation)):
            if value:
                raise RequestError(name, "applies to long_texts 'windows' only: send both")
        return None
    return Windowing(
        stride=stride or settings.window_stride,
        aggregation=aggregation or default_aggregation(multi_label),
        max_tokens=settings.max_document_tokens,
        max_windows=settings.max_windows_per_request,
    )


def scored_spans(document: EncodedText, windows: Sequence[Window]) -> list[tuple[int, int]]:
    """Per window, the character span of the content tokens whose scores it gives (empty
    ``(start, start)`` where it gives none)."""
    window, _ = owners(len(document), windows)
    spans = []
    for index in range(len(windows)):
        mine = [
            document.offsets[p]
            for p in np.flatnonzero(window == index).tolist()
            if not document.special[p]
        ]
        if mine:
            spans.append((mine[0][0], max(end for _, end in mine)))
        else:
            spans.append((0, 0))
    return spans
