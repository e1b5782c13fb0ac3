"""Dynamic batching: rows of concurrent requests share ONNX Runtime calls.

Requests submit *work*: the rows one request needs from one graph (for example a text and its
leave-one-sentence-out variants for the forward graph). The batcher waits up to ``max_wait_ms``
after the oldest waiting work for more to arrive, takes whole works up to ``max_batch_size``
rows, groups their rows by graph, sorts them by length and cuts them into calls (see
``gradlight.runtime.execution.packing``): each call is padded only to its own longest row, respects
``max_batch_size`` and ``max_tokens_per_batch`` (rows x longest row; by execution provider where
the settings do not say), and calls are cut where
the padding they would add costs more than a call (``call_cost_tokens``). Rows of one *unit*
(a text and its leave-one-sentence-out variants) always share a call; rows that ask no
backward pass (a path labels row of no cotangent) never share one with rows that do. Outputs go
back to each work in its row order. A row counts as its ``weight`` in every limit (queue room,
rows and tokens per call): a labels graph row with k cotangents as the k cotangent rows it
stands for.

Work whose request was cancelled (client gone, deadline passed) before its batch starts is
dropped. If a call fails, each work in it is retried alone, so one bad row fails only its own
request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from gradlight.runtime.errors import InferenceError, UnavailableError
from gradlight.runtime.execution.admission import Admission, QueueRoom
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.feeds import Row, RowOutput, forward_only, weight
from gradlight.runtime.execution.packing import (
    DEFAULT_CALL_COST_TOKENS,
    DEFAULT_TOKENS_PER_CALL,
    plan_calls,
)
from gradlight.runtime.serving.metrics import ModelMetrics, ServerMetrics
from gradlight.runtime.settings import BatchSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRecord:
    """One ONNX Runtime call: graph, rows, padded width and the rows' total weight (kept for
    logs and tests)."""

    graph: str
    rows: int
    width: int
    seconds: float
    weight: int


@dataclass
class _Work:
    graph: str
    rows: Sequence[Row]
    future: asyncio.Future[list[RowOutput]]
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def weight(self) -> int:
        return weight(self.rows)


class DynamicBatcher:
    """One per model. ``start()`` inside the serving event loop; ``close()`` drains it."""

    def __init__(
        self, engine: Engine, settings: BatchSettings, metrics: ModelMetrics | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics or ServerMetrics().model("model")
        self._queue: deque[_Work] = deque()
        self.room = QueueRoom(settings.max_queue_size)
        self.metrics.queue_depth(lambda: self.room.waiting)
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gradlight-ort")
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.calls = 0  # ONNX Runtime calls made
        self.dropped_rows = 0  # rows of cancelled requests, never computed
        self.history: deque[CallRecord] = deque(maxlen=256)
        self.call_cost_tokens = (
            settings.call_cost_tokens
            if settings.call_cost_tokens is not None
            else DEFAULT_CALL_COST_TOKENS.get(engine.execution_provider, 16)
        )
        self.max_tokens_per_call = (
            settings.max_tokens_per_batch
            if settings.max_tokens_per_batch is not None
            else DEFAULT_TOKENS_PER_CALL.get(engine.execution_provider, 1024)
        )

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    def admit(self, rows: int) -> Admission:
        """Hold room in the queue for a request of (at least) ``rows`` rows, before it is
        prepared; QueueFullError when there is none (see
        ``gradlight.runtime.execution.admission``)."""
        self._check_open()
        return self.room.admit(rows)

    async def submit(
        self, graph: str, rows: Sequence[Row], admission: Admission
    ) -> list[RowOutput]:
        """Run ``rows`` (held by ``admission``) through ``graph`` in some batch; outputs in
        ``rows`` order."""
        if not rows:  # nothing to run (a Predict asks no attribution graph for anything)
            return []
        if not self.engine.has_graph(graph):
            raise ValueError(f"unknown graph {graph!r}")
        self._check_open()
        work = _Work(graph, rows, asyncio.get_running_loop().create_future())
        admission.queue(work.weight)
        self._queue.append(work)
        self._arrived.set()
        return await work.future  # cancelling the caller cancels the future: work is dropped

    @property
    def waiting_rows(self) -> int:
        """Rows queued, or held by requests still being prepared."""
        return self.room.waiting

    def _check_open(self) -> None:
        if self._closing or self._task is None:
            raise UnavailableError("the server is shutting down; retry on another replica")

    async def close(self) -> None:
        """Refuse new work, finish what is queued, stop the worker."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        settings = self.settings
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
            deadline = self._queue[0].enqueued + settings.max_wait_ms / 1000
            while self.room.queued < settings.max_batch_size and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            works = self._take()
            if not works:
                continue
            try:
                outcomes = await loop.run_in_executor(self._executor, self._execute, works)
            except BaseException as exc:  # the executor itself failed: fail the works, go on
                outcomes = [exc] * len(works)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            for work, outcome in zip(works, outcomes, strict=True):
                if work.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    work.future.set_exception(outcome)
                else:
                    work.future.set_result(outcome)

    def _take(self) -> list[_Work]:
        """Whole works, oldest first, up to ``max_batch_size`` rows (at least one work)."""
        taken: list[_Work] = []
        rows = 0
        while self._queue:
            work = self._queue[0]
            if taken and rows + work.weight > self.settings.max_batch_size:
                break
            self._queue.popleft()
            self.room.dequeued(work.weight)
            if work.future.cancelled():
                logger.debug("dropped cancelled work (%d rows)", work.weight)
                self.dropped_rows += work.weight
                continue
            self.metrics.waited(work.graph, time.monotonic() - work.enqueued)
            taken.append(work)
            rows += work.weight
        return taken

    # ---- in the ONNX Runtime thread ----

    def _execute(self, works: list[_Work]) -> list[list[RowOutput] | BaseException]:
        outcomes: list[list[RowOutput] | BaseException] = [[] for _ in works]
        for graph in dict.fromkeys(work.graph for work in works):
            members = [index for index, work in enumerate(works) if work.graph == graph]
            try:
                results = self._run_rows(graph, [works[index].rows for index in members])
            except Exception as exc:
                if len(members) == 1:
                    logger.exception("inference failed on %s", graph)
                    outcomes[members[0]] = InferenceError(graph)
                    continue
                logger.warning(
                    "a batched call on %s failed (%s); retrying its %d requests alone",
                    graph,
                    exc,
                    len(members),
                )
                results: list[list[RowOutput] | BaseException] = []
                for index in members:
                    try:
                        results.extend(self._run_rows(graph, [works[index].rows]))
                    except Exception:
                        logger.exception("inference failed on %s for one request", graph)
                        results.append(InferenceError(graph))
            for index, result in zip(members, results, strict=True):
                outcomes[index] = result
        return outcomes

    def _run_rows(self, graph: str, groups: list[Sequence[Row]]) -> list[list[RowOutput]]:
        """Run every row of ``groups`` (units sorted by length, cut into calls; rows without a
        backward pass apart, ``forward_only``); outputs per group, in row order."""
        kinds: dict[bool, list[tuple[int, int, Row]]] = {}
        for group, rows in enumerate(groups):
            for position, row in enumerate(rows):
                kinds.setdefault(forward_only(row), []).append((group, position, row))
        outputs: list[dict[int, RowOutput]] = [{} for _ in groups]
        for items in kinds.values():
            self._run_items(graph, items, outputs)
        return [[found[i] for i in range(len(found))] for found in outputs]

    def _run_items(
        self,
        graph: str,
        items: list[tuple[int, int, Row]],
        outputs: list[dict[int, RowOutput]],
    ) -> None:
        """Run ``items`` (group, position, row), units sorted by length and cut into calls;
        each row's output into ``outputs[group][position]``."""
        units: dict[tuple[int, int], list[tuple[int, int, Row]]] = {}
        for group, position, row in items:
            key = (group, row.unit) if row.unit is not None else (group, -1 - position)
            units.setdefault(key, []).append((group, position, row))
        shapes_of = {
            key: (weight([i[2] for i in unit]), max(len(i[2].encoded) for i in unit))
            for key, unit in units.items()
        }
        keys = sorted(units, key=lambda key: shapes_of[key][1])
        ordered = [units[key] for key in keys]
        shapes = [shapes_of[key] for key in keys]
        settings = self.settings
        for start, stop in plan_calls(
            shapes, settings.max_batch_size, self.max_tokens_per_call, self.call_cost_tokens
        ):
            members = sorted(
                (item for unit in ordered[start:stop] for item in unit),
                key=lambda item: len(item[2].encoded),
            )
            # A unit over the limits on its own is cut by them (longest rows last).
            for first, last in self._chunks([item[2] for item in members]):
                chunk = members[first:last]
                for (group, position, _), output in zip(
                    chunk, self._call(graph, [item[2] for item in chunk]), strict=True
                ):
                    outputs[group][position] = output

    def _chunks(self, rows: list[Row]) -> list[tuple[int, int]]:
        """Consecutive ranges of length-sorted rows within the batch size and token budget (rows
        counted by their weight)."""
        settings = self.settings
        chunks = []
        start = 0
        count = rows[0].weight if rows else 0
        for index in range(1, len(rows)):
            count += rows[index].weight
            width = len(rows[index].encoded)  # sorted: the new row is the longest so far
            if count > settings.max_batch_size or count * width > self.max_tokens_per_call:
                chunks.append((start, index))
                start = index
                count = rows[index].weight
        chunks.append((start, len(rows)))
        return chunks

    def _call(self, graph: str, rows: list[Row]) -> list[RowOutput]:
        engine = self.engine
        batch = engine.batch([row.encoded for row in rows])
        extras = engine.stack_extras(graph, [row.extras for row in rows], max(batch.lengths))
        started = time.perf_counter()
        outputs = engine.run(graph, batch, extras)
        per_row = [RowOutput(row) for row in engine.per_row(graph, outputs, batch)]
        record = CallRecord(
            graph, len(rows), max(batch.lengths), time.perf_counter() - started, weight(rows)
        )
        self.history.append(record)
        self.calls += 1
        self.metrics.called(graph, record.rows, record.width, record.seconds)
        logger.debug(
            "%s: %d rows x %d tokens in %.1f ms",
            graph,
            record.rows,
            record.width,
            record.seconds * 1000,
        )
        return per_row
