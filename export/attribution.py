"""Eager attribution functions: what the exported graphs compute, written in PyTorch.

Each function takes the model inputs positionally (``input_ids, attention_mask`` and, where
the architecture uses them, ``token_type_ids``) so that it can be traced with ``make_fx`` and
run eagerly as the validation reference. Scores are input x gradient with respect to the
*word* embeddings (reference-semantics.md): ``sum_h d logit / d e[s, h] * e[s, h]``; padding
positions are zeroed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gradlight.export.model_loading import ModelSpec

ModelFn = Callable[..., Any]


def _model_kwargs(model: Any, spec: ModelSpec, inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
    input_ids, attention_mask = inputs[0], inputs[1]
    kwargs = {"attention_mask": attention_mask}
    if spec.uses_token_type_ids:
        kwargs["token_type_ids"] = inputs[2]
    if spec.model_type == "roberta":
        # With inputs_embeds, RoBERTa numbers positions as if no token were padding; with
        # input_ids it skips padding. Give it the input_ids numbering so both passes agree.
        padding_idx = model.base_model.embeddings.padding_idx
        not_pad = input_ids.ne(padding_idx).to(torch.int64)
        kwargs["position_ids"] = torch.cumsum(not_pad, dim=1) * not_pad + padding_idx
    return kwargs


def _embed(model: Any, input_ids: Tensor) -> Tensor:
    return model.get_input_embeddings()(input_ids).detach().requires_grad_(True)


def forward_fn(model: Any, spec: ModelSpec) -> ModelFn:
    """``(*inputs) -> logits``: the plain ``input_ids`` forward, the model's own path."""

    def forward(*inputs: Tensor) -> Tensor:
        kwargs = {"attention_mask": inputs[1]}
        if spec.uses_token_type_ids:
            kwargs["token_type_ids"] = inputs[2]
        return model(input_ids=inputs[0], **kwargs).logits

    return forward


def all_labels_fn(model: Any, spec: ModelSpec) -> ModelFn:
    """``(*inputs) -> (logits [B, L], scores [B, L, S])``: one backward pass per label."""

    def attribute(*inputs: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            embeds = _embed(model, inputs[0])
            logits = model(inputs_embeds=embeds, **_model_kwargs(model, spec, inputs)).logits
            mask = inputs[1].to(embeds.dtype)
            per_label = []
            for label in range(spec.num_labels):
                (grad,) = torch.autograd.grad(
                    logits[:, label].sum(), embeds, retain_graph=label < spec.num_labels - 1
                )
                per_label.append((grad * embeds).sum(-1) * mask)
        return logits.detach(), torch.stack(per_label, dim=1).detach()

    return attribute


def cotangent_fn(model: Any, spec: ModelSpec) -> ModelFn:
    """``(*inputs, cotangent [B, L]) -> (logits [B, L], scores [B, S])``.

    Row b's scores attribute ``sum_c cotangent[b, c] * logits[b, c]``: a one-hot row picks a
    label, ``[1, -1, 0, ...]`` contrasts two labels. One backward pass per row, whatever L is.
    """

    def attribute(*inputs_and_cotangent: Tensor) -> tuple[Tensor, Tensor]:
        *inputs, cotangent = inputs_and_cotangent
        with torch.enable_grad():
            embeds = _embed(model, inputs[0])
            logits = model(inputs_embeds=embeds, **_model_kwargs(model, spec, tuple(inputs))).logits
            (grad,) = torch.autograd.grad(logits, embeds, grad_outputs=cotangent.to(logits.dtype))
            scores = (grad * embeds).sum(-1) * inputs[1].to(embeds.dtype)
        return logits.detach(), scores.detach()

    return attribute
