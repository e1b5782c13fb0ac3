"""Errors of the serving side (their base and the request field's error: wire/errors.py); each
message says what is wrong and how to fix it, and each error names its kind (``reason``: a name
of the API's ``ErrorReason``) so that programs can tell them apart without reading the message.
runtime/serving/status.py maps them to status codes."""

from __future__ import annotations

from collections.abc import Sequence

from gradlight.wire.errors import GradlightError, RequestError, shown


class ModelNotFoundError(RequestError):
    """The request names a model that is not served (field ``model``); maps to NOT_FOUND."""

    reason = "MODEL_NOT_FOUND"

    def __init__(self, name: str, served: Sequence[str] | None) -> None:
        """``served`` None: the models are not listed (an answer to a caller without a token)."""
        listed = (
            "GET /v1/models lists those served"
            if served is None
            else (f"serving: {', '.join(served)}")
        )
        super().__init__("model", f"{shown(name)} is not served; {listed}")
        self.args = (f"model {self.description}",)


class QueueFullError(GradlightError):
    """The model's batching queue is full; maps to RESOURCE_EXHAUSTED with a retry delay."""

    reason = "QUEUE_FULL"
    retry_after_s = 0.2


class ResponseTooLargeError(GradlightError):
    """An answer over the server's send limit; maps to RESOURCE_EXHAUSTED that a retry cannot
    get past."""

    reason = "RESPONSE_TOO_LARGE"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the answer would be {size} bytes, over this server's limit of {limit} bytes per "
            "message: send fewer texts per request (or use AttributeStream), ask for fewer "
            "labels, or leave raw_scores off"
        )


class UnavailableError(GradlightError):
    """The server is shutting down or not ready; maps to UNAVAILABLE (retry elsewhere)."""

    reason = "SHUTTING_DOWN"
    retry_after_s = 0.1


class SecurityConfigError(GradlightError):
    """A TLS certificate or key, or an auth token file, is missing, unreadable or malformed; the
    message names the file (and never shows a token)."""


class UnauthenticatedError(GradlightError):
    """A call without an accepted bearer token; maps to UNAUTHENTICATED (HTTP 401). The message
    says what to send and never echoes what was sent."""

    reason = "UNAUTHENTICATED"


class InferenceError(GradlightError):
    """ONNX Runtime failed on a request's rows (the traceback is in the server log); maps to
    INTERNAL."""

    reason = "INFERENCE_FAILED"

    def __init__(self, graph: str) -> None:
        super().__init__(
            f"inference failed on the {graph} graph for this request; the server log has the "
            "details (other requests were answered)"
        )


class ReloadError(GradlightError):
    """A reload was refused (the new artifact failed its checks); the old one keeps serving."""

    reason = "RELOAD_FAILED"


class BindError(GradlightError, OSError):
    """A server could not bind its address (in use, or not this machine's)."""
