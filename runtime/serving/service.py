"""The gRPC servicer: bytes in, API call, bytes out; errors become status codes (status.py).

The service's methods take and give the messages' bytes (``attributor_handler``): each request
is parsed, and each answer serialized, in a worker thread, so a message of many megabytes never
holds the event loop (and with it health checks and every other call); the answer is
serialized one result at a time, so no single call into protobuf holds the interpreter lock
for long. A request whose bytes do not parse is refused with INVALID_ARGUMENT naming it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from gradlight.runtime.errors import ResponseTooLargeError
from gradlight.runtime.serving import status
from gradlight.runtime.serving.api import ATTRIBUTE, PREDICT, AttributorApi
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire.errors import RequestError

logger = logging.getLogger(__name__)

SERVICE = pb.DESCRIPTOR.services_by_name["Attributor"].full_name
STREAM_WINDOW = 8  # AttributeStream requests computed ahead of the one being sent
STREAM = "AttributeStream"
_RESULTS_TAG = b"\x12"  # field 2 (``results``), length-delimited, of both response messages

M = TypeVar("M", bound=Message)


def attributor_handler(servicer: AttributorService) -> grpc.GenericRpcHandler:
    """The Attributor service with no (de)serializers: its methods see and give bytes."""
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Predict": grpc.unary_unary_rpc_method_handler(servicer.Predict),
            "Attribute": grpc.unary_unary_rpc_method_handler(servicer.Attribute),
            "AttributeStream": grpc.stream_stream_rpc_method_handler(servicer.AttributeStream),
            "ListModels": grpc.unary_unary_rpc_method_handler(servicer.ListModels),
        },
    )


def parse(kind: type[M], data: bytes) -> M:
    """``data`` as a ``kind`` message; a RequestError naming the request where it does not
    parse."""
    try:
        return kind.FromString(data)
    except (DecodeError, RuntimeWarning) as exc:
        raise RequestError(
            "request",
            f"is not a valid {kind.DESCRIPTOR.full_name} message ({exc}): send the message "
            "the service's proto (gradlight/v1/gradlight.proto) defines",
        ) from None


def serialize(response: pb.PredictResponse | pb.AttributeResponse) -> bytes:
    """``response``'s bytes, as ``SerializeToString`` gives them (field 1, then each result as
    field 2), made one result at a time."""
    parts = [type(response)(model=response.model).SerializeToString()]
    for result in response.results:
        body = result.SerializeToString()
        parts.append(_RESULTS_TAG + _varint(len(body)) + body)
    return b"".join(parts)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class AttributorService:
    def __init__(self, api: AttributorApi, max_send_message_bytes: int) -> None:
        self.api = api
        self.max_send_message_bytes = max_send_message_bytes

    async def Predict(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._unary(context, self._answer(PREDICT, pb.PredictRequest, data))

    async def Attribute(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._unary(context, self._answer(ATTRIBUTE, pb.AttributeRequest, data))

    async def ListModels(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        async def answer() -> bytes:
            parse(pb.ListModelsRequest, data)
            return self.api.list_models().SerializeToString()

        return await self._unary(context, answer())

    async def AttributeStream(
        self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Responses in request order; up to STREAM_WINDOW requests are computed ahead."""
        window: asyncio.Queue[asyncio.Task[bytes] | None] = asyncio.Queue(STREAM_WINDOW)

        async def read() -> None:
            try:
                async for data in request_iterator:
                    answer = self._answer(STREAM, pb.AttributeRequest, data)
                    await window.put(asyncio.ensure_future(answer))
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

    async def _answer(
        self, rpc: str, kind: type[pb.PredictRequest] | type[pb.AttributeRequest], data: bytes
    ) -> bytes:
        """The answer's bytes to the request in ``data``, counted in the metrics (a request
        that does not parse: under no model)."""
        try:
            request = await asyncio.to_thread(parse, kind, data)
        except RequestError as exc:
            return await self.api.counted(rpc, kind(), _raise(exc))
        call: Callable[..., Awaitable[Message]] = (
            self.api.predict if kind is pb.PredictRequest else self.api.attribute
        )
        return await self.api.counted(rpc, request, self._encoded(call(request, rpc)))

    async def _encoded(self, call: Awaitable[Message]) -> bytes:
        """``call``'s response as bytes, or ResponseTooLargeError when it is over the send
        limit (gRPC would fail it with a bare message and log a traceback from its core)."""
        response = await call
        data = await asyncio.to_thread(serialize, response)  # type: ignore[arg-type]
        if len(data) > self.max_send_message_bytes:
            raise ResponseTooLargeError(len(data), self.max_send_message_bytes)
        return data

    @staticmethod
    async def _unary(context: grpc.aio.ServicerContext, answer: Awaitable[bytes]) -> bytes:
        try:
            return await answer
        except Exception as exc:
            await status.abort(context, status.status_of(exc))
            raise  # unreachable: abort raises


async def _raise(exc: Exception) -> bytes:
    raise exc
