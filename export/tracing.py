"""Trace eager PyTorch (forward, or forward and backward) into ONNX graphs with dynamic axes.

``torch.export`` cannot export ``torch.autograd.grad`` directly (pytorch#125984). So the
function is first traced by ``make_fx`` with symbolic shapes, which records the forward and the
backward as plain aten ops; that graph is then exported by ``torch.export`` and converted by
the dynamo ONNX exporter (docs/export-internals.md).
"""

from __future__ import annotations

import linecache
import logging
import re
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gradlight.artifact.model_spec import ModelSpec
from gradlight.export.errors import ExportError

MAX_BATCH = 65536
MAX_COTANGENTS = 4096
"""Bound of a ``cotangents`` axis (the labels graph's K)."""


@dataclass(frozen=True)
class TraceTimings:
    make_fx_s: float
    torch_export_s: float
    onnx_export_s: float

    def rounded(self) -> dict[str, float]:
        return {
            "make_fx": round(self.make_fx_s, 2),
            "torch_export": round(self.torch_export_s, 2),
            "onnx_export": round(self.onnx_export_s, 2),
        }


@dataclass(frozen=True)
class GraphTarget:
    """Where and how to write one ONNX graph.

    ``dynamic_axes`` maps an input name to ``{axis: "batch" | "sequence" | "cotangents"}``;
    every other axis keeps its traced size. The sequence axis is bounded by ``max_length``.
    """

    path: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: Mapping[str, Mapping[int, str]]
    max_length: int
    opset: int

    def dynamic_shapes(self) -> list[dict[int, Any]]:
        from torch.export import Dim

        dims = {
            "batch": Dim("batch", min=1, max=MAX_BATCH),
            "sequence": Dim("sequence", min=2, max=self.max_length),
            "cotangents": Dim("cotangents", min=1, max=MAX_COTANGENTS),
        }
        return [
            {axis: dims[kind] for axis, kind in self.dynamic_axes.get(name, {}).items()}
            for name in self.input_names
        ]


def trace_to_onnx(
    fn: Callable[..., Any], example_inputs: Sequence[Tensor], target: GraphTarget
) -> TraceTimings:
    """Write ``fn`` (forward and backward) traced on ``example_inputs`` as ONNX."""
    started = time.perf_counter()
    graph_module = trace_aten(fn, example_inputs)
    traced = time.perf_counter()

    dynamic_shapes = target.dynamic_shapes()
    exported = torch.export.export(
        graph_module, tuple(example_inputs), dynamic_shapes=dynamic_shapes
    )
    exported_at = time.perf_counter()

    with _already_decomposed():
        _onnx_export(exported, example_inputs, target, dynamic_shapes=None)
    done = time.perf_counter()
    return TraceTimings(
        make_fx_s=traced - started,
        torch_export_s=exported_at - traced,
        onnx_export_s=done - exported_at,
    )


def trace_aten(fn: Callable[..., Any], example_inputs: Sequence[Tensor]) -> torch.fx.GraphModule:
    """``fn`` as a graph of core ATen operators (its forward and backward), symbolic shapes."""
    from torch._decomp import core_aten_decompositions
    from torch.fx.experimental.proxy_tensor import make_fx

    # No duck shaping: a batch size that happens to equal the label count must stay its own
    # symbol, or the traced graph ties the two together and export specializes the batch.
    with torch.fx.experimental._config.patch(use_duck_shape=False):
        return make_fx(
            fn,
            decomposition_table=core_aten_decompositions(),
            tracing_mode="symbolic",
            _allow_non_fake_inputs=True,
        )(*example_inputs)


@contextmanager
def _already_decomposed() -> Iterator[None]:
    """The ONNX exporter without its decomposition pass where there is nothing to decompose.

    The exporter decomposes every program it converts (``ExportedProgram.run_decompositions``
    with its ONNX-friendly table), which traces the whole graph once more, even for a tiny
    model: a large share of an attribution graph's export (docs/export-internals.md has the
    times). A graph ``trace_aten`` made is already core ATen; when none of its operators is in
    the exporter's table, the pass would return the same graph, so it is skipped. Where it
    would change something, or where this torch lays out its exporter differently, the pass
    runs as always.
    """
    try:
        from torch.onnx._internal.exporter import _decomp, _fx_passes

        original = _fx_passes.decompose_with_registry
    except (ImportError, AttributeError):
        yield
        return

    def decompose(program: Any, registry: Any) -> Any:
        implemented = set(_decomp.get_onnx_implemented_overloads(registry))
        table = _decomp.create_onnx_friendly_decomposition_table(implemented)
        targets = {n.target for n in program.graph.nodes if n.op == "call_function"}
        if targets & set(table):
            return original(program, registry)
        return program

    _fx_passes.decompose_with_registry = decompose
    try:
        yield
    finally:
        _fx_passes.decompose_with_registry = original


