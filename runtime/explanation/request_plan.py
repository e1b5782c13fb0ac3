"""The rows one request runs, and where each unit's outputs are among them.

A unit is a text classified whole, or one entity span of a text, marked. Its forward rows are
its full text (where its probabilities or sentence scores need the forward graph: not where an
fp32 token graph runs it, whose logits are the forward's) and one variant per sentence
removed, all of a request submitted as one work (one padded call unless the batch limits cut
it). Its token scores come, by the graphs the artifact holds: from the
path graph (path methods); from the all-labels graph (every label, where it was exported); from
the labels graph, one row per text holding the asked labels' one-hot cotangents (one forward,
one backward per label), for two labels or more; else from the cotangent graph, one row per
(text, label) (one label, or artifacts exported before the labels graph).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gradlight.artifact.manifest import (
    ATTRIBUTION,
    ATTRIBUTION_COTANGENT,
    ATTRIBUTION_LABELS,
    ATTRIBUTION_PATH,
)
from gradlight.runtime.execution.batcher import Row, RowOutput
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.ablation import encode_variants
from gradlight.runtime.explanation.entities import MarkedSpan
from gradlight.runtime.explanation.methods import (
    GRADIENT_SHAP,
    MethodChoice,
    PathPoints,
    path_rows,
    path_scores,
)
from gradlight.runtime.explanation.requests import AttributeOptions
from gradlight.runtime.explanation.sentences import SentenceSpan, split_sentences
from gradlight.wire.errors import RequestError


@dataclass
class RequestPlan:
    """Rows of one request and where each unit's outputs will be (a unit is a text
    classified whole, or one entity span of a text, marked)."""

    encoded: list[EncodedText]
    forward: list[Row]
    attribution: list[Row]
    attribution_graph: str
    full_row: list[int | None]  # unit -> index of its full-text row in ``forward``
    variants: list[list[int | None]]  # unit -> per sentence, its variant's row in ``forward``
    spans: list[list[SentenceSpan]]  # unit -> its sentences, as reported
    # Path methods: unit -> its points, and the index of its first row in ``attribution``
    # (per label its points' rows, then one row at the baseline).
    points: list[PathPoints] = field(default_factory=list)
    path_start: list[int] = field(default_factory=list)
    # The labels graph: the label indices of each of a unit's rows (every unit has the same).
    label_rows: list[tuple[int, ...]] = field(default_factory=list)
    # Units whose probabilities come from a bf16 attribution graph's logits where its margin
    # keeps them within the gate of fp32's; the rest get a full-text forward row after it ran.
    checked: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class TokenScores:
    """One unit's token scores: raw ``[K, S]``, the logits its probabilities come from, and the
    path methods' completeness gaps ``[K]``."""

    raw: np.ndarray
    logits: np.ndarray
    gaps: np.ndarray | None = None


def plan_request(
    engine: Engine,
    max_batch_size: int,
    units: Sequence[tuple[str, MarkedSpan | None]],
    options: AttributeOptions,
    max_length: int,
    label_indices: tuple[int, ...],
    subset: bool,
    choice: MethodChoice,
    seed: int | None,
) -> RequestPlan:
    """The rows of one request: ``units`` are (text, its marked entity span or None)."""
    texts = [text for text, _ in units]
    encoded = engine.encode(texts, max_length)
    spans: list[list[SentenceSpan]] = []  # as reported (into the original text)
    removed: list[list[SentenceSpan]] = []  # in the text the model reads
    for text, marked in units:
        if not options.sentence_attributions:
            spans.append([])
            removed.append([])
        elif marked is None:
            spans.append(split_sentences(text))
            removed.append(spans[-1])
        else:
            original, in_marked = marked.sentences()
            spans.append(original)
            removed.append(in_marked)
    # A variant the model would see exactly as the full text (the sentence was cut off by
    # truncation) is None: it scores exactly 0 and no row is run for it. Removing the
    # sentence of an entity span leaves the marked span in place.
    keep = [marked.kept if marked is not None else None for _, marked in units]
    variants = encode_variants(engine.encoder, texts, removed, encoded, max_length, keep=keep)
    plan = RequestPlan(encoded, [], [], ATTRIBUTION, [], [], spans)
    margin = None  # how far the attribution graph's logits may be from fp32's
    fp32 = False  # whether the token graph is the fp32 one: its logits are the forward's
    if options.token_attributions and not choice.on_path:
        plan.attribution_graph = _token_graph(engine, subset, label_indices)
        margin = engine.logit_margin(plan.attribution_graph)
        fp32 = engine.runs_in_fp32(plan.attribution_graph)
    for unit, (text_encoded, text_variants) in enumerate(zip(encoded, variants, strict=True)):
        # The full text's logits: an fp32 token graph's; a reduced precision's serve the
        # probabilities where its margin allows (``checked``), never the sentence scores; no
        # token graph (or no margin known), the forward graph's.
        needs_full = margin is None or (options.sentence_attributions and not fp32)
        plan.full_row.append(len(plan.forward) if needs_full else None)
        if not needs_full and margin:
            plan.checked.append(unit)
        if needs_full:  # a text and its variants are one unit: one padded call
            plan.forward.append(Row(text_encoded, unit=unit))
        rows: list[int | None] = [None] * len(text_variants)
        for i, variant in enumerate(text_variants):
            if variant is not None:
                rows[i] = len(plan.forward)
                plan.forward.append(Row(variant, unit=unit))
        plan.variants.append(rows)
    if not options.token_attributions:
        return plan
    if choice.on_path:
        _plan_path(plan, engine, label_indices, choice, seed or 0)
        return plan
    if plan.attribution_graph == ATTRIBUTION:
        plan.attribution = [Row(row) for row in encoded]
    elif plan.attribution_graph == ATTRIBUTION_LABELS:
        _plan_labels(plan, engine, label_indices, max_batch_size)
    else:
        one_hot = np.eye(len(engine.labels), dtype=np.float32)
        plan.attribution = [
            Row(row, {"cotangent": one_hot[k]}) for row in encoded for k in label_indices
        ]
    return plan


