"""export/tracing.py: the ONNX exporter's decomposition pass is skipped only where it would
change nothing (a graph ``trace_aten`` made, with no operator the exporter decomposes), and
runs as always where it would."""

from __future__ import annotations

import torch
from torch.onnx._internal.exporter import _fx_passes, _registration

from gradlight.export.tracing import _already_decomposed, trace_aten


def _exported(fn, x: torch.Tensor) -> torch.export.ExportedProgram:
    return torch.export.export(trace_aten(fn, [x]), (x,))


def test_the_decomposition_pass_runs_only_where_it_would_change_something():
    registry = _registration.ONNXRegistry.from_torchlib()
    x = torch.randn(3, 1, 4)
    plain = _exported(lambda t: (t * 2 + 1).softmax(-1), x)
    # squeeze over a list of axes is core ATen, but the exporter's table decomposes it
    squeezing = _exported(lambda t: t.squeeze((1,)) * 2, x)
    with _already_decomposed():
        assert _fx_passes.decompose_with_registry(plain, registry) is plain
        decomposed = _fx_passes.decompose_with_registry(squeezing, registry)
    assert decomposed is not squeezing
    ops = {node.target for node in decomposed.graph.nodes if node.op == "call_function"}
    assert torch.ops.aten.squeeze.dims not in ops
    # and the exporter's own pass is back in place afterwards
    assert _fx_passes.decompose_with_registry(plain, registry) is not plain
