"""An independent eager reference: input x gradient through the model's own ``input_ids`` path.

A forward hook on the word-embedding module (``explained_module``) swaps its output for a leaf
tensor, so the model runs exactly as for a prediction (its own position ids, token types and
LayerNorm) and the gradient of each logit w.r.t. that leaf is read with ``torch.autograd.grad``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def explained_module(model: Any) -> Any:
    """The module whose output the scores explain: the word embeddings, except where they go
    straight into a LayerNorm (DeBERTa-v3, ModernBERT): there input x gradient is zero by
    construction, and the LayerNorm's output is explained."""
    if model.config.model_type == "deberta-v2" and not model.config.position_biased_input:
        return model.deberta.embeddings.LayerNorm
    if model.config.model_type == "modernbert":
        return model.model.embeddings.norm
    return model.get_input_embeddings()


def input_x_gradient(model: Any, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(logits [B, L], raw scores [B, L, S])`` for a padded batch."""
    captured: dict[str, torch.Tensor] = {}

    def swap_for_leaf(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        leaf = output.detach().requires_grad_(True)
        captured["embeds"] = leaf
        return leaf

    inputs = {name: torch.from_numpy(np.asarray(value)) for name, value in batch.items()}
    handle = explained_module(model).register_forward_hook(swap_for_leaf)
    try:
        with torch.enable_grad():
            logits = model(**inputs).logits
            embeds = captured["embeds"]
            mask = inputs["attention_mask"].to(embeds.dtype)
            scores = []
            for label in range(logits.shape[1]):
                (grad,) = torch.autograd.grad(logits[:, label].sum(), embeds, retain_graph=True)
                scores.append((grad * embeds).sum(-1) * mask)
    finally:
        handle.remove()
    return logits.detach().numpy(), torch.stack(scores, dim=1).detach().numpy()