def _token_graph(engine: Engine, subset: bool, label_indices: tuple[int, ...]) -> str:
    """The graph that gives input x gradient scores for ``label_indices``: the all-labels
    graph for every label, where it was exported; the labels graph for two labels or more
    (one label: the cotangent graph's row is the same work, without the vmapped backward's
    overhead, about 10% on MiniLM-L6: docs/export-internals.md); else the cotangent graph."""
    if not subset and engine.has_all_labels_graph:
        return ATTRIBUTION
    if engine.has_graph(ATTRIBUTION_LABELS) and len(label_indices) > 1:
        return ATTRIBUTION_LABELS
    return ATTRIBUTION_COTANGENT


def _plan_labels(
    plan: RequestPlan, engine: Engine, label_indices: tuple[int, ...], max_batch_size: int
) -> None:
    """One labels graph row per text with one one-hot cotangent per label (more rows, of
    equal shares, where the labels outweigh one call's ``max_batch_size``)."""
    rows = -(-len(label_indices) // max_batch_size)
    share = -(-len(label_indices) // rows)
    plan.label_rows = [
        label_indices[start : start + share] for start in range(0, len(label_indices), share)
    ]
    one_hot = np.eye(len(engine.labels), dtype=np.float32)
    plan.attribution = [
        Row(row, {"cotangent": one_hot[list(labels)]}, weight=len(labels))
        for row in plan.encoded
        for labels in plan.label_rows
    ]


def check_path_rows(rows: int, choice: MethodChoice, limit: int) -> None:
    """Refuse a path request whose rows exceed ``limit`` (the queue's size)."""
    if rows > limit:
        field = "steps" if choice.method != GRADIENT_SHAP else "samples"
        raise RequestError(
            field,
            f"the request needs {rows} path graph rows ((labels x {field} + 1) per text); "
            f"this server queues at most {limit} rows per model: ask fewer texts, labels "
            f"or {field}",
        )


def _plan_path(
    plan: RequestPlan,
    engine: Engine,
    label_indices: tuple[int, ...],
    choice: MethodChoice,
    seed: int,
) -> None:
    plan.attribution_graph = ATTRIBUTION_PATH
    hidden = int(engine.input_shape(ATTRIBUTION_PATH, "noise")[-1])
    labels = len(engine.labels)
    for unit, row in enumerate(plan.encoded):
        points, rows = path_rows(row, unit, label_indices, labels, choice, hidden, seed)
        plan.points.append(points)
        plan.path_start.append(len(plan.attribution))
        plan.attribution.extend(rows)


def token_scores(
    index: int,
    plan: RequestPlan,
    forward: list[RowOutput],
    attribution: list[RowOutput],
    label_indices: tuple[int, ...],
) -> TokenScores:
    """Unit ``index``'s token scores from the request's rows' outputs."""
    labels = len(label_indices)
    if plan.attribution_graph == ATTRIBUTION_PATH:
        points, start = plan.points[index], plan.path_start[index]
        rows = attribution[start : start + labels * len(points.alphas) + 1]
        logits = forward[plan.full_row[index]].logits  # type: ignore[index]
        raw, gaps = path_scores(points, rows, logits, label_indices)
        return TokenScores(raw, logits, gaps)
    if plan.attribution_graph == ATTRIBUTION:
        output = attribution[index]
        raw = output.scores
    elif plan.attribution_graph == ATTRIBUTION_LABELS:
        count = len(plan.label_rows)
        rows = attribution[index * count : (index + 1) * count]
        output = rows[0]
        # A row that shared its call with rows of more labels was padded with zero vectors.
        shares = zip(rows, plan.label_rows, strict=True)
        raw = np.concatenate([row.scores[: len(labels)] for row, labels in shares])
    else:
        per_label = attribution[index * labels : (index + 1) * labels]
        output = per_label[0]
        raw = np.stack([row.scores for row in per_label])
    # predictions from the same pass as the token scores
    return TokenScores(np.asarray(raw, dtype=np.float32), output.logits)
