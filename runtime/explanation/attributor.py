"""Turns texts into predictions and attributions with one model's engine and batcher.

Per request, rows are planned (runtime/explanation/request_plan.py), submitted to the batcher (all
forward rows of the request as one work, all attribution rows as another, so each goes through one
padded call unless the batch limits cut it), and the outputs assembled into per-text results
(runtime/explanation/results.py) in input order.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence

import numpy as np

from gradlight.artifact.manifest import ATTRIBUTION_PATH, FORWARD
from gradlight.runtime.execution.admission import Admission
from gradlight.runtime.execution.batcher import DynamicBatcher, Row, RowOutput, weight
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.scores import normalize_scores
from gradlight.runtime.explanation.entities import (
    DEFAULT_MARKING,
    EntityMarking,
    MarkedSpan,
    in_original,
    mark_texts,
)
from gradlight.runtime.explanation.faithfulness import (
    REMOVALS,
    FaithfulnessPlan,
    FaithfulnessResult,
    max_variants,
    plan_variants,
)
from gradlight.runtime.explanation.faithfulness import score as faithfulness_score
from gradlight.runtime.explanation.methods import (
    GRADIENT_SHAP,
    MethodChoice,
    check_method,
    text_seed,
)
from gradlight.runtime.explanation.request_plan import (
    RequestPlan,
    TokenScores,
    check_path_rows,
    plan_request,
    token_scores,
)
from gradlight.runtime.explanation.requests import (
    AttributeOptions,
    ModelLimits,
    check_texts,
    resolve_labels,
    resolve_max_length,
)
from gradlight.runtime.explanation.results import (
    EntitiesResult,
    EntityResult,
    SentenceResult,
    TextResult,
)
from gradlight.wire.errors import RequestError


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
            check_path_rows(
                len(units) * (len(label_indices) * choice.points + 1),
                choice,
                self.batcher.settings.max_queue_size,
            )
        admission = self.batcher.admit(len(units))  # a burst is refused before tokenizing
        try:
            started = time.perf_counter()
            planning = asyncio.ensure_future(
                asyncio.to_thread(
                    plan_request,
                    self.engine,
                    self.batcher.settings.max_batch_size,
                    units,
                    options,
                    max_length,
                    label_indices,
                    subset,
                    choice,
                    seed,
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
            admission.resize(
                weight(plan.forward) + weight(plan.attribution) + len(plan.checked) + faithful
            )
            forward, attribution = await _gather(
                self.batcher.submit(FORWARD, plan.forward, admission),
                self.batcher.submit(plan.attribution_graph, plan.attribution, admission),
            )
            scores: list[TokenScores | None] = [
                token_scores(index, plan, forward, attribution, label_indices)
                if options.token_attributions
                else None
                for index in range(len(units))
            ]
            if plan.checked:
                await self._fp32_where_needed(plan, scores, forward, admission)
            faithfulness: list[FaithfulnessResult | None] = [None] * len(units)
            if options.faithfulness:
                faithfulness = await self._faithfulness(
                    units, plan, scores, options, label_indices, seed or 0, admission
                )
        finally:
            admission.release()
        results = iter(
            self._assemble(
                index,
                unit,
                plan,
                forward,
                scores[index],
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

    async def _fp32_where_needed(
        self,
        plan: RequestPlan,
        scores: Sequence[TokenScores | None],
        forward: list[RowOutput],
        admission: Admission,
    ) -> None:
        """The fp32 forward for each checked unit (a bf16 attribution graph's) whose
        probabilities its logits cannot give within the gate (runtime/execution/bf16_check.py): its
        full-text row is appended to ``forward``, where ``_assemble`` reads it."""
        unsure = [
            unit
            for unit in plan.checked
            if not self.engine.probabilities_hold(plan.attribution_graph, scores[unit].logits)  # type: ignore[union-attr]
        ]
        self.batcher.metrics.probabilities_checked(len(plan.checked), len(unsure))
        admission.resize(admission.rows - len(plan.checked) + len(unsure))
        if not unsure:
            return
        rows = [Row(plan.encoded[unit], unit=unit) for unit in unsure]
        outputs = await self.batcher.submit(FORWARD, rows, admission)
        for unit, output in zip(unsure, outputs, strict=True):
            plan.full_row[unit] = len(forward)
            forward.append(output)

    async def _faithfulness(
        self,
        units: Sequence[tuple[str, MarkedSpan | None]],
        plan: RequestPlan,
        unit_scores: Sequence[TokenScores | None],
        options: AttributeOptions,
        label_indices: tuple[int, ...],
        seed: int,
        admission: Admission,
    ) -> list[FaithfulnessResult | None]:
        """ERASER comprehensiveness and sufficiency of each unit's token scores: all variants
        of a unit through the forward graph in one padded call
        (runtime/explanation/faithfulness.py)."""
        encoder = self.engine.encoder
        mask_id = encoder.mask_token_id
        if mask_id is None:
            mask_id = self.engine.manifest.pad_token_id
        plans: list[FaithfulnessPlan] = []
        rows: list[Row] = []
        for index, (text, _) in enumerate(units):
            scores = unit_scores[index]
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
            scores = unit_scores[index]
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
        plan: RequestPlan,
        forward: list[RowOutput],
        scores: TokenScores | None,
        options: AttributeOptions,
        label_indices: tuple[int, ...],
        choice: MethodChoice,
        seed: int | None,
        faithfulness: FaithfulnessResult | None,
    ) -> TextResult:
        engine = self.engine
        labels = tuple(engine.labels[k] for k in label_indices)
        normalized = raw = None
        full_row = plan.full_row[index]
        full = forward[full_row] if full_row is not None else None
        if scores is not None:
            raw = scores.raw
            normalized = normalize_scores(raw[None], np.ones((1, raw.shape[-1])))[0]
            # the forward graph's where it ran (the sentence scores use them too; in fp32 where
            # the attribution graphs run in bf16)
            logits = full.logits if full is not None else scores.logits
        else:
            logits = full.logits  # type: ignore[union-attr]
        probabilities = engine.probabilities(logits)
        sentences = None
        if options.sentence_attributions:
            sentences = self._sentences(plan, index, forward, logits, label_indices)
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
            token_scores=normalized,
            raw_scores=raw if options.raw_scores else None,
            sentences=sentences,
            method=choice.method if scores is not None else "",
            completeness_gaps=scores.gaps if scores is not None else None,
            seed=seed,
            faithfulness=faithfulness,
        )

    def _sentences(
        self,
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
            p_full = self.engine.probabilities(logits)[picked]
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
