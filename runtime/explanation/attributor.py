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
from gradlight.runtime.execution.batcher import DynamicBatcher
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.feeds import Row, RowOutput, weight
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
from gradlight.runtime.explanation.methods import check_method, text_seed
from gradlight.runtime.explanation.path_rows import most_rows, path_graph, rows_per_text
from gradlight.runtime.explanation.request_plan import (
    RequestPlan,
    ResolvedRequest,
    TokenScores,
    check_path_rows,
    plan_request,
    take_path_outputs,
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
from gradlight.runtime.explanation.token_graphs import text_weight, token_graph
from gradlight.wire.errors import RequestError
from gradlight.wire.methods import GRADIENT_SHAP


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
        api_method: str = "",
    ) -> list[TextResult | EntitiesResult]:
        """One result per text, in order; a text with entity spans gets an EntitiesResult.
        ``api_method``: the API method asking (for the metrics). The stages: resolve (check
        every field), plan (tokenize, lay out the rows), execute (the rows through the batcher),
        assemble (the results)."""
        request, marked = self._resolve(texts, options, entities, marking)
        admission = self.batcher.admit(self._door_rows(request))  # refused before tokenizing
        try:
            plan = await self._plan(request, admission, api_method)
            forward, scores, faithfulness = await self._execute(request, plan, admission)
        finally:
            admission.release()
        # assembled in a thread: a large answer never holds the event loop
        return await asyncio.to_thread(
            self._results, texts, marked, request, plan, forward, scores, faithfulness
        )

    def _results(
        self,
        texts: Sequence[str],
        marked: Sequence[Sequence[MarkedSpan] | None],
        request: ResolvedRequest,
        plan: RequestPlan,
        forward: list[RowOutput],
        scores: list[TokenScores | None],
        faithfulness: list[FaithfulnessResult | None],
    ) -> list[TextResult | EntitiesResult]:
        """One result per text, in order (an EntitiesResult for a text with entity spans)."""
        results = iter(
            self._assemble(index, request, plan, forward, scores[index], faithfulness[index])
            for index in range(len(request.units))
        )
        return [
            next(results)
            if spans is None
            else EntitiesResult(text, tuple(EntityResult(span, next(results)) for span in spans))
            for text, spans in zip(texts, marked, strict=True)
        ]

    def _resolve(
        self,
        texts: Sequence[str],
        options: AttributeOptions,
        entities: Sequence[Sequence[tuple[int, int]]],
        marking: EntityMarking,
    ) -> tuple[ResolvedRequest, list[list[MarkedSpan] | None]]:
        """Every field checked (errors name the field) and resolved, with each text's marked
        entity spans (None: the text is classified whole); refused here, a request costs
        nothing."""
        check_texts(texts, self.limits, need_content=options.attributions)
        max_length = resolve_max_length(options.max_length, self.limits)
        label_indices = resolve_labels(options.labels, self.limits)
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
                len(units) * len(label_indices) * (choice.points + 2),
                choice,
                self.batcher.settings.max_queue_size,
            )
        subset = bool(options.labels)
        request = ResolvedRequest(units, options, max_length, label_indices, subset, choice, seed)
        return request, marked

    def _door_rows(self, request: ResolvedRequest) -> int:
        """The rows a request is admitted with before anything sized by it is made: its
        token-score rows (a path method's at its most steps) or its full-text rows, and
        faithfulness's variants at most; its sentence variants are added once its texts are
        split and tokenized (``_plan``). Never more than the rows planned, so the door refuses
        nothing the plan would admit."""
        units, options = len(request.units), request.options
        labels = request.label_indices
        per_text = 1
        if options.token_attributions and request.choice.on_path:
            graph = path_graph(self.engine.has_graph, len(labels))
            shared = graph != ATTRIBUTION_PATH
            own_text = not self.engine.runs_in_fp32(graph)
            per_text = rows_per_text(request.choice, len(labels), shared, own_text)
        elif options.token_attributions:
            graph = token_graph(self.engine.has_graph, request.subset, labels)
            per_text = text_weight(graph, labels)
        faithful = units * max_variants(len(labels)) if options.faithfulness else 0
        return units * per_text + faithful

    async def _plan(
        self, request: ResolvedRequest, admission: Admission, api_method: str
    ) -> RequestPlan:
        """Tokenize and lay out the rows in a thread; the admission grows to the rows planned
        (faithfulness's, at most, held from the start: admitted whole, or not)."""
        started = time.perf_counter()
        planning = asyncio.ensure_future(
            asyncio.to_thread(
                plan_request, self.engine, self.batcher.settings.max_batch_size, request
            )
        )
        try:
            plan = await asyncio.shield(planning)
        except asyncio.CancelledError:
            admission.release_when_done(planning)  # its thread is still tokenizing
            raise
        self.batcher.metrics.tokenized(api_method, time.perf_counter() - started)
        units = len(request.units)
        faithful = (
            units * max_variants(len(request.label_indices)) if request.options.faithfulness else 0
        )
        refined = sum(most_rows(text) for text in plan.path)  # held at the most steps
        admission.resize(
            weight(plan.forward) + weight(plan.attribution) + len(plan.checked) + faithful + refined
        )
        return plan

    async def _execute(
        self, request: ResolvedRequest, plan: RequestPlan, admission: Admission
    ) -> tuple[list[RowOutput], list[TokenScores | None], list[FaithfulnessResult | None]]:
        """The planned rows through the batcher, then what their outputs call for: fp32
        forward rows where bf16 probabilities are unsure, faithfulness's variants."""
        forward, attribution = await _gather(
            self.batcher.submit(FORWARD, plan.forward, admission),
            self.batcher.submit(plan.attribution_graph, plan.attribution, admission),
        )
        options = request.options
        if plan.path:
            take_path_outputs(plan, attribution)
            await self._refine(plan, forward, admission)
        scores: list[TokenScores | None] = [
            token_scores(index, plan, forward, attribution) if options.token_attributions else None
            for index in range(len(request.units))
        ]
        if plan.checked:
            await self._fp32_where_needed(plan, scores, forward, admission)
        faithfulness: list[FaithfulnessResult | None] = [None] * len(request.units)
        if options.faithfulness:
            faithfulness = await self._faithfulness(request, plan, scores, forward, admission)
        return forward, scores, faithfulness

    async def _refine(
        self, plan: RequestPlan, forward: list[RowOutput], admission: Admission
    ) -> None:
        """Steps chosen per text: the texts whose completeness gap is above the tolerance run
        their next level's points, every such text's rows in one work, until all are within it
        or at their most steps (runtime/explanation/path_rows.py)."""
        refining = [text for text in plan.path if text.can_refine()]
        while refining:
            # a text within the tolerance is done: it is not looked at again
            refining = [
                text
                for text in refining
                if not text.reached(forward[plan.full_row[text.unit]].logits)  # type: ignore[index]
            ]
            if not refining:
                return
            rows = [text.refine() for text in refining]
            outputs = await self.batcher.submit(
                plan.attribution_graph, [row for part in rows for row in part], admission
            )
            start = 0
            for text, part in zip(refining, rows, strict=True):
                text.take(outputs[start : start + len(part)])
                start += len(part)
            refining = [text for text in refining if text.can_refine()]

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
        request: ResolvedRequest,
        plan: RequestPlan,
        unit_scores: Sequence[TokenScores | None],
        forward: list[RowOutput],
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
        options, label_indices, seed = request.options, request.label_indices, request.seed or 0
        for index, (text, _) in enumerate(request.units):
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
            p_full = self.engine.probabilities(_full_logits(index, plan, forward, scores))[picked]
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
        request: ResolvedRequest,
        plan: RequestPlan,
        forward: list[RowOutput],
        scores: TokenScores | None,
        faithfulness: FaithfulnessResult | None,
    ) -> TextResult:
        engine = self.engine
        options, label_indices = request.options, request.label_indices
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
        text, marked = request.units[index]
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
            method=request.choice.method if scores is not None else "",
            completeness_gaps=scores.gaps if scores is not None else None,
            steps=scores.steps if scores is not None else 0,
            tolerance_missed=scores.tolerance_missed if scores is not None else False,
            seed=request.seed,
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


def _full_logits(
    index: int, plan: RequestPlan, forward: list[RowOutput], scores: TokenScores
) -> np.ndarray:
    """Unit ``index``'s full-text logits, those its probabilities are reported from: the
    forward graph's where it ran (in fp32 where the attribution graphs run in bf16), else the
    token graph's."""
    row = plan.full_row[index]
    return forward[row].logits if row is not None else scores.logits


async def _gather(*awaitables: object) -> list[list[RowOutput]]:
    """Await all; if one fails, cancel the rest (their rows are dropped) and raise."""
    tasks = [asyncio.ensure_future(item) for item in awaitables]  # type: ignore[arg-type]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
