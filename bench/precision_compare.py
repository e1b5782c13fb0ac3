"""The engine at each precision against the eager anchors at equal padding, in ONE process,
interleaved (each round runs every method once), so that a busy machine slows them alike:

    python -m gradlight.bench.precision_compare MODEL_DIR ARTIFACT [--lengths 16 64 128 256]

8 long notes of the corpus cut to exactly N tokens, every label attributed: the engine's
all-labels graph (``engine_calls.attribute_all``) in fp32 and in bf16 (``--precision bf16``: the
graphs that passed the gates at export), and bench/eager.py's anchors; the fp32 forward graph
(``engine_calls.forward``, the fused forward) as the unit of forward-equivalents; median of
``--rounds``. Prints one JSON object: per length, each method's median ms, the best eager
anchor, each engine's speedup over it, and each engine's attribution time over the fp32
forward's. ``gradlight bench`` measures the same against the serving API, each
method in its own process (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from gradlight.bench import engine_calls
from gradlight.bench.anchors import ANCHORS, unavailable_here
from gradlight.bench.corpus import long_texts
from gradlight.bench.eager import EagerMethod
from gradlight.bench.machine import cpu_name
from gradlight.runtime.execution.cpu_features import cpu_flags
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.settings import EngineSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 128, 256])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {
        p: EngineSettings(intra_op_threads=args.threads, precision=p) for p in args.precisions
    }
    engines = {p: Engine(args.artifact, s) for p, s in settings.items()}
    forward = engines.get("fp32") or Engine(
        args.artifact, EngineSettings(intra_op_threads=args.threads, precision="fp32")
    )
    for engine in engines.values():
        engine.warm_up()
    anchors = {n: EagerMethod(args.model_dir, n) for n in ANCHORS if unavailable_here(n) is None}
    texts = long_texts(8)
    figures: dict[str, object] = {"cpu": cpu_name(), "flags": cpu_flags(), "threads": args.threads}
    for length in args.lengths:
        first = engines[args.precisions[0]]
        batch = first.batch(first.encode(texts, length))
        runs = {
            f"engine-{p}": partial(engine_calls.attribute_all, e, batch) for p, e in engines.items()
        }
        runs["forward-fp32"] = partial(engine_calls.forward, forward, batch)
        runs.update({n: partial(m.attribute, texts, length) for n, m in anchors.items()})
        times: dict[str, list[float]] = {name: [] for name in runs}
        for run in runs.values():
            run()  # warm-up
        for _ in range(args.rounds):
            for name, run in runs.items():
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        median = {name: 1000 * float(np.median(values)) for name, values in times.items()}
        best = min(anchors, key=lambda name: median[name])
        figures[str(length)] = {
            "median_ms": median,
            "best_eager": best,
            "speedup_vs_best_eager": {
                f"engine-{p}": median[best] / median[f"engine-{p}"] for p in engines
            },
            "forward_equivalents": {
                f"engine-{p}": median[f"engine-{p}"] / median["forward-fp32"] for p in engines
            },
        }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
