"""The one place where errors become status codes: gRPC codes, and HTTP statuses from them."""

from __future__ import annotations

import logging

import grpc

from gradlight.runtime.errors import (
    InferenceError,
    ModelNotFoundError,
    QueueFullError,
    RequestError,
    ResponseTooLargeError,
    UnauthenticatedError,
    UnavailableError,
)

logger = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error while serving the request; the server log has the details"

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and the message a client sees for ``exc`` (unexpected errors: INTERNAL
    with a fixed message, the traceback in the server log)."""
    if isinstance(exc, RequestError):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, ModelNotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, (QueueFullError, ResponseTooLargeError)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, UnauthenticatedError):
        return grpc.StatusCode.UNAUTHENTICATED, str(exc)
    if isinstance(exc, UnavailableError):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, InferenceError):  # its traceback is logged where it happened
        return grpc.StatusCode.INTERNAL, str(exc)
    logger.error("unexpected error", exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE
