"""Tasks whose text marks its entities inline, as cnlpt's data does ("Patient denies <e>chest
pain</e> today."): each marked span is classified on its own, as with ``data.spans``, on the
text without the markers (the request's entity focus inserts them again around each span, so
the model reads what cnlpt gives it), and the regions are moved back onto the task's text, the
one Label Studio shows."""

from __future__ import annotations

from typing import Any

from gradlight.runtime.explanation.entities import DEFAULT_CLOSE, DEFAULT_OPEN
from gradlight.wire.errors import RequestError

Spans = tuple[tuple[int, int], ...]
Inserted = tuple[tuple[int, int], ...]  # (offset in the unmarked text, marker length)


def unmark(field: str, text: str) -> tuple[str, Spans, Inserted] | None:
    """The text without its ``<e>``/``</e>`` markers, the marked spans in it and where the
    markers were; None when it has none; RequestError when they do not pair up."""
    if DEFAULT_OPEN not in text and DEFAULT_CLOSE not in text:
        return None
    plain: list[str] = []
    spans: list[tuple[int, int]] = []
    inserted: list[tuple[int, int]] = []
    at, length, start = 0, 0, None
    while at < len(text):
        marker = next((m for m in (DEFAULT_OPEN, DEFAULT_CLOSE) if text.startswith(m, at)), None)
        if marker is None:
            plain.append(text[at])
            at, length = at + 1, length + 1
            continue
        if (marker == DEFAULT_OPEN) != (start is None):
            raise RequestError(
                field,
                f"has {marker!r} at character {at} out of order: entities are marked "
                f"{DEFAULT_OPEN}span{DEFAULT_CLOSE}, not nested",
            )
        if marker == DEFAULT_OPEN:
            start = length
        else:
            if start == length:
                raise RequestError(field, f"has an empty entity at character {at}")
            spans.append((start, length))  # type: ignore[arg-type]
            start = None
        inserted.append((length, len(marker)))
        at += len(marker)
    if start is not None:
        raise RequestError(field, f"has {DEFAULT_OPEN!r} without {DEFAULT_CLOSE!r}")
    return "".join(plain), tuple(spans), tuple(inserted)


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
