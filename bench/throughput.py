"""Throughput at a fixed length over a batch sweep: eager PyTorch (the reference way and
eager-best) against gradlight's engine in fp32 and fp16, on one device, in one run; with the
fraction of the device's physical limit each reaches.

    python -m gradlight.bench.throughput MODEL_DIR [--provider cuda] [--labels 2 10]
        [--batches 1 2 4 8 16 32 64 128 256] [--length 128] [--out throughput.json]

Every text is cut to exactly ``--length`` tokens, so every method reads the same tokens and
the FLOPs per text are known: a forward pass costs ``2 S (4 h^2 + 2 h i) + 4 S^2 h`` per layer
(S tokens, hidden h, intermediate i: 22.4 GFLOP for BERT-base at 128 tokens), and each
label's backward pass to the input about the same again, so attributing L labels costs about
``(1 + L)`` forward passes. The fraction of the limit is achieved FLOP/s over the device's
dense peak for the precision (``--peak-tflops``; known GPUs have defaults: H100 SXM 989 fp16,
67 fp32 without TF32).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gradlight.bench.machine import cores_available, cpu_name
from gradlight.bench.stats import latency

BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# Dense peak TFLOP/s by GPU name fragment: (fp16 tensor cores, fp32 without TF32).
PEAKS = {"H100": (989.0, 67.0), "H200": (989.0, 67.0)}
TEXT = (
    "The patient is a 67 year old man with a history of hypertension and type 2 diabetes who "
    "presents with two days of worsening shortness of breath and a productive cough. He denies "
    "chest pain, fever or chills. On examination he is tachypneic with crackles at the right "
    "base. Chest x-ray shows a right lower lobe consolidation consistent with pneumonia. "
) * 4


def forward_flops(config: dict[str, Any], length: int) -> float:
    """FLOPs of one forward pass over ``length`` tokens (matrix products and attention)."""
    hidden = config.get("hidden_size") or config["dim"]
    intermediate = config.get("intermediate_size") or config.get("hidden_dim") or 4 * hidden
    layers = config.get("num_hidden_layers") or config["n_layers"]
    per_layer = 2 * length * (4 * hidden**2 + 2 * hidden * intermediate) + 4 * length**2 * hidden
    return float(layers * per_layer)


def _time(call: Callable[[], object], repeats: int, synchronize: Callable[[], None]) -> list[float]:
    call()  # warm-up (allocations, kernel selection)
    synchronize()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        synchronize()
        times.append(time.perf_counter() - started)
    return times


def _methods(
    model_dir: Path, artifact: Path, provider: str
) -> dict[str, Callable[[Sequence[str], int], object]]:
    from gradlight.bench.eager import EagerMethod
    from gradlight.runtime.engine import Engine
    from gradlight.runtime.settings import EngineSettings

    device = "cuda" if provider == "cuda" else "cpu"
    methods: dict[str, Callable[[Sequence[str], int], object]] = {}
    for name in ("reference", "eager-best"):
        eager = EagerMethod(model_dir, name, device=device)
        methods[name] = eager.attribute
    for precision in ("fp32", "fp16"):
        engine = Engine(artifact, EngineSettings(provider=provider, precision=precision))

        def attribute(texts: Sequence[str], length: int, engine: Engine = engine) -> object:
            return engine.attribute_all(engine.batch(engine.encode(texts, length)))

        methods[f"ort-{precision}"] = attribute
    return methods


def run(
    model_dir: Path,
    work_dir: Path,
    provider: str,
    labels: Sequence[int],
    batches: Sequence[int],
    length: int,
    repeats: int,
    peaks: tuple[float, float] | None,
    printer: Callable[[str], None],
) -> dict[str, Any]:
    import torch

    from gradlight.bench.models import cached_artifact, reheaded

    synchronize = torch.cuda.synchronize if provider == "cuda" else (lambda: None)
    device_name = torch.cuda.get_device_name(0) if provider == "cuda" else cpu_name()
    if peaks is None and provider == "cuda":
        peaks = next((peak for key, peak in PEAKS.items() if key in device_name), None)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    flops = forward_flops(config, length)
    rows = []
    for count in labels:
        head = reheaded(model_dir, count, work_dir / f"model-{count}-labels")
        artifact = cached_artifact(head, work_dir / f"artifact-{count}-labels", printer, fp16=True)
        methods = _methods(head, artifact, provider)
        per_text = (1 + count) * flops
        for batch in batches:
            texts = [TEXT] * batch
            for name, method in methods.items():
                times = _time(lambda m=method, t=texts: m(t, length), repeats, synchronize)
                summary = latency(times)
                texts_per_s = batch / (summary["median_ms"] / 1000)
                precision = "fp16" if name == "ort-fp16" else "fp32"
                row = {
                    "labels": count,
                    "batch": batch,
                    "method": name,
                    **summary,
                    "texts_per_s": round(texts_per_s, 1),
                    "tflops": round(texts_per_s * per_text / 1e12, 2),
                }
                if peaks is not None:
                    peak = peaks[0] if precision == "fp16" else peaks[1]
                    row["fraction_of_peak"] = round(texts_per_s * per_text / (peak * 1e12), 4)
                rows.append(row)
                printer(json.dumps(row))
    return {
        "device": device_name,
        "provider": provider,
        "cpu": cpu_name(),
        "cores": cores_available(),
        "length": length,
        "forward_gflop_per_text": round(flops / 1e9, 2),
        "peak_tflops": {"fp16": peaks[0], "fp32": peaks[1]} if peaks else None,
        "rows": rows,
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['device']} ({report['provider']}), {report['length']} tokens, "
        f"forward {report['forward_gflop_per_text']} GFLOP per text",
        "",
        "| L | batch | method | median ms | p90 ms | texts/s | TFLOP/s | of peak |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        share = row.get("fraction_of_peak")
        lines.append(
            f"| {row['labels']} | {row['batch']} | {row['method']} | {row['median_ms']} | "
            f"{row['p90_ms']} | {row['texts_per_s']} | {row['tflops']} | "
            f"{'' if share is None else f'{100 * share:.1f} %'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gradlight.bench.throughput")
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--provider", choices=("cpu", "cuda"), default="cuda")
    parser.add_argument("--labels", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--peak-tflops", type=float, nargs=2, metavar=("FP16", "FP32"), default=None
    )
    parser.add_argument("--work-dir", type=Path, default=Path("throughput-work"))
    parser.add_argument("--out", type=Path, default=Path("throughput.json"))
    args = parser.parse_args(argv)
    report = run(
        args.model_dir,
        args.work_dir,
        args.provider,
        args.labels,
        args.batches,
        args.length,
        args.repeats,
        tuple(args.peak_tflops) if args.peak_tflops else None,
        lambda line: print(line, file=sys.stderr, flush=True),
    )
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
