"""What a word is: the one definition for the bulk evidence
(runtime/explanation/evidence.py), the meaning check (bench/meaning.py), the served offsets'
whitespace (runtime/execution/tokenization.py) and the visualizer, whose JavaScript
``words()`` (runtime/serving/visualizer/index.html) is this rule written again
(tests/test_words.py runs both on the same strings).

- White space is Unicode's White_Space property, listed in ``WHITE_SPACE`` (neither
  ``str.isspace``, which adds U+001C..U+001F, nor JavaScript's ``\\s``, which adds U+FEFF and
  leaves out U+0085).
- A word is a run of letters, digits and marks (general categories L, N, M). An apostrophe
  (U+0027, U+2019) followed by a letter or mark continues it ("don't"), and so does a zero
  width non-joiner or joiner (U+200C, U+200D) followed by a letter, digit or mark (as inside
  Indic words).
- Any other character that is not white space (punctuation, a symbol, an emoji, a control) is
  a word of its own, with what attaches to it: the marks after it (variation selector U+FE0F,
  keycap U+20E3), emoji skin tone modifiers (U+1F3FB..U+1F3FF), tag characters
  (U+E0020..U+E007F, as in subdivision flags), and a zero width joiner with the character after
  it (so a ZWJ emoji sequence is one word); two regional indicators are one flag.

Offsets are code points. Categories come from Python's ``unicodedata`` here and from the
browser's tables in the page: they agree on the characters both Unicode versions assign.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

# The 25 code points of the Unicode property White_Space, in order.
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
APOSTROPHES = frozenset("'\u2019")
JOINERS = frozenset("\u200c\u200d")
ZERO_WIDTH_JOINER = "\u200d"


def is_blank(text: str) -> bool:
    """Whether ``text`` is white space only (or empty)."""
    return all(char in WHITE_SPACE for char in text)


def has_letter_or_digit(text: str) -> bool:
    return any(unicodedata.category(char)[0] in "LN" for char in text)


def words(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` spans of the words of ``text``, in order."""
    spans = []
    position = 0
    while position < len(text):
        char = text[position]
        if char in WHITE_SPACE:
            position += 1
            continue
        end = _run_end(text, position) if _in_run(char) else _symbol_end(text, position)
        spans.append((position, end))
        position = end
    return spans


def token_words(spans: Sequence[tuple[int, int]], starts: Iterable[int]) -> list[int | None]:
    """Per token (its start, in text order): the index in ``spans`` of the word it belongs to,
    the word at or after its start (whitespace before a word belongs to it). A token past the
    last word (trailing whitespace) belongs to the last word when that word has a token before
    it, else to none (None)."""
    owners: list[int | None] = []
    last = len(spans) - 1
    w = 0
    for start in starts:
        while w < len(spans) and spans[w][1] <= start:
            w += 1
        if w < len(spans):
            owners.append(w)
        else:
            owners.append(last if owners and owners[-1] == last else None)
    return owners


def _in_run(char: str) -> bool:
    return unicodedata.category(char)[0] in "LNM"


def _run_end(text: str, end: int) -> int:
    while end < len(text):
        char = text[end]
        if _in_run(char):
            end += 1
        elif end + 1 < len(text) and (
            (char in APOSTROPHES and unicodedata.category(text[end + 1])[0] in "LM")
            or (char in JOINERS and _in_run(text[end + 1]))
        ):
            end += 2
        else:
            break
    return end


def _symbol_end(text: str, start: int) -> int:
    end = start + 1
    if _regional(text[start]) and end < len(text) and _regional(text[end]):
        end += 1
    while end < len(text):
        char = text[end]
        if _attaches(char):
            end += 1
        elif char == ZERO_WIDTH_JOINER and end + 1 < len(text) and text[end + 1] not in WHITE_SPACE:
            end += 2
        else:
            break
    return end


def _regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _attaches(char: str) -> bool:
    return (
        unicodedata.category(char)[0] == "M"
        or "\U0001f3fb" <= char <= "\U0001f3ff"
        or "\U000e0020" <= char <= "\U000e007f"
    )
