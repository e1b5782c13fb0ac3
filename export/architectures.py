"""What differs per architecture, in one table: the exporter reads an ``Architecture`` and never
asks "is this RoBERTa?".

An entry says whether the model takes token type ids, how long an input may be, which module's
output the scores explain, and what ONNX Runtime's transformer optimizer may fuse in the forward
graph. A model type without an entry gets ``GENERIC`` and exports when its graphs validate
(export/validation.py decides, not this table). Adding an architecture means adding an entry
here where the generic default is wrong, and a tiny model to the tests' table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gradlight.artifact.model_spec import ATTENTION_MASK, INPUT_IDS, TOKEN_TYPE_IDS

WORD_EMBEDDINGS = "word embeddings"


def _never(config: Any) -> str | None:
    return None


@dataclass(frozen=True)
class Architecture:
    """``token_types``: the model takes ``token_type_ids`` (when its config has more than one
    type). ``positions_after_padding``: RoBERTa's family numbers positions from
    ``padding_idx + 1``, so the longest input is ``max_position_embeddings - padding_idx - 1``.
    ``fuse_as``: the model type ONNX Runtime's transformer optimizer fuses the forward graph as
    (None: left unfused). ``normalized_embeddings(config)``: where the word embeddings go
    straight into a normalization with nothing added to them (no absolute positions, no token
    types), the path (under ``model.base_model``) of that normalization; the scores then explain
    its output, since input x gradient on a scale-invariant layer's input is zero by
    construction (docs/architectures.md). ``first_token_head``: the classification head reads
    only the first token's last hidden state, so the last layer is traced for it alone
    (export/first_token_layer.py checks it, and validation against the whole model)."""

    token_types: bool = False
    positions_after_padding: bool = False
    fuse_as: str | None = None
    normalized_embeddings: Callable[[Any], str | None] = _never
    first_token_head: bool = False

    def model_inputs(self, config: Any) -> tuple[str, ...]:
        if self.token_types and getattr(config, "type_vocab_size", 0) > 1:
            return (INPUT_IDS, ATTENTION_MASK, TOKEN_TYPE_IDS)
        return (INPUT_IDS, ATTENTION_MASK)

    def max_length(self, config: Any, pad_token_id: int) -> int:
        length = int(config.max_position_embeddings)
        return length - pad_token_id - 1 if self.positions_after_padding else length

    def explained(self, config: Any) -> str:
        """What the scores explain: ``WORD_EMBEDDINGS`` or a normalization's module path."""
        return self.normalized_embeddings(config) or WORD_EMBEDDINGS

    def explained_module(self, model: Any) -> Any:
        """The module whose output (one vector per token) the scores explain."""
        explained = self.explained(model.config)
        if explained == WORD_EMBEDDINGS:
            return model.get_input_embeddings()
        return model.base_model.get_submodule(explained)


def _deberta_norm(config: Any) -> str | None:
    """DeBERTa-v3 (and v2 without absolute positions or token types): LayerNorm(word)."""
    plain = not config.position_biased_input and config.type_vocab_size == 0
    return "embeddings.LayerNorm" if plain else None


BERT_LIKE = Architecture(token_types=True, fuse_as="bert", first_token_head=True)
ROBERTA_LIKE = Architecture(positions_after_padding=True, fuse_as="bert", first_token_head=True)

ARCHITECTURES: dict[str, Architecture] = {
    "bert": BERT_LIKE,  # MiniLM checkpoints are BERT-shaped
    "electra": BERT_LIKE,
    "roberta": ROBERTA_LIKE,
    "xlm-roberta": ROBERTA_LIKE,
    "camembert": ROBERTA_LIKE,
    "distilbert": Architecture(fuse_as="bert"),
    "albert": Architecture(token_types=True),
    "mpnet": Architecture(positions_after_padding=True),
    "deberta-v2": Architecture(token_types=True, normalized_embeddings=_deberta_norm),
    "modernbert": Architecture(normalized_embeddings=lambda config: "embeddings.norm"),
}
"""Architectures whose needs differ from ``GENERIC``, by ``config.model_type``."""

GENERIC = Architecture()
"""What an architecture without an entry gets: no token types, the model's own positions, the
word embeddings explained, the forward graph left unfused."""


def architecture_for(model_type: str) -> Architecture:
    return ARCHITECTURES.get(model_type, GENERIC)
