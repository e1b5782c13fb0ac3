"""The API's operations on ``gradlight.v1`` messages, shared by the gRPC servicer and the HTTP
endpoints: look the model up, run its attributor, convert the results back, and count the
request in the metrics (runtime/serving/metrics.py).

It also drains: after ``stop_accepting()`` new calls are refused with UNAVAILABLE by this code
(while the transports are still up), and ``drained()`` waits for the calls already running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

import grpc

from gradlight.runtime.errors import UnavailableError
from gradlight.runtime.explanation.requests import AttributeOptions
from gradlight.runtime.serving import messages, status
from gradlight.runtime.serving.metrics import ServerMetrics
from gradlight.runtime.serving.model_registry import ModelRegistry, ReloadOutcome
from gradlight.runtime.serving.status import Status
from gradlight.v1 import gradlight_pb2 as pb

T = TypeVar("T")

logger = logging.getLogger(__name__)

PREDICT, ATTRIBUTE = "Predict", "Attribute"
# Refusals: the request was not answered because of the server's state or limits.
REFUSAL_CODES = frozenset(
    {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


def count_unread_refusal(metrics: ServerMetrics, method: str | None, refusal: Status) -> None:
    """Count a call refused before its request was read (no accepted token: the transports
    refuse it before it reaches the API). Its model is unknown, the request that names it not
    being decoded, so it counts under model "": a refusal by ``refusal``'s reason and, for a
    ``method`` whose requests are counted (Predict, Attribute, AttributeStream; None for any
    other), a request by ``refusal``'s code."""
    metrics.refusals.labels("", refusal.reason).inc()
    if method is not None:
        metrics.requests.labels("", method, refusal.code.name).inc()


class AttributorApi:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.metrics = registry.metrics
        self._accepting = True
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def predict(self, request: pb.PredictRequest, rpc: str = PREDICT) -> pb.PredictResponse:
        answer = self._run(request, rpc, messages.predict_options(request))
        return pb.PredictResponse(**await self._admit(answer))

    async def attribute(
        self, request: pb.AttributeRequest, rpc: str = ATTRIBUTE
    ) -> pb.AttributeResponse:
        answer = self._run(request, rpc, messages.attribute_options(request))
        return pb.AttributeResponse(**await self._admit(answer))

    async def counted(
        self,
        rpc: str,
        request: pb.PredictRequest | pb.AttributeRequest,
        answer: Awaitable[T],
    ) -> T:
        """``answer`` (a transport's whole handling of ``request``: the API call, then the
        answer's checks), counted in the metrics whatever its outcome."""
        started = time.perf_counter()
        outcome = "OK"
        try:
            return await answer
        except asyncio.CancelledError:
            outcome = "CANCELLED"
            raise
        except Exception as exc:
            code = status.code_of(exc)
            outcome = code.name
            if code in REFUSAL_CODES:
                self.metrics.refusals.labels(self._name(request), exc.reason).inc()  # type: ignore[attr-defined]
            raise
        finally:
            name, seconds = self._name(request), time.perf_counter() - started
            self.metrics.requests.labels(name, rpc, outcome).inc()
            self.metrics.request_seconds.labels(name, rpc).observe(seconds)
            logger.debug(
                "%s model=%r texts=%d %s %.1f ms",
                rpc,
                request.model,
                len(request.texts),
                outcome,
                seconds * 1000,
            )

    def _name(self, request: pb.PredictRequest | pb.AttributeRequest) -> str:
        """The served model a request names ("" for a model not served)."""
        models = self.registry.models
        if not request.model and len(models) == 1:
            return next(iter(models))
        return request.model if request.model in models else ""

    def list_models(self) -> pb.ListModelsResponse:
        models = [messages.model_info(model) for model in self.registry.models.values()]
        return pb.ListModelsResponse(models=models)

    async def reload(self) -> list[ReloadOutcome]:
        """Reload the models whose artifacts changed on disk (runtime/serving/model_registry.py)."""
        return await self.registry.reload()

    def stop_accepting(self) -> None:
        self._accepting = False

    async def drained(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the running calls; whether they all finished."""
        if self._idle.is_set():
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _admit(self, call: Coroutine[object, object, T]) -> T:
        if not self._accepting:
            call.close()  # a coroutine never started
            raise UnavailableError("the server is shutting down; retry on another replica")
        self._running += 1
        self._idle.clear()
        try:
            return await call
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    async def _run(
        self,
        request: pb.PredictRequest | pb.AttributeRequest,
        rpc: str,
        options: AttributeOptions,
    ) -> dict[str, Any]:
        """The response's fields: the model's name and the results."""
        async with self.registry.use(request.model) as model:
            entities, marking = messages.entity_request(request)
            results = await model.attributor.run(
                request.texts, options, entities, marking, api_method=rpc
            )
            # the messages are built in a thread: a large answer never holds the event loop
            return {
                "model": model.name,
                "results": await asyncio.to_thread(messages.results, results),
            }
