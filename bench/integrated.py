"""Integrated gradients: gradlight served against the best eager PyTorch and Captum, same texts,
same tokens, same threads, one run, over a grid of cells.

    python -m gradlight.bench.integrated MODEL_DIR [ARTIFACT] [--label-counts 2 3 10]
        [--batches 1 8] [--lengths 30 128 512] [--steps 32] [--texts 8] [--threads T]
        [--captum-max-tokens N] [--no-faithful] [--out ig.json] [--markdown ig.md]

(``gradlight bench --integrated-gradients`` adds the same section to bench.json and bench.md.)

The ways, each in a worker process of its own (bench/integrated_worker.py), all loaded first,
each cell's rounds taken in turns across them (bench/integrated_turns.py), with ``threads``
torch intra-op threads or ONNX Runtime intra-op threads:

- ``captum``: ``captum.attr.LayerIntegratedGradients(forward_func, model.get_input_embeddings())``
  as users run it (eager attention, fp32, one call per label): baselines are the input ids with
  every non-special token replaced by the pad id, ``internal_batch_size`` covering every point
  of the batch (steps x texts) unless ``--captum-internal-batch-size`` says otherwise or the
  memory cap below applies.
- ``eager-best``: the fastest integrated gradients a user could write: frozen weights, the
  word-embedding output swapped by a forward hook for every (text, step) point of the batch in
  ONE forward shared by every label, then ``torch.autograd.grad`` to the points once per label;
  the faster of SDPA and eager attention, timed on the first text of the first cell of each
  text length (``--attention`` fixes it).
- ``eager-bf16``: the same under ``torch.autocast("cpu", dtype=torch.bfloat16)``, only where
  the CPU has native bf16 (``avx512_bf16`` or ``amx_bf16``); per cell its top-3 agreement with
  eager-best (per text and label, the overlap of the top-3 tokens by absolute raw score) is
  reported, and it is a candidate for the cell's best eager only where that is >= 0.95 (kept).
- ``gradlight``: the serving code in process: ``Engine`` + ``DynamicBatcher`` + ``Attributor``
  (``max_batch_size`` ``rows_per_call``), one request per batch of texts (tokenization,
  planning and combining included in its time).

The best eager of a cell is the faster of eager-best and eager-bf16 where kept.

Cells. Fixed steps: every (L, batch, length) of ``label_counts`` x ``batches`` x ``lengths``;
L labels are the model's first L (a label subset where the model has more); ``texts`` texts
cut to about ``length`` tokens (bench/integrated_cells.py), ``batch`` of them per call or
request; every way runs ``steps`` Gauss-Legendre steps. Time to a faithful explanation (one
cell per L, ``faithful_texts`` notes of the bench's realistic mix truncated at ``max_length``,
``faithful_batch`` per call): gradlight with ``completeness_tolerance`` (steps chosen per text,
Fejer's second rule at 8, 16, 32, 64 steps up to ``max_steps``) against the eager ways at fixed
``faithful_eager_steps`` and Captum at ``captum_steps``; an untimed eager fp32 reference at
``reference_steps`` Gauss-Legendre steps, run once after the timed ways, gives each way's top-3
agreement with it and f(x) - f(b) for the median relative completeness gap
(|sum of attributions - (f(x) - f(b))| / |f(x) - f(b)|, per text and label).

Memory: with every point of a batch in one call, an eager call at 512 tokens holds about
85 MB (SDPA) to 180 MB (eager attention, Captum) of activations per row for MiniLM-L6; so the
eager ways' calls are capped at ``eager_max_tokens_per_call`` rows x padded tokens (whole steps
of the batch; 0: no cap; the default, 32768, covers every point but at 512 tokens and a batch of
8: 64 rows there, about 11 GB for Captum), and the report gives each way's rows per call.
Captum is skipped on cells whose texts pass ``captum_max_tokens`` (0: never), reported as not
measured with why.

Timing: per way and cell one untimed warm-up on the cell's first text, then rounds over every
batch, in turns (``min_repeats`` to ``max_repeats``, until every way has spent ``budget_s``);
texts/s is the median over rounds of texts / round time; ms per text is each call's time over
its texts (median and p90 over calls). Peak RSS is the worker's high-water mark over the cell
(reset when the cell starts), and over the run per way. A worker that dies (out of memory, say)
keeps the cells it finished; the cells after are reported as not measured, with why.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.artifact.manifest import ATTRIBUTION_PATH, load_manifest
from gradlight.bench.integrated_cells import REFERENCE, TIMED
from gradlight.bench.integrated_plan import IGOptions, build_cells, jobs_for, plan_ways
from gradlight.bench.integrated_report import markdown
from gradlight.bench.integrated_summary import judge, split_saved, summarize_cell
from gradlight.bench.integrated_turns import measure_in_turns, run_reference
from gradlight.bench.machine import cores_available, cpu_name
from gradlight.runtime.execution.cpu_features import cpu_flags, native_bf16
from gradlight.runtime.execution.tokenization import TextEncoder

__all__ = ["IGOptions", "machine", "main", "measure", "prepare"]

Printer = Callable[[str], None]


def machine(threads: int) -> dict[str, Any]:
    return {
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "native_bf16": native_bf16(),
        "cores_available": cores_available(),
        "threads": threads,
    }


def measure(
    model_dir: Path,
    artifact: Path,
    options: IGOptions,
    work_dir: Path,
    printer: Printer,
    texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Time the ways over the cells and return the report section (``texts``: every cell's
    texts instead of the length classes' and the mix's, for tests)."""
    manifest = load_manifest(artifact)
    if ATTRIBUTION_PATH not in manifest.graphs_at("fp32"):
        raise ValueError(
            f"{artifact} has no path graph (exported with --no-path-graph): export it again "
            "without that flag to measure integrated gradients"
        )
    if max(options.label_counts) > manifest.num_labels:
        raise ValueError(
            f"label counts {list(options.label_counts)}: the model has {manifest.num_labels} "
            "labels (re-head it: bench/models.py's reheaded, as the command line does)"
        )
    tokenizer = artifact / manifest.tokenizer_dir / "tokenizer.json"
    encoder = TextEncoder(tokenizer, manifest.pre_tokenization)
    cells = build_cells(options, encoder, manifest.max_length, texts)
    bf16 = native_bf16()
    for cell in cells:
        plan_ways(cell, options, bf16)
    work_dir.mkdir(parents=True, exist_ok=True)
    base = {
        "model_dir": str(model_dir),
        "artifact": str(artifact),
        "tokenizer": str(tokenizer),
        "pre_tokenization": manifest.pre_tokenization,
        "pad_token_id": manifest.pad_token_id,
        "uses_token_type_ids": manifest.uses_token_type_ids,
        "cell_budget_s": options.budget_s,
        **{
            k: getattr(options, k)
            for k in ("rows_per_call", "tokens_per_call", "precision", "attention", "threads")
        },
        **{k: getattr(options, k) for k in ("min_repeats", "max_repeats")},
    }
    jobs = jobs_for(cells, base, TIMED)
    paths = {method: work_dir / f"ig-{method}.json" for method in (*TIMED, REFERENCE)}
    for path in paths.values():  # a worker that dies early must not leave an earlier run's
        path.unlink(missing_ok=True)
        path.with_suffix(".npz").unlink(missing_ok=True)
    results = measure_in_turns(jobs, paths, cells, printer)
    reference = jobs_for(cells, base, (REFERENCE,))
    if reference:
        results[REFERENCE] = run_reference(reference[REFERENCE], paths[REFERENCE], printer)
    scores, deltas = {}, {}
    for method, result in results.items():
        if paths[method].with_suffix(".npz").is_file() and "unavailable" not in result:
            with np.load(paths[method].with_suffix(".npz")) as saved:
                arrays = {key: saved[key] for key in saved.files}
            scores[method] = split_saved(arrays)
            if method == REFERENCE:
                deltas = split_saved(arrays, "delta")
    summaries = [summarize_cell(cell, results, scores, deltas) for cell in cells]
    return {
        "model": model_dir.name,
        "model_dir": str(model_dir),
        "artifact": str(artifact),
        "model_labels": manifest.num_labels,
        "machine": machine(options.threads),
        "options": {**asdict(options), "baseline": "pad"},
        "methods": {
            method: {k: v for k, v in result.items() if k != "cells"}
            for method, result in results.items()
        },
        "cells": summaries,
        "targets": judge(summaries),
    }


