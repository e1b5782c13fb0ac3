"""Entity-focused classification: a span of a text is classified on its own, with marker
strings inserted around it, in a window of context, and its offsets mapped back.

For a span ``[start, end)`` of ``text`` the model reads ``text[context_start:start] + open +
text[start:end] + close + text[end:context_end]`` (the *marked text*), where the context
reaches ``context_chars`` characters on each side of the span (fewer at the text's ends).
Positions in the marked text map back to the original text: characters of the context and the
span to themselves, the markers to the point where they were inserted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.sentences import SentenceSpan, split_sentences
from gradlight.wire.errors import RequestError

DEFAULT_OPEN = "<e>"
DEFAULT_CLOSE = "</e>"
DEFAULT_CONTEXT_CHARS = 100
MAX_MARKER_CHARS = 100
MAX_CONTEXT_CHARS = 1_000_000


@dataclass(frozen=True)
class EntityMarking:
    open: str = DEFAULT_OPEN
    close: str = DEFAULT_CLOSE
    context_chars: int = DEFAULT_CONTEXT_CHARS

    def __post_init__(self) -> None:
        for name, marker in (("open", self.open), ("close", self.close)):
            if len(marker) > MAX_MARKER_CHARS:
                raise RequestError(
                    f"entity_marking.{name}",
                    f"has {len(marker)} characters; at most {MAX_MARKER_CHARS} are allowed",
                )
        if not 0 <= self.context_chars <= MAX_CONTEXT_CHARS:
            raise RequestError(
                "entity_marking.context_chars",
                f"is {self.context_chars}; use 0 to {MAX_CONTEXT_CHARS} characters of context "
                f"on each side (unset = {DEFAULT_CONTEXT_CHARS})",
            )


DEFAULT_MARKING = EntityMarking()


@dataclass(frozen=True)
class MarkedSpan:
    """One span of a text as the model reads it, and the maps between the two texts."""

    start: int
    end: int
    context_start: int
    context_end: int
    marked_text: str
    open_chars: int
    close_chars: int

    # Regions of the marked text: [0, _open) context before, then the open marker, the span
    # from _span, the close marker from _close, the context after from _after.
    @property
    def _open(self) -> int:
        return self.start - self.context_start

    @property
    def _span(self) -> int:
        return self._open + self.open_chars

    @property
    def _close(self) -> int:
        return self._span + self.end - self.start

    @property
    def _after(self) -> int:
        return self._close + self.close_chars

    @property
    def kept(self) -> tuple[int, int]:
        """The marked span, markers included, in marked-text positions."""
        return self._open, self._after

    def to_marked(self, position: int) -> int:
        """A boundary of the original text (inside the context) in the marked text; the span's
        own boundaries take its markers in (a sentence ending at ``end`` keeps the close
        marker)."""
        marked = position - self.context_start
        if position > self.start:
            marked += self.open_chars
        if position >= self.end:
            marked += self.close_chars
        return marked

    def to_original(self, marked: int) -> int:
        """A boundary of the marked text in the original text (a marker's inside: where it
        was inserted)."""
        if marked <= self._open:
            return self.context_start + marked
        if marked <= self._span:
            return self.start
        if marked <= self._close:
            return self.start + marked - self._span
        if marked <= self._after:
            return self.end
        return self.end + marked - self._after

    def token_span(self, start: int, end: int) -> tuple[int, int, bool]:
        """A token's marked-text offsets as original offsets, and whether the token is a
        marker's alone (its span is then empty, where that marker was inserted)."""
        if start == end:
            return self.to_original(start), self.to_original(start), False
        pieces = [  # the token's characters that are not marker characters
            (max(start, low), min(end, high))
            for low, high in (
                (0, self._open),
                (self._span, self._close),
                (self._after, len(self.marked_text)),
            )
            if max(start, low) < min(end, high)
        ]
        if not pieces:
            point = self.start if start < self._span else self.end
            return point, point, True
        return self.to_original(pieces[0][0]), self.to_original(pieces[-1][1]), False

    def sentences(self) -> tuple[list[SentenceSpan], list[SentenceSpan]]:
        """The sentences of the context, in original and in marked-text positions."""
        window = self.marked_text[: self._open] + self.marked_text[self._span : self._close]
        window += self.marked_text[self._after :]
        original = [
            SentenceSpan(span.start + self.context_start, span.end + self.context_start)
            for span in split_sentences(window)
        ]
        marked = [SentenceSpan(self.to_marked(s.start), self.to_marked(s.end)) for s in original]
        return original, marked


