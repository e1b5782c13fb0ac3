"""Every method's worker loaded at once, and each cell's rounds taken in turns across them.

A machine's speed drifts (another tenant, the clock): when each method ran all its cells in a
process of its own, one after another, a method measured during a slow minute looked slower
than it was, and the ratios between methods carried that drift (docs/history/benchmarks.md, ninth
pass). Here each method still runs in a process of its own (its peak memory is its own), but
all of them are loaded first, and a cell is measured in rounds: every method of the cell runs
one round (each of the cell's phases over every batch: bench/worker.py), then the next round,
in the reverse order. A drift then slows every method of the round alike. Only one worker runs
at a time: the others wait on their standard input, and a short pause before each turn lets the
previous process's threads stop spinning.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradlight.bench.worker import enough

Printer = Callable[[str], None]
PAUSE_S = 0.05
"""Between turns: longer than the OpenMP threads of an eager worker spin after its call."""


class _Worker:
    """One method's worker process (the module ``program``), taking its rounds from the bench."""

    program = "gradlight.bench.worker"

    def __init__(self, job: dict[str, Any], path: Path) -> None:
        self.method, self.path = job["method"], path
        self.reply: dict[str, Any] = {}  # the load's reply (loaded)
        job_path = path.with_suffix(".job.json")
        job_path.write_text(json.dumps(job), encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.program, str(job_path), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.commands, self.replies = self.process.stdin, self.process.stdout

    def _ask(self, command: dict[str, Any] | None) -> dict[str, Any]:
        if command is not None:
            self.commands.write(json.dumps(command) + "\n")
            self.commands.flush()
        line = self.replies.readline()
        if not line:
            raise RuntimeError(f"the {self.method} worker failed (exit {self.process.wait()})")
        return json.loads(line)

    def loaded(self) -> bool:
        """Wait until the method is loaded: False where it cannot run here (its result, written,
        says why, and the process has ended)."""
        self.reply = self._ask(None)
        if self.reply["loaded"]:
            return True
        self.process.wait()
        return False

    def round(self, cell: str, warmup: bool = False) -> None:
        self._ask({"round": cell, "warmup": warmup})

    def finish(self) -> dict[str, Any]:
        self._ask({"finish": True})
        self.process.wait()
        return json.loads(self.path.read_text(encoding="utf-8"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def measure_in_turns(
    jobs: dict[str, dict[str, Any]],
    paths: dict[str, Path],
    cells: list[dict[str, Any]],
    printer: Printer,
) -> dict[str, dict[str, Any]]:
    """Each method's worker result (bench/worker.py's, ``unavailable`` where it cannot run),
    its cells' rounds taken in turns with the other methods of the cell. ``jobs``: method ->
    job, loaded in that order, one at a time; ``cells``: with ``methods``; the plan's
    repeats and budget come from the jobs (the budget is per method: a cell of n methods gets
    n times it)."""
    workers: dict[str, _Worker] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        for method, job in jobs.items():
            printer(f"loading {method} ({job['model_name']}, L={job['labels']})")
            worker = _Worker(job, paths[method])
            if worker.loaded():
                workers[method] = worker
            else:
                results[method] = json.loads(paths[method].read_text(encoding="utf-8"))
                printer(f"  {method} not measured: {results[method]['unavailable']}")
        for cell in cells:
            members = [workers[m] for m in cell["methods"] if m in workers]
            if members:
                rounds = cell_in_turns(cell["name"], members, jobs[members[0].method])
                printer(f"  {cell['name']}: {rounds} rounds of {len(members)} methods")
        for method, worker in workers.items():
            results[method] = worker.finish()
    finally:
        for worker in workers.values():
            worker.stop()
    return {method: results[method] for method in jobs if method in results}


def cell_in_turns(cell: str, members: list[_Worker], job: dict[str, Any]) -> int:
    """One warm-up of ``cell`` per worker, then rounds in turns (every other one in reverse
    order) until the job's repeats and budget are met; the rounds taken."""
    for worker in members:
        time.sleep(PAUSE_S)
        worker.round(cell, warmup=True)
    budget_s = float(job["cell_budget_s"]) * len(members)
    started, rounds = time.perf_counter(), 0
    while not enough(rounds, time.perf_counter() - started, job, budget_s):
        for worker in members if rounds % 2 == 0 else members[::-1]:
            time.sleep(PAUSE_S)
            worker.round(cell)
        rounds += 1
    return rounds
