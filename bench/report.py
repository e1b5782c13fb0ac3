"""The report as files: JSON (everything), CSV (a row per cell and method), Markdown, PNG.

Every figure row names the machine it ran on: the CPU's model, which of the instruction sets
``machine.ROW_FLAGS`` it has, and the method's threads (the JSON's ``machine`` of each method
entry and served level, the CSV's ``cpu``, ``isa`` and ``threads`` columns, the Markdown's
``machine`` column with its keys spelled out above the tables)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from gradlight.bench.integrated_report import markdown as integrated_markdown
from gradlight.bench.machine import ROW_FLAGS, describe
from gradlight.bench.targets import engine_best_in_process

CSV_COLUMNS = (
    "model", "labels", "cell", "method", "batch_size", "max_length", "texts", "tokens",
    "median_ms", "p90_ms", "p99_ms", "calls", "ms_per_text", "texts_per_second",
    "tokens_per_second", "speedup_vs_reference", "speedup_vs_best_eager", "best_eager",
    "attribution_over_forward", "max_abs_diff_vs_reference", "top3_agreement_vs_reference",
    "peak_rss_mb", "cpu", "isa", "threads",
)  # fmt: skip


def _machine_columns(on: dict[str, Any] | None) -> dict[str, Any]:
    """A row's ``cpu``, ``isa`` (the present ones of ``ROW_FLAGS``, space-separated) and
    ``threads``; ``on`` is ``machine.machine``'s dict (or the integrated section's, whose
    ``cpu_flags`` lists more flags)."""
    if not on:
        return {"cpu": None, "isa": None, "threads": None}
    flags = on["isa"] if "isa" in on else [f for f in on.get("cpu_flags", []) if f in ROW_FLAGS]
    return {"cpu": on["cpu"], "isa": " ".join(flags), "threads": on["threads"]}


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (run, cell, method), and one per served concurrency level."""
    result = []
    for run in report["runs"]:
        for cell in run["cells"]:
            for method, entry in cell["methods"].items():
                base = method.split(",")[0]
                agreement = (cell.get("agreement_with_reference") or {}).get(base, {})
                speedup = cell.get("speedup", {})
                result.append(
                    {
                        "model": run["model"],
                        "labels": run["labels"],
                        "cell": cell["name"],
                        "method": method,
                        "batch_size": cell["batch_size"],
                        "max_length": cell["max_length"],
                        "texts": cell["texts"],
                        "tokens": cell["tokens"],
                        **{k: entry["latency"][k] for k in ("median_ms", "p90_ms", "p99_ms")},
                        "calls": entry["latency"]["calls"],
                        "ms_per_text": entry["ms_per_text"],
                        "texts_per_second": entry["texts_per_second"],
                        "tokens_per_second": entry["tokens_per_second"],
                        "speedup_vs_reference": speedup.get(f"{method} vs reference"),
                        "speedup_vs_best_eager": speedup.get(f"{method} vs best eager"),
                        "best_eager": cell.get("best_eager"),
                        "attribution_over_forward": entry.get("attribution_over_forward"),
                        "max_abs_diff_vs_reference": agreement.get("max_abs_diff_scores"),
                        "top3_agreement_vs_reference": agreement.get("top3_agreement"),
                        "peak_rss_mb": run["methods"].get(base, {}).get("peak_rss_mb"),
                        **_machine_columns(entry.get("machine")),
                    }
                )
        for level in run.get("served", []):
            result.append(
                {
                    "model": run["model"],
                    "labels": run["labels"],
                    "cell": f"served, {level['clients']} clients"
                    + (", tokens and sentences" if level.get("sentences") else ""),
                    "method": "served",
                    "batch_size": 1,
                    "texts": level["requests"],
                    **{k: level["latency"][k] for k in ("median_ms", "p90_ms", "p99_ms")},
                    "calls": level["latency"]["calls"],
                    "texts_per_second": level["texts_per_second"],
                    "tokens_per_second": level["tokens_per_second"],
                    **_machine_columns(level.get("machine")),
                }
            )
    return result + integrated_rows(report)


def integrated_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cell and way of the integrated gradients section (``ig-captum``,
    ``ig-eager-best``, ``ig-eager-bf16``, ``ig-gradlight``); gradlight's row has its speedups
    (Captum in the reference's column, the cell's best eager as the best eager); the faithful
    cells' top-3 agreement is against their 64-step reference."""
    section = report.get("integrated_gradients")
    if not section:
        return []
    result = []
    for cell in section["cells"]:
        by_method = {row["method"]: row for row in cell["rows"]}
        best = by_method.get(cell["best_eager"] or "")
        captum = by_method.get("captum")
        tokens_per_text = cell["lengths"]["tokens"] / cell["texts"]
        for row in cell["rows"]:
            gradlight = row["method"] == "gradlight"
            steps = f"<= {row['steps']} (tolerance)" if row.get("tolerance") else row["steps"]
            result.append(
                {
                    "model": section["model"],
                    "labels": cell["L"],
                    "cell": f"integrated gradients, {cell['title']}, {steps} steps",
                    "method": f"ig-{row['method']}",
                    "batch_size": cell["batch"],
                    "max_length": cell["max_length"],
                    "texts": cell["texts"],
                    "tokens": cell["lengths"]["tokens"],
                    **{k: row["batch_latency"][k] for k in ("median_ms", "p90_ms", "p99_ms")},
                    "calls": row["batch_latency"]["calls"],
                    "ms_per_text": row["ms_per_text"]["median"],
                    "texts_per_second": row["texts_per_s"],
                    "tokens_per_second": round(tokens_per_text * row["texts_per_s"], 1),
                    "speedup_vs_reference": _over(row, captum) if gradlight else None,
                    "speedup_vs_best_eager": _over(row, best) if gradlight else None,
                    "best_eager": f"ig-{cell['best_eager']}" if cell["best_eager"] else None,
                    "top3_agreement_vs_reference": row.get("top3_vs_reference"),
                    "peak_rss_mb": row["peak_rss_mb"],
                    **_machine_columns(section.get("machine")),
                }
            )
    return result


