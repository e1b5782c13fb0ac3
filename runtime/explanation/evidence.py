"""The evidence of one answer, per label (for the bulk formats and the Label Studio backend):
the words (subword pieces merged) or tokens that pushed the model toward the label (score > 0)
or away from it (< 0), as the visualizer shows them.

Words are runtime/execution/words.py's (the visualizer's): runs of letters, digits and marks
("don't" is one), or a single other visible character with what attaches to it (an emoji sequence);
each token belongs to the word at or after its start. A word's score is the sum of its tokens' raw
scores divided by the largest such sum, in absolute value, over the text's words, so scores are in
[-1, 1] and the strongest word of each label scores +-1. Special tokens, entity markers and
whitespace alone are left out of that maximum, as they are of the evidence: they cannot be
highlighted (so a token's evidence score can be larger than its served score, which is
normalized over every token). Token evidence uses the same rule with tokens as the items
(byte-level pieces of one character merged, and a token of whitespace alone merged into the
item after it, as the visualizer's token view draws them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gradlight.runtime.execution.words import is_blank, token_words, words
from gradlight.v1 import gradlight_pb2 as pb

WORD = "word"
TOKEN = "token"
UNITS = (WORD, TOKEN)
NEGLIGIBLE = 5e-5  # evidence weaker than this is left out (it is written rounded to 4 places)

__all__ = ["TOKEN", "UNITS", "WORD", "Evidence", "Selection", "evidence", "select", "words"]


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


@dataclass
class _Item:
    start: int
    end: int
    tokens: list[int] = field(default_factory=list)
    blank: bool = False  # whitespace tokens only, so far


def _items(
    result: pb.TextResult, text: str, spans: Sequence[tuple[int, int]], unit: str
) -> list[tuple[int, int, list[int]]]:
    """``(start, end, token indices)`` per item; special tokens (markers too) are items of
    their own, with ``start == end == -1``."""
    items = _token_items(result, text) if unit == TOKEN else _word_items(result, spans)
    return [(item.start, item.end, item.tokens) for item in items]


def _token_items(result: pb.TextResult, text: str) -> list[_Item]:
    """Tokens whose spans overlap (byte-level pieces of one character) make one item; a token of
    whitespace alone (byte-level "Ġ", "Ċ") joins the item after it, which starts at its first
    other token; whitespace tokens with no item after them (before a special token, at the end)
    make a blank item."""
    items: list[_Item] = []
    current: _Item | None = None
    for index, token in enumerate(result.tokens):
        if token.special:
            items.append(_Item(-1, -1, [index]))
            current = None
            continue
        blank = is_blank(text[token.start : token.end])
        if current is not None and (token.start < current.end or current.blank):
            current.tokens.append(index)
            if current.blank and not blank:
                current.start, current.blank = token.start, False
            current.end = max(current.end, token.end)
        else:
            current = _Item(token.start, token.end, [index], blank)
            items.append(current)
    return items


def _word_items(result: pb.TextResult, spans: Sequence[tuple[int, int]]) -> list[_Item]:
    """Each word's tokens (runtime/execution/words.py's ``token_words``), in text order."""
    items: list[_Item] = []
    by_word: dict[int, _Item] = {}
    text_tokens = [index for index, token in enumerate(result.tokens) if not token.special]
    starts = [result.tokens[index].start for index in text_tokens]
    owners = dict(zip(text_tokens, token_words(spans, starts), strict=True))
    for index, token in enumerate(result.tokens):
        if token.special:
            items.append(_Item(-1, -1, [index]))
            continue
        w = owners[index]
        if w is None:
            continue
        if w not in by_word:
            by_word[w] = _Item(*spans[w])
            items.append(by_word[w])
        by_word[w].tokens.append(index)
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
    items = [  # special tokens and whitespace alone cannot be highlighted: left out
        (start, end, tokens)
        for start, end, tokens in _items(result, text, text_words or (), selection.unit)
        if start < end and not is_blank(text[start:end])
    ]
    raw = [list(token.raw_scores) for token in result.tokens]
    chosen: dict[str, list[Evidence]] = {}
    for k, label in enumerate(result.labels):
        sums = [(start, end, sum(raw[t][k] for t in tokens)) for start, end, tokens in items]
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
