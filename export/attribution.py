"""Eager attribution functions: what the exported graphs compute, written in PyTorch.

Each function takes the model inputs positionally (``input_ids, attention_mask`` and, where
the architecture uses them, ``token_type_ids``), then the graph's extra inputs, so that it can
be traced with ``make_fx`` and run eagerly as the validation reference. Scores are input x
gradient with respect to the *word* embeddings (docs/semantics.md):
``sum_h d logit / d e[s, h] * e[s, h]``; padding positions are zeroed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gradlight.export.model_loading import LoadedClassifier

ModelFn = Callable[..., Any]


def _model_kwargs(loaded: LoadedClassifier, inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
    kwargs = {"attention_mask": inputs[1]}
    if loaded.spec.uses_token_type_ids:
        kwargs["token_type_ids"] = inputs[2]
    return kwargs


def _attributed_logits(
    loaded: LoadedClassifier, inputs: tuple[Tensor, ...]
) -> tuple[Tensor, Tensor]:
    """``(embeds, logits)``: the word embeddings as a leaf that takes gradients, and the logits
    of the forward that reads them as the ``input_ids`` forward reads the ids."""
    model, architecture = loaded.model, loaded.architecture
    embeds = architecture.word_embeddings(model)(inputs[0]).detach().requires_grad_(True)
    kwargs = {**_model_kwargs(loaded, inputs), **architecture.embeds_kwargs(model, inputs[0])}
    return embeds, model(inputs_embeds=embeds, **kwargs).logits


def forward_fn(loaded: LoadedClassifier) -> ModelFn:
    """``(*inputs) -> logits``: the plain ``input_ids`` forward, the model's own path."""

    def forward(*inputs: Tensor) -> Tensor:
        return loaded.model(input_ids=inputs[0], **_model_kwargs(loaded, inputs)).logits

    return forward


def all_labels_fn(loaded: LoadedClassifier) -> ModelFn:
    """``(*inputs) -> (logits [B, L], scores [B, L, S])``: one backward pass per label."""
    num_labels = loaded.spec.num_labels

    def attribute(*inputs: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            embeds, logits = _attributed_logits(loaded, inputs)
            mask = inputs[1].to(embeds.dtype)
            per_label = []
            for label in range(num_labels):
                (grad,) = torch.autograd.grad(
                    logits[:, label].sum(), embeds, retain_graph=label < num_labels - 1
                )
                per_label.append((grad * embeds).sum(-1) * mask)
        return logits.detach(), torch.stack(per_label, dim=1).detach()

    return attribute


def cotangent_fn(loaded: LoadedClassifier) -> ModelFn:
    """``(*inputs, cotangent [B, L]) -> (logits [B, L], scores [B, S])``.

    Row b's scores attribute ``sum_c cotangent[b, c] * logits[b, c]``: a one-hot row picks a
    label, ``[1, -1, 0, ...]`` contrasts two labels. One backward pass per row, whatever L is.
    """

    def attribute(*inputs_and_cotangent: Tensor) -> tuple[Tensor, Tensor]:
        *inputs, cotangent = inputs_and_cotangent
        with torch.enable_grad():
            embeds, logits = _attributed_logits(loaded, tuple(inputs))
            (grad,) = torch.autograd.grad(logits, embeds, grad_outputs=cotangent.to(logits.dtype))
            scores = (grad * embeds).sum(-1) * inputs[1].to(embeds.dtype)
        return logits.detach(), scores.detach()

    return attribute