def _over(row: dict[str, Any], other: dict[str, Any] | None) -> float | None:
    return None if other is None else round(row["texts_per_s"] / other["texts_per_s"], 3)


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}{suffix}"
        return f"{value:.3g}{suffix}" if abs(value) >= 0.01 or value == 0 else f"{value:.1e}"
    return f"{value}{suffix}"


class _MachineKeys:
    """Short keys (M1, M2, ...) for the machines of a report's rows, in order of appearance."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}

    def __call__(self, row: dict[str, Any]) -> str:
        if not row.get("cpu"):
            return ""
        text = describe(
            {"cpu": row["cpu"], "isa": (row["isa"] or "").split(), "threads": row["threads"]}
        )
        return self.keys.setdefault(text, f"M{len(self.keys) + 1}")

    def legend(self) -> list[str]:
        return [f"- {key}: {text}" for text, key in self.keys.items()]


def _method_label(row: dict[str, Any], run: dict[str, Any], cell: dict[str, Any]) -> str:
    """The method, marked when it is its cell's best eager, or its best engine of several."""
    method = row["method"]
    if method == cell.get("best_eager"):
        return f"{method} (best eager)"
    engines = [m for m in cell["methods"] if run.get("roles", {}).get(m) == "engine"]
    if len(engines) > 1 and method == cell.get("best_engine"):
        return f"{method} (best engine)"
    return method


