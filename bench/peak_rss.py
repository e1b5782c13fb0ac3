"""Peak RSS of one method's process over the bench's largest cells, without timing anything:

    python -m gradlight.bench.peak_rss METHOD MODEL_DIR ARTIFACT [--threads 2] [--one-label-too]

METHOD: ``engine`` (fp32), ``engine-bf16`` (or another precision ``gradlight serve
--precision`` takes), or an eager anchor of bench/anchors.py (``eager-best``, ``eager-bf16``,
...). The process loads the method as the bench does (the engine through the server's API,
bench/methods.py; the anchors from bench/eager.py), attributes every label of 8 long notes at
16, 64, 128 and 256 tokens, then of 32 notes of the realistic mix at 128 tokens (with
``--one-label-too``, all of it once more for the first label only: a label subset, which the
engine serves with its cotangent graph), and prints one JSON line with its peak RSS
(``VmHWM``). Peak RSS does not depend on the machine's load, so it
can be measured where timings cannot; run each method in its own process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gradlight.bench.corpus import long_texts, notes
from gradlight.bench.machine import cpu_name, peak_rss_mb

LENGTHS = (16, 64, 128, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("method")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one-label-too", action="store_true")
    args = parser.parse_args()
    method: object
    if args.method.startswith("engine"):
        from gradlight.bench.methods import EngineMethod

        precision = args.method.partition("-")[2] or "fp32"
        method = EngineMethod(args.artifact, "cpu", args.threads, precision)
    else:
        import torch

        from gradlight.bench.eager import EagerMethod

        torch.set_num_threads(args.threads)
        method = EagerMethod(args.model_dir, args.method)
    for labels in (None, [0]) if args.one_label_too else (None,):
        for length in LENGTHS:
            method.attribute(long_texts(8), length, labels)  # type: ignore[attr-defined]
        method.attribute(notes(32), 128, labels)  # type: ignore[attr-defined]
    if hasattr(method, "close"):  # the engine's batcher, stopped before its loop goes away
        method.close()
    figures = {"method": args.method, "model": args.model_dir.name, "cpu": cpu_name()}
    if args.one_label_too:
        figures["labels"] = "all, then the first"
    print(json.dumps({**figures, "threads": args.threads, "peak_rss_mb": round(peak_rss_mb())}))


if __name__ == "__main__":
    main()
