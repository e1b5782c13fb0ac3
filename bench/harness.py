"""``gradlight bench``: gradlight against the eager PyTorch ways, in one run, same threads.

For each label count: the model (re-headed when its own count differs), its artifact (exported
and validated, cached, with the graphs of every precision asked for), then one worker process
per method over the same cells: ``reference``, the eager anchors (``eager-best``,
``eager-best-sdpa``, ``eager-bf16``, ``eager-bf16-sdpa``: bench/anchors.py) and gradlight's
serving code at each precision (``engine`` for fp32, ``engine-PRECISION``), all loaded at once
and each cell's rounds taken in turns across them (bench/turns.py); then (at the first
label count) the server under 1 to 64 concurrent clients, and under 32 asking for sentence
attributions too. An anchor this machine or model cannot run (bf16 without native bf16, SDPA
for an architecture without it), or an extra engine precision the artifact or the engine
refuses, is recorded in the run's ``unavailable`` with the reason instead of failing the run.
``summarize_cell`` turns the raw timings into the report (best eager and best engine per
cell). With ``integrated_steps``, integrated gradients too, over its own grid of cells:
Captum, eager-best (fp32 and bf16 autocast) and gradlight's serving code, each in a worker
process, rounds in turns (``gradlight.bench.integrated``).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gradlight.artifact.manifest import load_manifest
from gradlight.bench import corpus, workload
from gradlight.bench.agreement import agreement
from gradlight.bench.anchors import ANCHORS, REFERENCE, unavailable_here
from gradlight.bench.machine import cores_available, cpu_name, machine
from gradlight.bench.models import cached_artifact, label_count, reheaded
from gradlight.bench.served import measure_served
from gradlight.bench.summary import summarize_cell
from gradlight.bench.targets import judge
from gradlight.bench.turns import measure_in_turns
from gradlight.bench.workload import engine_name
from gradlight.runtime.execution.cpu_features import cpu_flags
from gradlight.runtime.execution.tokenization import TextEncoder
from gradlight.runtime.settings import EngineSettings
from gradlight.wire.errors import GradlightError

Printer = Callable[[str], None]
FP32 = "fp32"


@dataclass(frozen=True)
class BenchOptions:
    model_dir: Path
    out_dir: Path
    artifact: Path | None = None
    quick: bool = False
    labels: tuple[int, ...] = ()  # () : the model's own count (quick) or 2 and 10 (full)
    subset_labels: int | None = None  # None: 150 (full) or none (quick); 0: none
    texts: int | None = None  # texts in the realistic mix (default: the plan's)
    threads: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    provider: str = "cpu"
    integrated_steps: int = 0  # 0: integrated gradients not measured
    integrated_texts: int | None = None  # texts per integrated gradients cell (None: 8)
    # The integrated gradients cells (bench/integrated.py); (): the full grid, or one small
    # cell with ``quick``. Captum skips cells with texts over ``integrated_captum_max_tokens``.
    integrated_label_counts: tuple[int, ...] = ()
    integrated_batches: tuple[int, ...] = ()
    integrated_lengths: tuple[int, ...] = ()
    integrated_captum_max_tokens: int = 0  # 0: Captum on every cell
    anchors: tuple[str, ...] = tuple(ANCHORS)  # the eager anchors to time (bench/anchors.py)
    # The engine's precisions (EngineSettings' names); the first is the one served.
    precisions: tuple[str, ...] = (FP32,)

    def __post_init__(self) -> None:
        """Refuse what cannot run before anything is measured: unknown anchors, and
        precisions the engine's settings refuse (``SettingsError``, naming ``precision``)."""
        unknown = [name for name in self.anchors if name not in ANCHORS]
        if unknown or not self.anchors or len(set(self.anchors)) != len(self.anchors):
            raise ValueError(
                f"anchors must be distinct names among {', '.join(ANCHORS)}, got "
                f"{list(self.anchors)}"
            )
        if not self.precisions or len(set(self.precisions)) != len(self.precisions):
            raise ValueError(f"precisions must be distinct and at least one, got {self.precisions}")
        for precision in self.precisions:
            EngineSettings(precision=precision)

    def roles(self) -> dict[str, str]:
        """Every method of a run, in the order they are measured: name -> role."""
        return {
            REFERENCE: workload.REFERENCE,
            **{name: workload.EAGER for name in ANCHORS if name in self.anchors},
            **{engine_name(p): workload.ENGINE for p in self.precisions},
        }

    def plan(self) -> workload.Plan:
        plan = workload.Plan.quick() if self.quick else workload.Plan()
        if self.texts:
            plan = workload.Plan(**{**asdict(plan), "texts": self.texts})
        return plan

    def label_counts(self) -> tuple[int, ...]:
        if self.labels:
            return self.labels
        return (label_count(self.model_dir),) if self.quick else (2, 10)

    def subset(self) -> int:
        if self.subset_labels is None:
            return 0 if self.quick else 150
        return self.subset_labels


