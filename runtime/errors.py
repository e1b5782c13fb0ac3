"""Errors of the serving side; each message says what is wrong and how to fix it."""

from __future__ import annotations


def shown(value: str, limit: int = 60) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters: a message
    quotes what the client sent without echoing a megabyte of it back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class GradlightError(Exception):
    """Base class of the errors gradlight reports to its users."""


class ArtifactError(GradlightError):
    """An artifact directory is missing, incomplete, tampered with or of an unknown format."""


class RequestError(GradlightError):
    """A request field is invalid; ``field`` names it (``texts[3]``). Maps to INVALID_ARGUMENT."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ModelNotFoundError(GradlightError):
    """The request names a model that is not served; maps to NOT_FOUND."""


class QueueFullError(GradlightError):
    """The model's batching queue is full; maps to RESOURCE_EXHAUSTED (retry with backoff)."""


class ResponseTooLargeError(GradlightError):
    """An answer over the server's send limit; maps to RESOURCE_EXHAUSTED."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the answer would be {size} bytes, over this server's limit of {limit} bytes per "
            "message: send fewer texts per request (or use AttributeStream), ask for fewer "
            "labels, or leave raw_scores off"
        )


class UnavailableError(GradlightError):
    """The server is shutting down or not ready; maps to UNAVAILABLE."""


class SecurityConfigError(GradlightError):
    """A TLS certificate or key, or an auth token file, is missing, unreadable or malformed; the
    message names the file (and never shows a token)."""


class UnauthenticatedError(GradlightError):
    """A call without an accepted bearer token; maps to UNAUTHENTICATED (HTTP 401). The message
    says what to send and never echoes what was sent."""


class InferenceError(GradlightError):
    """ONNX Runtime failed on a request's rows (the traceback is in the server log); maps to
    INTERNAL."""

    def __init__(self, graph: str) -> None:
        super().__init__(
            f"inference failed on the {graph} graph for this request; the server log has the "
            "details (other requests were answered)"
        )