class ForwardModule(torch.nn.Module):
    """A forward-only function ``(*model inputs) -> output`` as a module whose ``forward``
    parameters are named as the graph's inputs, with the model's parameters registered."""

    def __init__(self, fn: Callable[..., Tensor], model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self._fn = fn

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        extra = () if token_type_ids is None else (token_type_ids,)
        return self._fn(input_ids, attention_mask, *extra)


def export_module_to_onnx(
    module: torch.nn.Module, example_inputs: Sequence[Tensor], target: GraphTarget
) -> float:
    """Export a forward-only module with the dynamo exporter; return the seconds it took.

    The module's ``forward`` parameters must be named like ``target.input_names``.
    """
    started = time.perf_counter()
    shapes = dict(zip(target.input_names, target.dynamic_shapes(), strict=True))
    _onnx_export(module, example_inputs, target, dynamic_shapes=shapes)
    return time.perf_counter() - started


def _onnx_export(
    model: Any,
    example_inputs: Sequence[Tensor],
    target: GraphTarget,
    dynamic_shapes: Mapping[str, Any] | None,
) -> None:
    # The exporter warns once per torchvision op it cannot register; torchvision is not used.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            tuple(example_inputs),
            dynamo=True,
            input_names=list(target.input_names),
            output_names=list(target.output_names),
            dynamic_shapes=dynamic_shapes,
            opset_version=target.opset,
            optimize=False,
            verbose=False,
        )
    _simplify(program.model)
    program.save(str(target.path))


def _simplify(model: Any) -> None:
    """The exporter's own optimizer minus its pattern rewriter.

    The rewriter matches every rule at every node and its cost grows faster than the graph: for
    the all-labels graph of MiniLM-L6 with 10 labels it took most of a 7-minute export, for
    rewrites ONNX Runtime's graph optimizer also makes when a session loads. Constant folding,
    dead-node removal, initializer deduplication and common-subexpression elimination remain.
    """
    import onnx_ir.passes.common as passes
    import onnxscript.optimizer

    passes.InlinePass()(model)
    for _ in range(2):
        onnxscript.optimizer.fold_constants(model)
        passes.RemoveUnusedNodesPass()(model)
    passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model)
    passes.DeduplicateInitializersPass()(model)
    passes.CommonSubexpressionEliminationPass()(model)
    passes.RemoveUnusedNodesPass()(model)
    passes.RemoveUnusedOpsetsPass()(model)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TRACERS = ("/torch/", "/onnxscript/", "/onnx_ir/", "/contextlib.py", str(Path(__file__).parent))


@contextmanager
def untraceable(spec: ModelSpec, graph: str) -> Iterator[None]:
    """Turn a failure to trace or convert into an ``ExportError`` naming the operation: the
    exception's first line and the model's own source line that was running."""
    try:
        yield
    except ExportError:
        raise
    except Exception as exc:  # torch and onnxscript raise many types; all mean "cannot trace"
        cause = exc
        while cause.__cause__ is not None:  # the exporters wrap the tracer's own error
            cause = cause.__cause__
        lines = [line for line in _ANSI.sub("", str(cause)).splitlines() if line.strip()]
        what = lines[0].strip()[:400] if lines else ""
        raise ExportError(
            f"{spec.model_type} ({spec.architecture}) cannot be traced into the {graph} graph: "
            f"{type(cause).__name__}: {what}{_model_line(exc)}"
        ) from exc


def _model_line(exc: BaseException | None) -> str:
    """`` at FILE:LINE `source` ``: the innermost frame outside the tracers (the model's code)."""
    frames = []
    while exc is not None:  # outermost first, so the innermost model frame comes last
        frames += traceback.extract_tb(exc.__traceback__)
        exc = exc.__cause__
    frames = [frame for frame in frames if not any(t in frame.filename for t in _TRACERS)]
    if not frames:
        return ""
    frame = frames[-1]
    source = linecache.getline(frame.filename, frame.lineno or 0).strip()
    return f" (at {Path(frame.filename).name}:{frame.lineno} `{source}`)"
