"""The integrated gradients bench's worker: one method (``captum``, ``eager-best`` or
``gradlight``) over every batch of a job, in a process of its own, so that one method's thread
pools never spin while another is timed (bench/integrated.py starts it):

    python -m gradlight.bench.integrated_worker JOB.json RESULT.json

Writes RESULT.json (times per batch and round, peak RSS, load time) and RESULT.npz (the raw
scores of the last round, ``batch|text`` -> ``[K, S]``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.bench.integrated_methods import CaptumIG, EagerBestIG, GradlightIG, Tokens
from gradlight.bench.machine import peak_rss_mb
from gradlight.runtime.execution.tokenization import TextEncoder

Call = Callable[[int], list[np.ndarray]]  # batch index -> its texts' scores, ``[K, S]`` each


def _eager_best(job: dict[str, Any], first: Tokens) -> tuple[EagerBestIG, dict[str, float]]:
    """Eager-best with the faster of SDPA and eager attention on the first batch (warmed up,
    then timed once each)."""
    import gc

    trials: dict[str, float] = {}
    best: EagerBestIG | None = None
    for attention in ("sdpa", "eager"):
        try:
            method = EagerBestIG(job, attention)
        except (ValueError, ImportError):  # the architecture has no SDPA attention
            continue
        method.attribute(first)
        started = time.perf_counter()
        method.attribute(first)
        trials[attention] = round(time.perf_counter() - started, 4)
        if best is None or trials[attention] < trials[best.attention]:
            best = method
        else:
            del method
        gc.collect()
    assert best is not None
    return best, trials


def run_worker(job: dict[str, Any], result_path: Path) -> dict[str, Any]:
    """One method over every batch: warm-up, rounds, raw scores of the last round saved next
    to ``result_path`` (``.npz``, ``batch|text`` -> ``[K, S]``)."""
    name = job["method"]
    loading = time.perf_counter()
    method, call, extra = _load(job)
    load_seconds = round(time.perf_counter() - loading, 2)
    call(0)  # warm-up, untimed
    times, rounds, outputs, calls = _rounds(job, method, call)
    if name == "gradlight":
        if calls is not None:
            extra["path_calls"] = len(calls)
            extra["path_padded_tokens"] = sum(rows * width for rows, width in calls)
            extra["rows_per_call_max"] = max(rows for rows, _ in calls)
        method.close()
    result = {
        "method": name,
        "attention": getattr(method, "attention", ""),
        "load_seconds": load_seconds,
        "times": times,
        "rounds": rounds,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        **extra,
    }
    keep = {
        f"{b}|{t}": np.asarray(scores, dtype=np.float32)
        for b, batch in enumerate(outputs)
        for t, scores in enumerate(batch)
    }
    np.savez(result_path.with_suffix(".npz"), **keep)
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return result


def _load(job: dict[str, Any]) -> tuple[Any, Call, dict[str, Any]]:
    """The job's method, loaded, the call that attributes a batch with it, and what the result
    reports of the loading (the eager ways' torch threads, eager-best's attention trials)."""
    batches: list[list[str]] = job["batches"]
    if job["method"] == "gradlight":
        method = GradlightIG(job)
        return method, lambda b: method.attribute(batches[b]), {}
    import torch

    torch.set_num_threads(job["threads"])
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    extra: dict[str, Any] = {}
    encoder = TextEncoder(Path(job["tokenizer"]))
    tokens = [
        Tokens(encoder.encode(batch, job["max_length"]), job["pad_token_id"]) for batch in batches
    ]
    eager: CaptumIG | EagerBestIG
    if job["method"] == "captum":
        eager = CaptumIG(job)
    else:
        eager, extra["attention_trials"] = _eager_best(job, tokens[0])

    def call(b: int) -> list[np.ndarray]:
        raw = eager.attribute(tokens[b])
        return [raw[i, :, :n] for i, n in enumerate(tokens[b].lengths)]

    extra["torch_threads"] = torch.get_num_threads()
    return eager, call, extra


def _rounds(
    job: dict[str, Any], method: Any, call: Call
) -> tuple[list[list[float]], list[float], list[list[np.ndarray]], list[tuple[int, int]] | None]:
    """Rounds over every batch, each call timed alone, until ``max_repeats`` rounds, or
    ``min_repeats`` once ``budget_s`` is spent: the seconds per batch and round, per round, the
    last round's scores and gradlight's path graph calls in it (None: more than its batcher's
    history holds; gradlight's bookkeeping stays outside the timed calls)."""
    gradlight = job["method"] == "gradlight"
    count = len(job["batches"])
    times: list[list[float]] = [[] for _ in range(count)]
    rounds: list[float] = []
    outputs: list[list[np.ndarray]] = []
    calls: list[tuple[int, int]] | None = []
    if gradlight:
        method.path_calls()  # forget the warm-up's
    started = time.perf_counter()
    while True:
        outputs = []
        calls = []
        round_seconds = 0.0
        for index in range(count):
            begin = time.perf_counter()
            outputs.append(call(index))
            seconds = time.perf_counter() - begin
            times[index].append(seconds)
            round_seconds += seconds
            if gradlight:
                seen = method.path_calls()
                calls = None if seen is None or calls is None else calls + seen
        rounds.append(round_seconds)
        spent = time.perf_counter() - started
        if len(rounds) >= job["max_repeats"] or (
            len(rounds) >= job["min_repeats"] and spent >= job["budget_s"]
        ):
            break
    return times, rounds, outputs, calls


if __name__ == "__main__":
    run_worker(json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")), Path(sys.argv[2]))
