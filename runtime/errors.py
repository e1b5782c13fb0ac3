"""Errors of the serving side; each message says what is wrong and how to fix it."""

from __future__ import annotations


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


class UnavailableError(GradlightError):
    """The server is shutting down or not ready; maps to UNAVAILABLE."""
