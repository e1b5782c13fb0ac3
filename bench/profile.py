"""Where the engine's time goes: ONNX Runtime's profiler over one graph, by operator type and by
what the operators do.

    python -m gradlight.bench.profile ARTIFACT_DIR [--graph attribution] [--batch 8]
        [--length 128] [--runs 5] [--threads N] [--cotangents K]

Runs the graph on texts of the bench corpus cut to ``--length`` tokens, with ORT's profiler on,
the session allocating as the engine's do, and prints each operator type's share of the kernel
time (and the node count), then the time in four parts, so a missed target can be explained by
what dominates:

- **weight matrix products**: MatMul, Gemm and FusedMatMul nodes with a weight (an initializer)
  as an operand: the linear layers of the forward and their input-gradient products, with the
  GFLOP/s they ran at (against the CPU's fp32 peak, that says what is left to gain);
- **attention matrix products**: the other matrix products (scores, their gradients), GFLOP/s;
- **attention-sized elementwise**: every other node whose output ends in ``[length, length]``
  (scaling, mask, softmax and its gradient);
- **the rest** (layer norms, GELU and their gradients, transposes, gathers).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from gradlight.bench import corpus
from gradlight.runtime.execution.cpu_arena import use_shared_cpu_arena
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.settings import EngineSettings

MATRIX_PRODUCTS = ("MatMul", "Gemm", "FusedMatMul")
PARTS = (
    "weight matrix products",
    "attention matrix products",
    "attention-sized elementwise",
    "the rest",
)


def _shapes(event: dict[str, Any], key: str) -> list[list[int]]:
    return [list(next(iter(entry.values()))) for entry in event["args"].get(key, [])]


def _flops(node: onnx.NodeProto, inputs: list[list[int]], output: list[int]) -> float:
    """2 x output elements x the inner dimension (of A, the first operand: never a weight
    here, so its shape is in the profile)."""
    transposed = any(a.name == "transA" and a.i for a in node.attribute)
    inner = inputs[0][-2] if transposed else inputs[0][-1]
    return 2.0 * float(np.prod(output)) * inner


def _part(node: onnx.NodeProto, weights: set[str], output: list[int], length: int) -> str:
    if node.op_type in MATRIX_PRODUCTS:
        if any(name in weights for name in node.input[:2]):
            return PARTS[0]
        return PARTS[1]
    if output[-2:] == [length, length]:
        return PARTS[2]
    return PARTS[3]


def _extras(
    engine: Engine, graph: str, shape: tuple[int, int], cotangents: int
) -> dict[str, np.ndarray]:
    """The graph's inputs beyond the model's for ``shape`` (rows, length): one-hot cotangents
    (``cotangents`` of them per row where it takes ``[B, K, L]``), and a path graph's point:
    integrated gradients' mid-path point from the pad baseline (``alpha`` 0.5, no noise)."""
    rows, length = shape
    inputs = engine.manifest.graphs[graph].inputs
    extras: dict[str, np.ndarray] = {}
    if "cotangent" in inputs:
        one_hot = np.eye(len(engine.labels), dtype=np.float32)
        if len(engine.input_shape(graph, "cotangent")) == 3:
            extras["cotangent"] = np.stack([one_hot[:cotangents]] * rows)
        else:
            extras["cotangent"] = one_hot[[0] * rows]
    if "noise" in inputs:
        hidden = int(engine.input_shape(graph, "noise")[-1])
        extras["alpha"] = np.full(rows, 0.5, dtype=np.float32)
        extras["keep"] = np.zeros((rows, length), dtype=np.float32)
        extras["fill"] = np.ones(rows, dtype=np.float32)
        extras["noise"] = np.zeros((rows, length, hidden), dtype=np.float32)
    return extras


def profile(
    artifact: Path,
    graph: str,
    batch: int,
    length: int,
    runs: int,
    threads: int,
    cotangents: int = 1,
) -> dict[str, Any]:
    """``graph``'s kernel time over ``runs`` runs after a warm-up, by operator type (the
    warm-up included) and by part of ``PARTS`` (the timed runs alone)."""
    engine = Engine(artifact, EngineSettings(provider="cpu", intra_op_threads=threads))
    rows = engine.encode(corpus.long_texts(batch), length)
    feed = dict(engine.batch(rows).feed)
    info = engine.manifest.graphs[graph]
    feed.update(_extras(engine, graph, feed["input_ids"].shape, cotangents))
    events, model = _profiled_runs(artifact / info.file, feed, runs, threads)
    by_type, names = _by_op_type(events)
    parts, flops = _by_part(events, model, length)
    total = sum(by_type.values())
    ranked = sorted(by_type.items(), key=lambda item: -item[1])
    return {
        "graph": graph,
        "batch": batch,
        "length": length,
        "runs": runs,
        "threads": threads,
        "kernel_ms_per_run": round(total / 1000 / (runs + 1), 2),
        "by_op_type": [
            {"op": op, "share": round(us / total, 4), "nodes": len(names[op])} for op, us in ranked
        ],
        "parts": _part_rows(parts, flops, runs),
    }


