"""Fuse the forward graph with ONNX Runtime's transformer optimizer and measure the gain.

Only the forward graph is fused: the optimizer refuses fusions where backward ops consume
forward intermediates, so the attribution graphs stay as exported (docs/export-internals.md).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from gradlight.artifact.manifest import FORWARD, GraphInfo
from gradlight.export.batches import make_batch
from gradlight.export.model_loading import LoadedClassifier
from gradlight.export.validation import validate_graphs

log = logging.getLogger(__name__)

_LATENCY_RUNS = 10
_UNFUSED_FORWARD_FILE = "forward.unfused.onnx"
_SLOWER_BEYOND_NOISE = 1.05
"""Keep the unfused graph when the fused one is more than 5% slower (medians of 10 runs each,
the two graphs in turns)."""


def optimize_forward_graph(source: Path, destination: Path, model_type: str) -> dict[str, int]:
    """Write the fused graph to ``destination``; return the fused-operator counts (non-zero).
    ``model_type``: what the optimizer fuses the graph as (export/architectures.py)."""
    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        # num_heads=0, hidden_size=0: detected from the graph.
        optimized = optimize_model(str(source), model_type=model_type, num_heads=0, hidden_size=0)
    finally:
        quiet.setLevel(level)
    optimized.save_model_to_file(str(destination))
    fused = optimized.get_fused_operator_statistics()
    return {name: int(count) for name, count in fused.items() if count}


def median_latencies_ms(
    paths: Sequence[Path], feed: Mapping[str, np.ndarray], threads: int
) -> list[float]:
    """Median wall time of one ORT CPU run of each graph on ``feed`` (after warm-up), the
    graphs run in turns, so that a machine busy with something else slows each alike."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    sessions = [
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for path in paths
    ]
    for session in sessions:
        for _ in range(2):
            session.run(None, dict(feed))
    times: list[list[float]] = [[] for _ in sessions]
    for _ in range(_LATENCY_RUNS):
        for session, taken in zip(sessions, times, strict=True):
            started = time.perf_counter()
            session.run(None, dict(feed))
            taken.append(time.perf_counter() - started)
    return [1000.0 * statistics.median(taken) for taken in times]


def fuse_forward(
    staging: Path, info: GraphInfo, loaded: LoadedClassifier, *, enabled: bool, threads: int
) -> dict[str, Any]:
    """Replace the forward graph by its fused version when that still validates."""
    if not enabled:
        return {"fused": False, "reason": "disabled (--no-optimize)"}
    fuse_as = loaded.architecture.fuse_as
    if fuse_as is None:
        return {"fused": False, "reason": f"no fusion known for {loaded.spec.model_type}"}
    unfused = staging / _UNFUSED_FORWARD_FILE
    os.replace(staging / info.file, unfused)
    try:
        fusions = optimize_forward_graph(unfused, staging / info.file, fuse_as)
        report = validate_graphs(staging, {FORWARD: info}, loaded)
    except Exception as exc:  # the optimizer raises many types; fall back to the plain graph
        report, fusions, failure = None, {}, f"optimizer failed: {exc!r}"
    else:
        failure = None if report.passed else "fused graph failed validation"
    if failure is not None:
        os.replace(unfused, staging / info.file)
        return {"fused": False, "reason": failure}
    length = min(128, loaded.spec.max_length)
    feed = make_batch(loaded, [length] * 8, seed=7)
    before, after = median_latencies_ms([unfused, staging / info.file], feed, threads)
    benchmark = {
        "batch": 8,
        "sequence": length,
        "threads": threads,
        "unfused_median_ms": round(before, 3),
        "fused_median_ms": round(after, 3),
        "speedup": round(before / after, 3),
    }
    if after > before * _SLOWER_BEYOND_NOISE:
        os.replace(unfused, staging / info.file)
        return {
            "fused": False,
            "reason": "the fused graph was slower",
            "fusions": fusions,
            "latency_benchmark": benchmark,
        }
    unfused.unlink()
    return {"fused": True, "fusions": fusions, "latency_benchmark": benchmark}
