"""The integrated-gradients section of the bench report (bench/integrated.py measures it) as
Markdown: the setting, a table per cell group (fixed steps per L, then the time to a faithful
explanation), each cell's verdicts, and the targets over every cell."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from gradlight.bench.integrated_cells import CAPTUM, FAITHFUL, GRADLIGHT, REFERENCE

_SAID = {
    "served_vs_best_eager": "served / best eager",
    "served_vs_captum": "served / Captum",
    "faithful_vs_best_eager": "faithful gradlight / best eager",
    "faithful_vs_captum": "faithful gradlight / Captum",
}


def markdown(section: dict[str, Any]) -> str:
    """The section as Markdown paragraphs and tables."""
    lines = _preamble(section)
    for (group, labels), cells in groupby(section["cells"], key=lambda c: (c["group"], c["L"])):
        lines += _table(group, labels, list(cells), section)
    lines += ["", "| target | threshold | status | measured |", "|---|---|---|---|"]
    for target in section["targets"]:
        measured = "; ".join(_said_verdict(c, with_where=True) for c in target["cells"])
        lines.append(
            f"| {target['target']} | {target['threshold']:g}x | {target['status']} | "
            f"{measured or 'no cell'} |"
        )
    return "\n".join(lines) + "\n"


def _preamble(section: dict[str, Any]) -> list[str]:
    on, options = section["machine"], section["options"]
    cap = options["eager_max_tokens_per_call"]
    note = f" {section['model_note']}." if section.get("model_note") else ""
    lines = [
        f"Integrated gradients: {section['model']} ({section['model_labels']} labels; L labels "
        f"are its first L).{note} Pad baseline. {on['cpu']} "
        f"[{' '.join(on['cpu_flags']) or 'no listed flags'}], native bf16: "
        f"{'yes' if on.get('native_bf16') else 'no'}; {on['threads']} threads for every way "
        f"({on['cores_available']} cores available); each cell's rounds in turns across the "
        f"ways, {options['min_repeats']} to {options['max_repeats']} rounds "
        f"({options['budget_s']:g} s per way and cell), after a warm-up on the cell's first "
        "text. Eager-best: one forward for every point of a batch shared by every label, one "
        "backward per label, frozen weights, the faster of SDPA and eager attention per cell; "
        "eager-bf16: the same under bf16 autocast, kept where its top-3 agreement with eager "
        "fp32 is >= 0.95; Captum: LayerIntegratedGradients, internal_batch_size covering every "
        "point of a batch"
        + (f" (both capped at {cap} rows x tokens per call)" if cap else "")
        + f"; gradlight: served in process, {options['rows_per_call']} rows per call.",
        "",
        "Peak RSS over the run: "
        + ", ".join(_method_said(method, info) for method, info in section["methods"].items())
        + ".",
    ]
    return lines


def _method_said(method: str, info: dict[str, Any]) -> str:
    if "unavailable" in info:
        return f"{method} not measured ({info['unavailable']})"
    peak = info.get("peak_rss_mb")
    name = f"{method} (untimed)" if method == REFERENCE else method
    said = f"{name} {peak:.0f} MB" if peak is not None else f"{name} ? MB"
    return said + (f" ({info['died']})" if "died" in info else "")


def _table(
    group: str, labels: int, cells: list[dict[str, Any]], section: dict[str, Any]
) -> list[str]:
    faithful = group == FAITHFUL
    options = section["options"]
    if faithful:
        head = (
            f"Time to a faithful explanation, L={labels}: gradlight with completeness_tolerance="
            f"{options['tolerance']:g} (Fejer's second rule doubled, at most "
            f"{options['max_steps']} steps a text), the eager ways at "
            f"{options['faithful_eager_steps']} steps, Captum at "
            f"{options['captum_steps']} (Gauss-Legendre); agreement and gaps against an untimed "
            f"{options['reference_steps']}-step eager fp32 reference."
        )
        extra = " top-3 vs ref | median rel gap |"
    else:
        head = f"Fixed steps, L={labels}: {options['steps']} steps ({options['integration']})."
        extra = " notes |"
    lines = [
        "",
        head,
        "",
        "| cell | tokens | method | steps | texts/s | ms/text median | ms/text p90 | rows/call "
        f"| x best eager | x Captum | peak RSS MB |{extra}",
        "|---" * (13 if faithful else 12) + "|",
    ]
    for cell in cells:
        lines += _cell_rows(cell, faithful)
    lines.append("")
    for cell in cells:
        lines.append(f"- {cell['title']}: {_cell_line(cell, faithful)}")
    return lines


def _cell_rows(cell: dict[str, Any], faithful: bool) -> list[str]:
    by_method = {row["method"]: row for row in cell["rows"]}
    best = by_method.get(cell["best_eager"] or "")
    captum = by_method.get(CAPTUM)
    lengths = cell["lengths"]
    tokens = f"{lengths['min']}-{lengths['max']}"
    out = []
    for row in cell["rows"]:
        steps = f"<= {row['steps']} (tol)" if row.get("tolerance") else str(row["steps"])
        rows = row.get("path_rows_per_call") if row["method"] == GRADLIGHT else None
        rows_cell = f"{rows:g} (mean)" if rows else str(row["rows_per_call"])
        line = (
            f"| {cell['title']} | {tokens} | {row['method']} | {steps} | "
            f"{row['texts_per_s']:.3g} | {row['ms_per_text']['median']:.1f} | "
            f"{row['ms_per_text']['p90']:.1f} | {rows_cell} | "
            f"{_ratio(row, best)} | {_ratio(row, captum)} | "
            f"{_or_unknown(row['peak_rss_mb'], '.0f')} |"
        )
        if faithful:
            line += (
                f" {_or_unknown(row.get('top3_vs_reference'), '.3f')} | "
                f"{_or_unknown(row.get('median_relative_gap'))} |"
            )
        else:
            line += f" {_notes(row)} |"
        out.append(line)
    for method, why in cell["not_measured"].items():
        blanks = " |" * ((13 if faithful else 12) - 4)
        out.append(f"| {cell['title']} | {tokens} | {method} | not measured: {why} |{blanks}")
    return out


def _notes(row: dict[str, Any]) -> str:
    notes = []
    if row.get("attention"):
        notes.append(f"{row['attention']} attention")
    if row.get("precision"):
        notes.append(f"served in {row['precision']}")
    if "top3_vs_eager_fp32" in row:
        kept = "kept" if row["kept"] else "NOT kept"
        notes.append(f"top-3 vs fp32 {row['top3_vs_eager_fp32']:.3f}, {kept}")
    return "; ".join(notes)


def _cell_line(cell: dict[str, Any], faithful: bool) -> str:
    parts = [f"best eager: {cell['best_eager'] or 'none measured'}"]
    if faithful:
        steps = cell.get("gradlight_steps")
        if steps:
            histogram = ", ".join(f"{k}: {v}" for k, v in steps["histogram"].items())
            parts.append(
                f"gradlight's steps per text min {steps['min']}, median {steps['median']:g}, max "
                f"{steps['max']} ({histogram})"
            )
        elif any(row["method"] == GRADLIGHT for row in cell["rows"]):
            parts.append("gradlight's steps per text not reported by this runtime")
        if "gradlight_missed" in cell:
            missed = cell["gradlight_missed"]
            parts.append(f"{missed} of {cell['texts']} texts missed the tolerance")
        if "reference_median_relative_gap" in cell:
            parts.append(
                f"the {REFERENCE}'s median relative gap {cell['reference_median_relative_gap']:.2g}"
            )
    else:
        diffs = cell.get("max_relative_difference") or {}
        if diffs:
            parts.append(
                "max relative differences "
                + ", ".join(f"{pair} {value:.1e}" for pair, value in diffs.items())
            )
    parts += [_said_verdict(v) for v in cell["verdicts"]]
    return "; ".join(parts)


def _said_verdict(verdict: dict[str, Any], with_where: bool = False) -> str:
    where = f"{verdict['where']}: " if with_where else ""
    said = _SAID.get(verdict["target"], verdict["target"])
    if verdict["status"] == "not measured":
        return f"{where}{said} not measured ({verdict['why']})"
    return (
        f"{where}{said} {verdict['measured']:.2f}x (target {verdict['threshold']:g}x: "
        f"{verdict['status']})"
    )


def _ratio(row: dict[str, Any], other: dict[str, Any] | None) -> str:
    if other is None:
        return "n/a"
    return f"{row['texts_per_s'] / other['texts_per_s']:.2f}x"


def _or_unknown(value: float | None, spec: str = ".3g") -> str:
    return "?" if value is None else format(value, spec)
