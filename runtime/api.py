"""The API's operations on ``gradlight.v1`` messages, shared by the gRPC servicer and the HTTP
endpoints: look the model up, run its attributor, convert the results back.

It also drains: after ``stop_accepting()`` new calls are refused with UNAVAILABLE by this code
(while the transports are still up), and ``drained()`` waits for the calls already running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from gradlight.runtime import messages
from gradlight.runtime.errors import UnavailableError
from gradlight.runtime.models import ModelRegistry
from gradlight.v1 import gradlight_pb2 as pb

T = TypeVar("T")


class AttributorApi:
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self._accepting = True
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def predict(self, request: pb.PredictRequest) -> pb.PredictResponse:
        return await self._admit(self._predict(request))

    async def attribute(self, request: pb.AttributeRequest) -> pb.AttributeResponse:
        return await self._admit(self._attribute(request))

    def list_models(self) -> pb.ListModelsResponse:
        models = [messages.model_info(model) for model in self.registry.models.values()]
        return pb.ListModelsResponse(models=models)

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

    async def _admit(self, call: Awaitable[T]) -> T:
        if not self._accepting:
            call.close()  # type: ignore[attr-defined]  # a coroutine never started
            raise UnavailableError("the server is shutting down; retry on another replica")
        self._running += 1
        self._idle.clear()
        try:
            return await call
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    async def _predict(self, request: pb.PredictRequest) -> pb.PredictResponse:
        model = self.registry.get(request.model)
        results = await model.attributor.run(
            request.texts, messages.predict_options(request), *messages.entity_request(request)
        )
        return pb.PredictResponse(model=model.name, results=messages.results(results))

    async def _attribute(self, request: pb.AttributeRequest) -> pb.AttributeResponse:
        model = self.registry.get(request.model)
        results = await model.attributor.run(
            request.texts, messages.attribute_options(request), *messages.entity_request(request)
        )
        return pb.AttributeResponse(model=model.name, results=messages.results(results))
