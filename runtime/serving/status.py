"""The one place where errors become statuses: a gRPC code, an HTTP status, a message for a
person, and what a program reads (the reason, the offending field, a retry delay). gRPC sends
them as ``google.rpc`` details (ErrorInfo, BadRequest, RetryInfo) in the status trailer; HTTP as
``{"error": {"code", "message", "reason", "field", "retry_after_s"}}``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from gradlight.runtime.errors import (
    InferenceError,
    ModelNotFoundError,
    QueueFullError,
    ReloadError,
    ResponseTooLargeError,
    UnauthenticatedError,
    UnavailableError,
)
from gradlight.wire.error_details import DETAILS_KEY, ErrorDetails
from gradlight.wire.errors import GradlightError, RequestError

logger = logging.getLogger(__name__)

DOMAIN = "gradlight.v1"
PUSHBACK_KEY = "grpc-retry-pushback-ms"  # gRPC's own retries: -1 stops them (gRFC A6)
INTERNAL_MESSAGE = "internal error while serving the request; the server log has the details"

HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 405,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.INTERNAL: 500,
}

_CODES: tuple[tuple[type[GradlightError], grpc.StatusCode], ...] = (
    (ModelNotFoundError, grpc.StatusCode.NOT_FOUND),  # before RequestError, its base
    (RequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (QueueFullError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ResponseTooLargeError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (ReloadError, grpc.StatusCode.FAILED_PRECONDITION),
    (InferenceError, grpc.StatusCode.INTERNAL),  # its traceback is logged where it happened
)


@dataclass(frozen=True)
class Status(ErrorDetails):
    """What a client reads (wire/error_details.py: ``ErrorDetails``), and how the server sends
    it."""

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)

    def within(self, prefix: str) -> Status:
        """The same status about a part of a larger request (``requests[2]``)."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return replace(self, message=f"{prefix}: {self.message}", field=field)

    def details(self) -> status_pb2.Status:
        """The ``google.rpc.Status`` with ErrorInfo, BadRequest and RetryInfo as they apply."""
        found = [error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN)]
        if self.field is not None:
            found[0].metadata["field"] = self.field
            if self.code == grpc.StatusCode.INVALID_ARGUMENT:
                violation = error_details_pb2.BadRequest.FieldViolation(
                    field=self.field, description=self.description or self.message
                )
                found.append(error_details_pb2.BadRequest(field_violations=[violation]))
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(self.retry_after_s * 1e9))
            found.append(error_details_pb2.RetryInfo(retry_delay=delay))
        packed = []
        for detail in found:
            any_detail = any_pb2.Any()
            any_detail.Pack(detail)
            packed.append(any_detail)
        return status_pb2.Status(
            code=getattr(code_pb2, self.code.name), message=self.message, details=packed
        )

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """The status trailer: the details, and where it matters gRPC's retry pushback."""
        details = self.details().SerializeToString()
        metadata: list[tuple[str, str | bytes]] = [(DETAILS_KEY, details)]
        if self.code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            pushback = -1 if self.retry_after_s is None else int(self.retry_after_s * 1000)
            metadata.append((PUSHBACK_KEY, str(pushback)))
        return tuple(metadata)

    def http_body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code.name,
                "message": self.message,
                "reason": self.reason,
                "field": self.field,
                "retry_after_s": self.retry_after_s,
            }
        }


def _mapped_code(exc: BaseException) -> grpc.StatusCode | None:
    """The code of one of gradlight's own errors (None: an unexpected error)."""
    return next((code for kind, code in _CODES if isinstance(exc, kind)), None)


def code_of(exc: BaseException) -> grpc.StatusCode:
    """The status code of ``exc`` (unexpected errors: INTERNAL)."""
    return _mapped_code(exc) or grpc.StatusCode.INTERNAL


def status_of(exc: BaseException) -> Status:
    """The status a client sees for ``exc`` (unexpected errors: INTERNAL with a fixed message,
    the traceback in the server log)."""
    code = _mapped_code(exc)
    if code is None:
        logger.error("unexpected error", exc_info=exc)
        return Status(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, "INTERNAL_ERROR")
    return Status(
        code,
        str(exc),
        exc.reason,  # type: ignore[attr-defined]
        getattr(exc, "field", None),
        getattr(exc, "description", ""),
        getattr(exc, "retry_after_s", None),
    )


async def abort(context: grpc.aio.ServicerContext, status: Status) -> None:
    """End the call with ``status`` (raises, as ``context.abort`` does)."""
    await context.abort(status.code, status.message, status.trailing_metadata())