def _profiled_runs(
    path: Path, feed: dict[str, np.ndarray], runs: int, threads: int
) -> tuple[list[dict[str, Any]], onnx.ModelProto]:
    """ORT's profile of a warm-up and ``runs`` runs of the graph at ``path``, and the optimized
    graph whose nodes the profile names."""
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3  # not the warning that the optimized graph is this CPU's
        use_shared_cpu_arena(options)  # as the engine's sessions allocate
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        optimized = Path(tmp) / "optimized.onnx"  # the nodes the profile names
        options.optimized_model_filepath = str(optimized)
        session = ort.InferenceSession(str(path), options, ["CPUExecutionProvider"])
        session.run(None, feed)  # warm-up
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
        model = onnx.load(str(optimized), load_external_data=False)
    return events, model


def _is_kernel(event: dict[str, Any]) -> bool:
    return event.get("cat") == "Node" and event["name"].endswith("_kernel_time")


def _by_op_type(events: list[dict[str, Any]]) -> tuple[dict[str, float], dict[str, set[str]]]:
    """Kernel microseconds and the nodes that ran, per operator type."""
    by_type: dict[str, float] = defaultdict(float)
    names: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if _is_kernel(event):
            op = event["args"].get("op_name", "?")
            by_type[op] += event["dur"]
            names[op].add(event["name"])
    return by_type, names


def _by_part(
    events: list[dict[str, Any]], model: onnx.ModelProto, length: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Kernel microseconds per part, and the floating-point operations of the two matrix
    product parts, over the timed runs: the warm-up's nodes come before its model_run event."""
    nodes = {node.name: node for node in model.graph.node}
    weights = {initializer.name for initializer in model.graph.initializer}
    parts: dict[str, float] = dict.fromkeys(PARTS, 0.0)
    flops: dict[str, float] = dict.fromkeys(PARTS[:2], 0.0)
    warm_up = True
    for event in events:
        if event.get("cat") == "Session" and event["name"] == "model_run":
            warm_up = False
        if warm_up or not _is_kernel(event):
            continue
        node = nodes.get(event["name"].removesuffix("_kernel_time"))
        outputs = _shapes(event, "output_type_shape")
        if node is None or not outputs:
            continue
        part = _part(node, weights, outputs[0], length)
        parts[part] += event["dur"]
        if part in flops:
            flops[part] += _flops(node, _shapes(event, "input_type_shape"), outputs[0])
    return parts, flops


def _part_rows(parts: dict[str, float], flops: dict[str, float], runs: int) -> list[dict[str, Any]]:
    """A row per part that took any time: per run, its share, and the matrix products'
    GFLOP/s."""
    timed = sum(parts.values())
    return [
        {
            "part": part,
            "ms_per_run": round(us / 1000 / runs, 2),
            "share": round(us / timed, 4),
            **({"gflop_per_s": round(flops[part] / us / 1000, 1)} if part in flops else {}),
        }
        for part, us in parts.items()
        if us
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--graph", default="attribution")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--cotangents", type=int, default=1, help="per row, for a graph that takes [B, K, L]"
    )
    args = parser.parse_args()
    result = profile(
        args.artifact,
        args.graph,
        args.batch,
        args.length,
        args.runs,
        args.threads,
        args.cotangents,
    )
    print(f"{result['graph']}: {result['kernel_ms_per_run']} ms of kernels per run")
    for row in result["by_op_type"][:12]:
        print(f"  {row['op']:<24} {100 * row['share']:5.1f}%  ({row['nodes']} nodes)")
    for row in result["parts"]:
        rate = f", {row['gflop_per_s']} GFLOP/s" if "gflop_per_s" in row else ""
        print(f"  {row['part']:<28} {row['ms_per_run']:8.1f} ms  {100 * row['share']:5.1f}%{rate}")


if __name__ == "__main__":
    main()
