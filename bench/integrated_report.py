"""The integrated-gradients section of the bench report (bench/integrated.py measures it) as
Markdown."""

from __future__ import annotations

from typing import Any


def markdown(section: dict[str, Any]) -> str:
    """The section as a Markdown paragraph and table."""
    on = section["machine"]
    lengths = section["lengths"]
    labels = section["labels"]
    lines = [
        f"Integrated gradients: {section['model']}, {len(labels)} label"
        f"{'s' if len(labels) != 1 else ''} ({', '.join(map(str, labels))}), "
        f"{section['steps']} steps ({section['integration']}), pad baseline; {section['texts']} "
        f"texts of {lengths['min']} to {lengths['max']} tokens (median {lengths['median']:g}, "
        f"truncated at {section['max_length']}), {section['batch']} per call or request, "
        f"{section['rows_per_call']} rows per model call; {on['cpu']} "
        f"[{' '.join(on['cpu_flags']) or 'no listed flags'}], {on['threads']} threads for every "
        f"method ({on['cores_available']} cores available).",
        "",
        "| method | texts/s | median ms/batch | p90 ms/batch | gradlight x | padded/real tokens "
        "| attention | max rel diff vs captum | machine |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    diffs = section["agreement_max_relative_diff"]
    for row in section["rows"]:
        method = row["method"]
        diff = 0.0 if method == "captum" else diffs[f"{method} vs captum"]
        machine_cell = f"{row['machine']['cpu']}, {row['machine']['threads']} threads"
        lines.append(
            f"| {method} | {row['texts_per_s']:.3g} | {row['batch_latency']['median_ms']:.1f} | "
            f"{row['batch_latency']['p90_ms']:.1f} | {row['gradlight_over_this']:.2f}x | "
            f"{_or_unknown(row['padded_over_real_tokens'])} | {row['attention'] or 'n/a'} | "
            f"{'(reference)' if method == 'captum' else f'{diff:.1e}'} | {machine_cell} |"
        )
    target = section["target"]
    lines += [
        "",
        f"gradlight over the faster eager way ({section['faster_eager']}): "
        f"{target['measured']:.2f}x (target {target['threshold']:g}x: {target['status']}); "
        f"gradlight against eager-best {diffs['gradlight vs eager-best']:.1e} max relative "
        "difference.",
    ]
    return "\n".join(lines) + "\n"


def _or_unknown(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"