def mark(text: str, start: int, end: int, marking: EntityMarking) -> MarkedSpan:
    """The span marked, with context of up to ``context_chars`` characters on each side that
    never begins or ends inside a word (a word cut by the window is left out) nor with
    whitespace."""
    context_start = max(0, start - marking.context_chars)
    if context_start > 0 and not text[context_start - 1].isspace():
        while context_start < start and not text[context_start].isspace():
            context_start += 1
    while context_start < start and text[context_start].isspace():
        context_start += 1
    context_end = min(len(text), end + marking.context_chars)
    if context_end < len(text) and not text[context_end].isspace():
        while context_end > end and not text[context_end - 1].isspace():
            context_end -= 1
    while context_end > end and text[context_end - 1].isspace():
        context_end -= 1
    marked_text = (
        text[context_start:start]
        + marking.open
        + text[start:end]
        + marking.close
        + text[end:context_end]
    )
    return MarkedSpan(
        start,
        end,
        context_start,
        context_end,
        marked_text,
        len(marking.open),
        len(marking.close),
    )


def mark_texts(
    texts: Sequence[str],
    entities: Sequence[Sequence[tuple[int, int]]],
    marking: EntityMarking,
) -> list[list[MarkedSpan] | None]:
    """Per text, its marked spans (None: the text is classified whole); errors name the field."""
    if not entities:
        return [None] * len(texts)
    if len(entities) != len(texts):
        raise RequestError(
            "entities",
            f"has {len(entities)} entries for {len(texts)} texts; give one per text (with no "
            "spans for a text classified whole), or none",
        )
    marked: list[list[MarkedSpan] | None] = []
    for index, (text, spans) in enumerate(zip(texts, entities, strict=True)):
        for number, (start, end) in enumerate(spans):
            if not 0 <= start < end <= len(text):
                raise RequestError(
                    f"entities[{index}].spans[{number}]",
                    f"is [{start}, {end}) in a text of {len(text)} characters; a span needs "
                    "0 <= start < end <= the text's length, in code points",
                )
        marked.append([mark(text, start, end, marking) for start, end in spans] or None)
    return marked


def marking_from(
    open_marker: str | None, close_marker: str | None, context_chars: int | None
) -> EntityMarking:
    """An EntityMarking with the defaults for what is unset (None)."""
    return EntityMarking(
        DEFAULT_OPEN if open_marker is None else open_marker,
        DEFAULT_CLOSE if close_marker is None else close_marker,
        DEFAULT_CONTEXT_CHARS if context_chars is None else context_chars,
    )


def in_original(encoded: EncodedText, marked: MarkedSpan) -> EncodedText:
    """``encoded`` (of the marked text) with offsets into the original text; the markers'
    tokens flagged special and marker."""
    offsets, special, markers = [], [], []
    for (start, end), is_special in zip(encoded.offsets, encoded.special, strict=True):
        if is_special:
            offsets.append((start, end))
            special.append(True)
            markers.append(False)
            continue
        low, high, is_marker = marked.token_span(start, end)
        offsets.append((low, high))
        special.append(is_marker)
        markers.append(is_marker)
    return replace(encoded, offsets=tuple(offsets), special=tuple(special), markers=tuple(markers))
