"""Tokenization with code point offsets and truncation to a per-request token budget.

The artifact's manifest says how a text becomes the tokenizer's input (``pre_tokenization``):
the whole string, or (``SPLIT_AT_SPACES``, cnlp_transformers checkpoints) its words split at
every space, given to the tokenizer pre-tokenized. Either way a token's offsets are code points
of the original text.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import PRE_TOKENIZATIONS, SPLIT_AT_SPACES, WHOLE_TEXT
from gradlight.runtime.execution.words import WHITE_SPACE

SPACE_MARKERS = frozenset("Ġ▁")
"""How byte-level BPE ("Ġ") and SentencePiece ("▁") write a space inside a token."""


@dataclass(frozen=True)
class EncodedText:
    """One text as the model sees it: ids with special tokens, and where each token came from.

    ``offsets`` are ``[start, end)`` code point indices into the original Python string
    (special tokens: ``(0, 0)``): the token's surface, without surrounding whitespace; a token
    standing for whitespace alone has the span of that whitespace (``surface_spans``).
    """

    ids: np.ndarray  # int64 [S]
    type_ids: np.ndarray  # int64 [S]
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]
    special: tuple[bool, ...]
    truncated: bool
    markers: tuple[bool, ...] = ()  # entity markers' tokens (entities.py); empty: none

    def is_marker(self, position: int) -> bool:
        return bool(self.markers) and self.markers[position]

    def __len__(self) -> int:
        return len(self.ids)

    def same_input(self, other: EncodedText) -> bool:
        """Whether the model sees ``other`` exactly as this text (same ids and type ids)."""
        return np.array_equal(self.ids, other.ids) and np.array_equal(self.type_ids, other.type_ids)


class TextEncoder:
    """Wraps the artifact's ``tokenizer.json`` (Hugging Face ``tokenizers``; no torch).

    Truncation is the tokenizer's own (so post-processing, e.g. RoBERTa's offset trimming,
    runs exactly once); one tokenizer copy per token budget, so concurrent requests with
    different ``max_length`` never reconfigure a shared tokenizer.

    ``pre_tokenization`` (the manifest's): ``WHOLE_TEXT``, each text encoded as one string; or
    ``SPLIT_AT_SPACES``, each text's ``text.split(" ")`` encoded as pre-tokenized words (the
    tokenizer's pre-tokenizer then runs on each word alone: a byte-level BPE with
    ``add_prefix_space`` gives every word its "Ġ", and no space between two words becomes a
    token of its own), with the offsets, which the tokenizer gives within each word, moved into
    the text (``offsets_in_text``). In that mode the post-processor does not trim offsets
    (``untrimmed``): the ids are the same, and the spans of the tokens after a marker keep
    their first character.
    """

    CACHED_BUDGETS = 16

    def __init__(self, tokenizer_file: Path, pre_tokenization: str = WHOLE_TEXT) -> None:
        if pre_tokenization not in PRE_TOKENIZATIONS:
            raise ArtifactError(
                f"unknown pre_tokenization {pre_tokenization!r}; expected one of "
                f"{', '.join(map(repr, PRE_TOKENIZATIONS))}"
            )
        self.pre_tokenization = pre_tokenization
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise ArtifactError(f"{tokenizer_file} is not a readable tokenizer: {exc}") from exc
        self._json = tokenizer.to_str()
        if pre_tokenization == SPLIT_AT_SPACES:
            self._json = untrimmed(self._json)
        self.num_special_tokens = tokenizer.num_special_tokens_to_add(False)
        # The mask token (faithfulness's "mask" removal), by the usual names; None: none.
        self.mask_token_id = next(
            (
                found
                for name in ("[MASK]", "<mask>")
                if (found := tokenizer.token_to_id(name)) is not None
            ),
            None,
        )
        self._by_budget: OrderedDict[int, Tokenizer] = OrderedDict()
        self._lock = threading.Lock()

    def _tokenizer(self, max_length: int) -> Tokenizer:
        with self._lock:
            tokenizer = self._by_budget.get(max_length)
            if tokenizer is None:
                tokenizer = Tokenizer.from_str(self._json)
                tokenizer.no_padding()
                tokenizer.enable_truncation(max_length)  # special tokens included
                self._by_budget[max_length] = tokenizer
                if len(self._by_budget) > self.CACHED_BUDGETS:
                    self._by_budget.popitem(last=False)
            else:
                self._by_budget.move_to_end(max_length)
            return tokenizer

    def encode(self, texts: Sequence[str], max_length: int) -> list[EncodedText]:
        """Encode ``texts``; each keeps at most ``max_length`` tokens, special tokens included."""
        if max_length <= self.num_special_tokens:
            raise ValueError(
                f"max_length {max_length} leaves no room for text next to "
                f"{self.num_special_tokens} special tokens"
            )
        tokenizer = self._tokenizer(max_length)
        split = self.pre_tokenization == SPLIT_AT_SPACES
        if split:
            words = [text.split(" ") for text in texts]
            encodings = tokenizer.encode_batch(words, is_pretokenized=True)
        else:
            encodings = tokenizer.encode_batch(list(texts))
        encoded = []
        for row, (text, encoding) in enumerate(zip(texts, encodings, strict=True)):
            special = tuple(bool(flag) for flag in encoding.special_tokens_mask)
            offsets = encoding.offsets
            if split:
                offsets = offsets_in_text(words[row], offsets, encoding.word_ids, encoding.tokens)
            encoded.append(
                EncodedText(
                    ids=np.asarray(encoding.ids, dtype=np.int64),
                    type_ids=np.asarray(encoding.type_ids, dtype=np.int64),
                    tokens=tuple(encoding.tokens),
                    offsets=surface_spans(text, offsets, special),
                    special=special,
                    truncated=bool(encoding.overflowing),
                )
            )
        return encoded


def untrimmed(tokenizer_json: str) -> str:
    """The tokenizer with its post-processor's offset trimming off (``trim_offsets`` of
    RoBERTa's and byte-level's post-processing, which moves a token's start past each leading
    "Ġ"). In words split at spaces every "Ġ" is a space the pre-tokenizer put before a piece of
    a word, aligned with the piece's first character: trimming it dropped that character from
    the span ("<e>chest": "Ġchest" spanned "hest")."""
    data = json.loads(tokenizer_json)
    steps = [data.get("post_processor")]
    while steps:
        step = steps.pop()
        if isinstance(step, dict):
            if "trim_offsets" in step:
                step["trim_offsets"] = False
            steps.extend(step.get("processors") or [])
    return json.dumps(data)


def offsets_in_text(
    words: Sequence[str],
    offsets: Sequence[tuple[int, int]],
    word_ids: Sequence[int | None],
    tokens: Sequence[str],
) -> list[tuple[int, int]]:
    """Untrimmed offsets within ``words`` (a text's ``text.split(" ")``, in order) as offsets in
    the text: each token's word's start added. A token of spaces alone ("Ġ", "▁") that does not
    span itself stands for the space the tokenizer put before a word or a piece of one, no
    character of the text (a word has no space): its span is the empty one where the piece
    starts (``surface_spans`` then widens it to the white space before, if any). A token of no
    word (a special token) keeps its span."""
    starts = list(accumulate((len(word) + 1 for word in words), initial=0))
    moved = []
    for (start, end), word, token in zip(offsets, word_ids, tokens, strict=True):
        if word is not None:
            made_up = set(token) <= SPACE_MARKERS and words[word][start:end] != token
            start, end = starts[word] + start, starts[word] + end
            if token and made_up:
                end = start
        moved.append((start, end))
    return moved


def surface_spans(
    text: str, offsets: Sequence[tuple[int, int]], special: Sequence[bool]
) -> tuple[tuple[int, int], ...]:
    """``offsets`` with every token's span made its surface: whitespace around a token that is
    more than whitespace is left out, and the empty span of a token that stands for whitespace
    alone is widened to that whitespace.

    Tokenizers differ: a SentencePiece piece "▁r" (DeBERTa-v3) or a byte-level "Ġr" without
    ``trim_offsets`` (ModernBERT) spans the space before it; byte-level BPE that trims offsets
    (RoBERTa's ``trim_offsets``) moves a token's start past its leading spaces, so a token of
    spaces alone ("Ġ" before a CJK character or before another space) is left an empty span
    where its spaces end: it stands for the white space right before that point that no
    earlier token covers."""
    spans = []
    covered = 0  # the end of the text's tokens so far
    for (start, end), is_special in zip(offsets, special, strict=True):
        if not is_special:
            if start == end:
                while start > covered and text[start - 1] in WHITE_SPACE:
                    start -= 1
            elif any(char not in WHITE_SPACE for char in text[start:end]):
                while text[start] in WHITE_SPACE:
                    start += 1
                while text[end - 1] in WHITE_SPACE:
                    end -= 1
            covered = max(covered, end)
        spans.append((start, end))
    return tuple(spans)
