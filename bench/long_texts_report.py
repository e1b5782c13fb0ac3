"""The long-document bench's report (bench/long_texts.py): per cell and side the timings and
peak RSS, each served side's speedup over each eager side, what reading the note as windows
costs over truncating it, and each side's answer against ``eager`` (fp32), window by window.

Against ``eager``, per window (the tokens whose scores it gives, runtime/explanation/windows.py's
``owners``): the largest difference of raw scores relative to the window's largest (per label),
the top-3 agreement (the share of eager's 3 largest absolute scores among the side's, per
label), and the difference of the window's probabilities; for the document: normalized scores'
largest and mean difference, the probabilities' difference, and whether both read the same
windows (their character spans). ``equal`` (an fp32 side): within ``FP32_RELATIVE`` and
``FP32_PROBABILITIES``; ``within_bf16_gates`` (a bf16 side): within the export's bf16 gates
(export/bf16.py's ``GATES``), the probabilities gate on the document's and every window's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from gradlight.bench.integrated_cells import max_relative_difference, top3_agreement
from gradlight.runtime.execution.bf16_check import PROBABILITY_GATE, SCORE_MEAN_GATE
from gradlight.runtime.execution.scores import normalize_scores
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.windows import Window, owners

REFERENCE = "eager"
FP32_RELATIVE = 1e-4  # the export's score tolerance (raw, relative)
FP32_PROBABILITIES = 1e-5
BF16_GATES = {  # export/bf16.py's GATES
    "normalized_scores_mean_abs_diff": ("<=", SCORE_MEAN_GATE),
    "normalized_scores_max_abs_diff": ("<=", 0.1),
    "top3_agreement": (">=", 0.95),
    "probabilities_max_abs_diff": ("<=", PROBABILITY_GATE),
}
TITLES = {"ixg": "input x gradient", "ig": "integrated gradients"}


def _ms(seconds: Sequence[float], percentile: float) -> float:
    return round(float(np.percentile(np.asarray(seconds) * 1000, percentile)), 1)


def timing(entry: dict[str, Any], tokens: int) -> dict[str, Any]:
    """A side's figures in a cell: median, p10 and p90 in ms over its rounds, texts/s and
    tokens/s at the median, and what the worker said of the cell."""
    seconds = entry["seconds"]
    median = float(np.median(seconds))
    row = {
        "median_ms": _ms(seconds, 50),
        "p10_ms": _ms(seconds, 10),
        "p90_ms": _ms(seconds, 90),
        "rounds": len(seconds),
        "texts_per_s": round(1 / median, 4),
        "tokens_per_s": round(tokens / median, 1),
    }
    return {**row, **{k: v for k, v in entry.items() if k != "seconds"}, "seconds": seconds}


def paired_speedup(eager: Sequence[float], served: Sequence[float]) -> float:
    """Median over rounds of eager time / served time, round by round (taken in turns)."""
    count = min(len(eager), len(served))
    ratios = np.asarray(eager[:count]) / np.asarray(served[:count])
    return round(float(np.median(ratios)), 3)


def agreement(
    reference: dict[str, np.ndarray], other: dict[str, np.ndarray], owner: np.ndarray
) -> dict[str, Any]:
    """``other``'s answer against ``reference``'s, per window and for the document."""
    same = np.array_equal(reference["window_spans"], other["window_spans"])
    mask = np.ones((1, reference["raw"].shape[-1]))
    normal = [normalize_scores(a["raw"][None], mask)[0] for a in (reference, other)]
    difference = np.abs(normal[0] - normal[1])
    windows = []
    for index in range(len(reference["window_spans"])):
        mine = owner == index
        if not mine.any():
            continue
        a, b = {"w": reference["raw"][:, mine]}, {"w": other["raw"][:, mine]}
        wp = np.abs(reference["window_probabilities"][index] - other["window_probabilities"][index])
        windows.append(
            {
                "window": index,
                "tokens": int(mine.sum()),
                "max_relative_difference": float(max_relative_difference(a, b)),
                "top3_agreement": top3_agreement(a, b),
                "probabilities_max_abs_diff": float(wp.max()),
            }
        )
    probabilities = np.abs(reference["probabilities"] - other["probabilities"])
    return {
        "same_windows": same,
        "max_relative_difference": max(w["max_relative_difference"] for w in windows),
        "top3_agreement": round(float(np.mean([w["top3_agreement"] for w in windows])), 4),
        "normalized_scores_max_abs_diff": float(difference.max()),
        "normalized_scores_mean_abs_diff": float(difference.mean()),
        "probabilities_max_abs_diff": float(probabilities.max()),
        "window_probabilities_max_abs_diff": max(w["probabilities_max_abs_diff"] for w in windows),
        "windows": windows,
    }


def verdict(found: dict[str, Any], precision: str) -> dict[str, Any]:
    if precision == "fp32":
        equal = (
            found["same_windows"]
            and found["max_relative_difference"] <= FP32_RELATIVE
            and found["probabilities_max_abs_diff"] <= FP32_PROBABILITIES
            and found["window_probabilities_max_abs_diff"] <= FP32_PROBABILITIES
        )
        return {"equal": bool(equal)}
    # a window is a text the model reads: its probabilities are gated too
    probabilities = max(
        found["probabilities_max_abs_diff"], found["window_probabilities_max_abs_diff"]
    )
    measured = {**found, "probabilities_max_abs_diff": probabilities}
    met = all(
        measured[key] <= bound if sense == "<=" else measured[key] >= bound
        for key, (sense, bound) in BF16_GATES.items()
    )
    return {"within_bf16_gates": bool(met and found["same_windows"])}


def _answer(arrays: dict[str, np.ndarray], cell: str) -> dict[str, np.ndarray]:
    """A side's arrays of ``cell`` by name (``raw``, ``probabilities``, ...)."""
    return {k.split("|")[1]: v for k, v in arrays.items() if k.startswith(cell + "|")}


