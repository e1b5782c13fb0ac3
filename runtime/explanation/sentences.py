"""Sentence splitting with code point offsets, made for clinical and general English text, and
the sentence terminators of other scripts.

A boundary is placed after ``.``, ``!`` or ``?`` (and any closing quotes or brackets) when
whitespace follows and the next word starts like a sentence (a capital letter, a digit, an
opening quote or bracket, or a list marker), unless the period ends a known abbreviation
("Dr.", "e.g.", "b.i.d.", "vs.", ...) or a single initial ("J. Smith"). Decimals ("2.5 mg")
never split because no whitespace follows the point. Line structure matters in clinical
notes: a blank line, a line starting with a list marker ("-", "*", "1.", "2)") or a
"Heading:" line, and a line ending in ``: ; . ! ?`` all end a sentence; other single line
breaks are treated as hard wraps inside one sentence.

Every other sentence terminator (Unicode's Sentence_Terminal: the CJK full stop and the
fullwidth and halfwidth forms, the Devanagari danda, the Arabic question mark and full stop,
the Ethiopic and Armenian full stops, ``‼ ⁇ ⁈ ⁉``, ...) ends a sentence where it stands, after
any terminators and closing quotes or brackets right after it, whether whitespace follows or
not: CJK text puts no space after ``。``, none of these marks is used inside abbreviations, and
most of their scripts have no capital letters to test the next sentence's start by. The one
exception: a full stop other than ``.`` (fullwidth U+FF0E, small U+FE52, one dot leader U+2024)
between two digits is a decimal point, as in numbers written in fullwidth digits.

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
# The code points of the Unicode property Sentence_Terminal but ASCII "." "!" "?" (Python's re
# has no \p{...}; tests/test_sentences.py checks the list against the regex package's tables).
_OTHER_TERMINALS = (
    "\u0589\u061d-\u061f\u06d4\u0700-\u0702\u07f9\u0837\u0839\u083d\u083e\u0964\u0965"
    "\u104a\u104b\u1362\u1367\u1368\u166e\u1735\u1736\u17d4\u17d5\u1803\u1809\u1944\u1945"
    "\u1aa8-\u1aab\u1b4e\u1b4f\u1b5a\u1b5b\u1b5e\u1b5f\u1b7d-\u1b7f\u1c3b\u1c3c"
    "\u1c7e\u1c7f\u2024\u203c\u203d\u2047-\u2049\u2cf9-\u2cfb\u2e2e\u2e3c\u2e53\u2e54"
    "\u2e60\u2e61\u3002\ua4ff\ua60e\ua60f\ua6f3\ua6f7\ua876\ua877\ua8ce\ua8cf\ua92f"
    "\ua9c8\ua9c9\uaa5d-\uaa5f\uaaf0\uaaf1\uabeb\ufe12\ufe15\ufe16\ufe52\ufe56\ufe57"
    "\uff01\uff0e\uff1f\uff61\U00010a56\U00010a57\U00010f55-\U00010f59"
    "\U00010f86-\U00010f89\U00011047\U00011048\U000110be-\U000110c1\U00011141-\U00011143"
    "\U000111c5\U000111c6\U000111cd\U000111de\U000111df\U00011238\U00011239"
    "\U0001123b\U0001123c\U000112a9\U000113d4\U000113d5\U0001144b\U0001144c"
    "\U000115c2\U000115c3\U000115c9-\U000115d7\U00011641\U00011642\U0001173c-\U0001173e"
    "\U00011944\U00011946\U00011a42\U00011a43\U00011a9b\U00011a9c\U00011c41\U00011c42"
    "\U00011ef7\U00011ef8\U00011f43\U00011f44\U00016a6e\U00016a6f\U00016af5"
    "\U00016b37\U00016b38\U00016b44\U00016d6e\U00016d6f\U00016e98\U0001bc9f\U0001da88"
)
_DECIMAL_POINTS = frozenset("\u2024\ufe52\uff0e")  # full stops that may stand between digits
# Closing quotes and brackets after a terminator: ASCII, typographic and CJK/fullwidth ones.
_CLOSERS = (
    "\"'\u201d\u2019\u00bb\u203a)\\]"
    "\u300d\u300f\u3009\u300b\u3011\u3015\u3017\u3019\u301b\uff09\uff3d\uff5d\uff63\uff02\uff07"
)
_OTHER_TERMINAL = re.compile(f"[{_OTHER_TERMINALS}][{_OTHER_TERMINALS}.!?]*[{_CLOSERS}]*")
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
    cuts = sorted(set(_line_cuts(text)) | set(_punctuation_cuts(text)) | set(_other_cuts(text)))
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


def _other_cuts(text: str) -> list[int]:
    """Cut points after the other scripts' sentence terminators (and the terminators and
    closing marks right after them); not after a decimal point between digits."""
    cuts = []
    for match in _OTHER_TERMINAL.finditer(text):
        start, end = match.span()
        if (
            end == start + 1
            and text[start] in _DECIMAL_POINTS
            and start > 0
            and text[start - 1].isdecimal()
            and end < len(text)
            and text[end].isdecimal()
        ):
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
