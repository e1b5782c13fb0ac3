"""The issue's targets, each judged on the report's own figures (met, missed or not measured)."""

from __future__ import annotations

from typing import Any


def _cells(report: dict[str, Any], group: str, labels: int | None = None) -> list[tuple]:
    return [
        (run, cell)
        for run in report["runs"]
        for cell in run["cells"]
        if cell["group"] == group and (labels is None or run["labels"] == labels)
    ]


def engine_best_in_process(run: dict[str, Any]) -> float | None:
    """The engine's best texts/s over the realistic mix's batch sizes."""
    rates = [
        cell["methods"]["engine"]["texts_per_second"]
        for cell in run["cells"]
        if cell["group"] == "mix" and "engine" in cell["methods"]
    ]
    return max(rates) if rates else None


def _judge(name: str, threshold: str, rows: list[tuple[str, float, bool]]) -> dict[str, Any]:
    if not rows:
        return {"target": name, "threshold": threshold, "status": "not measured", "rows": []}
    met = all(ok for _, _, ok in rows)
    return {
        "target": name,
        "threshold": threshold,
        "status": "met" if met else "missed",
        "rows": [{"where": where, "measured": value, "met": ok} for where, value, ok in rows],
    }


def judge(report: dict[str, Any]) -> list[dict[str, Any]]:
    mix = [
        (
            f"{run['model']}, L={run['labels']}, {cell['name']}",
            cell["speedup"]["engine vs reference"],
        )
        for run, cell in _cells(report, "mix")
    ]
    padding = [
        (
            f"{run['model']}, L={run['labels']}, {cell['name']}",
            cell["speedup"]["engine vs eager-best"],
        )
        for run, cell in _cells(report, "length")
    ]
    cost = [
        (
            f"{run['model']}, L=2, {cell['name']}",
            cell["methods"]["engine"]["attribution_over_forward"],
        )
        for group in ("mix", "length")
        for run, cell in _cells(report, group, labels=2)
        if "attribution_over_forward" in cell["methods"].get("engine", {})
    ]
    served = []
    for run in report["runs"]:
        best = engine_best_in_process(run)
        for level in run.get("served", []):
            if level["clients"] == 32 and best:
                where = f"{run['model']}, L={run['labels']}, 32 clients / engine best {best}"
                served.append((where, round(level["texts_per_second"] / best, 3)))
    sentences = [
        (
            f"{run['model']}, {cell['name']}",
            cell["speedup"]["one call vs one call per variant (engine)"],
        )
        for run, cell in _cells(report, "sentences")
    ]
    return [
        _judge(
            "engine vs reference, realistic mix, per text",
            ">= 5x",
            [(w, v, v >= 5) for w, v in mix],
        ),
        _judge(
            "engine vs eager-best at equal padding",
            ">= 1.3x",
            [(w, v, v >= 1.3) for w, v in padding],
        ),
        _judge(
            "engine attribution cost in forward-equivalents at L = 2",
            "<= 3.45 (1 + L, +15%)",
            [(w, v, v <= 3 * 1.15) for w, v in cost],
        ),
        _judge(
            "served at 32 clients vs the engine's best in-process throughput",
            ">= 0.8",
            [(w, v, v >= 0.8) for w, v in served],
        ),
        _judge(
            "sentence attributions: one padded call vs one call per variant",
            ">= 2x",
            [(w, v, v >= 2) for w, v in sentences],
        ),
    ]
