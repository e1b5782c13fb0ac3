"""The gRPC servicer: proto in, API call, proto out; errors become status codes (status.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import grpc

from gradlight.runtime.errors import ResponseTooLargeError
from gradlight.runtime.serving import status
from gradlight.runtime.serving.api import ATTRIBUTE, PREDICT, AttributorApi
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

STREAM_WINDOW = 8  # AttributeStream requests computed ahead of the one being sent
STREAM = "AttributeStream"

T = TypeVar("T")


class AttributorService(pb_grpc.AttributorServicer):
    def __init__(self, api: AttributorApi, max_send_message_bytes: int) -> None:
        self.api = api
        self.max_send_message_bytes = max_send_message_bytes

    async def _fits(self, call: Awaitable[T]) -> T:
        """``call``'s response, or ResponseTooLargeError when it is over the send limit (gRPC
        would fail it with a bare message and log a traceback from its core)."""
        response = await call
        size = response.ByteSize()  # type: ignore[attr-defined]
        if size > self.max_send_message_bytes:
            raise ResponseTooLargeError(size, self.max_send_message_bytes)
        return response

    def _answer(
        self, method: str, request: pb.PredictRequest | pb.AttributeRequest, call: Awaitable[T]
    ) -> Awaitable[T]:
        """The checked response to ``request``, counted in the metrics."""
        return self.api.counted(method, request, self._fits(call))

    async def Predict(
        self, request: pb.PredictRequest, context: grpc.aio.ServicerContext
    ) -> pb.PredictResponse:
        answer = self._answer(PREDICT, request, self.api.predict(request))
        return await self._unary(context, answer)

    async def Attribute(
        self, request: pb.AttributeRequest, context: grpc.aio.ServicerContext
    ) -> pb.AttributeResponse:
        answer = self._answer(ATTRIBUTE, request, self.api.attribute(request))
        return await self._unary(context, answer)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return self.api.list_models()

    async def AttributeStream(
        self,
        request_iterator: AsyncIterator[pb.AttributeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.AttributeResponse]:
        """Responses in request order; up to STREAM_WINDOW requests are computed ahead."""
        window: asyncio.Queue[asyncio.Task[pb.AttributeResponse] | None] = asyncio.Queue(
            STREAM_WINDOW
        )

        async def read() -> None:
            try:
                async for request in request_iterator:
                    call = self.api.attribute(request, STREAM)
                    await window.put(asyncio.ensure_future(self._answer(STREAM, request, call)))
            finally:
                await window.put(None)

        reader = asyncio.ensure_future(read())
        index = 0
        try:
            while (task := await window.get()) is not None:
                try:
                    response = await task
                except Exception as exc:
                    await status.abort(context, status.status_of(exc).within(f"requests[{index}]"))
                yield response
                index += 1
            await reader
        finally:
            reader.cancel()
            while not window.empty():
                if (task := window.get_nowait()) is not None:
                    task.cancel()
            logger.debug("AttributeStream: %d responses", index)

    @staticmethod
    async def _unary(context: grpc.aio.ServicerContext, answer: Awaitable[T]) -> T:
        try:
            return await answer
        except Exception as exc:
            await status.abort(context, status.status_of(exc))
            raise  # unreachable: abort raises
