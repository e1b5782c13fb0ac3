"""The long-document bench's worker: one side (``eager``, ``eager-bf16``, ``served-fp32`` or
``served-default``) over the cells of a job, in a process of its own, so that one side's thread
pools never spin while another is timed and its peak memory is its own:

    python -m gradlight.bench.long_texts_worker JOB.json RESULT.json

The protocol is bench/integrated_worker.py's: it loads the side and replies ``{"loaded": ...}``
(with the precision served, or false where the side cannot run here: the result, written, says
why), then runs what its standard input asks, one JSON line each: ``{"round": CELL, "warmup":
bool}`` (replied ``{"done": CELL}``) until ``{"finish": true}``. A round answers the cell's
text once, timed; a warm-up answers the cell's warm-up text untimed, and on the eager side
times it once more with each attention (SDPA, eager), the faster kept for the cell's rounds.

RESULT.json: per cell the seconds per round, the high-water RSS over the cell (reset when the
cell starts), the attention (eager) or precision (served) and the batcher's calls; the load's
RSS and seconds. RESULT.npz: the last round's answer per cell, ``CELL|raw`` ``[K, S]``,
``CELL|probabilities``, ``CELL|window_probabilities``, ``CELL|window_spans``.
"""

from __future__ import annotations

import gc
import json
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.bench.anchors import bf16_problem
from gradlight.bench.integrated_worker import _reset_peak
from gradlight.bench.long_texts_sides import Answer, Eager, Served
from gradlight.bench.machine import peak_rss_mb
from gradlight.bench.worker import Unavailable, run_worker, take_rounds


class Side:
    """One loaded side and its cells, measured a round at a time."""

    def __init__(self, job: dict[str, Any], result_path: Path) -> None:
        self.job, self.name, self.result_path = job, job["side"], result_path
        self.cells = {cell["name"]: cell for cell in job["cells"]}
        self.served: Served | None = None
        self.eager: Eager | None = None
        if job["kind"] == "served":
            self.served = Served(job)
        else:
            if job["bf16"] and (problem := bf16_problem("cpu")):
                raise Unavailable(problem)
            self.eager = Eager(job)
        self.load_rss_mb = round(peak_rss_mb(), 1)
        self.loaded: dict[str, Any] = {"precision": self.precision}  # the load's figures
        self.times: dict[str, list[float]] = {name: [] for name in self.cells}
        self.answers: dict[str, Answer] = {}
        self.attention: dict[str, str] = {}
        self.trials: dict[str, dict[str, float]] = {}
        self.calls: dict[str, list[tuple[int, int]] | None] = {}
        self.peaks: dict[str, float | None] = {}
        self.current: str | None = None
        self.resets = True

    @property
    def precision(self) -> str:
        if self.served is not None:
            return self.served.precision
        return "bf16" if self.job["bf16"] else "fp32"

    def _answer(self, name: str, text: str, attention: str = "") -> Answer:
        cell = self.cells[name]
        if self.served is not None:
            return self.served.answer(cell, text)
        assert self.eager is not None
        return self.eager.answer(cell, text, attention or self.attention[name])

    def _start(self, name: str) -> None:
        """Close the cell before (its peak RSS) and reset the high-water mark for ``name``."""
        if self.current is not None:
            self.peaks[self.current] = round(peak_rss_mb(), 1) if self.resets else None
        gc.collect()
        self.resets = self.resets and _reset_peak()
        self.current = name

    def warm_up(self, name: str) -> None:
        if name != self.current:
            self._start(name)
        text = self.cells[name]["warmup_text"]
        if self.served is not None:
            self._answer(name, text)
            self.served.calls()  # forget the warm-up's
            return
        assert self.eager is not None
        trials = {}
        for attention in self.eager.ways:
            self._answer(name, text, attention)
            started = time.perf_counter()
            self._answer(name, text, attention)
            trials[attention] = round(time.perf_counter() - started, 4)
        self.trials[name] = trials
        self.attention[name] = min(trials, key=trials.__getitem__)

    def round(self, name: str) -> None:
        if name != self.current:
            self._start(name)
        started = time.perf_counter()
        answer = self._answer(name, self.cells[name]["text"])
        self.times[name].append(time.perf_counter() - started)
        self.answers[name] = answer
        if self.served is not None:
            self.calls[name] = self.served.calls()

    def finish(self) -> dict[str, Any]:
        if self.current is not None:
            self.peaks[self.current] = round(peak_rss_mb(), 1) if self.resets else None
        cells, keep = {}, {}
        for name in self.cells:
            entry: dict[str, Any] = {
                "seconds": [round(s, 4) for s in self.times[name]],
                "peak_rss_mb": self.peaks.get(name),
                "precision": self.precision,
            }
            if name in self.attention:
                entry["attention"] = self.attention[name]
                entry["attention_trials_s"] = self.trials[name]
            if (calls := self.calls.get(name)) is not None:
                entry["calls"] = len(calls)
                entry["rows_per_call"] = round(sum(r for r, _ in calls) / max(len(calls), 1), 2)
            if (answer := self.answers.get(name)) is not None:
                if answer.steps:
                    entry["steps"] = answer.steps  # served integrated gradients: as used
                keep.update({f"{name}|{key}": v for key, v in answer.arrays().items()})
            cells[name] = entry
        if self.served is not None:
            self.served.close()
            threads = {"onnxruntime_intra_op": self.job["threads"]}
        else:
            import torch

            threads = {"torch": torch.get_num_threads()}
        peaks = [p for p in self.peaks.values() if p is not None]
        result = {
            "side": self.name,
            "precision": self.precision,
            "cells": cells,
            "load_rss_mb": self.load_rss_mb,
            "peak_rss_mb": round(max([self.load_rss_mb, *peaks]), 1),
            "peak_rss_per_cell": self.resets,
            "threads": threads,
            **self.loaded,
        }
        np.savez(self.result_path.with_suffix(".npz"), **keep)
        self.result_path.write_text(json.dumps(result), encoding="utf-8")
        return result


def main() -> None:
    run_worker(partial(take_rounds, Side, "side"))


if __name__ == "__main__":
    main()
