"""The evidence of one answer, per label: the words (subword pieces merged) or tokens that
pushed the model toward the label (score > 0) or away from it (< 0), as the visualizer shows
them.

A word is a run of letters, digits and marks (an apostrophe between letters joins: "don't"),
or a single other visible character; each token belongs to the word at or after its start (the
visualizer's words). A word's score is the sum of its tokens' raw scores divided by the largest
such sum, in absolute value, over the text's words, so scores are in [-1, 1] and the strongest
word of each label scores +-1. Special tokens and entity markers are left out of that maximum,
as they are of the evidence: they cannot be highlighted (so a token's evidence score can be
larger than its served score, which is normalized over every token). Token evidence uses the
same rule with tokens as the items (byte-level pieces of one character merged).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from gradlight.v1 import gradlight_pb2 as pb

WORD = "word"
TOKEN = "token"
UNITS = (WORD, TOKEN)
NEGLIGIBLE = 5e-5  # evidence weaker than this is left out (it is written rounded to 4 places)
_APOSTROPHES = "'\u2019"


@dataclass(frozen=True)
class Evidence:
    start: int
    end: int
    score: float  # in [-1, 1]


@dataclass(frozen=True)
class Selection:
    """Which evidence to keep: per label the ``top_k`` largest |score| (None: all) of those
    with |score| >= ``min_score``; listed in text order."""

    unit: str = WORD
    top_k: int | None = None
    min_score: float = 0.0


def words(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` spans of the words of ``text``."""
    spans = []
    position = 0
    while position < len(text):
        if _is_word(text[position]):
            end = position + 1
            while end < len(text):
                if _is_word(text[end]):
                    end += 1
                elif (
                    text[end] in _APOSTROPHES
                    and end + 1 < len(text)
                    and unicodedata.category(text[end + 1])[0] in "LM"
                ):
                    end += 2
                else:
                    break
            spans.append((position, end))
            position = end
        elif text[position].isspace():
            position += 1
        else:
            spans.append((position, position + 1))
            position += 1
    return spans


def _is_word(character: str) -> bool:
    return unicodedata.category(character)[0] in "LNM"


def _items(
    result: pb.TextResult, spans: Sequence[tuple[int, int]], unit: str
) -> list[tuple[int, int, list[int]]]:
    """``(start, end, token indices)`` per item; special tokens (markers too) are items of
    their own, with ``start == end == -1``; a whitespace token left alone (byte-level BPE's
    "Ġ" before a marker) has an empty span."""
    items: list[tuple[int, int, list[int]]] = []
    by_word: dict[int, tuple[int, int, list[int]]] = {}
    current: tuple[int, int, list[int]] | None = None
    w = 0
    for index, token in enumerate(result.tokens):
        if token.special:
            items.append((-1, -1, [index]))
            current = None
            continue
        if unit == TOKEN:
            if current is not None and (token.start < current[1] or current[0] == current[1]):
                current[2].append(index)
                current = (current[0], max(current[1], token.end), current[2])
                items[-1] = current
            else:
                current = (token.start, token.end, [index])
                items.append(current)
            continue
        while w < len(spans) and spans[w][1] <= token.start:
            w += 1
        if w >= len(spans):  # trailing whitespace pieces belong to the last word
            if len(spans) - 1 in by_word:
                by_word[len(spans) - 1][2].append(index)
            continue
        if w not in by_word:
            by_word[w] = (spans[w][0], spans[w][1], [])
            items.append(by_word[w])
        by_word[w][2].append(index)
    return items


def evidence(
    result: pb.TextResult,
    text: str,
    selection: Selection,
    text_words: Sequence[tuple[int, int]] | None = None,
) -> dict[str, list[Evidence]]:
    """Per label of ``result`` (which must carry raw scores): its selected evidence.
    ``text_words``: ``words(text)``, when already known (several answers about one text)."""
    if selection.unit == WORD and text_words is None:
        text_words = words(text)
    items = _items(result, text_words or (), selection.unit)
    raw = [list(token.raw_scores) for token in result.tokens]
    chosen: dict[str, list[Evidence]] = {}
    for k, label in enumerate(result.labels):
        sums = [(start, end, sum(raw[t][k] for t in tokens)) for start, end, tokens in items]
        sums = [item for item in sums if item[0] < item[1]]  # not special, not empty
        peak = max((abs(value) for _, _, value in sums), default=0.0)
        found = [
            Evidence(start, end, value / peak if peak > 0 else 0.0) for start, end, value in sums
        ]
        chosen[label] = select(found, selection)
    return chosen


def select(found: Sequence[Evidence], selection: Selection) -> list[Evidence]:
    floor = max(selection.min_score, NEGLIGIBLE)
    kept = [item for item in found if abs(item.score) >= floor]
    if selection.top_k is not None:
        kept = sorted(kept, key=lambda item: -abs(item.score))[: selection.top_k]
    return sorted(kept, key=lambda item: item.start)
