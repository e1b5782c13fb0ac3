"""Peak RSS of the serving code on the largest path requests: integrated gradients for every
label of a long text, at growing step counts, with ``gradlight serve``'s batch settings.

    python -m gradlight.bench.path_memory ARTIFACT [--steps 16 64] [--tokens 512]
        [--precision auto] [--threads 2]

Per step count, a process of its own (its own ``VmHWM``): the engine, batcher and attributor
as the server runs them, a warm-up request, then one request (every label of one text of
``--tokens`` tokens: the bench's long notes joined, truncated there). Prints one JSON line per step
count: the peak RSS before the request (the engine loaded, warm) and after it, the seconds it
took, its path graph calls and their largest rows x width (the batcher's token budget cuts a
long text's rows into calls: the peak does not grow with the steps).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from gradlight.bench.corpus import long_texts
from gradlight.bench.machine import cpu_name, peak_rss_mb


async def _measure(artifact: Path, steps: int, tokens: int, precision: str, threads: int) -> dict:
    from gradlight.artifact.manifest import ATTRIBUTION_PATH, ATTRIBUTION_PATH_LABELS
    from gradlight.runtime.execution.batcher import DynamicBatcher
    from gradlight.runtime.execution.engine import Engine
    from gradlight.runtime.explanation.attributor import Attributor
    from gradlight.runtime.explanation.requests import AttributeOptions
    from gradlight.runtime.settings import BatchSettings, EngineSettings

    engine = Engine(artifact, EngineSettings(precision=precision, intra_op_threads=threads))
    batcher = DynamicBatcher(engine, BatchSettings())
    batcher.start()
    attributor = Attributor(engine, batcher, 64)
    options = AttributeOptions(method="integrated_gradients", steps=steps, max_length=tokens)
    await attributor.run(["A short note to warm up."], options)
    text = " ".join(long_texts(3))  # cut at ``tokens`` by max_length
    before = peak_rss_mb()
    started = time.perf_counter()
    (result,) = await attributor.run([text], options)
    seconds = time.perf_counter() - started
    paths = (ATTRIBUTION_PATH, ATTRIBUTION_PATH_LABELS)
    calls = [call for call in batcher.history if call.graph in paths][1:]  # after the warm-up
    await batcher.close()
    return {
        "steps": steps,
        "labels": len(engine.labels),
        "tokens": len(result.encoded),
        "precision": engine.precision,
        "peak_rss_mb_before": before,
        "peak_rss_mb_after": peak_rss_mb(),
        "seconds": round(seconds, 2),
        "path_calls": len(calls),
        "largest_call_rows_x_width": max(call.rows * call.width for call in calls),
        "threads": threads,
        "cpu": cpu_name(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)  # a child's steps
    args = parser.parse_args()
    if args.one:
        line = asyncio.run(
            _measure(args.artifact, args.one, args.tokens, args.precision, args.threads)
        )
        print(json.dumps(line), flush=True)
        return
    for steps in args.steps:  # each in a process of its own: its own peak
        subprocess.run(
            [
                sys.executable, "-m", "gradlight.bench.path_memory", str(args.artifact),
                "--one", str(steps), "--tokens", str(args.tokens),
                "--precision", args.precision, "--threads", str(args.threads),
            ],
            check=True,
        )  # fmt: skip


if __name__ == "__main__":
    main()
