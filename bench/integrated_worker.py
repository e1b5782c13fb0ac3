"""The integrated gradients bench's worker: one way (``captum``, ``eager-best``, ``eager-bf16``,
``gradlight`` or the untimed ``reference``) over the cells of a job, in a process of its own, so
that one way's thread pools never spin while another is timed and its peak memory is its own:

    python -m gradlight.bench.integrated_worker JOB.json RESULT.json

It loads the way, replies ``{"loaded": ...}`` on its standard output (False where the way
cannot run here: the result, written, says why), then runs what its standard input asks, one
JSON line each (bench/integrated_turns.py takes every way's rounds of a cell in turns):
``{"round": CELL, "warmup": bool}`` (replied ``{"done": CELL}``) until ``{"finish": true}`` (the
result written, replied ``{"finished": true}``). A round times each batch of the cell once; a
warm-up runs the cell's first text alone, untimed (eager-best and eager-bf16 with ``attention``
``auto``, on the first cell of each text length, then time that text once with SDPA and once
with eager attention, warmed up, and keep the faster for the cells of that length).

RESULT.json: per cell, the seconds per batch and round, per round, the cell's peak RSS (the
high-water mark reset when the cell starts, where Linux allows it), the attention used;
gradlight's steps per text and whether each missed its tolerance; the process's peak RSS and
load time. RESULT.npz: the last round's raw scores, ``CELL|BATCH|TEXT`` -> ``[K, S]``; the
reference's f(x) - f(b) as ``CELL|BATCH|TEXT|delta`` -> ``[K]``.
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
from gradlight.bench.integrated_cells import CAPTUM, EAGER_BF16, GRADLIGHT, REFERENCE
from gradlight.bench.integrated_methods import (
    Ask,
    CaptumIG,
    EagerBestIG,
    GradlightIG,
    GradlightText,
    Tokens,
)
from gradlight.bench.machine import peak_rss_mb
from gradlight.bench.worker import Unavailable, run_worker, take_rounds
from gradlight.runtime.execution.tokenization import TextEncoder


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its RSS now; False where Linux refuses."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class Way:
    """One loaded way and its cells, measured a round at a time."""

    def __init__(self, job: dict[str, Any], result_path: Path) -> None:
        self.job, self.name, self.result_path = job, job["method"], result_path
        self.cells = {cell["name"]: cell for cell in job["cells"]}
        self.asks = {name: Ask.of(cell) for name, cell in self.cells.items()}
        self.gradlight: GradlightIG | None = None
        self.eager: dict[str, Any] = {}
        self.tokens: dict[str, list[Tokens]] = {}
        if self.name == GRADLIGHT:
            self.gradlight = GradlightIG(job)
            self.options = {
                name: self.gradlight.options(self.asks[name], cell["max_length"])
                for name, cell in self.cells.items()
            }
        else:
            self._load_eager(job)
        self.times: dict[str, list[list[float]]] = {
            name: [[] for _ in cell["batches"]] for name, cell in self.cells.items()
        }
        self.rounds: dict[str, list[float]] = {name: [] for name in self.cells}
        self.outputs: dict[str, list[list[Any]]] = {}
        self.deltas: dict[str, list[np.ndarray]] = {}
        self.attention: dict[str, str] = {}
        self.trials: dict[str, dict[str, float]] = {}
        self.calls: dict[str, list[tuple[int, int]] | None] = {}
        self.chosen: dict[int, str] = {}  # max length -> the faster attention there
        self.peaks: dict[str, float | None] = {}
        self.current: str | None = None
        self.peak_before_cells = peak_rss_mb()
        self.resets = True
        self.loaded: dict[str, Any] = {}  # the load's figures

    def _load_eager(self, job: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(job["threads"])
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if self.name == EAGER_BF16 and (problem := bf16_problem("cpu")):
            raise Unavailable(problem)
        if self.name == CAPTUM:
            self.eager = {"eager": CaptumIG(job)}
        else:
            attention = "eager" if self.name == REFERENCE else job["attention"]
            bf16 = self.name == EAGER_BF16
            for choice in ("sdpa", "eager") if attention == "auto" else (attention,):
                try:
                    self.eager[choice] = EagerBestIG(job, choice, bf16)
                except (ValueError, ImportError) as exc:  # no SDPA for this architecture
                    if attention != "auto":
                        raise Unavailable(f"{choice} attention: {exc}") from exc
        encoder = TextEncoder(Path(job["tokenizer"]), job["pre_tokenization"])
        for name, cell in self.cells.items():
            self.tokens[name] = [
                Tokens(encoder.encode(batch, cell["max_length"]), job["pad_token_id"])
                for batch in cell["batches"]
            ]

    def _call(self, name: str, index: int) -> list[Any]:
        """Batch ``index`` of cell ``name``: its texts' answers (``[K, S]`` each, or
        gradlight's ``GradlightText``)."""
        cell = self.cells[name]
        if self.gradlight is not None:
            return self.gradlight.attribute(cell["batches"][index], self.options[name])
        tokens = self.tokens[name][index]
        way = self.eager[self.attention[name]]
        raw = way.attribute(tokens, self.asks[name])
        return [raw[i, :, :n] for i, n in enumerate(tokens.lengths)]

    def _close_cell(self) -> None:
        """The peak RSS of the cell measured last."""
        if self.current is not None:
            self.peaks[self.current] = round(peak_rss_mb(), 1) if self.resets else None

    def _start(self, name: str) -> None:
        """Close the cell before (its peak RSS, the results so far written) and reset the
        high-water mark for ``name``."""
        if self.current is not None:
            self._close_cell()
            self.save()
        gc.collect()
        self.resets = self.resets and _reset_peak()
        self.current = name

    def warm_up(self, name: str) -> None:
        """The cell's first text alone, untimed; eager-best's attention chosen (the docstring)."""
        if name != self.current:
            self._start(name)
        if self.gradlight is not None:
            self.gradlight.attribute(self.cells[name]["batches"][0][:1], self.options[name])
            self.gradlight.path_calls()  # forget the warm-up's
            return
        one = self.tokens[name][0].first()
        length = self.cells[name]["max_length"]
        chosen = self.chosen.get(length)  # a trial per length class, not per cell
        ways = {chosen: self.eager[chosen]} if chosen else self.eager
        trials = {}
        for attention, way in ways.items():
            way.attribute(one, self.asks[name])
            if len(ways) > 1:
                started = time.perf_counter()
                way.attribute(one, self.asks[name])
                trials[attention] = round(time.perf_counter() - started, 4)
        if trials:
            self.trials[name] = trials
            self.chosen[length] = min(trials, key=trials.__getitem__)
        self.attention[name] = self.chosen.get(length) or next(iter(self.eager))

    def round(self, name: str) -> None:
        """Every batch of the cell once, each call timed alone."""
        if name != self.current:
            self._start(name)
        if name not in self.attention and self.gradlight is None:
            self.attention[name] = next(iter(self.eager))  # no warm-up asked (the reference)
        outputs, total = [], 0.0
        calls: list[tuple[int, int]] | None = []
        for index in range(len(self.cells[name]["batches"])):
            begin = time.perf_counter()
            outputs.append(self._call(name, index))
            seconds = time.perf_counter() - begin
            self.times[name][index].append(seconds)
            total += seconds
            if self.gradlight is not None:
                seen = self.gradlight.path_calls()
                calls = None if seen is None or calls is None else calls + seen
        self.rounds[name].append(total)
        self.outputs[name] = outputs
        if self.gradlight is not None:
            self.calls[name] = calls
        if self.name == REFERENCE:
            labels = self.asks[name].labels
            way = self.eager[self.attention[name]]
            self.deltas[name] = [way.deltas(tokens, labels) for tokens in self.tokens[name]]

    def finish(self) -> dict[str, Any]:
        self._close_cell()
        return self.save(final=True)

    def save(self, final: bool = False) -> dict[str, Any]:
        """Write the result and the last rounds' scores: of every cell measured so far (when a
        cell starts, so that a worker that dies later, out of memory say, leaves them), or
        ``final``ly, of every cell, gradlight's batcher then stopped."""
        cells, keep = {}, {}
        for name in self.cells:
            entry: dict[str, Any] = {
                "times": self.times[name],
                "rounds": self.rounds[name],
                "peak_rss_mb": self.peaks.get(name),
                "attention": self.attention.get(name, ""),
            }
            if self.gradlight is not None:
                entry["precision"] = self.gradlight.precision
            if name in self.trials:
                entry["attention_trials"] = self.trials[name]
            for b, batch in enumerate(self.outputs.get(name, [])):
                for t, answer in enumerate(batch):
                    scores = answer.scores if isinstance(answer, GradlightText) else answer
                    keep[f"{name}|{b}|{t}"] = np.asarray(scores, dtype=np.float32)
            for b, deltas in enumerate(self.deltas.get(name, [])):
                for t, delta in enumerate(deltas):
                    keep[f"{name}|{b}|{t}|delta"] = delta
            if self.gradlight is not None and name in self.outputs:
                answers = [a for batch in self.outputs[name] for a in batch]
                entry["text_steps"] = [a.steps for a in answers]
                entry["tolerance_missed"] = [a.missed for a in answers]
                calls = self.calls.get(name)
                if calls:  # None: more calls than the batcher's history holds
                    entry["path_calls"] = len(calls)
                    entry["path_rows_per_call"] = round(sum(r for r, _ in calls) / len(calls), 2)
            cells[name] = entry
        peaks = [p for p in self.peaks.values() if p is not None]
        result = {
            "method": self.name,
            **self.loaded,
            "cells": cells,
            "peak_rss_mb": round(max([self.peak_before_cells, *peaks]), 1),
            "peak_rss_per_cell": self.resets,
            "final": final,
        }
        if self.gradlight is not None:
            if final:
                self.gradlight.close()
            result["threads"] = self.job["threads"]  # ONNX Runtime intra-op
        else:
            import torch

            result["threads"] = result["torch_threads"] = torch.get_num_threads()
        np.savez(self.result_path.with_suffix(".npz"), **keep)
        self.result_path.write_text(json.dumps(result), encoding="utf-8")
        return result


def main() -> None:
    run_worker(partial(take_rounds, Way, "method"))


if __name__ == "__main__":
    main()
