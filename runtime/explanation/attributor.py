"""Turns texts into predictions and attributions with one model's engine and batcher.

Per request, rows are planned (runtime/explanation/request_plan.py), submitted to the batcher (all
forward rows of the request as one work, all attribution rows as another, so each goes through one
padded call unless the batch limits cut it), and the outputs assembled into per-text results
(runtime/explanation/results.py) in input order.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial

from gradlight.artifact.manifest import ATTRIBUTION_PATH, FORWARD
from gradlight.runtime.execution.admission import Admission
from gradlight.runtime.execution.batcher import DynamicBatcher
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.feeds import Row, RowOutput, weight
from gradlight.runtime.explanation.answers import full_logits, text_result, unit_sentences
from gradlight.runtime.explanation.document_scores import (
    document_token_scores,
    sentence_scores,
    window_logits,
    window_results,
)
from gradlight.runtime.explanation.documents import (
    DocumentsPlan,
    encode_documents,
    fits,
    plan_documents,
    windows_of,
)
from gradlight.runtime.explanation.entities import (
    DEFAULT_MARKING,
    EntityMarking,
    MarkedSpan,
    in_original,
    mark_texts,
)
from gradlight.runtime.explanation.faithfulness import (
    FaithfulnessResult,
    max_variants,
)
from gradlight.runtime.explanation.faithfulness_run import measure_faithfulness
from gradlight.runtime.explanation.methods import check_method
from gradlight.runtime.explanation.path_rows import most_rows, path_graph, rows_per_text
from gradlight.runtime.explanation.request_plan import (
    RequestPlan,
    ResolvedRequest,
    TokenScores,
    check_path_rows,
    path_text_logits,
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
    TextResult,
)
from gradlight.runtime.explanation.token_graphs import text_weight, token_graph
from gradlight.runtime.explanation.windows import aggregate, resolve_windowing
from gradlight.runtime.settings import DocumentSettings
from gradlight.wire.errors import RequestError
from gradlight.wire.methods import GRADIENT_SHAP


class Attributor:
    def __init__(
        self,
        engine: Engine,
        batcher: DynamicBatcher,
        max_texts: int,
        documents: DocumentSettings | None = None,
    ) -> None:
        self.engine = engine
        self.batcher = batcher
        self.documents = documents or DocumentSettings()
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
            planned = await self._plan(request, admission, api_method)
            if isinstance(planned, DocumentsPlan):
                assemble = await self._run_documents(request, planned, admission)
            else:
                forward, scores, faithfulness = await self._execute(request, planned, admission)
                assemble = partial(self._assemble, request, planned, forward, scores, faithfulness)
        finally:
            admission.release()
        # assembled in a thread: a large answer never holds the event loop
        return await asyncio.to_thread(self._results, texts, marked, assemble)

    def _results(
        self,
        texts: Sequence[str],
        marked: Sequence[Sequence[MarkedSpan] | None],
        assemble: Callable[[int], TextResult],
    ) -> list[TextResult | EntitiesResult]:
        """One result per text, in order (an EntitiesResult for a text with entity spans);
        ``assemble``: a unit's result."""
        results = iter(assemble(index) for index in itertools.count())
        return [
            next(results)
            if spans is None
            else EntitiesResult(text, tuple(EntityResult(span, next(results)) for span in spans))
            for text, spans in zip(texts, marked, strict=True)
        ]

    async def _run_documents(
        self, request: ResolvedRequest, planned: DocumentsPlan, admission: Admission
    ) -> Callable[[int], TextResult]:
        """The windows' rows through the batcher, then each document's answer from them:
        logits aggregated, token scores stitched, faithfulness on the whole document."""
        windowing = request.windowing
        assert windowing is not None
        plan, documents = planned.plan, planned.documents
        forward, scores, _ = await self._execute(planned.request, plan, admission)
        rule = windowing.aggregation
        by_window = [window_logits(doc, plan, forward, scores) for doc in documents]
        logits = [aggregate(found, rule) for found in by_window]
        doc_scores = [
            document_token_scores(doc, scores, logits[index]) for index, doc in enumerate(documents)
        ]
        faithfulness: list[FaithfulnessResult | None] = [None] * len(documents)
        if request.options.faithfulness:
            faithfulness = await measure_faithfulness(
                self.engine,
                self.batcher,
                request,
                [doc.encoded for doc in documents],
                doc_scores,
                logits,
                admission,
                lambda index, variant: windows_of(documents[index], request, windowing, variant),
            )
        picked = list(request.label_indices)

        def assemble(index: int) -> TextResult:
            doc, marked = documents[index], request.units[index][1]
            sentences = None
            if request.options.sentence_attributions:
                sentences = sentence_scores(self.engine, doc, forward, logits[index], rule, picked)
            result = text_result(
                self.engine,
                request,
                index,
                doc.encoded,
                logits[index],
                doc_scores[index],
                sentences,
                faithfulness[index],
            )
            if len(doc.windows) == 1 and not doc.focused:
                return result  # a text that fits its window: no windows to report
            shown = [
                w.encoded if marked is None else in_original(w.encoded, marked) for w in doc.windows
            ]
            windows = window_results(
                self.engine, doc, result.encoded, shown, by_window[index], picked, scores
            )
            return replace(result, windows=windows, aggregation=rule)

        return assemble

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
        windowing = resolve_windowing(
            options.long_texts,
            options.window_stride,
            options.aggregation,
            self.documents,
            self.engine.manifest.multi_label,
        )
        units: list[tuple[str, MarkedSpan | None]] = []
        text_of: list[int] = []
        for index, (text, spans) in enumerate(zip(texts, marked, strict=True)):
            units.extend([(text, None)] if spans is None else [(s.marked_text, s) for s in spans])
            text_of.extend([index] * (len(units) - len(text_of)))
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
        request = ResolvedRequest(
            units,
            options,
            max_length,
            label_indices,
            subset,
            choice,
            seed,
            windowing,
            tuple(text_of),
        )
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
    ) -> RequestPlan | DocumentsPlan:
        """Tokenize and lay out the rows in a thread; the admission grows to the rows planned
        (faithfulness's, at most, held from the start: admitted whole, or not)."""
        started = time.perf_counter()
        planning = asyncio.ensure_future(asyncio.to_thread(self._prepare, request))
        try:
            planned = await asyncio.shield(planning)
        except asyncio.CancelledError:
            admission.release_when_done(planning)  # its thread is still tokenizing
            raise
        self.batcher.metrics.tokenized(api_method, time.perf_counter() - started)
        variants = max_variants(len(request.label_indices))
        if isinstance(planned, DocumentsPlan):
            plan = planned.plan
            windowed = [d for d in planned.documents if d.focused or len(d.windows) > 1]
            self.batcher.metrics.windows(len(windowed), sum(len(d.windows) for d in windowed))
            faithful = sum(variants * len(d.windows) for d in planned.documents)
        else:
            plan = planned
            faithful = len(request.units) * variants
        if not request.options.faithfulness:
            faithful = 0
        refined = sum(most_rows(text) for text in plan.path)  # held at the most steps
        admission.resize(
            weight(plan.forward) + weight(plan.attribution) + len(plan.checked) + faithful + refined
        )
        return planned

    def _prepare(self, request: ResolvedRequest) -> RequestPlan | DocumentsPlan:
        """The request's rows; a request reading long texts as windows whose texts all fit
        one window is planned as any other."""
        max_batch_size = self.batcher.settings.max_batch_size
        if request.windowing is None:
            return plan_request(self.engine, max_batch_size, request)
        encoded = encode_documents(self.engine, request, request.windowing)
        if fits(encoded, request.max_length):
            return plan_request(self.engine, max_batch_size, request, encoded)
        return plan_documents(self.engine, max_batch_size, request, request.windowing, encoded)

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
            full = [
                full_logits(index, plan, forward, scores[index])  # type: ignore[arg-type]
                for index in range(len(request.units))
            ]
            faithfulness = await measure_faithfulness(
                self.engine, self.batcher, request, plan.encoded, scores, full, admission
            )
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
                if not text.reached(path_text_logits(plan, forward, text.unit))
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

    def _assemble(
        self,
        request: ResolvedRequest,
        plan: RequestPlan,
        forward: list[RowOutput],
        unit_scores: list[TokenScores | None],
        faithfulness: list[FaithfulnessResult | None],
        index: int,
    ) -> TextResult:
        """Unit ``index``'s result: its probabilities from the forward graph's logits where it
        ran (the sentence scores use them too; in fp32 where the attribution graphs run in
        bf16), else the token graph's."""
        scores = unit_scores[index]
        logits = full_logits(index, plan, forward, scores)
        sentences = None
        if request.options.sentence_attributions:
            sentences = unit_sentences(
                self.engine, plan, index, forward, logits, request.label_indices
            )
        return text_result(
            self.engine,
            request,
            index,
            plan.encoded[index],
            logits,
            scores,
            sentences,
            faithfulness[index],
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
