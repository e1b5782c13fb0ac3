"""Where the engine's time goes: ONNX Runtime's profiler over one graph, summed by operator type.

    python -m gradlight.bench.profile ARTIFACT_DIR [--graph attribution] [--batch 8]
        [--length 128] [--runs 5] [--threads N]

Runs the graph on texts of the bench corpus cut to ``--length`` tokens, with ORT's profiler on,
and prints each operator type's share of the kernel time (and the node count), so a missed
target can be explained by what dominates.
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
import onnxruntime as ort

from gradlight.bench import corpus
from gradlight.runtime.cpu_arena import use_shared_cpu_arena
from gradlight.runtime.engine import Engine
from gradlight.runtime.settings import EngineSettings


def profile(
    artifact: Path, graph: str, batch: int, length: int, runs: int, threads: int
) -> dict[str, Any]:
    engine = Engine(artifact, EngineSettings(provider="cpu", intra_op_threads=threads))
    rows = engine.encode(corpus.long_texts(batch), length)
    feed = dict(engine.batch(rows).feed)
    info = engine.manifest.graphs[graph]
    if "cotangent" in info.inputs:
        feed["cotangent"] = np.eye(len(engine.labels), dtype=np.float32)[[0] * batch]
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        use_shared_cpu_arena(options)  # as the engine's sessions allocate
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(str(artifact / info.file), options, ["CPUExecutionProvider"])
        session.run(None, feed)  # warm-up
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    by_type: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"].get("op_name", "?")
            by_type[op] += event["dur"]
            nodes[op].add(event["name"])
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
            {"op": op, "share": round(us / total, 4), "nodes": len(nodes[op])} for op, us in ranked
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--graph", default="attribution")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args()
    result = profile(args.artifact, args.graph, args.batch, args.length, args.runs, args.threads)
    print(f"{result['graph']}: {result['kernel_ms_per_run']} ms of kernels per run")
    for row in result["by_op_type"][:12]:
        print(f"  {row['op']:<24} {100 * row['share']:5.1f}%  ({row['nodes']} nodes)")


if __name__ == "__main__":
    main()
