"""Sentence splitting with code point offsets, made for clinical and general English text.

A boundary is placed after ``.``, ``!`` or ``?`` (and any closing quotes or brackets) when
whitespace follows and the next word starts like a sentence (a capital letter, a digit, an
opening quote or bracket, or a list marker), unless the period ends a known abbreviation
("Dr.", "e.g.", "b.i.d.", "vs.", ...) or a single initial ("J. Smith"). Decimals ("2.5 mg")
never split because no whitespace follows the point. Line structure matters in clinical
notes: a blank line, a line starting with a list marker ("-", "*", "1.", "2)") or a
"Heading:" line, and a line ending in ``: ; . ! ?`` all end a sentence; other single line
breaks are treated as hard wraps inside one sentence.

Each sentence is ``[start, end)`` into the original string with surrounding whitespace
excluded; the spans are in order and do not overlap, and together with the whitespace between
them they cover the whole text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# Lower-cased abbreviations (without their final period) after which a period does not end a
# sentence. Multi-period forms are matched whole ("e.g", "b.i.d"). Units are not here: they are
# written without a period ("82 kg"), so "Weight is 82 kg. She ..." ends a sentence.
ABBREVIATIONS = frozenset(
    """
    dr mr mrs ms mx prof sr jr st mt ft vs etc approx appt apt dept est fig no nos vol
    e.g i.e cf al et viz inc ltd co corp
    b.i.d t.i.d q.i.d q.d q.h q.o.d p.o p.r i.v i.m s.c s.q p.r.n prn h.s a.c p.c
    bid tid qid qd qhs qam qpm po iv im sc sq hx dx tx rx sx fx pt pts yo y.o
    jan feb mar apr jun jul aug sep sept oct nov dec
    """.split()  # noqa: SIM905 (one word list, grouped by kind)
)

_LIST_MARKER = r"(?:[-*\u2022\u2023\u25e6]|\(?\d{1,3}[.)]|\(?[a-zA-Z][.)](?=\s))"
_SENTENCE_START = re.compile(rf"\s*(?:[\"'\u201c\u2018(\[]*[A-Z0-9\u00c0-\u024f]|{_LIST_MARKER}\s)")
# A run of terminal marks is matched from its first mark only (not retried inside the run).
_TERMINAL = re.compile(r"(?<![.!?])[.!?]+[\"'\u201d\u2019)\]]*(?=\s)")
_LINE_START_BREAK = re.compile(rf"[ \t]*(?:{_LIST_MARKER}\s|[A-Z][A-Za-z /&]{{0,40}}:)")
_LINE_END_BREAK = re.compile(r"[:;.!?][\"'\u201d\u2019)\]]*[ \t]*$")
_BLANKS = re.compile(r"[ \t]*")
_BARE_LIST_MARKER = re.compile(r"\(?(?:\d{1,3}|[a-zA-Z])[.)]")  # after the line's blanks


@dataclass(frozen=True)
class SentenceSpan:
    start: int
    end: int


def split_sentences(text: str) -> list[SentenceSpan]:
    """The sentences of ``text`` as spans (none for an empty or whitespace-only text)."""
    cuts = sorted(set(_line_cuts(text)) | set(_punctuation_cuts(text)))
    spans = []
    begin = 0
    for cut in [*cuts, len(text)]:
        span = _trimmed(text, begin, cut)
        if span is not None:
            spans.append(span)
        begin = cut
    return spans


def _trimmed(text: str, start: int, end: int) -> SentenceSpan | None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return SentenceSpan(start, end) if end > start else None


def _punctuation_cuts(text: str) -> list[int]:
    """Cut points after sentence-ending punctuation. Linear in the text's length: every look
    back stops at the previous whitespace or line break (texts of 100,000 characters and more
    are served)."""
    cuts = []
    line_body = _BLANKS.match(text).end()  # where the current line's text starts
    searched = 0  # line_body belongs to the line holding position ``searched``
    for match in _TERMINAL.finditer(text):
        end = match.end()
        if not _SENTENCE_START.match(text, end):
            continue
        newline = text.rfind("\n", searched, match.start())
        if newline >= 0:
            line_body = _BLANKS.match(text, newline + 1).end()  # once per line
        searched = match.start()
        if _BARE_LIST_MARKER.fullmatch(text, line_body, end):
            continue  # "1. Chest pain": the marker belongs to its item
        if match.group().startswith(".") and len(match.group().rstrip("\"'\u201d\u2019)]")) == 1:
            word_start = _word_start_before(text, match.start())
            if word_start is not None:
                word = text[word_start : match.start()]
                # A single letter after a number is a unit ("36.8 C."), not an initial
                # ("J. Smith").
                unit = len(word) == 1 and _number_before(text, word_start)
                if _is_abbreviation(word) and not unit:
                    continue
        cuts.append(end)
    return cuts


def _word_start_before(text: str, end: int) -> int | None:
    """Start of the word (a letter, then letters and periods) that ends at ``end``, if any."""
    start = end
    while start > 0 and (text[start - 1] == "." or _is_ascii_letter(text[start - 1])):
        start -= 1
    while start < end and text[start] == ".":
        start += 1
    return start if start < end else None


def _number_before(text: str, end: int) -> bool:
    """Whether a digit, then only spaces or tabs, comes right before ``end``."""
    position = end
    while position > 0 and text[position - 1] in " \t":
        position -= 1
    return position > 0 and text[position - 1].isdecimal()


def _is_ascii_letter(char: str) -> bool:
    return "a" <= char <= "z" or "A" <= char <= "Z"


def _is_abbreviation(word: str) -> bool:
    lowered = word.lower()
    if lowered in ABBREVIATIONS:
        return True
    # Single initials ("J. Smith") and dotted forms ("b.i.d", "U.S") not in the list.
    return (len(word) == 1 and word.isupper()) or bool(re.fullmatch(r"(?:[a-z]\.)+[a-z]", lowered))


def _line_cuts(text: str) -> list[int]:
    """Cut points at line breaks that end a sentence (the cut goes right after the newline)."""
    cuts = []
    position = 0
    lines = text.split("\n")
    for index, line in enumerate(lines[:-1]):
        position += len(line) + 1
        following = lines[index + 1]
        if (
            not line.strip()
            or not following.strip()
            or _LINE_END_BREAK.search(line)
            or _LINE_START_BREAK.match(following)
        ):
            cuts.append(position)
    return cuts


def removal_range(spans: Sequence[SentenceSpan], index: int) -> tuple[int, int]:
    """``[start, end)`` of what removing sentence ``index`` takes out of the text: the sentence
    and the whitespace after it (for the last sentence, the whitespace before it)."""
    span = spans[index]
    if index + 1 < len(spans):
        return span.start, spans[index + 1].start
    return (spans[index - 1].end if index > 0 else span.start), span.end


def remove_span(text: str, spans: Sequence[SentenceSpan], index: int) -> str:
    """``text`` without sentence ``index`` (``removal_range``); the rest stays as written."""
    start, end = removal_range(spans, index)
    return text[:start] + text[end:]
