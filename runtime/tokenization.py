"""Tokenization with code point offsets and truncation to a per-request token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from gradlight.runtime.errors import ArtifactError


@dataclass(frozen=True)
class EncodedText:
    """One text as the model sees it: ids with special tokens, and where each token came from.

    ``offsets`` are ``[start, end)`` code point indices into the original Python string
    (special tokens: ``(0, 0)``).
    """

    ids: np.ndarray  # int64 [S]
    type_ids: np.ndarray  # int64 [S]
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]
    special: tuple[bool, ...]
    truncated: bool

    def __len__(self) -> int:
        return len(self.ids)


class TextEncoder:
    """Wraps the artifact's ``tokenizer.json`` (Hugging Face ``tokenizers``; no torch)."""

    def __init__(self, tokenizer_file: Path) -> None:
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:
            raise ArtifactError(f"{tokenizer_file} is not a readable tokenizer: {exc}") from exc
        # Truncation and padding are applied per request, never by the tokenizer's own settings.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.num_special_tokens = tokenizer.num_special_tokens_to_add(False)

    def encode(self, texts: Sequence[str], max_length: int) -> list[EncodedText]:
        """Encode ``texts``; each keeps at most ``max_length`` tokens, special tokens included."""
        budget = max_length - self.num_special_tokens
        if budget < 1:
            raise ValueError(
                f"max_length {max_length} leaves no room for text next to "
                f"{self.num_special_tokens} special tokens"
            )
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [self._finish(encoding, budget) for encoding in encodings]

    def _finish(self, encoding: Encoding, budget: int) -> EncodedText:
        truncated = len(encoding.ids) > budget
        if truncated:
            encoding.truncate(budget)
        full = self._tokenizer.post_process(encoding, None, True)
        return EncodedText(
            ids=np.asarray(full.ids, dtype=np.int64),
            type_ids=np.asarray(full.type_ids, dtype=np.int64),
            tokens=tuple(full.tokens),
            offsets=tuple(full.offsets),
            special=tuple(bool(flag) for flag in full.special_tokens_mask),
            truncated=truncated,
        )
