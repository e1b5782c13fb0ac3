"""One forward and a batched backward: the labels graph's function, made from the cotangent
function's traced graph vmapped over its cotangent (docs/export-internals.md).

``torch.autograd.grad(..., is_grads_batched=True)`` and ``torch.func`` transforms of the model
fail under symbolic tracing. So the cotangent function is traced first into ATen operators (no
model Python is left in them), and that graph is vmapped over a ``[B, K, L]`` cotangent: the
operators that do not read the cotangent (the forward) see no batched input and run once, each
backward operator runs on the K cotangents at once.

A few of vmap's batching rules read concrete sizes, which would bake the traced batch, length
and K into the graph: those of ``slice_scatter``, ``scatter_add`` and ``cat`` (the backward of a
slice, of a gather, of a concatenation: BERT's pooler, DeBERTa-v2's relative positions,
ModernBERT's rotary embedding). In the backward they run as gradlight's own operators, whose
batching rule moves the vmapped axis first, expands the inputs without it and calls the ATen
operator one axis further: the shapes stay symbolic, and the traced graph holds ATen operators
only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from gradlight.export.tracing import trace_aten

aten = torch.ops.aten

_TO_THE_END = 2**63 - 1  # the end a slice "to the end" is traced with


def vmap_cotangents(
    fn: Callable[..., tuple[Tensor, Tensor]], example_inputs: Sequence[Tensor]
) -> Callable[..., tuple[Tensor, Tensor]]:
    """``fn(*inputs, cotangent [B, L]) -> (logits, scores [B, S])`` (one forward, one backward)
    made ``(*inputs, cotangent [B, K, L]) -> (logits, scores [B, K, S])``, for
    ``tracing.trace_to_onnx`` with K dynamic. ``example_inputs`` end with the ``[B, K, L]``
    cotangent; ``fn`` is traced on its first vectors."""
    *inputs, cotangents = example_inputs
    graph = trace_aten(fn, (*inputs, cotangents[:, 0]))
    _drop_whole_slice_scatters(graph)
    _batch_by_moving_axes(graph)

    def batched(*inputs_and_cotangents: Tensor) -> tuple[Tensor, Tensor]:
        *inputs, cotangents = inputs_and_cotangents
        run = torch.func.vmap(lambda row: graph(*inputs, row), in_dims=1, out_dims=(None, 1))
        return run(cotangents)

    return batched


def _arguments(node: torch.fx.Node, names: Sequence[str], defaults: dict[str, Any]) -> list[Any]:
    given = {**dict(zip(names, node.args, strict=False)), **node.kwargs}
    return [given[name] if name in given else defaults[name] for name in names]


_SLICE_SCATTER = ("input", "src", "dim", "start", "end", "step")
_SLICE_DEFAULTS = {"dim": 0, "start": None, "end": None, "step": 1}


def _drop_whole_slice_scatters(graph: torch.fx.GraphModule) -> None:
    """``slice_scatter(base, src, dim, 0, to the end, 1)`` (the backward of ``hidden[:, 0]``'s
    slice) equals ``src``: it is replaced by it."""
    for node in list(graph.graph.nodes):
        if node.target is not aten.slice_scatter.default:
            continue
        _, src, _, start, end, step = _arguments(node, _SLICE_SCATTER, _SLICE_DEFAULTS)
        if start in (0, None) and end in (_TO_THE_END, None) and step == 1:
            node.replace_all_uses_with(src)
            graph.graph.erase_node(node)
    graph.graph.eliminate_dead_code()
    graph.recompile()


def _batch_by_moving_axes(graph: torch.fx.GraphModule) -> None:
    """The operators of ``_BY_MOVING_AXES`` that read the cotangent (the graph's last input)
    become gradlight's."""
    placeholders = [node for node in graph.graph.nodes if node.op == "placeholder"]
    reads_cotangent = {placeholders[-1]}
    for node in graph.graph.nodes:
        if any(source in reads_cotangent for source in node.all_input_nodes):
            reads_cotangent.add(node)
        if node in reads_cotangent and node.target in _BY_MOVING_AXES:
            ours, names, defaults = _BY_MOVING_AXES[node.target]
            node.args, node.kwargs = tuple(_arguments(node, names, defaults)), {}
            node.target = ours
    graph.recompile()


def _first(tensor: Tensor, axis: int | None, size: Any) -> Tensor:
    """``tensor`` with the vmapped axis first (expanded to ``size`` where it had none)."""
    if axis is None:
        return tensor.unsqueeze(0).expand(size, *tensor.shape)
    return tensor.movedim(axis, 0)


def _shifted(dim: int) -> int:
    """An axis of the unbatched tensor, on the tensor with the vmapped axis first."""
    return dim + 1 if dim >= 0 else dim


@torch.library.custom_op("gradlight::slice_scatter", mutates_args=())
def _slice_scatter(
    base: Tensor, src: Tensor, dim: int, start: int | None, end: int | None, step: int
) -> Tensor:
    return aten.slice_scatter.default(base, src, dim, start, end, step)


@_slice_scatter.register_fake
def _(base: Tensor, src: Tensor, dim: int, start: Any, end: Any, step: int) -> Tensor:
    return torch.empty_like(base)


@_slice_scatter.register_vmap
def _(info: Any, in_dims: Any, base: Tensor, src: Tensor, dim: int, *rest: Any) -> Any:
    base, src = _first(base, in_dims[0], info.batch_size), _first(src, in_dims[1], info.batch_size)
    return aten.slice_scatter.default(base, src, _shifted(dim), *rest), 0


@torch.library.custom_op("gradlight::scatter_add", mutates_args=())
def _scatter_add(base: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    return aten.scatter_add.default(base, dim, index, src)


@_scatter_add.register_fake
def _(base: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    return torch.empty_like(base)


@_scatter_add.register_vmap
def _(info: Any, in_dims: Any, base: Tensor, dim: int, index: Tensor, src: Tensor) -> Any:
    size = info.batch_size
    base_axis, _, index_axis, src_axis = in_dims
    base = _first(base, base_axis, size)
    index, src = _first(index, index_axis, size), _first(src, src_axis, size)
    return aten.scatter_add.default(base, _shifted(dim), index, src), 0


@torch.library.custom_op("gradlight::cat", mutates_args=())
def _cat(tensors: list[Tensor], dim: int) -> Tensor:
    return aten.cat.default(tensors, dim)


@_cat.register_fake
def _(tensors: list[Tensor], dim: int) -> Tensor:
    return torch.cat([torch.empty_like(tensor) for tensor in tensors], dim)


@_cat.register_vmap
def _(info: Any, in_dims: Any, tensors: list[Tensor], dim: int) -> Any:
    moved = [_first(t, d, info.batch_size) for t, d in zip(tensors, in_dims[0], strict=True)]
    return aten.cat.default(moved, _shifted(dim)), 0


_BY_MOVING_AXES: dict[Any, tuple[Any, tuple[str, ...], dict[str, Any]]] = {
    aten.slice_scatter.default: (
        torch.ops.gradlight.slice_scatter.default,
        _SLICE_SCATTER,
        _SLICE_DEFAULTS,
    ),
    aten.scatter_add.default: (
        torch.ops.gradlight.scatter_add.default,
        ("input", "dim", "index", "src"),
        {},
    ),
    aten.cat.default: (torch.ops.gradlight.cat.default, ("tensors", "dim"), {"dim": 0}),
}
"""ATen operators whose batching rules read concrete sizes: gradlight's operator for each, its
argument names and their defaults."""
