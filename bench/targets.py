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


def _speedups(
    report: dict[str, Any], group: str, speedup: str, per_label_count: bool = True
) -> list[tuple[str, float]]:
    return [
        (
            f"{run['model']}, L={run['labels']}, {cell['name']}"
            if per_label_count
            else f"{run['model']}, {cell['name']}",
            cell["speedup"][speedup],
        )
        for run, cell in _cells(report, group)
    ]


def _costs(report: dict[str, Any]) -> list[tuple[str, float]]:
    """The engine's attribution cost over its forward cost, at L = 2."""
    return [
        (
            f"{run['model']}, L=2, {cell['name']}",
            cell["methods"]["engine"]["attribution_over_forward"],
        )
        for group in ("mix", "length")
        for run, cell in _cells(report, group, labels=2)
        if "attribution_over_forward" in cell["methods"].get("engine", {})
    ]


def _served(report: dict[str, Any]) -> list[tuple[str, float]]:
    """Served texts/s at 32 clients over the engine's best in-process texts/s."""
    served = []
    for run in report["runs"]:
        best = engine_best_in_process(run)
        for level in run.get("served", []):
            if level["clients"] == 32 and best:
                where = f"{run['model']}, L={run['labels']}, 32 clients / engine best {best}"
                served.append((where, round(level["texts_per_second"] / best, 3)))
    return served


def judge(report: dict[str, Any]) -> list[dict[str, Any]]:
    targets = (
        (
            "engine vs reference, realistic mix, per text",
            ">= 5x",
            _speedups(report, "mix", "engine vs reference"),
            lambda v: v >= 5,
        ),
        (
            "engine vs eager-best at equal padding",
            ">= 1.3x",
            _speedups(report, "length", "engine vs eager-best"),
            lambda v: v >= 1.3,
        ),
        (
            "engine attribution cost in forward-equivalents at L = 2",
            "<= 3.45 (1 + L, +15%)",
            _costs(report),
            lambda v: v <= 3 * 1.15,
        ),
        (
            "served at 32 clients vs the engine's best in-process throughput",
            ">= 0.8",
            _served(report),
            lambda v: v >= 0.8,
        ),
        (
            "sentence attributions: one padded call vs one call per variant",
            ">= 2x",
            _speedups(report, "sentences", "one call vs one call per variant (engine)", False),
            lambda v: v >= 2,
        ),
    )
    return [
        _judge(name, threshold, [(w, v, met(v)) for w, v in measured])
        for name, threshold, measured, met in targets
    ]
