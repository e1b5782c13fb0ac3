"""Leave-one-sentence-out variants of texts, encoded only as far as the model reads them.

A variant is the text with one sentence removed (``removal_range``). Tokenizing every variant of
a long text in full costs ``sentences x length``: for a 100,000-character note, thousands of
sentences times 100,000 characters, although the model reads only ``max_length`` tokens of
each. Two facts keep the work proportional to what the model reads:

- A sentence whose removal starts past the words the model read of the full text cannot
  change the model's input: the first ``max_length`` tokens stay as they are.
  Such a sentence gets no variant (``None``: its score is 0, as for any variant the model would
  see unchanged).
- A variant is cut at a word's end a little past the point where it has
  ``max_length`` tokens. Tokenizers split words at whitespace, so the tokens before the cut are
  those of the whole variant; the cut is accepted only when the cut text still overflows
  ``max_length`` (so the kept tokens all lie before the cut), and is widened otherwise.

A text the model reads whole has its variants tokenized whole (shorter, they are read whole too), a
few at a time when they are long. The result equals tokenizing each whole variant (tests
compare them on random texts).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TypeVar

from gradlight.runtime.execution.tokenization import EncodedText, TextEncoder
from gradlight.runtime.explanation.sentences import SentenceSpan, removal_range

T = TypeVar("T")

CHUNK_CHARS = 16_000_000  # whole variants tokenized together, at most (about)
CHARS_PER_TOKEN = 8  # first guess of the characters a token takes, generous (English: ~4-5)
# Words end only at ASCII whitespace: every tokenizer splits there, while other characters
# Python calls space ("\x1f") are dropped by some normalizers, joining their neighbours.
SPACE = frozenset(" \t\n\r")
_WORD_END = re.compile(r"[^ \t\n\r](?=[ \t\n\r])")


def read_until(text: str, encoded: EncodedText) -> int | None:
    """A point in ``text`` past everything the model reads of it when truncated (None: it
    reads it all): the end of the last read token, then of its word and of the next word, so
    that the pre-token a truncated read token came from lies wholly before it (a byte-level
    space token's span ends where the word it belongs to begins)."""
    if not encoded.truncated:
        return None
    pairs = zip(encoded.offsets, encoded.special, strict=True)
    position = max((end for (_, end), special in pairs if not special), default=0)
    for in_word in (True, False, True):  # rest of this word, the space after it, next word
        while position < len(text) and (text[position] in SPACE) != in_word:
            position += 1
    return position


def encode_variants(
    encoder: TextEncoder,
    texts: Sequence[str],
    spans: Sequence[Sequence[SentenceSpan]],
    full: Sequence[EncodedText],
    max_length: int,
    *,
    keep: Sequence[tuple[int, int] | None] | None = None,
    chars_per_token: int = CHARS_PER_TOKEN,
) -> list[list[EncodedText | None]]:
    """Per text, per sentence: the encoded text without that sentence, or None where the
    model's input would not change (a text of one sentence has no variants). ``keep``: per
    text, a range that removing a sentence leaves in place (a marked entity, entities.py)."""
    kept = list(keep) if keep is not None else [None] * len(texts)
    variants: list[list[EncodedText | None]] = [[None] * len(text_spans) for text_spans in spans]
    whole: list[tuple[int, int, int, int]] = []  # (text, sentence, removal start, end)
    cut: list[tuple[int, int, int, int]] = []
    for t, (text, text_spans, encoded) in enumerate(zip(texts, spans, full, strict=True)):
        if len(text_spans) < 2:
            continue
        limit = read_until(text, encoded)
        for i in range(len(text_spans)):
            start, end = removal_range(text_spans, i)
            if limit is None:  # the model reads the whole text, so every variant whole
                whole.append((t, i, start, end))
            elif start < limit:
                cut.append((t, i, start, end))
            # else: the model never reads what is removed; nothing changes without it
    for chunk in _chunks(whole, [len(texts[t]) for t, *_ in whole]):
        encoded = encoder.encode(
            [without_range(texts[t], a, b, kept=kept[t]) for t, _, a, b in chunk], max_length
        )
        for (t, i, _, _), result in zip(chunk, encoded, strict=True):
            if not result.same_input(full[t]):
                variants[t][i] = result
    window = max_length * chars_per_token
    while cut:
        tails = [_word_end(texts[t], b + window) for t, _, _, b in cut]
        encoded = encoder.encode(
            [
                without_range(texts[t], a, b, tail, kept[t])
                for (t, _, a, b), tail in zip(cut, tails, strict=True)
            ],
            max_length,
        )
        retry = []
        for item, tail, result in zip(cut, tails, encoded, strict=True):
            t, i, _, _ = item
            if tail < len(texts[t]) and not result.truncated:
                retry.append(item)  # the cut kept fewer tokens than the model reads: widen
            elif not result.same_input(full[t]):
                variants[t][i] = result
        cut = retry
        window *= 4
    return variants


def without_range(
    text: str,
    start: int,
    end: int,
    stop: int | None = None,
    kept: tuple[int, int] | None = None,
) -> str:
    """``text`` without ``[start, end)``, up to ``stop``. What the range shares with ``kept``
    stays, with the whitespace the range had before and after it (so it is not glued to the
    neighbouring sentences)."""
    if kept is None or max(start, kept[0]) >= min(end, kept[1]):
        return text[:start] + text[end:stop]
    before = text[start : max(start, kept[0])]
    after = text[min(end, kept[1]) : end]
    middle = (
        before[: len(before) - len(before.lstrip())]  # the whitespace it began with
        + text[max(start, kept[0]) : min(end, kept[1])]
        + after[len(after.rstrip()) :]  # the whitespace it ended with
    )
    return text[:start] + middle + text[end:stop]


def _word_end(text: str, at_least: int) -> int:
    """The first word end at or after ``at_least`` (the text's length when there is none)."""
    if at_least >= len(text):
        return len(text)
    match = _WORD_END.search(text, max(0, at_least - 1))
    return match.end() if match else len(text)


def _chunks(items: list[T], sizes: list[int]) -> Iterator[list[T]]:
    """``items`` in consecutive chunks of about ``CHUNK_CHARS`` characters (at least one item
    each), so that whole variants of long texts are never all in memory at once."""
    chunk: list[T] = []
    total = 0
    for item, size in zip(items, sizes, strict=True):
        if chunk and total + size > CHUNK_CHARS:
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += size
    if chunk:
        yield chunk
