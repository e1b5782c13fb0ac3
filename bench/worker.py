"""One method's measurements, in a process of its own (so its peak memory is its own).

    python -m gradlight.bench.worker JOB.json RESULT.json

The job names the method and its role (``reference``; an eager anchor such as ``eager-best``
or ``eager-bf16-sdpa``, bench/eager.py; ``engine`` or ``engine-PRECISION``, bench/methods.py),
the model or artifact, the engine's precision, the device, the thread count and the cells (see
``gradlight.bench.workload``). The worker loads the method, says so on its standard output,
then runs the rounds the bench asks for on its standard input (bench/turns.py, which takes
every method's rounds of a cell in turns). A round of a cell runs each of its phases
(attribution, then the forward where the cell times it; for sentence cells, each way of
calling) once over every batch; a warm-up round, one untimed call per phase. The result has
each phase's times per batch and round, and when each round started (``rounds_started``, Unix
time). Scores of cells marked ``keep`` are saved next to the result for the agreement check.
The result names the machine (CPU, instruction sets, the threads in effect).

A method that cannot run here (an anchor this CPU or model lacks; an engine precision the
engine's settings or the artifact refuse, when ``optional``) writes ``unavailable`` with the
reason instead of cells, and exits 0. The engine worker never imports torch.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from gradlight.bench.machine import machine, peak_rss_mb


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


class Unavailable(Exception):
    """What a worker measures (a method, a way, a side) cannot run here; the message says why."""


def _method(job: dict[str, Any]) -> Any:
    if job["role"] == "engine":
        from gradlight.bench.methods import EngineMethod
        from gradlight.wire.errors import GradlightError

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


def enough(rounds: int, spent_s: float, job: dict[str, Any], budget_s: float) -> bool:
    """Whether a cell has had its rounds: ``max_repeats``, or ``min_repeats`` once
    ``budget_s`` is spent."""
    return rounds >= job["max_repeats"] or (rounds >= job["min_repeats"] and spent_s >= budget_s)


class Measurement:
    """One loaded method's cells, measured a round at a time."""

    def __init__(self, method: Any, job: dict[str, Any]) -> None:
        self.method, self.job = method, job
        self.cells = {
            cell["name"]: cell for cell in job["cells"] if job["method"] in cell["methods"]
        }
        self.times: dict[str, dict[str, list[list[float]]]] = {name: {} for name in self.cells}
        self.started: dict[str, list[float]] = {name: [] for name in self.cells}
        self.keep: dict[str, np.ndarray] = {}

    def _phases(self, cell: dict[str, Any]) -> dict[str, Callable[[list[str]], Any]]:
        method, max_length = self.method, cell["max_length"]
        if cell["kind"] == "sentences":
            if self.job["role"] != "engine":  # eager: one call per variant, as the reference
                return {"per_variant": lambda b: method.sentences(b, max_length)}
            return {
                mode: (lambda b, one=one: method.sentences(b, max_length, one_call=one))
                for mode, one in (("one_call", True), ("per_variant", False))
            }
        labels, sentences = cell.get("labels"), cell.get("sentences", False)
        phases = {"attribute": lambda b: method.attribute(b, max_length, labels, sentences)}
        if cell.get("forward"):
            phases["forward"] = lambda b: method.forward(b, max_length)
        return phases

    def round(self, name: str, warmup: bool = False) -> None:
        """Every phase of cell ``name`` once over each of its batches (``warmup``: once, on
        its first batch, untimed)."""
        cell = self.cells[name]
        batches = cell["batches"]
        if not warmup:
            self.started[name].append(time.time())  # the wall clock: other processes' too
        for phase, call in self._phases(cell).items():
            if warmup:
                call(batches[0])
                continue
            times = self.times[name].setdefault(phase, [[] for _ in batches])
            outputs = []
            for index, batch in enumerate(batches):
                begin = time.perf_counter()
                outputs.append(call(batch))
                times[index].append(time.perf_counter() - begin)
            if cell.get("keep") and phase != "forward":
                self._keep(name, cell["kind"], phase, outputs)

    def _keep(self, name: str, kind: str, phase: str, outputs: list[Any]) -> None:
        if kind == "sentences":
            for b, texts in enumerate(outputs):
                for t, scores in enumerate(texts):
                    self.keep[f"{name}|{phase}|{b}|{t}|sentences"] = scores
            return
        for b, output in enumerate(outputs):
            self.keep[f"{name}|{b}|probabilities"] = output.probabilities
            for t, scores in enumerate(output.scores):
                self.keep[f"{name}|{b}|{t}|scores"] = scores
            for t, scores in enumerate(output.sentences or []):
                self.keep[f"{name}|{b}|{t}|sentence_scores"] = scores

    def finish(self, loaded: dict[str, Any], rss_before: float, result_path: Path) -> dict:
        job = self.job
        result = {
            "method": job["method"],
            **loaded,
            "rss_start_mb": round(rss_before, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "cells": [
                {"cell": name, **self.times[name], "rounds_started": self.started[name]}
                for name in self.cells
            ],
        }
        if job["role"] == "engine":
            self.method.close()
            threads = self.method.engine.settings.intra_op_threads  # ONNX Runtime intra-op
        else:
            import torch

            threads = result["torch_threads"] = torch.get_num_threads()
        result["machine"] = machine(threads)
        np.savez(result_path.with_suffix(".npz"), **self.keep)
        result_path.write_text(json.dumps(result), encoding="utf-8")
        return result


def _load(job: dict[str, Any], result_path: Path) -> tuple[Measurement | None, dict[str, Any]]:
    """The method loaded (None, with the result written, where it is unavailable) and its
    load figures."""
    loading = time.perf_counter()
    try:
        method = _method(job)
    except Unavailable as exc:
        result = {"method": job["method"], "unavailable": str(exc)}
        result_path.write_text(json.dumps(result), encoding="utf-8")
        return None, result
    loaded = {"load_seconds": round(time.perf_counter() - loading, 2), "rss_loaded_mb": _rss_mb()}
    return Measurement(method, job), loaded


def take_turns(job: dict[str, Any], result_path: Path, commands: TextIO, replies: TextIO) -> None:
    """Load the method, reply ``{"loaded": ...}`` (or the unavailable result), then run the
    rounds ``commands`` asks for, one JSON line each: ``{"round": CELL, "warmup": bool}``
    (replied ``{"done": CELL}``) until ``{"finish": true}`` (the result written, replied
    ``{"finished": true}``)."""
    rss_before = _rss_mb()
    measurement, loaded = _load(job, result_path)
    replies.write(json.dumps({"loaded": measurement is not None, **loaded}) + "\n")
    replies.flush()
    if measurement is None:
        return
    for line in commands:
        command = json.loads(line)
        if command.get("finish"):
            measurement.finish(loaded, rss_before, result_path)
            replies.write(json.dumps({"finished": True}) + "\n")
            replies.flush()
            return
        measurement.round(command["round"], warmup=command.get("warmup", False))
        replies.write(json.dumps({"done": command["round"]}) + "\n")
        replies.flush()


def take_rounds(
    load: Callable[[dict[str, Any], Path], Any],
    name_field: str,
    job: dict[str, Any],
    result_path: Path,
    commands: TextIO,
    replies: TextIO,
) -> None:
    """A turn-taking worker's loop: ``load(job, result_path)`` (Unavailable: the result, written,
    says why, replied ``{"loaded": false}``), its ``loaded`` figures given the load's seconds and
    replied, then the rounds ``commands`` asks for, one JSON line each: ``{"round": CELL,
    "warmup": bool}`` (``warm_up(CELL)`` or ``round(CELL)``, replied ``{"done": CELL}``) until
    ``{"finish": true}`` (``finish()`` writes the result, replied ``{"finished": true}``)."""

    def reply(message: dict[str, Any]) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    loading = time.perf_counter()
    try:
        measured = load(job, result_path)
    except Unavailable as exc:
        unavailable = {name_field: job[name_field], "unavailable": str(exc)}
        result_path.write_text(json.dumps(unavailable), encoding="utf-8")
        reply({"loaded": False})
        return
    measured.loaded["load_seconds"] = round(time.perf_counter() - loading, 2)
    reply({"loaded": True, **measured.loaded})
    for line in commands:
        command = json.loads(line)
        if command.get("finish"):
            measured.finish()
            reply({"finished": True})
            return
        if command.get("warmup"):
            measured.warm_up(command["round"])
        else:
            measured.round(command["round"])
        reply({"done": command["round"]})


def run_worker(
    take: Callable[[dict[str, Any], Path, TextIO, TextIO], None] | None = None,
) -> None:
    """A worker process's entry: ``argv[1]`` the job, ``argv[2]`` the result's path; ``take``
    (this module's ``take_turns`` by default) reads commands from the standard input and
    replies on the standard output as it was, while whatever else writes there (a library's
    print, a C extension) goes to the standard error instead."""
    job = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    (take or take_turns)(job, Path(sys.argv[2]), sys.stdin, replies)


def main() -> None:
    run_worker()


if __name__ == "__main__":
    main()