def prepare(
    model_dir: Path, artifact: Path | None, labels: int, cache: Path, printer: Printer
) -> tuple[Path, Path, str]:
    """The model with at least ``labels`` labels and its artifact with the path graph: as
    given, or re-headed (MiniLM's or the model's encoder with a new ``labels``-way head from
    seed 0, bench/models.py) and exported (cached in ``cache``); and what was done, said."""
    from gradlight.bench.models import cached_artifact, label_count, reheaded

    own = label_count(model_dir)
    note = ""
    if own < labels:
        note = (
            f"{model_dir.name} has {own} labels: its encoder with a new {labels}-label head "
            "(random, seed 0; timing does not depend on the head's values)"
        )
        model_dir = reheaded(model_dir, labels, cache / "models" / f"{model_dir.name}-L{labels}")
        artifact = None
    if artifact is None:
        artifact = cached_artifact(
            model_dir, cache / "artifacts" / model_dir.name, printer, path_graph=True
        )
    return model_dir, artifact, note


def _parser() -> argparse.ArgumentParser:
    defaults = IGOptions()
    parser = argparse.ArgumentParser(
        prog="python -m gradlight.bench.integrated",
        description="Integrated gradients texts/s over a grid of cells: Captum, eager-best "
        "PyTorch (fp32 and bf16 autocast) and gradlight served, same texts, same threads, one "
        "run, rounds in turns; and the time to a faithful explanation. Prints Markdown.",
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument(
        "artifact",
        type=Path,
        nargs="?",
        default=None,
        help="MODEL_DIR's artifact, with the path graph (default: exported into --cache; "
        "ignored where MODEL_DIR has fewer labels than the largest label count: the model is "
        "then re-headed and exported into --cache)",
    )
    grid = parser.add_argument_group("cells")
    grid.add_argument("--label-counts", type=int, nargs="+", default=list(defaults.label_counts))
    grid.add_argument("--batches", type=int, nargs="+", default=list(defaults.batches))
    grid.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=list(defaults.lengths),
        help="length classes, in tokens",
    )
    grid.add_argument("--steps", type=int, default=defaults.steps)
    grid.add_argument("--texts", type=int, default=defaults.texts, help="texts per cell")
    grid.add_argument("--no-faithful", action="store_true", help="skip the faithful cells")
    grid.add_argument("--faithful-texts", type=int, default=defaults.faithful_texts)
    grid.add_argument("--faithful-batch", type=int, default=defaults.faithful_batch)
    grid.add_argument("--tolerance", type=float, default=defaults.tolerance)
    ways = parser.add_argument_group("ways")
    ways.add_argument(
        "--captum-max-tokens",
        type=int,
        default=defaults.captum_max_tokens,
        help="skip Captum on cells with longer texts (0: never)",
    )
    ways.add_argument(
        "--captum-internal-batch-size", type=int, default=0, help="0: every point of a batch"
    )
    ways.add_argument(
        "--eager-rows-per-call", type=int, default=0, help="0: every point of a batch"
    )
    ways.add_argument(
        "--eager-max-tokens-per-call",
        type=int,
        default=defaults.eager_max_tokens_per_call,
        help="cap on the eager ways' rows x padded tokens per call (0: none)",
    )
    ways.add_argument("--attention", choices=("auto", "sdpa", "eager"), default="auto")
    ways.add_argument("--no-bf16", action="store_true", help="skip eager-bf16")
    ways.add_argument(
        "--precision",
        default=defaults.precision,
        help="gradlight's, as gradlight serve --precision takes it (default auto: bf16 where "
        "the artifact has it and the CPU runs it natively)",
    )
    ways.add_argument(
        "--tokens-per-call",
        type=int,
        default=defaults.tokens_per_call,
        help="gradlight's max_tokens_per_batch (0: rows per call x the longest text)",
    )
    ways.add_argument(
        "--rows-per-call",
        type=int,
        default=defaults.rows_per_call,
        help="gradlight's max_batch_size",
    )
    timing = parser.add_argument_group("timing and output")
    timing.add_argument("--min-repeats", type=int, default=defaults.min_repeats)
    timing.add_argument("--max-repeats", type=int, default=defaults.max_repeats)
    timing.add_argument(
        "--budget-s",
        type=float,
        default=defaults.budget_s,
        help="seconds per way and cell before min-repeats suffice",
    )
    timing.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    timing.add_argument(
        "--cache",
        type=Path,
        default=Path("gradlight-ig"),
        help="re-headed models and exported artifacts (kept, reused)",
    )
    timing.add_argument("--out", type=Path, default=None, help="write the section as JSON")
    timing.add_argument("--markdown", type=Path, default=None, help="write the Markdown")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    options = IGOptions(
        steps=args.steps,
        label_counts=tuple(dict.fromkeys(args.label_counts)),
        batches=tuple(dict.fromkeys(args.batches)),
        lengths=tuple(dict.fromkeys(args.lengths)),
        texts=args.texts,
        faithful=not args.no_faithful,
        faithful_texts=args.faithful_texts,
        faithful_batch=args.faithful_batch,
        tolerance=args.tolerance,
        rows_per_call=args.rows_per_call,
        tokens_per_call=args.tokens_per_call,
        precision=args.precision,
        eager_rows_per_call=args.eager_rows_per_call,
        captum_internal_batch_size=args.captum_internal_batch_size,
        eager_max_tokens_per_call=args.eager_max_tokens_per_call,
        captum_max_tokens=args.captum_max_tokens,
        attention=args.attention,
        bf16=not args.no_bf16,
        min_repeats=args.min_repeats,
        max_repeats=args.max_repeats,
        budget_s=args.budget_s,
        threads=args.threads,
    )

    def printer(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    model_dir, artifact, note = prepare(
        args.model_dir, args.artifact, max(options.label_counts), args.cache, printer
    )
    if note:
        printer(note)
    with tempfile.TemporaryDirectory(prefix="gradlight-ig-") as work:
        section = measure(model_dir, artifact, options, Path(work), printer)
    section["model_note"] = note
    text = markdown(section)
    if args.out is not None:
        args.out.write_text(json.dumps(section, indent=2) + "\n", encoding="utf-8")
    if args.markdown is not None:
        args.markdown.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
