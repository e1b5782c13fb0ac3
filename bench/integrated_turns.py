"""The integrated gradients bench's ways, each in a worker process of its own
(bench/integrated_worker.py), all loaded first and each cell's rounds taken in turns across
them, as bench/turns.py does for the rest of the bench: every way of the cell runs one round
over every batch, then the next round in the reverse order, so that a drift of the machine's
speed slows every way of a round alike. Only one worker runs at a time. The untimed 64-step
reference runs last, alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradlight.bench import turns

Printer = Callable[[str], None]


class _Worker(turns._Worker):
    """bench/turns.py's worker handle, on bench/integrated_worker.py's process."""

    program = "gradlight.bench.integrated_worker"


def measure_in_turns(
    jobs: dict[str, dict[str, Any]],
    paths: dict[str, Path],
    cells: list[dict[str, Any]],
    printer: Printer,
) -> dict[str, dict[str, Any]]:
    """Each way's worker result (``unavailable`` where it cannot run here), its cells' rounds
    taken in turns with the other ways of the cell. ``jobs``: way -> job (with the cells it
    measures), loaded in that order; ``cells``: in the order measured, each with ``methods``;
    the repeats and the budget (per way and cell) come from the jobs."""
    workers: dict[str, _Worker] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        for method, job in jobs.items():
            printer(f"loading {method} for integrated gradients")
            worker = _Worker(job, paths[method])
            if worker.loaded():
                workers[method] = worker
            else:
                results[method] = json.loads(paths[method].read_text(encoding="utf-8"))
                printer(f"  {method} not measured: {results[method]['unavailable']}")
        for cell in cells:
            _cell_in_turns(cell, workers, jobs, results, printer)
        for method, worker in workers.items():
            results[method] = worker.finish()
    finally:
        for worker in workers.values():
            worker.stop()
    return {method: results[method] for method in jobs if method in results}


def _cell_in_turns(
    cell: dict[str, Any],
    workers: dict[str, _Worker],
    jobs: dict[str, dict[str, Any]],
    results: dict[str, dict[str, Any]],
    printer: Printer,
) -> None:
    """The cell's rounds in turns. A worker that dies (out of memory, say) is dropped, its
    result the cells it finished before (it writes them as each cell starts), and the cell
    measured again with the others; the report says where and why."""
    while members := [workers[m] for m in cell["methods"] if m in workers]:
        printer(f"integrated gradients, {cell['title']}: {', '.join(w.method for w in members)}")
        try:
            rounds = turns.cell_in_turns(cell["name"], members, jobs[members[0].method])
        except (RuntimeError, OSError):  # its reply cut short, or its pipe broken
            dead = [worker for worker in members if worker.process.poll() is not None]
            if not dead:
                raise
            for worker in dead:
                del workers[worker.method]
                why = f"its worker died in {cell['title']} (exit {worker.process.returncode})"
                printer(f"  {worker.method}: {why}; the cells after it are not measured")
                try:
                    results[worker.method] = json.loads(worker.path.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    results[worker.method] = {"method": worker.method, "cells": {}}
                results[worker.method]["died"] = why
            continue
        printer(f"  {rounds} rounds of {len(members)} ways")
        return


def run_reference(job: dict[str, Any], path: Path, printer: Printer) -> dict[str, Any]:
    """The untimed reference: one round of each of its cells, alone."""
    worker = _Worker(job, path)
    try:
        if not worker.loaded():
            raise RuntimeError(
                "the integrated gradients reference could not load: "
                + json.loads(path.read_text(encoding="utf-8"))["unavailable"]
            )
        for cell in job["cells"]:
            printer(f"reference ({cell['steps']} steps, eager fp32), {cell['title']}")
            worker.round(cell["name"])
        return worker.finish()
    finally:
        worker.stop()
