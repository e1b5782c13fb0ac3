"""Fuse the forward graph with ONNX Runtime's transformer optimizer and measure the gain.

Only the forward graph is fused: the optimizer refuses fusions where backward ops consume
forward intermediates, so the attribution graphs stay as exported (export-findings.md).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger(__name__)

_LATENCY_RUNS = 10


def optimize_forward_graph(source: Path, destination: Path) -> dict[str, int]:
    """Write the fused graph to ``destination``; return the fused-operator counts (non-zero)."""
    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        # num_heads=0, hidden_size=0: detected from the graph. All four supported
        # architectures are BERT-shaped encoders for the optimizer's purposes.
        optimized = optimize_model(str(source), model_type="bert", num_heads=0, hidden_size=0)
    finally:
        quiet.setLevel(level)
    optimized.save_model_to_file(str(destination))
    fused = optimized.get_fused_operator_statistics()
    return {name: int(count) for name, count in fused.items() if count}


def median_latency_ms(path: Path, feed: Mapping[str, np.ndarray], threads: int) -> float:
    """Median wall time of one ORT CPU run of ``path`` on ``feed`` (after warm-up)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(2):
        session.run(None, dict(feed))
    times = []
    for _ in range(_LATENCY_RUNS):
        started = time.perf_counter()
        session.run(None, dict(feed))
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)
