"""A unit's answer from its rows' outputs: its probabilities, token and sentence scores, as a
``TextResult`` with offsets into the text it came from."""

from __future__ import annotations

import numpy as np

from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.feeds import RowOutput
from gradlight.runtime.execution.scores import normalize_scores
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.entities import in_original
from gradlight.runtime.explanation.faithfulness import FaithfulnessResult
from gradlight.runtime.explanation.request_plan import RequestPlan, ResolvedRequest, TokenScores
from gradlight.runtime.explanation.results import SentenceResult, TextResult


def text_result(
    engine: Engine,
    request: ResolvedRequest,
    index: int,
    encoded: EncodedText,
    logits: np.ndarray,
    scores: TokenScores | None,
    sentences: tuple[SentenceResult, ...] | None,
    faithfulness: FaithfulnessResult | None,
) -> TextResult:
    options, label_indices = request.options, request.label_indices
    normalized = raw = None
    if scores is not None:
        raw = scores.raw
        normalized = normalize_scores(raw[None], np.ones((1, raw.shape[-1])))[0]
    probabilities = engine.probabilities(logits)
    predicted = engine.labels[int(np.argmax(probabilities))]
    if engine.manifest.multi_label:
        chosen = tuple(
            label for label, p in zip(engine.labels, probabilities, strict=True) if p >= 0.5
        )
    else:
        chosen = (predicted,)
    text, marked = request.units[index]
    if marked is not None:  # offsets into the original text; its text is the outer one's
        text, encoded = "", in_original(encoded, marked)
    return TextResult(
        text=text,
        labels=tuple(engine.labels[k] for k in label_indices),
        probabilities=probabilities[list(label_indices)].astype(np.float32),
        predicted_label=predicted,
        predicted_labels=chosen,
        encoded=encoded,
        token_scores=normalized,
        raw_scores=raw if options.raw_scores else None,
        sentences=sentences,
        method=request.choice.method if scores is not None else "",
        completeness_gaps=scores.gaps if scores is not None else None,
        steps=scores.steps if scores is not None else 0,
        tolerance_missed=scores.tolerance_missed if scores is not None else False,
        seed=request.seed,
        faithfulness=faithfulness,
    )


def unit_sentences(
    engine: Engine,
    plan: RequestPlan,
    index: int,
    forward: list[RowOutput],
    logits: np.ndarray,
    label_indices: tuple[int, ...],
) -> tuple[SentenceResult, ...]:
    """Leave-one-sentence-out scores against the full text's ``logits`` (the forward
    graph's, or an fp32 token graph's: ``plan_request``)."""
    spans = plan.spans[index]
    rows = plan.variants[index]
    picked = list(label_indices)
    scores = np.zeros((len(spans), len(picked)), dtype=np.float32)  # unablated: 0.0
    ran = [i for i, row in enumerate(rows) if row is not None]
    if ran:
        p_full = engine.probabilities(logits)[picked]
        variants = np.stack([forward[rows[i]].logits for i in ran])  # type: ignore[index]
        p_without = engine.probabilities(variants)[:, picked]
        scores[ran] = p_full[None, :] - p_without
    return tuple(SentenceResult(span.start, span.end, scores[i]) for i, span in enumerate(spans))


def full_logits(
    index: int, plan: RequestPlan, forward: list[RowOutput], scores: TokenScores | None
) -> np.ndarray:
    """Unit ``index``'s full-text logits, those its probabilities are reported from: the
    forward graph's where it ran (in fp32 where the attribution graphs run in bf16), else the
    token graph's."""
    row = plan.full_row[index]
    return forward[row].logits if row is not None else scores.logits  # type: ignore[union-attr]
