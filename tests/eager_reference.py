"""An independent eager reference: input x gradient through the model's own ``input_ids`` path.

A forward hook on the word-embedding module swaps its output for a leaf tensor, so the model
runs exactly as for a prediction (its own position ids, token types and LayerNorm) and the
gradient of each logit w.r.t. that leaf is read with ``torch.autograd.grad``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def input_x_gradient(model: Any, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(logits [B, L], raw scores [B, L, S])`` for a padded batch."""
    captured: dict[str, torch.Tensor] = {}

    def swap_for_leaf(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        leaf = output.detach().requires_grad_(True)
        captured["embeds"] = leaf
        return leaf

    inputs = {name: torch.from_numpy(np.asarray(value)) for name, value in batch.items()}
    handle = model.get_input_embeddings().register_forward_hook(swap_for_leaf)
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
