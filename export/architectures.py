"""What differs per architecture, in one table: the exporter reads an ``Architecture`` and never
asks "is this RoBERTa?".

An entry says whether the model takes token type ids, how its position ids must be formed when
the attribution pass feeds ``inputs_embeds`` (so that it reads the text exactly as the plain
``input_ids`` forward does), how long an input may be, which module is the word embedding, and
what ONNX Runtime's transformer optimizer may fuse in the forward graph. Adding an architecture
means adding an entry here (and a tiny model to the tests' table).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradlight.runtime.model_spec import ATTENTION_MASK, INPUT_IDS, TOKEN_TYPE_IDS


@dataclass(frozen=True)
class Architecture:
    """``token_types``: the model takes ``token_type_ids`` (when its config has more than one
    type). ``positions_after_padding``: RoBERTa's family numbers positions from
    ``padding_idx + 1`` and skips padding when it reads ``input_ids``, but not when it reads
    ``inputs_embeds``; the attribution pass then gives it the ``input_ids`` numbering, and the
    longest input is ``max_position_embeddings - padding_idx - 1``. ``fuse_as``: the model type
    ONNX Runtime's transformer optimizer fuses the forward graph as (None: left unfused)."""

    token_types: bool = False
    positions_after_padding: bool = False
    fuse_as: str | None = None

    def model_inputs(self, config: Any) -> tuple[str, ...]:
        if self.token_types and getattr(config, "type_vocab_size", 0) > 1:
            return (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)
        return (INPUT_IDS, ATTENTION_MASK)

    def max_length(self, config: Any, pad_token_id: int) -> int:
        length = int(config.max_position_embeddings)
        return length - pad_token_id - 1 if self.positions_after_padding else length

    def word_embeddings(self, model: Any) -> Any:
        """The word-embedding lookup (``nn.Embedding``) whose output the scores explain."""
        return model.get_input_embeddings()

    def embeds_kwargs(self, model: Any, input_ids: Any) -> dict[str, Any]:
        """Extra keyword arguments for a forward on ``inputs_embeds`` of ``input_ids``."""
        if not self.positions_after_padding:
            return {}
        import torch

        padding_idx = model.base_model.embeddings.padding_idx
        not_pad = input_ids.ne(padding_idx).to(torch.int64)
        return {"position_ids": torch.cumsum(not_pad, dim=1) * not_pad + padding_idx}


BERT_LIKE = Architecture(token_types=True, fuse_as="bert")

ARCHITECTURES: dict[str, Architecture] = {
    "bert": BERT_LIKE,  # MiniLM checkpoints are BERT-shaped
    "roberta": Architecture(positions_after_padding=True, fuse_as="bert"),
    "distilbert": Architecture(fuse_as="bert"),
    "electra": BERT_LIKE,
}
"""The architectures gradlight exports, by ``config.model_type``."""

GENERIC = Architecture()
"""What an architecture without an entry gets: no token types, the model's own positions, the
forward graph left unfused."""


def architecture_for(model_type: str) -> Architecture:
    return ARCHITECTURES.get(model_type, GENERIC)
