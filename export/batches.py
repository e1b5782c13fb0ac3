"""The batches graphs are traced and validated on: random ordinary tokens framed by the
tokenizer's special tokens, right-padded, with sizes other than the tracing sizes; for a model
that reads entity markers, a marked span in every other row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gradlight.artifact.model_spec import ATTENTION_MASK, INPUT_IDS, TOKEN_TYPE_IDS
from gradlight.export.model_loading import LoadedClassifier

TRACING_SHAPE = (2, 16)
"""(batch, sequence) of the example inputs the graphs are traced with."""

VALIDATION_ROW_LENGTHS = ((23, 9, 15), (7,))
"""One validation batch per entry: the unpadded length of each row (padded to the longest)."""


def tracing_inputs(loaded: LoadedClassifier) -> tuple[torch.Tensor, ...]:
    """The example inputs the graphs are traced with (no padding, ``TRACING_SHAPE``)."""
    batch = make_batch(loaded, [TRACING_SHAPE[1]] * TRACING_SHAPE[0], seed=0)
    return model_tensors(loaded, batch)


def model_tensors(
    loaded: LoadedClassifier, batch: dict[str, np.ndarray]
) -> tuple[torch.Tensor, ...]:
    """``batch``'s model inputs, in the model's order, as tensors."""
    return tuple(torch.from_numpy(batch[name]) for name in loaded.spec.model_inputs)


def validation_batches(loaded: LoadedClassifier) -> list[tuple[int, dict[str, np.ndarray]]]:
    """``(seed, batch)`` per validation batch; the seed also draws the batch's extra inputs."""
    return [
        (seed, make_batch(loaded, lengths, seed=seed))
        for seed, lengths in enumerate(VALIDATION_ROW_LENGTHS, start=1)
    ]


def _special_framing(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a single text."""
    encoding = tokenizer.backend_tokenizer.encode("a")
    special = encoding.special_tokens_mask
    first = special.index(0)
    last = len(special) - 1 - special[::-1].index(0)
    return encoding.ids[:first], encoding.ids[last + 1 :]


def make_batch(
    loaded: LoadedClassifier, lengths: Sequence[int], seed: int
) -> dict[str, np.ndarray]:
    """Right-padded rows of random ordinary tokens framed by the tokenizer's special tokens."""
    tokenizer, spec = loaded.tokenizer, loaded.spec
    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    vocab_size = min(len(tokenizer), loaded.model.get_input_embeddings().num_embeddings)
    ordinary = np.array([i for i in range(vocab_size) if i not in special])
    prefix, suffix = _special_framing(tokenizer)
    width = min(max(lengths), spec.max_length)
    input_ids = np.full((len(lengths), width), spec.pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(lengths), width), dtype=np.int64)
    for row, length in enumerate(lengths):
        body_length = max(min(length, width) - len(prefix) - len(suffix), 1)
        body = rng.choice(ordinary, size=body_length).tolist()
        if loaded.entity_markers is not None and row % 2 == 0 and body_length >= 5:
            body[1], body[4] = loaded.entity_markers  # a marked span in every other row
        ids = [*prefix, *body, *suffix][:width]
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    batch = {INPUT_IDS: input_ids, ATTENTION_MASK: attention_mask}
    if spec.uses_token_type_ids:
        batch[TOKEN_TYPE_IDS] = np.zeros_like(input_ids)
    return batch
