"""Tasks whose text marks its entities inline, as cnlpt's data does ("Patient denies <e>chest
pain</e> today."): each marked span is classified on its own, as with ``data.spans``, on the
text without the markers (the request's entity focus inserts them again around each span, so
the model reads what cnlpt gives it), and the regions are moved back onto the task's text, the
one Label Studio shows."""

from __future__ import annotations

import re
from typing import Any

from gradlight.runtime.explanation.entities import DEFAULT_CLOSE, DEFAULT_OPEN
from gradlight.wire.errors import RequestError

Spans = tuple[tuple[int, int], ...]
Inserted = tuple[tuple[int, int], ...]  # (offset in the unmarked text, marker length)


_MARKER = re.compile(f"{re.escape(DEFAULT_OPEN)}|{re.escape(DEFAULT_CLOSE)}")


def unmark(field: str, text: str) -> tuple[str, Spans, Inserted] | None:
    """The text without its ``<e>``/``</e>`` markers, the marked spans in it and where the
    markers were; None when it has none; RequestError when they do not pair up."""
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    inserted: list[tuple[int, int]] = []
    done, length, start = 0, 0, None  # text consumed; length of the unmarked text so far
    for found in _MARKER.finditer(text):
        pieces.append(text[done : found.start()])
        length += found.start() - done
        done = found.end()
        marker = found.group()
        if (marker == DEFAULT_OPEN) != (start is None):
            raise RequestError(
                field,
                f"has {marker!r} at character {found.start()} out of order: entities are "
                f"marked {DEFAULT_OPEN}span{DEFAULT_CLOSE}, not nested",
            )
        if marker == DEFAULT_OPEN:
            start = length
        elif start == length:
            raise RequestError(field, f"has an empty entity at character {found.start()}")
        else:
            spans.append((start, length))  # type: ignore[arg-type]
            start = None
        inserted.append((length, len(marker)))
    if not inserted:
        return None
    if start is not None:
        raise RequestError(field, f"has {DEFAULT_OPEN!r} without {DEFAULT_CLOSE!r}")
    pieces.append(text[done:])
    return "".join(pieces), tuple(spans), tuple(inserted)


def _moved(offset: int, inserted: Inserted, *, end: bool) -> int:
    """``offset`` of the unmarked text in the marked one: a start moves past the markers at or
    before it; an end past those before it (a region never takes a marker at its edge)."""
    return offset + sum(n for at, n in inserted if at < offset or (at == offset and not end))


def remark(prediction: dict[str, Any], shown: str, inserted: Inserted) -> dict[str, Any]:
    """``prediction``'s regions moved onto the marked text ``shown``."""
    for region in prediction["result"]:
        value = region["value"]
        if "start" in value:
            value["start"] = _moved(value["start"], inserted, end=False)
            value["end"] = _moved(value["end"], inserted, end=True)
            value["text"] = shown[value["start"] : value["end"]]
    return prediction