def _unavailable(report: dict[str, Any]) -> list[str]:
    lines = []
    for run in report["runs"]:
        for method, why in run.get("unavailable", {}).items():
            lines.append(f"- {run['model']}, L={run['labels']}: {method} not measured: {why}")
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown. The machine keys are handed out as the tables name them (the
    methods', the served levels', then the memory table's), so the legend above the tables is
    written last."""
    table = rows(report)
    keys = _MachineKeys()
    methods = _methods_table(report, table, keys)
    served = _served_table(table, keys)
    memory = _memory_table(report, keys)
    lines = [*_preamble(report, keys), *methods, *served, *memory]
    section = report.get("integrated_gradients")
    if section:
        lines += ["", integrated_markdown(section).rstrip("\n")]
    lines += _targets_table(report, section)
    return "\n".join(lines) + "\n"


def _preamble(report: dict[str, Any], keys: _MachineKeys) -> list[str]:
    """The environment, the machines' legend, what "best eager" means, and what was not
    measured."""
    env = report["environment"]
    lines = [
        f"Machine: {env['cpu']}, {env['cores_available']} cores available, "
        f"{env['threads']} threads for every method (torch intra-op and ONNX Runtime intra-op), "
        f"provider {env['provider']}{', GPU ' + env['gpu'] if env.get('gpu') else ''}; "
        f"Python {env['python']}, torch {env['torch']}, transformers {env['transformers']}, "
        f"onnxruntime {env['onnxruntime']}, grpcio {env['grpcio']}; {env['date']}"
        f"{' (--quick)' if report['quick'] else ''}.",
        "",
        "Machines of the rows (CPU, which of " + ", ".join(ROW_FLAGS) + " it has, threads):",
        *keys.legend(),
        "",
        "Best eager: per cell, the fastest eager way other than the reference (marked); "
        '"x vs best eager" is every method\'s speedup over it, "max abs diff vs '
        'reference" and "top-3 agreement" compare normalized scores with the fp32 '
        "reference (the bf16 anchors' cost in accuracy).",
    ]
    if unavailable := _unavailable(report):
        lines += ["", "Not measured:", *unavailable]
    return lines


def _methods_table(
    report: dict[str, Any], table: list[dict[str, Any]], keys: _MachineKeys
) -> list[str]:
    """A line per (run, cell, method) of the in-process cells."""
    cells = {
        (run["model"], run["labels"], cell["name"]): (run, cell)
        for run in report["runs"]
        for cell in run["cells"]
    }
    body = []
    for row in table:
        if row["method"] == "served" or row["method"].startswith("ig-"):
            continue
        run, cell = cells[(row["model"], row["labels"], row["cell"])]
        body.append(
            f"| {row['model']} | {row['labels']} | {row['cell']} | "
            f"{_method_label(row, run, cell)} | "
            f"{keys(row)} | {_fmt(row['median_ms'])} | {_fmt(row['p90_ms'])} | "
            f"{_fmt(row['p99_ms'])} | {_fmt(row['ms_per_text'])} | "
            f"{_fmt(row['texts_per_second'])} | {_fmt(row['tokens_per_second'])} | "
            f"{_fmt(row['speedup_vs_reference'], 'x')} | "
            f"{_fmt(row['speedup_vs_best_eager'], 'x')} | "
            f"{_fmt(row['attribution_over_forward'])} | "
            f"{_fmt(row['max_abs_diff_vs_reference'])} | "
            f"{_fmt(row['top3_agreement_vs_reference'])} |"
        )
    return [
        "",
        "| model | L | cell | method | machine | median ms | p90 ms | p99 ms | ms/text | "
        "texts/s | tokens/s | x vs reference | x vs best eager | attribution / forward | "
        "max abs diff vs reference | top-3 agreement |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *body,
    ]


def _served_table(table: list[dict[str, Any]], keys: _MachineKeys) -> list[str]:
    """A line per served concurrency level; nothing when the server was not measured."""
    served_rows = [
        f"| {row['model']}, {row['labels']} | {row['cell'].split(', ')[1].split()[0]} | "
        f"{'tokens and sentences' if row['cell'].endswith('sentences') else 'tokens'} | "
        f"{keys(row)} | {_fmt(row['median_ms'])} | {_fmt(row['p90_ms'])} | "
        f"{_fmt(row['p99_ms'])} | {_fmt(row['texts_per_second'])} | "
        f"{_fmt(row['tokens_per_second'])} |"
        for row in table
        if row["method"] == "served"
    ]
    if not served_rows:
        return []
    return [
        "",
        "| served (model, L) | clients | attributions | machine | median ms | p90 ms | "
        "p99 ms | texts/s | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|",
        *served_rows,
    ]


def _memory_table(report: dict[str, Any], keys: _MachineKeys) -> list[str]:
    """A line per (run, method): load time and memory."""
    memory_rows = [
        f"| {run['model']}, {run['labels']} | {method} | "
        f"{keys(_machine_columns(info.get('machine')))} | {info['load_seconds']} | "
        f"{info['rss_loaded_mb']:.0f} | {info['peak_rss_mb']:.0f} |"
        for run in report["runs"]
        for method, info in run["methods"].items()
    ]
    return [
        "",
        "| model, L | method | machine | load s | RSS loaded MB | peak RSS MB |",
        "|---|---|---|---|---|---|",
        *memory_rows,
    ]


def _targets_table(report: dict[str, Any], section: dict[str, Any] | None) -> list[str]:
    """The targets, the integrated gradients section's last when it was measured."""
    lines = ["", "| target | threshold | status | measured |", "|---|---|---|---|"]
    for target in report["targets"]:
        measured = "; ".join(f"{r['where']}: {_fmt(r['measured'])}" for r in target["rows"])
        lines.append(
            f"| {target['target']} | {target['threshold']} | {target['status']} | {measured} |"
        )
    for target in (section or {}).get("targets", []):
        measured = "; ".join(
            f"{c['where']}: {_fmt(c['measured']) if 'measured' in c else c['status']}"
            for c in target["cells"]
        )
        lines.append(
            f"| {target['target']} | {target['threshold']:g}x | {target['status']} | "
            f"{section['model']}: {measured or 'no cell'} |"
        )
    return lines


def plot(report: dict[str, Any], path: Path) -> None:
    """Per-text latency against length per method; served throughput against concurrency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in report["runs"]:
        cells = [c for c in run["cells"] if c["group"] == "length"]
        for method in run.get("roles", {}):
            points = [
                (c["length"], c["methods"][method]["ms_per_text"])
                for c in cells
                if method in c["methods"]
            ]
            if points:
                x, y = zip(*points, strict=True)
                left.plot(x, y, marker="o", label=f"{method} ({run['model']}, L={run['labels']})")
    left.set(xlabel="tokens per text", ylabel="ms per text (batch of 8)", yscale="log")
    left.set_title("Attribution latency against length")
    for run in report["runs"]:
        levels = [level for level in run.get("served", []) if not level.get("sentences")]
        if levels:
            right.plot(
                [level["clients"] for level in levels],
                [level["texts_per_second"] for level in levels],
                marker="o",
                label=f"served ({run['model']}, L={run['labels']})",
            )
            best = engine_best_in_process(run)
            if best:
                right.axhline(best, linestyle="--", color="gray", label="engine best in-process")
    right.set(xlabel="concurrent clients", ylabel="texts/s", xscale="log")
    right.set_title("Served throughput (realistic mix)")
    for axis in (left, right):
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out_dir / "bench.json",
        "csv": out_dir / "bench.csv",
        "markdown": out_dir / "bench.md",
        "png": out_dir / "bench.png",
    }
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    with paths["csv"].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows(report))
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    plot(report, paths["png"])
    return paths
