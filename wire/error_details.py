"""What a gradlight error says to a program: its code, its reason (a name of the API's
``ErrorReason``), the offending request field with its index, and whether and when a retry may
succeed; read from the ``google.rpc`` details in the status trailer of a failed call
(``error_details(exc)``), never from the message text."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class ErrorDetails:
    """``message``: for a person. ``reason``: the error's kind ("" when the server sent none).
    ``field``: the offending request field with its index (``texts[3]``), or None.
    ``description``: the message without the field. ``retry_after_s``: a retry may succeed
    after this long; None when retrying cannot help."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    field: str | None = None
    description: str = ""
    retry_after_s: float | None = None

    @property
    def retryable(self) -> bool:
        return self.retry_after_s is not None


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """The details of a failed call (sync or asyncio)."""
    code = error.code()  # type: ignore[attr-defined]
    message = error.details() or ""  # type: ignore[attr-defined]
    found = _status_detail(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    if found is None:
        return ErrorDetails(code, message)
    reason, field, description, retry = "", None, "", None
    for packed in found.details:
        if packed.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            packed.Unpack(info)
            reason, field = info.reason, info.metadata.get("field", field)
        elif packed.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            request = error_details_pb2.BadRequest()
            packed.Unpack(request)
            if request.field_violations:
                field = request.field_violations[0].field
                description = request.field_violations[0].description
        elif packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            packed.Unpack(info)
            retry = info.retry_delay.ToNanoseconds() / 1e9
    return ErrorDetails(code, message, reason, field, description, retry)


def _status_detail(metadata: Iterable[Any]) -> status_pb2.Status | None:
    for key, value in metadata:
        if key == DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None