def environment(options: BenchOptions) -> dict[str, Any]:
    import grpc
    import onnxruntime as ort
    import torch
    import transformers

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "cores_available": cores_available(),
        "threads": options.threads,
        "gpu": gpu,
        "provider": options.provider,
        "precisions": list(options.precisions),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "onnxruntime": ort.__version__,
        "grpcio": grpc.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _prepare(
    options: BenchOptions, labels: int, printer: Printer
) -> tuple[Path, Path, dict[str, str]]:
    """The model with ``labels`` labels, its artifact (given, or exported and cached, with the
    graphs of the reduced precisions asked for), and the engine methods whose export failed,
    with why (the artifact is then made again in fp32 alone). A given artifact without a
    precision's graphs is found out by the engine worker, which says so."""
    from gradlight.export.options import REDUCED_PRECISIONS

    model_dir, artifact = options.model_dir, options.artifact
    # the precisions an export writes graphs for (others, such as a choice made at load
    # time, are the engine's to refuse or resolve)
    reduced = [p for p in options.precisions if p in REDUCED_PRECISIONS]
    refused: dict[str, str] = {}
    if labels != label_count(options.model_dir):
        name = f"{options.model_dir.name}-L{labels}"
        model_dir = reheaded(options.model_dir, labels, options.out_dir / "models" / name)
        artifact = None
    if artifact is None:
        target = options.out_dir / "artifacts" / model_dir.name
        path_graph = bool(options.integrated_steps)
        try:
            artifact = cached_artifact(
                model_dir, target, printer, precisions=reduced, path_graph=path_graph
            )
        except GradlightError as exc:  # a reduced precision failed its export or validation
            if not reduced:
                raise
            printer(f"the export with {', '.join(reduced)} failed; exporting fp32 alone: {exc}")
            artifact = cached_artifact(model_dir, target, printer, path_graph=path_graph)
            refused = {engine_name(p): f"its export failed: {exc}" for p in reduced}
    return model_dir, artifact, refused


def _measure(
    options: BenchOptions,
    labels: int,
    cells: list[dict[str, Any]],
    printer: Printer,
    served: bool,
) -> dict[str, Any]:
    """One label count's run: every method over ``cells`` in turns, then (``served``) the
    server. What cannot run here is recorded in the run's ``unavailable``, not raised."""
    model_dir, artifact, unavailable = _prepare(options, labels, printer)
    name = model_dir.name
    manifest = load_manifest(artifact)
    encoder = TextEncoder(
        artifact / manifest.tokenizer_dir / "tokenizer.json", manifest.pre_tokenization
    )
    device = "cuda" if options.provider == "cuda" else "cpu"
    roles = options.roles()
    for method in options.anchors:
        if problem := unavailable_here(method, device):
            unavailable[method] = problem
    cells = workload.fit(cells, manifest.max_length)
    raw_dir = options.out_dir / "raw"
    raw_dir.mkdir(parents=True, exist_ok=True)
    jobs = _jobs(options, labels, model_dir, artifact, cells, unavailable, printer)
    paths = {method: raw_dir / f"{name}-{method}.json" for method in jobs}
    results = _run_in_turns(jobs, paths, roles, cells, unavailable, printer)
    measured_roles = _measured_roles(roles, results, unavailable)
    cells = workload.with_methods(cells, measured_roles)
    scores = agreement(cells, {m: raw_dir / f"{name}-{m}.npz" for m in results})
    run = {
        "model": name,
        "labels": labels,
        "model_dir": str(model_dir),
        "artifact": str(artifact),
        "roles": measured_roles,
        "unavailable": unavailable,
        "methods": {
            method: {k: v for k, v in result.items() if k != "cells"}
            for method, result in results.items()
        },
        "cells": [
            summarize_cell(cell, results, encoder, labels, scores.get(cell["name"]), roles)
            for cell in cells
        ],
    }
    if served:
        _measure_server(options, run, artifact, manifest.max_length, printer)
    return run


def _jobs(
    options: BenchOptions,
    labels: int,
    model_dir: Path,
    artifact: Path,
    cells: list[dict[str, Any]],
    unavailable: dict[str, str],
    printer: Printer,
) -> dict[str, dict[str, Any]]:
    """A worker's job per method, in the order of ``options.roles()``; a method already known
    not to run here is said and left out."""
    plan = options.plan()
    jobs = {}
    for method, role in options.roles().items():
        if method in unavailable:
            printer(f"  {method} not measured: {unavailable[method]}")
            continue
        jobs[method] = {
            "method": method,
            "role": role,
            "precision": _precision(method, options),
            "optional": role == workload.ENGINE and _precision(method, options) != FP32,
            "model_name": model_dir.name,
            "labels": labels,
            "model_dir": str(model_dir),
            "artifact": str(artifact),
            "provider": options.provider,
            "threads": options.threads,
            "cells": workload.with_methods(cells, {method: role}),
            "min_repeats": plan.min_repeats,
            "max_repeats": plan.max_repeats,
            "cell_budget_s": plan.cell_budget_s,
        }
    return jobs


