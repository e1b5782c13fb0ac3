"""Input lines of a bulk job: one JSON object per line, checked field by field.

A line holds ``text`` (a non-empty string), optionally ``id`` (a string or an integer, echoed
back) and optionally ``spans``: entity spans ``{"start", "end"}`` in code points (a ``label``
string is echoed back; other keys are kept out of the way), each classified on its own. A
blank line is skipped; any other line that cannot be explained is a ``BadLine`` naming the
reason, and the job goes on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_SPANS = 10_000


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str | None = None


@dataclass(frozen=True)
class Item:
    """A line to explain; ``number`` counts from 1, blank lines included."""

    number: int
    text: str
    id: str | int | None = None
    spans: tuple[Span, ...] | None = None  # None: the text is classified whole


@dataclass(frozen=True)
class BadLine:
    number: int
    reason: str


def parse_line(number: int, raw: bytes) -> Item | BadLine | None:
    """The line as an Item, a BadLine, or None when it is blank."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadLine(number, f"is not UTF-8 (byte {exc.start})")
    if not line.strip():
        return None
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return BadLine(number, f"is not valid JSON ({exc.msg} at column {exc.colno})")
    except (RecursionError, ValueError) as exc:
        return BadLine(number, f"is not usable JSON ({type(exc).__name__})")
    if not isinstance(data, dict):
        return BadLine(number, f"must be a JSON object with a 'text', got {type(data).__name__}")
    try:
        return _item(number, data)
    except _Bad as bad:
        return BadLine(number, str(bad))


class _Bad(Exception):
    pass


def _item(number: int, data: dict[str, Any]) -> Item:
    text = data.get("text")
    if not isinstance(text, str):
        found = "missing" if text is None else f"a {type(text).__name__}"
        raise _Bad(f"text: must be a string, got {found}")
    if not text.strip():
        raise _Bad("text: is empty or whitespace only; there is nothing to explain")
    identifier = data.get("id")
    if identifier is not None and (
        isinstance(identifier, bool) or not isinstance(identifier, (str, int))
    ):
        raise _Bad(f"id: must be a string or an integer, got {type(identifier).__name__}")
    spans = data.get("spans")
    if spans is None:
        return Item(number, text, identifier)
    if not isinstance(spans, list):
        raise _Bad(f"spans: must be a list of {{start, end}} objects, got {type(spans).__name__}")
    if len(spans) > MAX_SPANS:
        raise _Bad(f"spans: has {len(spans)} spans; at most {MAX_SPANS} per line")
    marked = tuple(_span(i, span, text) for i, span in enumerate(spans))
    return Item(number, text, identifier, marked or None)  # no spans: classified whole


def _span(index: int, span: Any, text: str) -> Span:
    field = f"spans[{index}]"
    if not isinstance(span, dict):
        raise _Bad(f"{field}: must be an object with start and end, got {type(span).__name__}")
    start, end, label = span.get("start"), span.get("end"), span.get("label")
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Bad(f"{field}.{name}: must be an integer (code points), got {value!r}")
    if not 0 <= start < end <= len(text):  # type: ignore[operator]
        raise _Bad(
            f"{field}: [{start}, {end}) is not a span of a {len(text)}-character text; a span "
            "needs 0 <= start < end <= the text's length, in code points"
        )
    if label is not None and not isinstance(label, str):
        raise _Bad(f"{field}.label: must be a string, got {type(label).__name__}")
    return Span(start, end, label)  # type: ignore[arg-type]
