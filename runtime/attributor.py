"""Turns texts into predictions and attributions with one model's engine and batcher.

Per request, rows are planned, submitted to the batcher (all forward rows of the request as
one work, all attribution rows as another, so each goes through one padded call unless the
batch limits cut it), and the outputs assembled into per-text results in input order.

A text's token scores come, by the graphs the artifact holds: from the path graph (path
methods); from the all-labels graph (every label, where it was exported); from the labels
graph, one row per text holding the asked labels' one-hot cotangents (one forward, one backward
per label), for two labels or more; else from the cotangent graph, one row per (text, label)
(one label, or artifacts exported before the labels graph).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gradlight.runtime.ablation import encode_variants
from gradlight.runtime.admission import Admission
from gradlight.runtime.batcher import DynamicBatcher, Row, RowOutput, weight
from gradlight.runtime.engine import Engine
from gradlight.runtime.entities import (
    DEFAULT_MARKING,
    EntityMarking,
    MarkedSpan,
    in_original,
    mark_texts,
)
from gradlight.runtime.errors import RequestError
from gradlight.runtime.faithfulness import (
    REMOVALS,
    FaithfulnessPlan,
    FaithfulnessResult,
    max_variants,
    plan_variants,
)
from gradlight.runtime.faithfulness import score as faithfulness_score
from gradlight.runtime.manifest import (
    ATTRIBUTION,
    ATTRIBUTION_COTANGENT,
    ATTRIBUTION_LABELS,
    ATTRIBUTION_PATH,
    FORWARD,
)
from gradlight.runtime.methods import (
    GRADIENT_SHAP,
    MethodChoice,
    PathPoints,
    check_method,
    path_rows,
    path_scores,
    text_seed,
)
from gradlight.runtime.requests import (
    AttributeOptions,
    ModelLimits,
    check_texts,
    resolve_labels,
    resolve_max_length,
)
from gradlight.runtime.scores import normalize_scores
from gradlight.runtime.sentences import SentenceSpan, split_sentences
from gradlight.runtime.tokenization import EncodedText


@dataclass(frozen=True)
class SentenceResult:
    start: int
    end: int
    scores: np.ndarray  # [K]


@dataclass(frozen=True)
class TextResult:
    """One text's answer. Every per-label array follows ``labels``."""

    text: str
    labels: tuple[str, ...]
    probabilities: np.ndarray  # [K]
    predicted_label: str
    predicted_labels: tuple[str, ...]
    encoded: EncodedText
    token_scores: np.ndarray | None = None  # [K, S] normalized
    raw_scores: np.ndarray | None = None  # [K, S]
    sentences: tuple[SentenceResult, ...] | None = None
    method: str = ""  # of the token scores
    completeness_gaps: np.ndarray | None = None  # [K], path methods
    seed: int | None = None  # drawn or asked (gradient_shap, faithfulness)
    faithfulness: FaithfulnessResult | None = None


@dataclass(frozen=True)
class EntityResult:
    """One entity span's answer: ``result`` holds offsets into the original text."""

    span: MarkedSpan
    result: TextResult


@dataclass(frozen=True)
class EntitiesResult:
    """A text whose entity spans were classified (the text itself was not)."""

    text: str
    entities: tuple[EntityResult, ...]


@dataclass
class _Plan:
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


@dataclass(frozen=True)
class _TokenScores:
    """One unit's token scores: raw ``[K, S]``, the logits its probabilities come from, and the
    path methods' completeness gaps ``[K]``."""

    raw: np.ndarray
    logits: np.ndarray
    gaps: np.ndarray | None = None


