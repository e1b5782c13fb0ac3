"""A text longer than the model's window: gradlight reading it whole as windows, against the
best eager PyTorch for the same windows, and against gradlight reading its first window only.

    python -m gradlight.bench.long_texts MODEL_DIR ARTIFACT [--tokens 4000] [--repeats 7]
        [--ig-repeats 3] [--steps 32] [--threads 2] [--no-eager-bf16] [--quick] [--name NAME]
        [--out DIR]   # writes DIR/long-texts.json and DIR/long-texts.md

The text: a clinical note of about ``--tokens`` tokens (special tokens included, with the
artifact's tokenizer): sentences of bench/corpus.py's clinical pool drawn with a fixed seed under
section headings, so the same note on every machine. Every label is attributed, by input x
gradient and by integrated gradients (``--steps`` Gauss-Legendre steps, pad baseline: the
runtime's defaults), in cells:

- ``windows``: the note read whole (``long_texts`` ``windows``, the default stride of half a
  window, the model's aggregation) by every side;
- ``truncate``: the note cut at the window (``long_texts`` ``truncate``), gradlight only: what
  reading the whole note costs over its first window.

The sides (bench/long_texts_sides.py says what each computes), each a process of its own
(bench/long_texts_worker.py; its peak RSS is its own), all loaded first, every cell's rounds
taken in turns (bench/turns.py: one side at a time, the order reversed every other round):

- ``eager``: the best eager PyTorch for the same windows, fp32, the faster of SDPA and eager
  attention (timed on the cell's warm-up text); the reference the others are checked against;
- ``eager-bf16``: the same under bf16 autocast, where the CPU has native bf16;
- ``served-fp32``: gradlight's serving code in process (Engine, the batcher with the server's
  defaults, Attributor), fp32;
- ``served-default``: the same at the server's default precision (``auto``: bf16 where the
  artifact, the CPU and OpenVINO allow it); left out, and said so, where that is fp32.

Per side and cell: one untimed warm-up (input x gradient: the note; integrated gradients: its
first sentences, two windows' worth), then ``--repeats`` rounds (integrated gradients on windows:
``--ig-repeats``) of one request, or one eager call, for the note. Reported: median, p10 and p90
of the rounds, texts/s and tokens/s at the median, the peak RSS over the cell; per served side
its speedup over each eager side (median over rounds of eager time / served time, rounds paired
in turn order), and windows time / truncate time; and each side's answer against ``eager``'s
per window (bench/long_texts_report.py). ``--threads`` for every side (torch intra-op, ONNX
Runtime and OpenVINO). ``--quick``: a note of 5 x the window's tokens, 4 steps, 2 rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.artifact.manifest import load_manifest
from gradlight.bench import corpus, turns
from gradlight.bench.long_texts_report import markdown, summarize
from gradlight.bench.long_texts_sides import TRUNCATE, WINDOWS, document_windows
from gradlight.bench.machine import machine
from gradlight.runtime.execution.cpu_features import cpu_flags
from gradlight.runtime.execution.tokenization import TextEncoder
from gradlight.wire.methods import (
    DEFAULT_STEPS,
    GAUSS_LEGENDRE,
    INPUT_X_GRADIENT,
    INTEGRATED_GRADIENTS,
)

Printer = Callable[[str], None]
SECTIONS = (
    "Chief complaint:",
    "History of present illness:",
    "Past medical history:",
    "Medications:",
    "Physical examination:",
    "Results:",
    "Assessment and plan:",
)
PER_SECTION = 6
EAGER, EAGER_BF16, SERVED_FP32, SERVED_DEFAULT = (
    "eager", "eager-bf16", "served-fp32", "served-default",
)  # fmt: skip
EAGER_SIDES = (EAGER, EAGER_BF16)


def clinical_note(encoder: TextEncoder, tokens: int) -> str:
    """The first sentences, drawn from the clinical pool with a fixed seed under section
    headings, that make ``tokens`` tokens or more with ``encoder``: a longer note starts with
    a shorter one."""
    rng = random.Random(corpus.SEED)
    parts: list[str] = []
    count = 0
    while True:
        if count % PER_SECTION == 0:
            parts.append(SECTIONS[(count // PER_SECTION) % len(SECTIONS)])
        parts.append(rng.choice(corpus.CLINICAL))
        count += 1
        text = " ".join(parts)
        if len(encoder.encode([text], 1 << 20)[0]) >= tokens:
            return text


def _cells(args: argparse.Namespace, note: str, warmup: str, max_length: int) -> list[dict]:
    ig = {"steps": args.steps, "integration": GAUSS_LEGENDRE}
    cells = []
    for method, extra in ((INPUT_X_GRADIENT, {}), (INTEGRATED_GRADIENTS, ig)):
        short = "ixg" if method == INPUT_X_GRADIENT else "ig"
        for long_texts in (TRUNCATE, WINDOWS):
            whole = long_texts == WINDOWS
            cells.append(
                {
                    "name": f"{short}-{long_texts}",
                    "method": method,
                    "long_texts": long_texts,
                    "max_length": max_length,
                    "repeats": args.ig_repeats if whole and short == "ig" else args.repeats,
                    "sides": [*EAGER_SIDES, SERVED_FP32, SERVED_DEFAULT]
                    if whole
                    else [SERVED_FP32, SERVED_DEFAULT],
                    "text": note,
                    "warmup_text": note if short == "ixg" else warmup,
                    **extra,
                }
            )
    return cells


def _jobs(args: argparse.Namespace, cells: list[dict]) -> dict[str, dict[str, Any]]:
    common = {
        "artifact": str(args.artifact),
        "model_dir": str(args.model_dir),
        "threads": args.threads,
        "eager_tokens_per_call": args.eager_tokens_per_call,
    }
    sides = {
        EAGER: {"kind": "eager", "bf16": False},
        EAGER_BF16: {"kind": "eager", "bf16": True},
        SERVED_FP32: {"kind": "served", "precision": "fp32"},
        SERVED_DEFAULT: {"kind": "served", "precision": "auto"},
    }
    if args.no_eager_bf16:
        del sides[EAGER_BF16]
    return {
        side: {
            **common,
            **fields,
            "side": side,
            "method": side,  # bench/turns.py's name for it
            "cells": [cell for cell in cells if side in cell["sides"]],
        }
        for side, fields in sides.items()
    }


class _Worker(turns._Worker):
    """bench/turns.py's worker handle, on bench/long_texts_worker.py's process."""

    program = "gradlight.bench.long_texts_worker"


def measure(
    jobs: dict[str, dict[str, Any]], cells: list[dict], work: Path, printer: Printer
) -> tuple[dict[str, dict], dict[str, dict[str, np.ndarray]], dict[str, str]]:
    """Every side's result and answers, its cells' rounds taken in turns; and why a side was
    not measured, where one was not."""
    workers = {side: _Worker(job, work / f"{side}.json") for side, job in jobs.items()}
    results, skipped = {}, {}
    try:
        for side, worker in list(workers.items()):  # loaded side by side
            if not worker.loaded():
                skipped[side] = json.loads(worker.path.read_text(encoding="utf-8"))["unavailable"]
                del workers[side]
            elif side == SERVED_DEFAULT and worker.reply["precision"] == "fp32":
                skipped[side] = "the server's default precision is fp32 here: see served-fp32"
                worker.stop()
                del workers[side]
            else:
                reply = worker.reply
                printer(f"loaded {side} ({reply['precision']}) in {reply['load_seconds']} s")
        for side, why in skipped.items():
            printer(f"{side} not measured: {why}")
        for cell in cells:
            members = [workers[side] for side in cell["sides"] if side in workers]
            printer(f"{cell['name']}: {', '.join(w.method for w in members)}")
            rounds = cell["repeats"]
            repeats = {"cell_budget_s": 0, "min_repeats": rounds, "max_repeats": rounds}
            started = time.perf_counter()
            turns.cell_in_turns(cell["name"], members, repeats)
            printer(f"  {cell['repeats']} rounds in {time.perf_counter() - started:.0f} s")
        for side, worker in workers.items():
            results[side] = worker.finish()
    finally:
        for worker in workers.values():
            worker.stop()
    arrays = {}
    for side in results:
        with np.load(work / f"{side}.npz") as saved:
            arrays[side] = {key: saved[key] for key in saved.files}
    return results, arrays, skipped


def _cpuinfo_flags() -> str:
    """The CPU's flags as /proc/cpuinfo lists them (else those gradlight checks for)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next(
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("flags")
            )
    except (OSError, StopIteration):
        return " ".join(sorted(cpu_flags()))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "onnxruntime", "openvino"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def run(args: argparse.Namespace, printer: Printer) -> dict[str, Any]:
    manifest = load_manifest(args.artifact, verify_files=False)
    encoder = TextEncoder(args.artifact / manifest.tokenizer_dir / "tokenizer.json")
    max_length = args.max_length or manifest.max_length
    tokens = args.tokens or (5 * max_length if args.quick else 4000)
    note = clinical_note(encoder, tokens)
    warmup = clinical_note(encoder, max_length + max_length // 4)
    document, windows = document_windows(encoder, note, max_length)
    cells = _cells(args, note, warmup, max_length)
    on = {
        **machine(args.threads),
        "flags": _cpuinfo_flags(),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    printer(f"note: {len(document)} tokens, {len(windows)} windows of {max_length}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gl-long-texts-") as work:
        results, arrays, skipped = measure(_jobs(args, cells), cells, Path(work), printer)
    on["load_after"] = [round(x, 2) for x in os.getloadavg()]
    plan = {
        "model": args.name or args.model_dir.name,
        "artifact": str(args.artifact),
        "labels": list(manifest.labels),
        "max_length": max_length,
        "steps": args.steps,
        "integration": GAUSS_LEGENDRE,
        "baseline": "pad",
        "eager_tokens_per_call": args.eager_tokens_per_call,
        "machine": on,
        "versions": _versions(),
        "seconds": round(time.perf_counter() - started, 1),
        "not_measured": skipped,
    }
    return summarize(plan, cells, results, arrays, document, windows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path, help="the Hugging Face model (eager sides)")
    parser.add_argument("artifact", type=Path, help="its gradlight artifact (served sides)")
    parser.add_argument("--name", default="", help="the model's name in the report")
    parser.add_argument("--tokens", type=int, default=0, help="the note's length (4000)")
    parser.add_argument("--max-length", type=int, default=0, help="the window (the model's)")
    parser.add_argument("--repeats", type=int, default=7, help="rounds per cell")
    parser.add_argument("--ig-repeats", type=int, default=3, help="rounds, IG on windows")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="IG steps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eager-tokens-per-call", type=int, default=16384)
    parser.add_argument("--no-eager-bf16", action="store_true")
    parser.add_argument("--quick", action="store_true", help="5 windows, 4 steps, 2 rounds")
    parser.add_argument("--out", type=Path, default=Path("gradlight-long-texts"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.quick:
        args.repeats, args.ig_repeats, args.steps = 2, 2, 4
    report = run(args, lambda line: print(line, file=sys.stderr, flush=True))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "long-texts.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    text = markdown(report)
    (args.out / "long-texts.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
