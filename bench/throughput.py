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

import numpy as np

from gradlight.bench import engine_calls
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


def _method(
    name: str, model_dir: Path, artifact: Path, provider: str
) -> Callable[[Sequence[str], int], Any]:
    """One timed method, loaded now (and freed by the caller before the next one loads, so
    that a large batch of one never runs out of device memory for another's caches)."""
    if name in ("reference", "eager-best"):
        from gradlight.bench.eager import EagerMethod

        return EagerMethod(
            model_dir, name, device="cuda" if provider == "cuda" else "cpu"
        ).attribute
    from gradlight.runtime.execution.engine import Engine
    from gradlight.runtime.settings import EngineSettings

    engine = Engine(
        artifact, EngineSettings(provider=provider, precision=name.removeprefix("ort-"))
    )

    def attribute(texts: Sequence[str], length: int) -> tuple[Any, Any, Any]:
        batch = engine.batch(engine.encode(texts, length))
        logits, scores = engine_calls.attribute_all(engine, batch)
        return logits, scores, batch.attention_mask

    return attribute


def _artifact(
    head: Path, work_dir: Path, count: int, printer: Callable[[str], None]
) -> tuple[Path, bool]:
    """The head's artifact with fp16 graphs, or without them when fp16 fails its validation
    (the fp32 figures are still worth having)."""
    from gradlight.bench.models import cached_artifact
    from gradlight.export.errors import ValidationFailedError

    target = work_dir / f"artifact-{count}-labels"
    try:
        return cached_artifact(head, target, printer, fp16=True), True
    except ValidationFailedError as exc:
        printer(f"fp16 failed its validation; measuring fp32 only: {exc}")
        return cached_artifact(head, target, printer), False


def _agreement(half: tuple[Any, Any, Any], full: tuple[Any, Any, Any]) -> dict[str, float]:
    """fp16 against fp32 on the device, on the timed batch: as export validates on the CPU."""
    from gradlight.export.half_precision import top3_agreement
    from gradlight.runtime.execution.scores import normalize_scores

    (half_logits, half_scores, mask), (full_logits, full_scores, _) = half, full
    scale = max(1.0, float(np.max(np.abs(full_logits))))
    normalized = normalize_scores(half_scores, mask) - normalize_scores(full_scores, mask)
    return {
        "logits_max_abs_diff_relative": float(np.max(np.abs(half_logits - full_logits))) / scale,
        "normalized_scores_max_abs_diff": float(np.max(np.abs(normalized))),
        "top3_token_agreement": top3_agreement(half_scores, full_scores, mask),
    }


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
    saved: Callable[[dict[str, Any]], None] = lambda report: None,
) -> dict[str, Any]:
    """Time every method over the sweep; ``saved`` gets the report after every row (a run cut
    short keeps what it measured)."""
    from gradlight.bench.models import reheaded

    report, flops = _report_head(model_dir, provider, length, peaks)
    sweep = _Sweep(provider, batches, length, repeats, flops, report, printer, saved)
    for count in labels:
        head = reheaded(model_dir, count, work_dir / f"model-{count}-labels")
        artifact, has_fp16 = _artifact(head, work_dir, count, printer)
        names = ["reference", "eager-best", "ort-fp32"] + (["ort-fp16"] if has_fp16 else [])
        outputs: dict[tuple[str, int], Any] = {}
        for name in names:  # one method loaded at a time, freed before the next
            outputs.update(sweep.measure(name, count, head, artifact))
        if has_fp16:
            for batch in batches:
                agreement = _agreement(outputs[("ort-fp16", batch)], outputs[("ort-fp32", batch)])
                report["fp16_agreement"].append({"labels": count, "batch": batch, **agreement})
        saved(report)
    return report


def _report_head(
    model_dir: Path, provider: str, length: int, peaks: tuple[float, float] | None
) -> tuple[dict[str, Any], float]:
    """The report's machine, model and FLOP figures, with no rows yet; and the FLOPs of one
    text's forward."""
    import torch

    device_name = torch.cuda.get_device_name(0) if provider == "cuda" else cpu_name()
    if peaks is None and provider == "cuda":
        peaks = next((peak for key, peak in PEAKS.items() if key in device_name), None)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    flops = forward_flops(config, length)
    report = {
        "device": device_name,
        "provider": provider,
        "cpu": cpu_name(),
        "cores": cores_available(),
        "length": length,
        "forward_gflop_per_text": round(flops / 1e9, 2),
        "peak_tflops": {"fp16": peaks[0], "fp32": peaks[1]} if peaks else None,
        "rows": [],
        "fp16_agreement": [],
    }
    return report, flops


class _Sweep:
    """One method over the batch sizes: a report row per batch size."""

    def __init__(
        self,
        provider: str,
        batches: Sequence[int],
        length: int,
        repeats: int,
        flops: float,
        report: dict[str, Any],
        printer: Callable[[str], None],
        saved: Callable[[dict[str, Any]], None],
    ) -> None:
        import torch

        self.provider, self.batches, self.length, self.repeats = provider, batches, length, repeats
        self.report, self.printer, self.saved = report, printer, saved
        self.synchronize = torch.cuda.synchronize if provider == "cuda" else (lambda: None)
        self.flops = flops  # of one text's forward

    def measure(
        self, name: str, labels: int, head: Path, artifact: Path
    ) -> dict[tuple[str, int], Any]:
        """Time ``name`` at every batch size; the ORT methods' outputs, by (name, batch)."""
        import gc

        import torch

        method = _method(name, head, artifact, self.provider)
        outputs = {}
        for batch in self.batches:
            texts = [TEXT] * batch
            timed = lambda t=texts, m=method: m(t, self.length)  # noqa: E731
            times = _time(timed, self.repeats, self.synchronize)
            if name.startswith("ort-"):
                outputs[(name, batch)] = method(texts, self.length)
            row = self._row(name, labels, batch, latency(times))
            self.report["rows"].append(row)
            self.printer(json.dumps(row))
            self.saved(self.report)
        del method
        gc.collect()
        if self.provider == "cuda":
            torch.cuda.empty_cache()
        return outputs

    def _row(self, name: str, labels: int, batch: int, summary: dict[str, Any]) -> dict[str, Any]:
        per_text = (1 + labels) * self.flops
        texts_per_s = batch / (summary["median_ms"] / 1000)
        row = {
            "labels": labels,
            "batch": batch,
            "method": name,
            **summary,
            "texts_per_s": round(texts_per_s, 3),  # 1 decimal was 1% off at 2 texts/s
            "tflops": round(texts_per_s * per_text / 1e12, 2),
        }
        peaks = self.report["peak_tflops"]
        if peaks is not None:
            peak = peaks["fp16"] if name == "ort-fp16" else peaks["fp32"]
            row["fraction_of_peak"] = round(texts_per_s * per_text / (peak * 1e12), 4)
        return row


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
    if report["fp16_agreement"]:
        lines += [
            "",
            "fp16 against fp32 on this device (thresholds: 0.02, 0.05, 0.9):",
            "",
            "| L | batch | logits (relative) | normalized scores | top-3 agreement |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {a['labels']} | {a['batch']} | {a['logits_max_abs_diff_relative']:.2e} | "
            f"{a['normalized_scores_max_abs_diff']:.2e} | {a['top3_token_agreement']:.3f} |"
            for a in report["fp16_agreement"]
        ]
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

    def save(report: dict[str, Any]) -> None:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")

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
        save,
    )
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
