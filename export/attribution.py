"""Eager attribution functions: what the exported graphs compute, written in PyTorch.

Each function takes the model inputs positionally (``input_ids, attention_mask`` and, where
the architecture uses them, ``token_type_ids``), then the graph's extra inputs, so that it can
be traced with ``make_fx`` and run eagerly as the validation reference. Scores are input x
gradient with respect to the *word* embeddings (docs/semantics.md):
``sum_h d logit / d e[s, h] * e[s, h]``; padding positions are zeroed. Where the word
embeddings feed a normalization directly, ``e`` is that normalization's output
(export/architectures.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor

from gradlight.export.errors import ExportError
from gradlight.export.model_loading import LoadedClassifier

ModelFn = Callable[..., Any]

_MAGNITUDES: ContextVar[list[Tensor] | None] = ContextVar("magnitudes", default=None)


def _input_x_gradient(grad: Tensor, vector: Tensor, mask: Tensor) -> Tensor:
    """``[B, S]``: ``sum_h grad * vector`` per token, padding zeroed. Inside
    ``recording_magnitudes`` it also records ``|grad| |vector|`` per token: the scale of the
    terms the score sums, which bounds its rounding error (export/validation.py)."""
    recorded = _MAGNITUDES.get()
    if recorded is not None:
        recorded.append((grad.norm(dim=-1) * vector.norm(dim=-1) * mask).detach())
    return (grad * vector).sum(-1) * mask


@contextmanager
def recording_magnitudes() -> Iterator[list[Tensor]]:
    """The ``|grad| |vector|`` of every score the eager functions compute inside, in order."""
    recorded: list[Tensor] = []
    token = _MAGNITUDES.set(recorded)
    try:
        yield recorded
    finally:
        _MAGNITUDES.reset(token)


def with_magnitudes(fn: ModelFn, *inputs: Tensor) -> tuple[tuple[Tensor, ...], Tensor]:
    """``(fn(*inputs), magnitudes)`` for an eager function whose last output is its scores:
    ``magnitudes`` has the scores' shape (``[B, S]``, or ``[B, K, S]`` for one backward pass
    per label or cotangent), each ``|grad| |vector|`` of its token."""
    with recording_magnitudes() as recorded:
        outputs = tuple(fn(*inputs))
    if outputs[-1].dim() == 3:
        return outputs, torch.stack(recorded, dim=1)
    (magnitudes,) = recorded
    return outputs, magnitudes


def _model_kwargs(loaded: LoadedClassifier, inputs: tuple[Tensor, ...]) -> dict[str, Tensor]:
    kwargs = {"attention_mask": inputs[1]}
    if loaded.spec.uses_token_type_ids:
        kwargs["token_type_ids"] = inputs[2]
    return kwargs


def _attributed_logits(
    loaded: LoadedClassifier,
    inputs: tuple[Tensor, ...],
    move: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """``(leaf, logits)`` of one forward through the model's own ``input_ids`` path (its own
    position ids, token types and normalizations), where the explained module's output (the
    word embeddings, docs/semantics.md) is swapped for a leaf that takes gradients: that
    output itself, or ``move(output)`` (a point on an integration path). The attributed pass is
    the predicting pass: the text is embedded once."""
    explained = loaded.architecture.explained_module(loaded.model)
    leaves: list[Tensor] = []

    def swap_for_leaf(_module: Any, _inputs: Any, output: Tensor) -> Tensor:
        if leaves:
            raise ExportError(
                f"{type(explained).__name__} ran twice in one forward of "
                f"{loaded.spec.architecture}: gradlight cannot tell which of its outputs to explain"
            )
        point = output.detach() if move is None else move(output.detach())
        leaves.append(point.requires_grad_(True))
        return leaves[0]

    handle = explained.register_forward_hook(swap_for_leaf)
    try:
        logits = loaded.model(input_ids=inputs[0], **_model_kwargs(loaded, inputs)).logits
    finally:
        handle.remove()
    return leaves[0], logits


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
                per_label.append(_input_x_gradient(grad, embeds, mask))
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
            scores = _input_x_gradient(grad, embeds, inputs[1].to(embeds.dtype))
        return logits.detach(), scores.detach()

    return attribute


def labels_fn(loaded: LoadedClassifier) -> ModelFn:
    """``(*inputs, cotangent [B, K, L]) -> (logits [B, L], scores [B, K, S])``.

    ``scores[b, k]`` is the cotangent function's row for ``cotangent[b, k]`` (K one-hot rows:
    K labels of a text), from one forward and K backward passes, as eager PyTorch runs it. The
    exported graph is not traced from this loop: it is the cotangent function's graph with its
    backward vmapped over the K axis (export/batched_backward.py), K dynamic.
    """

    def attribute(*inputs_and_cotangents: Tensor) -> tuple[Tensor, Tensor]:
        *inputs, cotangents = inputs_and_cotangents
        count = cotangents.shape[1]
        with torch.enable_grad():
            embeds, logits = _attributed_logits(loaded, tuple(inputs))
            mask = inputs[1].to(embeds.dtype)
            per_cotangent = []
            for k in range(count):
                (grad,) = torch.autograd.grad(
                    logits,
                    embeds,
                    grad_outputs=cotangents[:, k].to(logits.dtype),
                    retain_graph=k < count - 1,
                )
                per_cotangent.append(_input_x_gradient(grad, embeds, mask))
        return logits.detach(), torch.stack(per_cotangent, dim=1).detach()

    return attribute


def explained_vector(loaded: LoadedClassifier, token_id: int) -> Tensor:
    """The explained module's output ``[H]`` for ``token_id``: what the integration paths'
    baseline puts at a position (export/architectures.py explains a per-token vector, with no
    position in it; checked here on two positions)."""
    captured: list[Tensor] = []
    explained = loaded.architecture.explained_module(loaded.model)
    handle = explained.register_forward_hook(
        lambda _module, _inputs, output: captured.append(output.detach().clone())
    )
    ids = torch.full((1, 2), token_id, dtype=torch.int64)
    inputs = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    try:
        with torch.no_grad():
            loaded.model(input_ids=ids, **_model_kwargs(loaded, inputs))
    finally:
        handle.remove()
    first, second = captured[0][0]
    if not torch.allclose(first, second, rtol=1e-5, atol=1e-6):
        raise ExportError(
            f"{loaded.spec.model_type}: the {loaded.architecture.explained(loaded.model.config)} "
            "output depends on the position, so a baseline token's vector is not defined: the "
            "integration path graph cannot be built (export with --no-path-graph)"
        )
    return first


def path_fn(loaded: LoadedClassifier) -> ModelFn:
    """``(*inputs, cotangent [B, L], alpha [B], keep [B, S], fill [B], noise [B, S, H]) ->
    (logits [B, L], scores [B, S])``: one point of an integration path per row.

    ``e`` is the explained output of the text (docs/explanations.md), ``x = e + noise``; the
    baseline ``b`` keeps ``e`` where ``keep`` is 1 and is ``fill`` times the pad token's vector
    elsewhere (``fill`` 0: the zero baseline). The model runs at ``p = b + alpha (x - b)``;
    ``logits`` are the logits at ``p`` and ``scores`` the per-token
    ``sum_h d(cotangent . logits)/dp * (x - b)``: integrated gradients weigh rows of several
    ``alpha`` by the integration rule, GradientSHAP averages rows of random ``alpha`` and
    noise. ``alpha = 1``, ``keep = 1``, ``noise = 0`` is input x gradient.
    """
    pad_vector = explained_vector(loaded, loaded.spec.pad_token_id)

    def attribute(*inputs_and_path: Tensor) -> tuple[Tensor, Tensor]:
        *inputs, cotangent, alpha, keep, fill, noise = inputs_and_path
        differences: list[Tensor] = []

        def move(embeds: Tensor) -> Tensor:
            kept = keep.to(embeds.dtype).unsqueeze(-1)
            fills = fill.to(embeds.dtype)[:, None, None] * pad_vector.to(embeds.dtype)
            baseline = kept * embeds + (1 - kept) * fills
            difference = embeds + noise.to(embeds.dtype) - baseline
            differences.append(difference)
            return baseline + alpha.to(embeds.dtype)[:, None, None] * difference

        with torch.enable_grad():
            point, logits = _attributed_logits(loaded, tuple(inputs), move)
            (grad,) = torch.autograd.grad(logits, point, grad_outputs=cotangent.to(logits.dtype))
            mask = inputs[1].to(point.dtype)
            scores = _input_x_gradient(grad, differences[0], mask)
        return logits.detach(), scores.detach()

    return attribute


def path_row_fn(loaded: LoadedClassifier) -> ModelFn:
    """``path_fn`` with the cotangent last: ``(*inputs, alpha, keep, fill, noise, cotangent
    [B, L]) -> (logits, scores [B, S])``, the per-row function the path labels graph vmaps over
    its cotangents (export/batched_backward.py reads the cotangent as the last input)."""
    path = path_fn(loaded)

    def attribute(*inputs_and_path: Tensor) -> tuple[Tensor, Tensor]:
        *inputs, alpha, keep, fill, noise, cotangent = inputs_and_path
        return path(*inputs, cotangent, alpha, keep, fill, noise)

    return attribute


def path_labels_fn(loaded: LoadedClassifier) -> ModelFn:
    """``(*inputs, alpha [B], keep [B, S], fill [B], noise [B, S, H], cotangent [B, K, L]) ->
    (logits [B, L], scores [B, K, S])``: ``scores[b, k]`` is ``path_fn``'s row for
    ``cotangent[b, k]`` at the same point. The exported graph runs one forward at the point and
    K backward passes (``path_row_fn``'s graph vmapped over K); this reference runs ``path_fn``
    once per k (with K = 0, once with a zero cotangent for the logits, and no scores)."""
    row = path_row_fn(loaded)

    def attribute(*inputs_and_path: Tensor) -> tuple[Tensor, Tensor]:
        *inputs, cotangents = inputs_and_path
        if cotangents.shape[1] == 0:
            logits, scores = row(*inputs, cotangents.new_zeros(cotangents.shape[::2]))
            return logits, scores[:, None][:, :0]
        outputs = [row(*inputs, cotangents[:, k]) for k in range(cotangents.shape[1])]
        return outputs[0][0], torch.stack([scores for _, scores in outputs], dim=1)

    return attribute


def gradient_alignment(loaded: LoadedClassifier, inputs: tuple[Tensor, ...]) -> float:
    """Median over unpadded tokens of ``|cos(d sum(logits) / d e, e)|``.

    Input x gradient is ``|grad| |e| cos``; when everything after ``e`` is invariant to its
    scale (a LayerNorm with nothing added), ``grad`` is orthogonal to ``e`` and the scores are
    rounding noise. Ordinary models give values near ``1 / sqrt(hidden)``, such ones ~1e-5.
    """
    with torch.enable_grad():
        embeds, logits = _attributed_logits(loaded, inputs)
        (grad,) = torch.autograd.grad(logits.sum(), embeds)
    cosines = torch.nn.functional.cosine_similarity(grad, embeds.detach(), dim=-1).abs()
    return float(cosines[inputs[1].bool()].median())
