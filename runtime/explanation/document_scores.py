"""A document's answer from its windows' outputs (runtime/explanation/documents.py): its
logits aggregated, its token scores stitched, its sentences scored with the same aggregate,
and each window's own prediction."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.feeds import RowOutput
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.documents import Document
from gradlight.runtime.explanation.request_plan import RequestPlan, TokenScores
from gradlight.runtime.explanation.results import SentenceResult, WindowResult
from gradlight.runtime.explanation.windows import aggregate, scored_spans, stitch


def window_logits(
    document: Document,
    plan: RequestPlan,
    forward: Sequence[RowOutput],
    scores: Sequence[TokenScores | None],
) -> np.ndarray:
    """``[W, L]``: each window's logits, those its probabilities are reported from (the
    forward graph's where it ran, else the token graph's)."""
    rows = []
    for unit in document.units:
        row = plan.full_row[unit]
        rows.append(forward[row].logits if row is not None else scores[unit].logits)  # type: ignore[union-attr]
    return np.stack(rows)


def document_token_scores(
    document: Document, scores: Sequence[TokenScores | None], logits: np.ndarray
) -> TokenScores | None:
    """The document's token scores, each token's from the window it is most central in; its
    completeness gap per label, the window's farthest from 0; the most steps a window took."""
    windows = [scores[unit] for unit in document.units]
    if windows[0] is None:
        return None
    present = [item for item in windows if item is not None]
    if document.focused:  # its one window is what the result shows
        raw = present[0].raw
    else:
        raw = stitch(len(document.encoded), document.windows, [item.raw for item in present])
    gaps = None
    if present[0].gaps is not None:
        stacked = np.stack([item.gaps for item in present])  # type: ignore[misc]  # [W, K]
        worst = np.abs(stacked).argmax(axis=0)
        gaps = stacked[worst, np.arange(stacked.shape[1])]
    return TokenScores(
        raw=raw,
        logits=logits,
        gaps=gaps,
        steps=max(item.steps for item in present),
        tolerance_missed=any(item.tolerance_missed for item in present),
    )


def sentence_scores(
    engine: Engine,
    document: Document,
    forward: Sequence[RowOutput],
    logits: np.ndarray,
    rule: str,
    picked: list[int],
) -> tuple[SentenceResult, ...]:
    """p(label | document) - p(label | document without the sentence), each aggregated over
    its own windows by ``rule``; 0 where removing the sentence changes no window."""
    scores = np.zeros((len(document.spans), len(picked)), dtype=np.float32)
    p_full = engine.probabilities(logits)[picked]
    for index, rows in enumerate(document.variants):
        if rows:
            variant = aggregate(np.stack([forward[row].logits for row in rows]), rule)
            scores[index] = p_full - engine.probabilities(variant)[picked]
    return tuple(
        SentenceResult(span.start, span.end, scores[i]) for i, span in enumerate(document.spans)
    )


def window_results(
    engine: Engine,
    document: Document,
    shown: EncodedText,
    windows: Sequence[EncodedText],
    logits: np.ndarray,
    picked: list[int],
    scores: Sequence[TokenScores | None],
) -> tuple[WindowResult, ...]:
    """Each window's span and prediction; ``shown`` and ``windows``: the document and its
    windows with offsets into the text reported."""
    if document.focused:
        scored = [_content_span(windows[0])]
    else:
        scored = scored_spans(shown, document.windows)
    results = []
    for index, (window, unit) in enumerate(zip(windows, document.units, strict=True)):
        probabilities = engine.probabilities(logits[index])
        unit_scores = scores[unit]
        start, end = _content_span(window)
        results.append(
            WindowResult(
                start=start,
                end=end,
                scored_start=scored[index][0],
                scored_end=scored[index][1],
                probabilities=probabilities[picked].astype(np.float32),
                predicted_label=engine.labels[int(np.argmax(probabilities))],
                completeness_gaps=unit_scores.gaps if unit_scores is not None else None,
            )
        )
    return tuple(results)


def _content_span(encoded: EncodedText) -> tuple[int, int]:
    spans = [
        span for span, special in zip(encoded.offsets, encoded.special, strict=True) if not special
    ]
    return min((s for s, _ in spans), default=0), max((e for _, e in spans), default=0)
