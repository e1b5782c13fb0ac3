"""The integrated gradients section's figures, from the workers' results (bench/integrated.py
measures them): per cell a row per way (texts/s, ms per text, peak RSS), eager-bf16's top-3
agreement with eager fp32 and whether it is kept, the best eager, gradlight's ratios, the
faithful cells' steps and completeness gaps, and each target's verdict per cell and overall."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradlight.bench.integrated_cells import (
    CAPTUM,
    EAGER,
    EAGER_BF16,
    EAGER_WAYS,
    FAITHFUL,
    FIXED,
    GRADLIGHT,
    REFERENCE,
    TIMED,
    max_relative_difference,
    relative_gaps,
    title,
    top3_agreement,
)
from gradlight.bench.stats import latency

BF16_KEEP = 0.95  # eager-bf16 counts as a best eager candidate where its top-3 agreement is this
# (target key, group, threshold, the way compared with, what is said)
TARGETS = (
    (
        "served_vs_best_eager",
        FIXED,
        1.0,
        "best eager",
        "served integrated gradients texts/s >= {t:g}x the best eager (fp32 or kept bf16 "
        "autocast), fixed steps, every cell with L >= 2",
    ),
    (
        "served_vs_captum",
        FIXED,
        5.0,
        CAPTUM,
        "served integrated gradients texts/s >= {t:g}x Captum LayerIntegratedGradients, "
        "fixed steps",
    ),
    (
        "faithful_vs_best_eager",
        FAITHFUL,
        2.0,
        "best eager",
        "time to a faithful explanation: gradlight with completeness_tolerance texts/s >= {t:g}x "
        "the best eager at fixed steps",
    ),
    (
        "faithful_vs_captum",
        FAITHFUL,
        10.0,
        CAPTUM,
        "time to a faithful explanation: gradlight with completeness_tolerance texts/s >= {t:g}x "
        "Captum at fixed steps",
    ),
)
Scores = dict[str, dict[str, np.ndarray]]  # cell -> "BATCH|TEXT" -> [K, S] (or [K]: deltas)


def split_saved(saved: dict[str, np.ndarray], suffix: str = "") -> Scores:
    """A worker's saved arrays by cell: ``CELL|BATCH|TEXT[|suffix]`` -> cell -> ``BATCH|TEXT``."""
    result: Scores = {}
    for key, value in saved.items():
        parts = key.split("|")
        if (parts[3:] or [""])[0] != suffix:
            continue
        result.setdefault(parts[0], {})[f"{parts[1]}|{parts[2]}"] = value
    return result


def _row(cell: dict[str, Any], method: str, result: dict[str, Any]) -> dict[str, Any]:
    """One way's figures in one cell."""
    entry = result["cells"][cell["name"]]
    texts = sum(len(batch) for batch in cell["batches"])
    per_round = [texts / seconds for seconds in entry["rounds"]]
    per_text_ms = [
        1000 * seconds / len(batch)
        for batch, times in zip(cell["batches"], entry["times"], strict=True)
        for seconds in times
    ]
    ask = cell["asks"][method]
    row = {
        "method": method,
        "steps": ask["steps"],
        "integration": ask["integration"],
        "tolerance": ask.get("tolerance", 0.0),
        "rows_per_call": ask["rows_per_call"],
        "texts_per_s": round(float(np.median(per_round)), 4),
        "texts_per_s_rounds": [round(value, 4) for value in per_round],
        "rounds": len(per_round),
        "ms_per_text": {
            "median": round(float(np.median(per_text_ms)), 2),
            "p90": round(float(np.percentile(per_text_ms, 90)), 2),
        },
        "batch_latency": latency([t for times in entry["times"] for t in times]),
        # the cell's own where the worker could reset its high-water mark, else the process's
        "peak_rss_mb": entry["peak_rss_mb"] or result["peak_rss_mb"],
        "attention": entry.get("attention", ""),
    }
    if entry.get("precision"):
        row["precision"] = entry["precision"]
    if method != GRADLIGHT:
        lengths = cell["tokens"]
        padded = sum(len(batch) * max(batch) for batch in lengths)
        row["padded_over_real_tokens"] = round(padded / sum(map(sum, lengths)), 4)
    else:  # gradlight's rows per path graph call, as its batcher made them
        row["path_rows_per_call"] = entry.get("path_rows_per_call")
    if "attention_trials" in entry:
        row["attention_trials"] = entry["attention_trials"]
    return row


def _verdict(key: str, threshold: float, measured: float | None, reason: str) -> dict[str, Any]:
    if measured is None:
        return {"target": key, "threshold": threshold, "status": "not measured", "why": reason}
    status = "met" if measured >= threshold else "missed"
    return {"target": key, "threshold": threshold, "status": status, "measured": measured}