def _cell(
    cell: dict[str, Any],
    results: dict[str, dict],
    arrays: dict[str, dict[str, np.ndarray]],
    owner: np.ndarray,
    tokens: int,
) -> dict[str, Any]:
    name = cell["name"]
    read = tokens if cell["long_texts"] == "windows" else min(tokens, cell["max_length"])
    sides = {s: timing(results[s]["cells"][name], read) for s in cell["sides"] if s in results}
    row = {k: v for k, v in cell.items() if k not in ("text", "warmup_text", "sides")}
    row.update(title=TITLES[name.split("-")[0]], tokens_read=read, sides=sides)
    row["speedup"] = {
        f"{served} vs {eager}": paired_speedup(sides[eager]["seconds"], sides[served]["seconds"])
        for served in sides
        if served.startswith("served")
        for eager in sides
        if eager.startswith("eager")
    }
    if REFERENCE in sides:
        reference = _answer(arrays[REFERENCE], name)
        row["agreement"] = {}
        for side in sides:
            if side == REFERENCE:
                continue
            mine = _answer(arrays[side], name)
            found = agreement(reference, mine, owner)
            row["agreement"][side] = {**verdict(found, sides[side]["precision"]), **found}
    return row


def summarize(
    plan: dict[str, Any],
    cells: list[dict[str, Any]],
    results: dict[str, dict],
    arrays: dict[str, dict[str, np.ndarray]],
    document: EncodedText,
    windows: list[Window],
) -> dict[str, Any]:
    owner, _ = owners(len(document), windows)
    text = cells[0]["text"]
    note = {
        "tokens": len(document),
        "characters": len(text),
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "start": text[:120],
        "windows": len(windows),
        "window_tokens": [[w.start, w.end] for w in windows],
        "stride": windows[1].start - windows[0].start if len(windows) > 1 else 0,
    }
    rows = [_cell(cell, results, arrays, owner, len(document)) for cell in cells]
    by_name = {row["name"]: row for row in rows}
    cost = {}
    for side in (s for s in results if s.startswith("served")):
        cost[side] = {
            TITLES[short]: round(
                by_name[f"{short}-windows"]["sides"][side]["median_ms"]
                / by_name[f"{short}-truncate"]["sides"][side]["median_ms"],
                2,
            )
            for short in TITLES
        }
    sides = {
        side: {k: v for k, v in result.items() if k != "cells"} for side, result in results.items()
    }
    checks = {
        f"{side} ({row['title']})": found.get("equal", found.get("within_bf16_gates"))
        for row in rows
        for side, found in row.get("agreement", {}).items()
    }
    return {
        **plan,
        "note": note,
        "sides": sides,
        "cells": rows,
        "windows_over_truncate": cost,
        "checks": checks,
    }


def _side_label(report: dict[str, Any], side: str) -> str:
    return f"{side} ({report['sides'][side]['precision']})"


def markdown(report: dict[str, Any]) -> str:
    on, note = report["machine"], report["note"]
    lines = [
        f"# Long texts: {report['model']}, a {note['tokens']}-token note",
        "",
        f"{note['windows']} windows of {report['max_length']} tokens, stride {note['stride']}; "
        f"every label ({len(report['labels'])}); integrated gradients {report['steps']} "
        f"{report['integration']} steps, {report['baseline']} baseline. {on['cpu']} "
        f"({' '.join(on['isa'])}), {on['threads']} threads for every side; load average "
        f"{on['load_before'][0]} before, {on['load_after'][0]} after; {report['seconds']} s.",
        "",
        "| cell | side | median ms | p10-p90 ms | texts/s | tokens/s | peak RSS MB | speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["cells"]:
        for side, t in row["sides"].items():
            speed = ", ".join(
                f"{v:.2f}x vs {k.split(' vs ')[1]}"
                for k, v in row["speedup"].items()
                if k.startswith(side + " ")
            )
            lines.append(
                f"| {row['title']}, {row['long_texts']} | {_side_label(report, side)} | "
                f"{t['median_ms']:.0f} | {t['p10_ms']:.0f}-{t['p90_ms']:.0f} | "
                f"{t['texts_per_s']:.3g} | {t['tokens_per_s']:.0f} | {t['peak_rss_mb']} | "
                f"{speed or '-'} |"
            )
    lines += ["", "Windows over truncate (median time ratio):", ""]
    for side, cost in report["windows_over_truncate"].items():
        parts = ", ".join(f"{k} {v}x" for k, v in cost.items())
        lines.append(f"- {_side_label(report, side)}: {parts}")
    lines += ["", "Against eager (fp32), per window:", ""]
    lines += [
        "| cell | side | check | max rel. diff | top-3 | normalized max / mean diff | "
        "probabilities diff |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["cells"]:
        for side, a in row.get("agreement", {}).items():
            check = "equal" if "equal" in a else "bf16 gates"
            passed = a.get("equal", a.get("within_bf16_gates"))
            probabilities = max(
                a["probabilities_max_abs_diff"], a["window_probabilities_max_abs_diff"]
            )
            lines.append(
                f"| {row['title']} | {_side_label(report, side)} | {check}: "
                f"{'yes' if passed else 'NO'} | {a['max_relative_difference']:.2e} | "
                f"{a['top3_agreement']:.3f} | {a['normalized_scores_max_abs_diff']:.2e} / "
                f"{a['normalized_scores_mean_abs_diff']:.2e} | "
                f"{probabilities:.2e} |"
            )
    for side, why in report["not_measured"].items():
        lines.append(f"\n{side} not measured: {why}")
    return "\n".join(lines) + "\n"
