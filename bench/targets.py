"""The issue's targets, each judged on the report's own figures (met, missed or not measured).

gradlight's figure in a cell is its best engine precision's (``best_engine``: every precision
the bench ran was validated at export), and the eager side is the cell's best eager anchor
(``best_eager``: the fastest of eager-best, eager-best-sdpa and the bf16 anchors that ran), so
a target is judged against the fastest eager way on that very cell."""

from __future__ import annotations

from typing import Any

from gradlight.bench.workload import engine_name


def _cells(report: dict[str, Any], group: str, labels: int | None = None) -> list[tuple]:
    return [
        (run, cell)
        for run in report["runs"]
        for cell in run["cells"]
        if cell["group"] == group and (labels is None or run["labels"] == labels)
    ]


def engine_best_in_process(run: dict[str, Any]) -> float | None:
    """The served precision's engine's best texts/s over the realistic mix's batch sizes."""
    engine = engine_name(run.get("served_precision", "fp32"))
    rates = [
        cell["methods"][engine]["texts_per_second"]
        for cell in run["cells"]
        if cell["group"] == "mix" and engine in cell["methods"]
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


def _where(run: dict[str, Any], cell: dict[str, Any], per_label_count: bool = True) -> str:
    labels = f"L={run['labels']}, " if per_label_count else ""
    return f"{run['model']}, {labels}{cell['name']}"


def _speedups(report: dict[str, Any], groups: tuple[str, ...], speedup: str) -> list[tuple]:
    """The cells' best engine against the reference or the best eager (``speedup``: a key of
    the cell's speedups), each named with the methods it compares."""
    rows = []
    for group in groups:
        for run, cell in _cells(report, group):
            if speedup not in cell.get("speedup", {}):
                continue
            other = "reference" if speedup.endswith("reference") else cell.get("best_eager")
            rows.append(
                (
                    f"{_where(run, cell)} ({cell.get('best_engine')} vs {other})",
                    cell["speedup"][speedup],
                )
            )
    return rows


def _sentences(report: dict[str, Any]) -> list[tuple[str, float]]:
    prefix = "one call vs one call per variant"
    return [
        (f"{_where(run, cell, False)} ({key[len(prefix) :].strip(' ()')})", value)
        for run, cell in _cells(report, "sentences")
        for key, value in cell.get("speedup", {}).items()
        if key.startswith(prefix)
    ]


def _costs(report: dict[str, Any]) -> list[tuple[str, float]]:
    """The fp32 engine's attribution cost over its forward cost, at L = 2: the same precision
    on both sides. (A reduced-precision engine's forward graph stays fp32, export/bf16.py, so
    its ratio would mix precisions; the report still lists it per method.)"""
    engine = engine_name("fp32")
    return [
        (
            f"{_where(run, cell)} ({engine}, fp32)",
            cell["methods"][engine]["attribution_over_forward"],
        )
        for group in ("mix", "length")
        for run, cell in _cells(report, group, labels=2)
        if "attribution_over_forward" in cell["methods"].get(engine, {})
    ]


def _served(report: dict[str, Any]) -> list[tuple[str, float]]:
    """Served texts/s at 32 clients over the engine's best in-process texts/s (token
    attributions on both sides)."""
    served = []
    for run in report["runs"]:
        best = engine_best_in_process(run)
        for level in run.get("served", []):
            if level["clients"] == 32 and best and not level.get("sentences"):
                where = f"{run['model']}, L={run['labels']}, 32 clients / engine best {best}"
                served.append((where, round(level["texts_per_second"] / best, 3)))
    return served


def _served_with_sentences(report: dict[str, Any]) -> list[tuple[str, float]]:
    """The server's texts/s answering token and sentence attributions over the reference's
    texts/s doing the same one text at a time (the ``mix-sentences`` cell): the served path end
    to end (tokenization, batching, gRPC) against the reference as its users run it."""
    served = []
    for run, cell in _cells(report, "mix-sentences"):
        reference = cell["methods"].get("reference", {}).get("texts_per_second")
        for level in run.get("served", []):
            if level.get("sentences") and reference:
                where = (
                    f"{run['model']}, L={run['labels']}, {level['clients']} clients: "
                    f"{level['texts_per_second']} vs reference {reference} texts/s"
                )
                served.append((where, round(level["texts_per_second"] / reference, 2)))
    return served


def judge(report: dict[str, Any]) -> list[dict[str, Any]]:
    targets = (
        (
            "engine vs reference, realistic mix, per text",
            ">= 5x",
            _speedups(report, ("mix", "mix-sentences"), "best engine vs reference"),
            lambda v: v >= 5,
        ),
        (
            "served end to end vs reference, realistic mix, per text, sentences included",
            ">= 5x",
            _served_with_sentences(report),
            lambda v: v >= 5,
        ),
        (
            "engine vs best eager at equal padding",
            ">= 1.3x",
            _speedups(report, ("length",), "best engine vs best eager"),
            lambda v: v >= 1.3,
        ),
        (
            "engine at its best validated precision vs best eager, every cell",
            ">= 1.5x",
            _speedups(report, ("mix", "length", "subset"), "best engine vs best eager"),
            lambda v: v >= 1.5,
        ),
        (
            "engine attribution cost in forward-equivalents at L = 2, fp32",
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
            _sentences(report),
            lambda v: v >= 2,
        ),
    )
    return [
        _judge(name, threshold, [(w, v, met(v)) for w, v in measured])
        for name, threshold, measured, met in targets
    ]