def _faithful(
    cell: dict[str, Any],
    rows: dict[str, dict[str, Any]],
    results: dict[str, dict[str, Any]],
    scores: dict[str, Scores],
    deltas: Scores,
) -> dict[str, Any]:
    """Top-3 agreement with the reference and median relative completeness gap per way, and
    gradlight's steps per text."""
    name = cell["name"]
    reference = scores.get(REFERENCE, {}).get(name)
    for method, row in rows.items():
        mine = scores.get(method, {}).get(name)
        if reference is None or mine is None:
            continue
        row["top3_vs_reference"] = top3_agreement(reference, mine)
        row["median_relative_gap"] = round(float(np.median(relative_gaps(mine, deltas[name]))), 6)
    extra: dict[str, Any] = {}
    if reference is not None:
        extra["reference_median_relative_gap"] = round(
            float(np.median(relative_gaps(reference, deltas[name]))), 6
        )
    if GRADLIGHT in rows:
        entry = results[GRADLIGHT]["cells"][name]
        steps = entry.get("text_steps") or []
        missed = entry.get("tolerance_missed") or []
        if steps and min(steps) > 0:  # 0: a runtime that does not report the steps it used
            extra["gradlight_steps"] = {
                "min": min(steps),
                "median": float(np.median(steps)),
                "max": max(steps),
                "histogram": {str(k): v for k, v in sorted(Counter(steps).items())},
            }
        extra["gradlight_missed"] = sum(missed)
    return extra


def summarize_cell(
    cell: dict[str, Any],
    results: dict[str, dict[str, Any]],
    scores: dict[str, Scores],
    deltas: Scores,
) -> dict[str, Any]:
    """One cell of the report (the module's docstring)."""
    not_measured = dict(cell.get("not_measured", {}))
    rows: dict[str, dict[str, Any]] = {}
    for method in TIMED:
        if method not in cell["methods"] or method in not_measured:
            continue
        result = results.get(method)
        if result is None or "unavailable" in result:
            not_measured[method] = result["unavailable"] if result else "not run"
            continue
        entry = result["cells"].get(cell["name"])
        if not entry or not entry["rounds"]:
            not_measured[method] = result.get("died", "no rounds")
            continue
        rows[method] = _row(cell, method, result)
    name = cell["name"]
    if EAGER in rows and EAGER_BF16 in rows:
        agreement = top3_agreement(scores[EAGER][name], scores[EAGER_BF16][name])
        rows[EAGER_BF16]["top3_vs_eager_fp32"] = agreement
        rows[EAGER_BF16]["kept"] = agreement >= BF16_KEEP
    kept = [m for m in EAGER_WAYS if m in rows and rows[m].get("kept", True)]
    best = max(kept, key=lambda m: rows[m]["texts_per_s"]) if kept else None
    if GRADLIGHT in rows:
        served = rows[GRADLIGHT]["texts_per_s"]
        for row in rows.values():
            row["gradlight_over_this"] = round(served / row["texts_per_s"], 3)
    summary: dict[str, Any] = {
        **{k: cell[k] for k in ("name", "group", "L", "labels", "batch", "length", "max_length")},
        "title": title(cell),
        "texts": sum(len(batch) for batch in cell["batches"]),
        "lengths": _lengths(cell["tokens"]),
        "rows": [rows[m] for m in TIMED if m in rows],
        "not_measured": not_measured,
        "best_eager": best,
    }
    if cell["group"] == FAITHFUL:
        summary.update(_faithful(cell, rows, results, scores, deltas))
    else:
        summary["max_relative_difference"] = _differences(rows, scores, name)
    summary["verdicts"] = _verdicts(cell, rows, best, not_measured)
    return summary


def _lengths(tokens: list[list[int]]) -> dict[str, Any]:
    flat = [n for batch in tokens for n in batch]
    return {
        "min": min(flat),
        "median": float(np.median(flat)),
        "max": max(flat),
        "tokens": sum(flat),
    }


def _differences(rows: dict[str, Any], scores: dict[str, Scores], name: str) -> dict[str, float]:
    """At fixed steps the fp32 ways compute the same thing: max relative differences."""
    pairs = [(EAGER, CAPTUM), (GRADLIGHT, CAPTUM), (GRADLIGHT, EAGER)]
    return {
        f"{a} vs {b}": max_relative_difference(scores[b][name], scores[a][name])
        for a, b in pairs
        if a in rows and b in rows
    }


def _verdicts(
    cell: dict[str, Any],
    rows: dict[str, dict[str, Any]],
    best: str | None,
    not_measured: dict[str, str],
) -> list[dict[str, Any]]:
    """The cell's targets (those of its group): gradlight's texts/s over the other's."""
    verdicts = []
    for key, group, threshold, other, _ in TARGETS:
        if group != cell["group"]:
            continue
        if key == "served_vs_best_eager" and cell["L"] < 2:
            continue
        way = best if other == "best eager" else other
        if GRADLIGHT not in rows:
            why = not_measured.get(GRADLIGHT, "gradlight not measured")
            verdicts.append(_verdict(key, threshold, None, why))
        elif way is None or way not in rows:
            why = not_measured.get(way or "", "no kept eager way measured")
            verdicts.append(_verdict(key, threshold, None, f"{way or 'best eager'}: {why}"))
        else:
            ratio = rows[GRADLIGHT]["texts_per_s"] / rows[way]["texts_per_s"]
            verdicts.append({**_verdict(key, threshold, round(ratio, 3), ""), "against": way})
    return verdicts


def judge(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target over the cells: missed where a measured cell missed it, met where every
    measured cell met it, else not measured; with every cell's figure."""
    judged = []
    for key, _, threshold, _, text in TARGETS:
        found = [(c["title"], v) for c in cells for v in c["verdicts"] if v["target"] == key]
        statuses = {v["status"] for _, v in found}
        status = (
            "missed" if "missed" in statuses else "met" if "met" in statuses else "not measured"
        )
        judged.append(
            {
                "key": key,
                "target": text.format(t=threshold),
                "threshold": threshold,
                "status": status,
                "cells": [{"where": where, **verdict} for where, verdict in found],
            }
        )
    return judged
