"""One method's measurements, in a process of its own (so its peak memory is its own).

    python -m gradlight.bench.worker JOB.json RESULT.json

The job names the method and its role (``reference``; an eager anchor such as ``eager-best``
or ``eager-bf16-sdpa``, bench/eager.py; ``engine`` or ``engine-PRECISION``, bench/methods.py),
the model or artifact, the engine's precision, the device, the thread count and the cells (see
``gradlight.bench.workload``). Per cell: one untimed warm-up call, then rounds over all its
batches until ``min_repeats`` rounds are done and the cell's time budget is spent (at most
``max_repeats``). Scores of cells marked ``keep`` are saved next to the result for the
agreement check. The result names the machine (CPU, instruction sets, the threads in effect).

A method that cannot run here (an anchor this CPU or model lacks; an engine precision the
engine's settings or the artifact refuse, when ``optional``) writes ``unavailable`` with the
reason instead of cells, and exits 0. The engine worker never imports torch.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.bench.machine import machine, peak_rss_mb


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


class Unavailable(Exception):
    """The method cannot run here; the message says why."""


def _method(job: dict[str, Any]) -> Any:
    if job["role"] == "engine":
        from gradlight.bench.methods import EngineMethod
        from gradlight.runtime.errors import GradlightError

        try:
            return EngineMethod(
                Path(job["artifact"]), job["provider"], job["threads"], job["precision"]
            )
        except GradlightError as exc:  # SettingsError, ArtifactError: said, not a traceback
            if not job.get("optional"):
                raise
            raise Unavailable(f"{job['method']}: {exc}") from exc
    import torch

    torch.set_num_threads(job["threads"])
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from gradlight.bench.eager import AnchorUnavailable, EagerMethod

    device = "cuda" if job["provider"] == "cuda" else "cpu"
    try:
        return EagerMethod(Path(job["model_dir"]), job["method"], device)
    except AnchorUnavailable as exc:
        raise Unavailable(str(exc)) from exc


def _timed(
    call: Callable[[list[str]], Any], batches: list[list[str]], job: dict[str, Any]
) -> tuple[list[list[float]], list[Any]]:
    call(batches[0])  # warm-up, untimed
    times: list[list[float]] = [[] for _ in batches]
    outputs: list[Any] = []
    started = time.perf_counter()
    rounds = 0
    while True:
        outputs = []
        for index, batch in enumerate(batches):
            begin = time.perf_counter()
            outputs.append(call(batch))
            times[index].append(time.perf_counter() - begin)
        rounds += 1
        spent = time.perf_counter() - started
        if rounds >= job["max_repeats"] or (
            rounds >= job["min_repeats"] and spent >= job["cell_budget_s"]
        ):
            return times, outputs


def _run_cell(method: Any, cell: dict[str, Any], job: dict[str, Any], keep: dict) -> dict:
    batches, max_length = cell["batches"], cell["max_length"]
    result: dict[str, Any] = {"cell": cell["name"]}
    if cell["kind"] == "sentences":
        if job["role"] == "engine":
            calls = {
                mode: (lambda b, one=one: method.sentences(b, max_length, one_call=one))
                for mode, one in (("one_call", True), ("per_variant", False))
            }
        else:  # eager: one call per variant, as the reference does it
            calls = {"per_variant": lambda b: method.sentences(b, max_length)}
        for mode, call in calls.items():
            result[mode], outputs = _timed(call, batches, job)
            if cell.get("keep"):
                for b, texts in enumerate(outputs):
                    for t, scores in enumerate(texts):
                        keep[f"{cell['name']}|{mode}|{b}|{t}|sentences"] = scores
        return result
    labels, sentences = cell.get("labels"), cell.get("sentences", False)
    result["attribute"], outputs = _timed(
        lambda b: method.attribute(b, max_length, labels, sentences), batches, job
    )
    if cell.get("forward"):
        result["forward"], _ = _timed(lambda b: method.forward(b, max_length), batches, job)
    if cell.get("keep"):
        for b, output in enumerate(outputs):
            keep[f"{cell['name']}|{b}|probabilities"] = output.probabilities
            for t, scores in enumerate(output.scores):
                keep[f"{cell['name']}|{b}|{t}|scores"] = scores
            for t, scores in enumerate(output.sentences or []):
                keep[f"{cell['name']}|{b}|{t}|sentence_scores"] = scores
    return result


def run(job: dict[str, Any], result_path: Path) -> dict[str, Any]:
    rss_before = _rss_mb()
    loading = time.perf_counter()
    try:
        method = _method(job)
    except Unavailable as exc:
        result = {"method": job["method"], "unavailable": str(exc)}
        result_path.write_text(json.dumps(result), encoding="utf-8")
        return result
    loaded = {"load_seconds": round(time.perf_counter() - loading, 2), "rss_loaded_mb": _rss_mb()}
    keep: dict[str, np.ndarray] = {}
    cells = []
    for cell in job["cells"]:
        if job["method"] not in cell.get("methods", [job["method"]]):
            continue
        cells.append(_run_cell(method, cell, job, keep))
        print(f"  {job['method']}: {cell['name']} done", file=sys.stderr, flush=True)
    result = {
        "method": job["method"],
        **loaded,
        "rss_start_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "cells": cells,
    }
    if job["role"] == "engine":
        method.close()
        threads = method.engine.settings.intra_op_threads  # ONNX Runtime intra-op
    else:
        import torch

        threads = result["torch_threads"] = torch.get_num_threads()
    result["machine"] = machine(threads)
    np.savez(result_path.with_suffix(".npz"), **keep)
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return result


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    run(job, Path(sys.argv[2]))


if __name__ == "__main__":
    main()
