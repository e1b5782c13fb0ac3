"""Integrated gradients: gradlight's path graph against Captum and eager-best PyTorch, same
texts, same tokens, same threads, one run.

    python -m gradlight.bench.integrated MODEL_DIR ARTIFACT [--steps 32] [--texts 8]
        [--threads T] [--labels 0 1] [--batch 1] [--rows-per-call 32] [--repeats 3]
        [--max-length 128] [--out ig.json]

(``gradlight bench --integrated-gradients`` adds the same section to bench.json and bench.md.)

Integrated gradients at ``m`` steps over ``L`` labels cost about ``m x (1 + L)``
forward-equivalents per text (one forward per point, one backward per label). Three ways,
each in a worker process of its own (bench/integrated_worker.py: so one method's thread pools
never spin while another is timed), with ``threads`` torch intra-op threads or ONNX Runtime
intra-op threads:

- ``captum``: ``captum.attr.LayerIntegratedGradients(forward_func, model.get_input_embeddings())``
  as users run it: baselines are the input ids with every non-special token replaced by the
  pad id, ``n_steps=steps``, ``method=integration``, ``internal_batch_size`` =
  ``rows_per_call``, one call per label; the model frozen, in eval, eager attention.
- ``eager-best``: the same integration written well in PyTorch: frozen parameters, the
  word-embedding output swapped by a forward hook for all (text, step) points of a chunk at
  once, ONE forward per chunk shared by every label, then ``torch.autograd.grad`` to the points
  only, once per label (``retain_graph``); the faster of SDPA and eager attention on the first
  batch.
- ``gradlight``: the serving code in process: ``Engine`` + ``DynamicBatcher`` + ``Attributor``
  with ``AttributeOptions(method="integrated_gradients", steps=..., token_attributions=True)``,
  one request per batch of texts (tokenization, planning and combining included in its time).

Work per text, in model rows (one forward, or one backward, over one point): Captum
``L x (m forward + m backward)`` plus its forwards at the input and the baseline; eager-best
``m forward + L x m backward``; gradlight's path graph one row per (label, point), each a
forward and a backward, ``L x m`` of each, plus a baseline row and the text's forward.

Equal padding: every method reads the same token ids (the artifact's tokenizer, truncated at
``max_length``); the eager ways pad a batch of texts to its longest, gradlight's batcher packs
each text's rows together (no padding). With ``batch`` 1 (the default) no method pads at all;
the report gives each method's padded tokens over real tokens. Every method computes
``rows_per_call`` rows per model call (gradlight's ``max_batch_size``, Captum's
``internal_batch_size``, eager-best's chunk).

Timing: per method one untimed warm-up call on the first batch, then rounds over every batch
(``min_repeats`` to ``max_repeats``, until ``budget_s`` is spent); texts/s is the median over
rounds of texts / round time. Agreement: raw scores, per text and label the largest absolute
difference over the largest absolute score, against Captum.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.artifact.manifest import ATTRIBUTION_PATH, load_manifest
from gradlight.bench import corpus
from gradlight.bench.integrated_report import markdown
from gradlight.bench.machine import cores_available, cpu_name
from gradlight.bench.stats import latency, paired_ratio
from gradlight.runtime.execution.cpu_features import cpu_flags
from gradlight.runtime.execution.tokenization import TextEncoder
from gradlight.runtime.explanation.methods import resolve_method
from gradlight.wire.methods import GAUSS_LEGENDRE, INTEGRATED_GRADIENTS

Printer = Callable[[str], None]
METHODS = ("captum", "eager-best", "gradlight")
EAGER = ("captum", "eager-best")
TARGET = 2.0  # gradlight's texts/s over the faster eager way's
MAX_LENGTH = 128  # the bench's realistic mix is truncated there (workload.MIX_MAX_LENGTH)
ROWS_PER_CALL = 32  # gradlight serve's default max_batch_size


def machine(threads: int) -> dict[str, Any]:
    return {
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cores_available": cores_available(),
        "threads": threads,
    }


@dataclass(frozen=True)
class IGOptions:
    """What is measured (see the module's docstring)."""

    steps: int = 32
    integration: str = GAUSS_LEGENDRE
    texts: int = 16  # the first ``texts`` notes of the bench's realistic mix (bench/corpus.py)
    labels: tuple[int, ...] = ()  # (): every label of the model
    batch: int = 1  # texts per eager call, and per gradlight request
    rows_per_call: int = ROWS_PER_CALL
    max_length: int = MAX_LENGTH  # capped at the artifact's
    min_repeats: int = 2
    max_repeats: int = 5
    budget_s: float = 20.0
    threads: int = field(default_factory=cores_available)


def _run_worker(job: dict[str, Any], path: Path, printer: Printer) -> dict[str, Any]:
    job_path = path.with_suffix(".job.json")
    job_path.write_text(json.dumps(job), encoding="utf-8")
    printer(f"measuring integrated gradients: {job['method']} ({job['steps']} steps)")
    completed = subprocess.run(
        [sys.executable, "-m", "gradlight.bench.integrated_worker", str(job_path), str(path)],
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"the integrated gradients {job['method']} worker failed (exit {completed.returncode})"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def _relative_differences(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> float:
    """Max over texts and labels of max |other - reference| / max |reference|."""
    if set(reference) != set(other):
        raise ValueError("the methods scored different texts")
    worst = 0.0
    for key, ref in reference.items():
        if ref.shape != other[key].shape:
            raise ValueError(f"text {key}: token counts differ ({ref.shape} vs {other[key].shape})")
        scale = np.maximum(np.abs(ref).max(axis=-1), 1e-12)
        worst = max(worst, float((np.abs(other[key] - ref).max(axis=-1) / scale).max()))
    return worst


def _padding(lengths: list[list[int]], result: dict[str, Any], rows_per_text: int) -> float | None:
    """Padded over real tokens of the points' model calls: the eager ways pad each batch to
    its longest text; gradlight's path graph calls as its batcher recorded them (a text's
    ``rows_per_text`` rows are packed together)."""
    real = sum(sum(batch) for batch in lengths)
    if result["method"] == "gradlight":  # None: more calls than the batcher's history holds
        padded = result.get("path_padded_tokens")
        return None if padded is None else round(padded / (real * rows_per_text), 4)
    return round(sum(len(batch) * max(batch) for batch in lengths) / real, 4)


def measure(
    model_dir: Path,
    artifact: Path,
    options: IGOptions,
    work_dir: Path,
    printer: Printer,
    texts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Time the three ways on the same texts and return the report section."""
    manifest = load_manifest(artifact)
    if ATTRIBUTION_PATH not in manifest.graphs_at("fp32"):
        raise ValueError(
            f"{artifact} has no path graph (exported with --no-path-graph): export it again "
            "without that flag to measure integrated gradients"
        )
    resolve_method(INTEGRATED_GRADIENTS, options.steps, options.integration)  # as gradlight checks
    labels = list(options.labels) or list(range(manifest.num_labels))
    if any(not 0 <= k < manifest.num_labels for k in labels):
        raise ValueError(f"labels {labels}: the model has {manifest.num_labels}")
    max_length = min(options.max_length, manifest.max_length)
    texts = list(texts) if texts is not None else corpus.notes(options.texts)
    batches = [texts[i : i + options.batch] for i in range(0, len(texts), options.batch)]
    tokenizer = artifact / manifest.tokenizer_dir / "tokenizer.json"
    encoder = TextEncoder(tokenizer)
    lengths = [[len(row) for row in encoder.encode(batch, max_length)] for batch in batches]
    work_dir.mkdir(parents=True, exist_ok=True)
    job_base = {
        "model_dir": str(model_dir),
        "artifact": str(artifact),
        "tokenizer": str(tokenizer),
        "pad_token_id": manifest.pad_token_id,
        "uses_token_type_ids": manifest.uses_token_type_ids,
        "batches": batches,
        "max_length": max_length,
        "labels": labels,
        **{
            key: getattr(options, key)
            for key in ("steps", "integration", "batch", "rows_per_call", "threads")
        },
        **{key: getattr(options, key) for key in ("min_repeats", "max_repeats", "budget_s")},
    }
    results = {
        method: _run_worker({**job_base, "method": method}, work_dir / f"ig-{method}.json", printer)
        for method in METHODS
    }
    scores = {}
    for method in METHODS:
        with np.load(work_dir / f"ig-{method}.npz") as saved:
            scores[method] = {key: saved[key] for key in saved.files}
    agreement = {
        "eager-best vs captum": _relative_differences(scores["captum"], scores["eager-best"]),
        "gradlight vs captum": _relative_differences(scores["captum"], scores["gradlight"]),
        "gradlight vs eager-best": _relative_differences(scores["eager-best"], scores["gradlight"]),
    }
    return _section(model_dir, artifact, options, labels, max_length, lengths, results, agreement)


def _section(
    model_dir: Path,
    artifact: Path,
    options: IGOptions,
    labels: list[int],
    max_length: int,
    lengths: list[list[int]],
    results: dict[str, dict[str, Any]],
    agreement: dict[str, float],
) -> dict[str, Any]:
    """The report section: a row per method, gradlight's speedups over the eager ways and the
    target's verdict against the faster of them."""
    flat = [n for batch in lengths for n in batch]
    on = machine(options.threads)
    settings = _settings(options, labels)
    rows = _rows(settings, lengths, results, len(labels) * options.steps + 1, on)
    by_method = {row["method"]: row for row in rows}
    faster = max(EAGER, key=lambda m: by_method[m]["texts_per_s"])
    return {
        "model": model_dir.name,
        "model_dir": str(model_dir),
        "artifact": str(artifact),
        **settings,
        "max_length": max_length,
        "texts": len(flat),
        "lengths": {
            "min": min(flat),
            "median": float(np.median(flat)),
            "max": max(flat),
            "tokens": sum(flat),
        },
        "machine": on,
        "rows": rows,
        "speedup": _speedup(by_method, results, faster),
        "faster_eager": faster,
        "agreement_max_relative_diff": agreement,
        "target": _target(ratio_of(by_method, faster)),
        "workers": {
            m: {k: v for k, v in results[m].items() if k in ("attention_trials", "torch_threads")}
            for m in METHODS
        },
        "min_repeats": options.min_repeats,
        "max_repeats": options.max_repeats,
    }


def _settings(options: IGOptions, labels: list[int]) -> dict[str, Any]:
    """What every method ran with, repeated in each row and in the section."""
    return {
        "steps": options.steps,
        "integration": options.integration,
        "baseline": "pad",
        "labels": labels,
        "batch": options.batch,
        "rows_per_call": options.rows_per_call,
    }


def _rows(
    settings: dict[str, Any],
    lengths: list[list[int]],
    results: dict[str, dict[str, Any]],
    rows_per_text: int,
    on: dict[str, Any],
) -> list[dict[str, Any]]:
    """A row per method, in ``METHODS``' order, each with gradlight's speedup over it."""
    texts = sum(len(batch) for batch in lengths)
    rows = []
    for method in METHODS:
        result = results[method]
        per_round = [texts / seconds for seconds in result["rounds"]]
        rows.append(
            {
                "method": method,
                **settings,
                "texts": texts,
                "texts_per_s": round(float(np.median(per_round)), 3),
                "texts_per_s_rounds": [round(value, 3) for value in per_round],
                "batch_latency": latency([t for batch in result["times"] for t in batch]),
                "padded_over_real_tokens": _padding(lengths, result, rows_per_text),
                "attention": result.get("attention") or ("" if method == "gradlight" else "eager"),
                "peak_rss_mb": result["peak_rss_mb"],
                "load_seconds": result["load_seconds"],
                "machine": on,
            }
        )
    gradlight = rows[METHODS.index("gradlight")]["texts_per_s"]
    for row in rows:
        row["gradlight_over_this"] = round(gradlight / row["texts_per_s"], 3)
    return rows


def _speedup(
    by_method: dict[str, dict[str, Any]], results: dict[str, dict[str, Any]], faster: str
) -> dict[str, float]:
    """gradlight's texts/s over each eager way's and the faster one's, and the paired ratio."""
    return {
        "gradlight vs captum": round(ratio_of(by_method, "captum"), 3),
        "gradlight vs eager-best": round(ratio_of(by_method, "eager-best"), 3),
        "gradlight vs faster eager": round(ratio_of(by_method, faster), 3),
        # median over batches of the time ratio on the same batch
        "paired gradlight vs faster eager": paired_ratio(
            results[faster]["times"], results["gradlight"]["times"]
        ),
    }


def _target(ratio: float) -> dict[str, Any]:
    """The target's verdict on gradlight's texts/s over the faster eager way's."""
    return {
        "target": f"integrated gradients texts/s >= {TARGET:g}x the faster of Captum and "
        "eager-best, equal padding, same threads",
        "threshold": TARGET,
        "measured": round(ratio, 3),
        "status": "met" if ratio >= TARGET else "missed",
    }


def ratio_of(by_method: dict[str, dict[str, Any]], other: str) -> float:
    return by_method["gradlight"]["texts_per_s"] / by_method[other]["texts_per_s"]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m gradlight.bench.integrated",
        description="Integrated gradients texts/s: Captum, eager-best PyTorch and gradlight, "
        "same texts, same threads, one run; prints a Markdown table.",
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("artifact", type=Path, help="MODEL_DIR's artifact, with the path graph")
    defaults = IGOptions()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--integration", default=defaults.integration)
    parser.add_argument("--texts", type=int, default=8, help="notes of the bench's mix (8)")
    parser.add_argument("--labels", type=int, nargs="+", default=None, help="(default: all)")
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--rows-per-call", type=int, default=defaults.rows_per_call)
    parser.add_argument("--max-length", type=int, default=defaults.max_length)
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (after a warm-up)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", type=Path, default=None, help="also write the section as JSON")
    args = parser.parse_args(argv)
    options = IGOptions(
        steps=args.steps,
        integration=args.integration,
        texts=args.texts,
        labels=tuple(dict.fromkeys(args.labels or ())),
        batch=args.batch,
        rows_per_call=args.rows_per_call,
        max_length=args.max_length,
        min_repeats=args.repeats,
        max_repeats=args.repeats,
        budget_s=0.0,
        threads=args.threads,
    )
    with tempfile.TemporaryDirectory(prefix="gradlight-ig-") as work:
        section = measure(
            args.model_dir,
            args.artifact,
            options,
            Path(work),
            lambda line: print(line, file=sys.stderr, flush=True),
        )
    section["options"] = asdict(options)
    if args.out is not None:
        args.out.write_text(json.dumps(section, indent=2) + "\n", encoding="utf-8")
    print(markdown(section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
