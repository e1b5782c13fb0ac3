"""The last encoder layer computed for the first token only, while graphs are traced.

A sequence classifier of the BERT family reads one hidden state of the last layer: the first
token's (BERT's pooler, RoBERTa's, XLM-R's and ELECTRA's heads take ``[:, 0]``). Every other
position of that layer feeds nothing but keys and values: its query, its attention output, its
feed-forward network and, in an attribution graph, their backward passes are work whose result
is thrown away. Traced with the last layer's query, attention output and feed-forward network
for the first token alone (keys and values still for every token), the graphs compute the same
logits and scores with about five sixths of one layer less per token (the timings:
docs/engine-settings.md, "Call sizes, threads and graphs").

Only while tracing: export validation compares the graphs with the unchanged model, eager, on
other shapes (export/validation.py), so a head that reads more than the first token fails
there. Before tracing, the change is checked on a padded batch against the unchanged model;
where it differs, or the layer is not of the expected shape, the graphs are traced whole and
the export says why.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from gradlight.export.attribution import forward_fn
from gradlight.export.model_loading import LoadedClassifier

TOLERANCE = 1e-5
"""Largest logit difference the check accepts (float32 rounding of a shorter sum order)."""


def _first_token_forward(
    self: Any, hidden_states: Tensor, attention_mask: Tensor | None = None, *_: Any, **__: Any
) -> Tensor:
    """A BERT-family layer's forward for the first position: ``[B, 1, H]``."""
    attention = self.attention.self
    batch = hidden_states.shape[0]
    first = hidden_states[:, :1]
    heads = (batch, -1, attention.num_attention_heads, attention.attention_head_size)
    query = attention.query(first).view(*heads).transpose(1, 2)
    key = attention.key(hidden_states).view(*heads).transpose(1, 2)
    value = attention.value(hidden_states).view(*heads).transpose(1, 2)
    weights = torch.matmul(query, key.transpose(2, 3)) * attention.scaling
    if attention_mask is not None:  # [B, 1, T or 1, T]: the first query's row
        weights = weights + attention_mask[..., :1, :]
    weights = torch.softmax(weights, dim=-1)
    context = torch.matmul(weights, value).transpose(1, 2).reshape(batch, 1, -1)
    return self.feed_forward_chunk(self.attention.output(context, first))


def why_not(loaded: LoadedClassifier) -> str | None:
    """None where the last layer can be traced for the first token only, else why not."""
    if not loaded.architecture.first_token_head:
        return f"the {loaded.spec.model_type} head is not known to read only the first token"
    config = loaded.model.config
    if config.is_decoder or getattr(config, "add_cross_attention", False):
        return "the model attends to another sequence"
    layers = getattr(getattr(loaded.model.base_model, "encoder", None), "layer", None)
    if not layers:
        return "no encoder layers found at base_model.encoder.layer"
    last = layers[-1]
    attention = getattr(getattr(last, "attention", None), "self", None)
    needed = ("query", "key", "value", "scaling", "num_attention_heads", "attention_head_size")
    if attention is None or not all(hasattr(attention, name) for name in needed):
        return f"its last layer ({type(last).__name__}) is not BERT-shaped"
    if not hasattr(last, "feed_forward_chunk") or not hasattr(last.attention, "output"):
        return f"its last layer ({type(last).__name__}) is not BERT-shaped"
    return None


@contextmanager
def _patched(loaded: LoadedClassifier) -> Iterator[None]:
    last = loaded.model.base_model.encoder.layer[-1]
    last.forward = types.MethodType(_first_token_forward, last)
    try:
        yield
    finally:
        del last.forward  # the class's forward again


def _logits(loaded: LoadedClassifier, inputs: tuple[Tensor, ...]) -> Tensor:
    with torch.no_grad():
        return forward_fn(loaded)(*inputs)


def check(loaded: LoadedClassifier, batches: Sequence[tuple[Tensor, ...]]) -> str | None:
    """None where the first-token layer gives the unchanged model's logits on ``batches``
    (padded), else why it cannot be used."""
    problem = why_not(loaded)
    if problem is not None:
        return problem
    gap = 0.0
    for inputs in batches:
        whole = _logits(loaded, inputs)
        try:
            with _patched(loaded):
                first = _logits(loaded, inputs)
        except Exception as exc:  # a head that indexes other positions
            return f"the model fails with it: {type(exc).__name__}: {exc}"
        gap = max(gap, float((whole - first).abs().max()))
    if not gap <= TOLERANCE:
        return f"its logits moved by {gap:.3g} (more than {TOLERANCE:g}): the head reads more"
    return None


@contextmanager
def first_token_last_layer(loaded: LoadedClassifier, use: bool) -> Iterator[None]:
    """Trace with the last layer for the first token only where ``use`` (``check`` passed)."""
    if not use:
        yield
        return
    with _patched(loaded):
        yield