class Attributor:
    def __init__(self, engine: Engine, batcher: DynamicBatcher, max_texts: int) -> None:
        self.engine = engine
        self.batcher = batcher
        self.limits = ModelLimits(
            labels=engine.labels,
            max_length=engine.max_length,
            min_length=engine.encoder.num_special_tokens + 1,
            max_texts=max_texts,
        )

    async def run(
        self,
        texts: Sequence[str],
        options: AttributeOptions,
        entities: Sequence[Sequence[tuple[int, int]]] = (),
        marking: EntityMarking = DEFAULT_MARKING,
        method: str = "",
    ) -> list[TextResult | EntitiesResult]:
        """One result per text, in order; a text with entity spans gets an EntitiesResult.
        ``method``: the API method asking (for the metrics)."""
        check_texts(texts, self.limits, need_content=options.attributions)
        max_length = resolve_max_length(options.max_length, self.limits)
        label_indices = resolve_labels(options.labels, self.limits)
        subset = bool(options.labels)
        choice = check_method(options, self.engine.has_graph(ATTRIBUTION_PATH))
        seed = None
        if options.token_attributions and (
            options.faithfulness or choice.method == GRADIENT_SHAP
        ):  # reported only when used; 53 bits: a JSON number in any language
            seed = secrets.randbits(53) if options.seed is None else options.seed
        marked = mark_texts(texts, entities, marking)
        units: list[tuple[str, MarkedSpan | None]] = []
        for text, spans in zip(texts, marked, strict=True):
            units.extend([(text, None)] if spans is None else [(s.marked_text, s) for s in spans])
        if len(units) > self.limits.max_texts:
            raise RequestError(
                "entities",
                f"asks for {len(units)} classifications (entity spans, plus texts without "
                f"spans); the limit is {self.limits.max_texts} per request: split the request",
            )
        if options.token_attributions and choice.on_path:
            self._check_path_rows(len(units) * (len(label_indices) * choice.points + 1), choice)
        admission = self.batcher.admit(len(units))  # a burst is refused before tokenizing
        try:
            started = time.perf_counter()
            planning = asyncio.ensure_future(
                asyncio.to_thread(
                    self._plan, units, options, max_length, label_indices, subset, choice, seed
                )
            )
            try:
                plan = await asyncio.shield(planning)
            except asyncio.CancelledError:
                admission.release_when_done(planning)  # its thread is still tokenizing
                raise
            self.batcher.metrics.tokenized(method, time.perf_counter() - started)
            # Admitted whole, or not: faithfulness's rows (at most) are held from the start.
            faithful = len(units) * max_variants(len(label_indices)) if options.faithfulness else 0
            admission.resize(weight(plan.forward) + weight(plan.attribution) + faithful)
            forward, attribution = await _gather(
                self.batcher.submit(FORWARD, plan.forward, admission),
                self.batcher.submit(plan.attribution_graph, plan.attribution, admission),
            )
            token_scores: list[_TokenScores | None] = [
                self._token_scores(index, plan, forward, attribution, label_indices)
                if options.token_attributions
                else None
                for index in range(len(units))
            ]
            faithfulness: list[FaithfulnessResult | None] = [None] * len(units)
            if options.faithfulness:
                faithfulness = await self._faithfulness(
                    units, plan, token_scores, options, label_indices, seed or 0, admission
                )
        finally:
            admission.release()
        results = iter(
            self._assemble(
                index,
                unit,
                plan,
                forward,
                token_scores[index],
                options,
                label_indices,
                choice,
                seed,
                faithfulness[index],
            )
            for index, unit in enumerate(units)
        )
        return [
            next(results)
            if spans is None
            else EntitiesResult(text, tuple(EntityResult(span, next(results)) for span in spans))
            for text, spans in zip(texts, marked, strict=True)
        ]

    def _plan(
        self,
        units: Sequence[tuple[str, MarkedSpan | None]],
        options: AttributeOptions,
        max_length: int,
        label_indices: tuple[int, ...],
        subset: bool,
        choice: MethodChoice,
        seed: int | None,
    ) -> _Plan:
        engine = self.engine
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
        plan = _Plan(encoded, [], [], ATTRIBUTION, [], [], spans)
        for unit, (text_encoded, text_variants) in enumerate(zip(encoded, variants, strict=True)):
            needs_full = (
                options.sentence_attributions
                or not options.token_attributions
                or choice.on_path
                or engine.reduced_attribution  # the probabilities come from the fp32 forward
            )
            plan.full_row.append(len(plan.forward) if needs_full else None)
            if needs_full:  # a text and its variants are one unit: one padded call
                plan.forward.append(Row(text_encoded, unit=unit))
            rows: list[int | None] = [None] * len(text_variants)
            for i, variant in enumerate(text_variants):
                if variant is not None:
                    rows[i] = len(plan.forward)
                    plan.forward.append(Row(variant, unit=unit))
            plan.variants.append(rows)
        if options.token_attributions:
            if choice.on_path:
                self._plan_path(plan, label_indices, choice, seed or 0)
            elif not subset and engine.has_all_labels_graph:
                plan.attribution = [Row(row) for row in encoded]
            elif engine.has_graph(ATTRIBUTION_LABELS) and len(label_indices) > 1:
                # (one label: the cotangent graph's row is the same work, without the vmapped
                # backward's overhead, about 10% on MiniLM-L6: docs/export-internals.md)
                self._plan_labels(plan, label_indices)
            else:
                plan.attribution_graph = ATTRIBUTION_COTANGENT
                one_hot = np.eye(len(engine.labels), dtype=np.float32)
                plan.attribution = [
                    Row(row, {"cotangent": one_hot[k]}) for row in encoded for k in label_indices
                ]
        return plan

    def _plan_labels(self, plan: _Plan, label_indices: tuple[int, ...]) -> None:
        """One labels graph row per text with one one-hot cotangent per label (more rows, of
        equal shares, where the labels outweigh one call's ``max_batch_size``)."""
        plan.attribution_graph = ATTRIBUTION_LABELS
        limit = self.batcher.settings.max_batch_size
        rows = -(-len(label_indices) // limit)
        share = -(-len(label_indices) // rows)
        plan.label_rows = [
            label_indices[start : start + share] for start in range(0, len(label_indices), share)
        ]
        one_hot = np.eye(len(self.engine.labels), dtype=np.float32)
        plan.attribution = [
            Row(row, {"cotangent": one_hot[list(labels)]}, weight=len(labels))
            for row in plan.encoded
            for labels in plan.label_rows
        ]

    def _check_path_rows(self, rows: int, choice: MethodChoice) -> None:
        limit = self.batcher.settings.max_queue_size
        if rows > limit:
            field = "steps" if choice.method != GRADIENT_SHAP else "samples"
            raise RequestError(
                field,
                f"the request needs {rows} path graph rows ((labels x {field} + 1) per text); "
                f"this server queues at most {limit} rows per model: ask fewer texts, labels "
                f"or {field}",
            )

    def _plan_path(
        self, plan: _Plan, label_indices: tuple[int, ...], choice: MethodChoice, seed: int
    ) -> None:
        plan.attribution_graph = ATTRIBUTION_PATH
        hidden = int(self.engine.input_shape(ATTRIBUTION_PATH, "noise")[-1])
        labels = len(self.engine.labels)
        for unit, row in enumerate(plan.encoded):
            points, rows = path_rows(row, unit, label_indices, labels, choice, hidden, seed)
            plan.points.append(points)
            plan.path_start.append(len(plan.attribution))
            plan.attribution.extend(rows)

    def _token_scores(
        self,
        index: int,
        plan: _Plan,
        forward: list[RowOutput],
        attribution: list[RowOutput],
        label_indices: tuple[int, ...],
    ) -> _TokenScores:
        labels = len(label_indices)
        if plan.attribution_graph == ATTRIBUTION_PATH:
            points, start = plan.points[index], plan.path_start[index]
            rows = attribution[start : start + labels * len(points.alphas) + 1]
            logits = forward[plan.full_row[index]].logits  # type: ignore[index]
            raw, gaps = path_scores(points, rows, logits, label_indices)
            return _TokenScores(raw, logits, gaps)
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
        return _TokenScores(np.asarray(raw, dtype=np.float32), output.logits)

    async def _faithfulness(
        self,
        units: Sequence[tuple[str, MarkedSpan | None]],
        plan: _Plan,
        token_scores: Sequence[_TokenScores | None],
        options: AttributeOptions,
        label_indices: tuple[int, ...],
        seed: int,
        admission: Admission,
    ) -> list[FaithfulnessResult | None]:
        """ERASER comprehensiveness and sufficiency of each unit's token scores: all variants
        of a unit through the forward graph in one padded call (runtime/faithfulness.py)."""
        encoder = self.engine.encoder
        mask_id = encoder.mask_token_id
        if mask_id is None:
            mask_id = self.engine.manifest.pad_token_id
        plans: list[FaithfulnessPlan] = []
        rows: list[Row] = []
        for index, (text, _) in enumerate(units):
            scores = token_scores[index]
            assert scores is not None
            planned = plan_variants(
                text,
                plan.encoded[index],
                scores.raw,
                removal=options.removal or REMOVALS[0],
                mask_id=mask_id,
                seed=text_seed(seed, plan.encoded[index].ids),
            )
            plans.append(planned)
            rows.extend(Row(variant, unit=index) for variant in planned.variants)
        admission.resize(len(rows))
        outputs = await self.batcher.submit(FORWARD, rows, admission)
        results: list[FaithfulnessResult | None] = []
        position = 0
        picked = list(label_indices)
        for index, planned in enumerate(plans):
            count = len(planned.variants)
            scores = token_scores[index]
            assert scores is not None
            p_full = self.engine.probabilities(scores.logits)[picked]
            logits = [output.logits for output in outputs[position : position + count]]
            p_variants = (
                self.engine.probabilities(np.stack(logits))[:, picked]
                if logits
                else np.zeros((0, len(picked)))
            )
            results.append(faithfulness_score(planned, p_full, p_variants))
            position += count
        return results

    def _assemble(
        self,
        index: int,
        unit: tuple[str, MarkedSpan | None],
        plan: _Plan,
        forward: list[RowOutput],
        scores: _TokenScores | None,
        options: AttributeOptions,
        label_indices: tuple[int, ...],
        choice: MethodChoice,
        seed: int | None,
        faithfulness: FaithfulnessResult | None,
    ) -> TextResult:
        engine = self.engine
        labels = tuple(engine.labels[k] for k in label_indices)
        token_scores = raw = None
        full_row = plan.full_row[index]
        full = forward[full_row] if full_row is not None else None
        if scores is not None:
            raw = scores.raw
            token_scores = normalize_scores(raw[None], np.ones((1, raw.shape[-1])))[0]
            # the forward graph's where it ran (the sentence scores use them too; in fp32 where
            # the attribution graphs run in bf16)
            logits = full.logits if full is not None else scores.logits
        else:
            logits = full.logits  # type: ignore[union-attr]
        probabilities = engine.probabilities(logits)
        sentences = None
        if options.sentence_attributions:
            sentences = self._sentences(plan, index, forward, full, label_indices)
        predicted = engine.labels[int(np.argmax(probabilities))]
        if engine.manifest.multi_label:
            chosen = tuple(
                label for label, p in zip(engine.labels, probabilities, strict=True) if p >= 0.5
            )
        else:
            chosen = (predicted,)
        text, marked = unit
        encoded = plan.encoded[index]
        if marked is not None:  # offsets into the original text; its text is the outer one's
            text, encoded = "", in_original(encoded, marked)
        return TextResult(
            text=text,
            labels=labels,
            probabilities=probabilities[list(label_indices)].astype(np.float32),
            predicted_label=predicted,
            predicted_labels=chosen,
            encoded=encoded,
            token_scores=token_scores,
            raw_scores=raw if options.raw_scores else None,
            sentences=sentences,
            method=choice.method if scores is not None else "",
            completeness_gaps=scores.gaps if scores is not None else None,
            seed=seed,
            faithfulness=faithfulness,
        )

    def _sentences(
        self,
        plan: _Plan,
        index: int,
        forward: list[RowOutput],
        full: RowOutput | None,
        label_indices: tuple[int, ...],
    ) -> tuple[SentenceResult, ...]:
        spans = plan.spans[index]
        rows = plan.variants[index]
        picked = list(label_indices)
        scores = np.zeros((len(spans), len(picked)), dtype=np.float32)  # unablated: 0.0
        ran = [i for i, row in enumerate(rows) if row is not None]
        if ran and full is not None:
            p_full = self.engine.probabilities(full.logits)[picked]
            variants = np.stack([forward[rows[i]].logits for i in ran])  # type: ignore[index]
            p_without = self.engine.probabilities(variants)[:, picked]
            scores[ran] = p_full[None, :] - p_without
        return tuple(
            SentenceResult(span.start, span.end, scores[i]) for i, span in enumerate(spans)
        )


async def _gather(*awaitables: object) -> list[list[RowOutput]]:
    """Await all; if one fails, cancel the rest (their rows are dropped) and raise."""
    tasks = [asyncio.ensure_future(item) for item in awaitables]  # type: ignore[arg-type]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
