"""Bearer-token authentication of gRPC calls: a ``grpc.aio`` server interceptor.

Every method needs ``authorization: Bearer <token>`` metadata except the standard health
service (load balancers and orchestrators probe it without credentials). Reflection stays
behind the token. A refused call gets UNAUTHENTICATED from a handler of its own kind (unary or
streaming, either way), which never reads the request, and is counted in the server's metrics
when the interceptor has them (api.py: ``count_unread_refusal``, under model "").
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import grpc

from gradlight.runtime.errors import UnauthenticatedError
from gradlight.runtime.serving import status
from gradlight.runtime.serving.api import ATTRIBUTE, PREDICT, count_unread_refusal
from gradlight.runtime.serving.metrics import ServerMetrics
from gradlight.runtime.serving.security import TokenSet
from gradlight.runtime.serving.service import STREAM
from gradlight.runtime.serving.status import Status
from gradlight.v1 import gradlight_pb2 as pb

logger = logging.getLogger(__name__)

PUBLIC_PREFIXES = ("/grpc.health.v1.Health/",)
_SERVICE = pb.DESCRIPTOR.services_by_name["Attributor"].full_name
# The methods whose requests the metrics count, by their gRPC path.
COUNTED_METHODS = {f"/{_SERVICE}/{name}": name for name in (PREDICT, ATTRIBUTE, STREAM)}

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]

_HANDLER_KINDS = {  # (request streaming, response streaming) -> how to build that handler
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    """``metrics``: the server's, where refused calls are counted (None: not counted)."""

    def __init__(
        self,
        tokens: TokenSet,
        public_prefixes: tuple[str, ...] = PUBLIC_PREFIXES,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.tokens = tokens
        self.public_prefixes = public_prefixes
        self.metrics = metrics

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method
        if method.startswith(self.public_prefixes):
            return await continuation(handler_call_details)
        metadata = handler_call_details.invocation_metadata or ()
        try:
            self.tokens.check([value for key, value in metadata if key == "authorization"])
        except UnauthenticatedError as exc:
            handler = await continuation(handler_call_details)
            if handler is None:  # an unknown method: UNIMPLEMENTED, as without authentication
                return None
            logger.debug("gRPC %s refused: %s", method, exc)
            return self._refusing(handler, method, status.status_of(exc))
        return await continuation(handler_call_details)

    def _refusing(
        self, handler: grpc.RpcMethodHandler, method: str, refusal: Status
    ) -> grpc.RpcMethodHandler:
        """A handler of ``handler``'s kind that counts the refusal and aborts with ``refusal``
        (the request is not parsed)."""
        metrics = self.metrics

        async def refuse(_request: object, context: grpc.aio.ServicerContext) -> None:
            if metrics is not None:
                count_unread_refusal(metrics, COUNTED_METHODS.get(method), refusal)
            await status.abort(context, refusal)

        build = _HANDLER_KINDS[(handler.request_streaming, handler.response_streaming)]
        return build(
            refuse, request_deserializer=None, response_serializer=handler.response_serializer
        )
