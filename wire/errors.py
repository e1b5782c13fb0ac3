"""The errors both sides of the API know: the base of gradlight's errors, whose ``reason`` is a
name of the API's ``ErrorReason`` (so that programs tell them apart without reading the
message), and a request field's error. runtime/serving/status.py maps them to status codes;
wire/error_details.py reads them back from a failed call."""

from __future__ import annotations


def shown(value: str, limit: int = 60) -> str:
    """``repr(value)`` for an error message, cut to about ``limit`` characters: a message
    quotes what the client sent without echoing a megabyte of it back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


class GradlightError(Exception):
    """Base class of the errors gradlight reports to its users."""

    reason = "INTERNAL_ERROR"


class RequestError(GradlightError):
    """A request field is invalid; ``field`` names it with its index (``texts[3]``) and
    ``description`` says what is wrong with it. Maps to INVALID_ARGUMENT."""

    reason = "INVALID_FIELD"

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description