def _run_in_turns(
    jobs: dict[str, dict[str, Any]],
    paths: dict[str, Path],
    roles: dict[str, str],
    cells: list[dict[str, Any]],
    unavailable: dict[str, str],
    printer: Printer,
) -> dict[str, dict[str, Any]]:
    """The workers' results by method (each cell's rounds taken in turns across them); a
    worker that found its method cannot run (an optional engine precision) goes to
    ``unavailable`` instead."""
    in_turns = workload.with_methods(cells, {m: roles[m] for m in jobs})
    results = {}
    for method, result in measure_in_turns(jobs, paths, in_turns, printer).items():
        if "unavailable" in result:
            unavailable[method] = result["unavailable"]
        else:
            results[method] = result
    return results


def _measured_roles(
    roles: dict[str, str], results: dict[str, dict[str, Any]], unavailable: dict[str, str]
) -> dict[str, str]:
    """The roles of the methods that were measured; without any engine there is no run."""
    measured_roles = {m: r for m, r in roles.items() if m in results}
    if workload.ENGINE not in measured_roles.values():
        raise RuntimeError(
            "no engine precision could run: "
            + "; ".join(f"{m}: {why}" for m, why in unavailable.items())
        )
    return measured_roles


def _measure_server(
    options: BenchOptions, run: dict[str, Any], artifact: Path, max_length: int, printer: Printer
) -> None:
    """The server at the first precision under the plan's clients, into ``run["served"]``;
    nothing when that precision's engine could not run."""
    plan = options.plan()
    precision = options.precisions[0]
    unavailable = run["unavailable"]
    if engine_name(precision) in unavailable:
        printer(f"not measuring the server: {unavailable[engine_name(precision)]}")
        return
    name = run["model"]
    printer(f"measuring the server ({name}) under {', '.join(map(str, plan.clients))} clients")
    run["served_precision"] = precision
    levels = measure_served(
        artifact,
        corpus.notes(plan.texts),
        plan.clients,
        min(workload.MIX_MAX_LENGTH, max_length),
        options.provider,
        options.threads,
        precision,
        sentence_clients=plan.sentence_clients,
    )
    on = machine(options.threads)  # the server's ONNX Runtime intra-op threads
    run["served"] = [{**level, "machine": on} for level in levels]


def _precision(method: str, options: BenchOptions) -> str:
    """The engine precision of an engine method (fp32 for any other method)."""
    return next((p for p in options.precisions if engine_name(p) == method), FP32)


def run_benchmark(options: BenchOptions, printer: Printer) -> dict[str, Any]:
    """Measure, and return the report (``report.write`` turns it into files)."""
    plan = options.plan()
    options.out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "environment": environment(options),
        "model_dir": str(options.model_dir),
        "quick": options.quick,
        "plan": asdict(plan),
        "runs": [],
    }
    started = time.perf_counter()
    for index, labels in enumerate(options.label_counts()):
        cells = workload.mix_cells(plan, first=index == 0)
        if index == 0:
            cells += [
                workload.mix_sentences_cell(plan),
                *workload.length_cells(plan),
                workload.sentence_cell(plan),
            ]
        report["runs"].append(_measure(options, labels, cells, printer, served=index == 0))
    if options.subset():
        cells = [workload.subset_cell(plan, options.subset())]
        report["runs"].append(_measure(options, options.subset(), cells, printer, served=False))
    if options.integrated_steps:
        report["integrated_gradients"] = _measure_integrated(options, printer)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["targets"] = judge(report)
    return report


def _measure_integrated(options: BenchOptions, printer: Printer) -> dict[str, Any]:
    """Integrated gradients over its grid of cells on the CPU (pad baseline): gradlight served
    against eager-best (fp32, bf16 autocast) and Captum, on the model, re-headed where it has
    fewer labels than the largest label count (the cells' L labels are its first L)."""
    from gradlight.bench.integrated import IGOptions, measure

    grid = {
        key: value
        for key, value in (
            ("label_counts", options.integrated_label_counts),
            ("batches", options.integrated_batches),
            ("lengths", options.integrated_lengths),
            ("texts", options.integrated_texts),
        )
        if value
    }
    ig = (IGOptions.quick if options.quick else IGOptions)(
        steps=options.integrated_steps,
        captum_max_tokens=options.integrated_captum_max_tokens,
        threads=options.threads,
        **grid,
    )
    need, own = max(ig.label_counts), label_count(options.model_dir)
    model_dir, artifact, _ = _prepare(options, own if own >= need else need, printer)
    section = measure(model_dir, artifact, ig, options.out_dir / "raw" / "integrated", printer)
    if own < need:
        section["model_note"] = (
            f"{options.model_dir.name}'s encoder with a new {need}-label head (random, seed 0; "
            "timing does not depend on the head's values)"
        )
    return section
