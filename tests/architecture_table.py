"""The per-architecture table of docs/architectures.md: each tiny classifier of the suite
(tests/conftest.py: ARCHITECTURE_CASES) built and exported as the suite exports it, one after
the other, and the export's time, graph sizes and validation differences read from its
manifest.

    .venv/bin/python tests/architecture_table.py OUT_DIR    # about 7 minutes on 2 cores
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import ARCHITECTURE_CASES
from tiny_models import save_tiny_classifier

from gradlight.export.pipeline import export_model

GRAPH_KEYS = ("forward", "attribution_cotangent", "attribution")
HEADER = (
    "| model type | explained | export (s) | graphs (MB): forward / cotangent / all-labels | "
    "max abs diff: logits / normalized scores (tolerance) | fp16 vs fp32: logits / normalized "
    "scores / top-3 agreement |\n|---|---|---|---|---|---|"
)


def _row(model_type: str, manifest: dict, seconds: float) -> str:
    validation = manifest["validation"]
    graphs = manifest["graphs"]
    sizes = " / ".join(
        str(graphs[key]["details"]["size_mb"]) if key in graphs else "-" for key in GRAPH_KEYS
    )
    checks = validation["checks"]
    logits = max(check["max_abs_diff"] for check in checks if check["output"] == "logits")
    scores = max(
        check["max_abs_diff"] for check in checks if check["output"] == "scores (normalized)"
    )
    fp16 = "-"
    if "fp16" in validation:
        half = validation["fp16"]["checks"]
        fp16 = (
            f"{max(c['logits_max_abs_diff'] for c in half):.1e} / "
            f"{max(c['normalized_scores_max_abs_diff'] for c in half):.1e} / "
            f"{min(c['top3_token_agreement'] for c in half):.2f}"
        )
    return (
        f"| {model_type} | {manifest['export']['explains']} | {seconds:.0f} | {sizes} | "
        f"{logits:.1e} / {scores:.1e} ({validation['score_tolerance']:.0e}) | {fp16} |"
    )


def main(out: Path) -> None:
    rows = []
    for model_type, case in ARCHITECTURE_CASES.items():
        model = save_tiny_classifier(
            out / "models" / model_type, model_type, case.num_labels, multi_label=case.multi_label
        )
        options = case.export_options(overwrite=True)
        started = time.perf_counter()
        export_model(model.path, out / "artifacts" / model_type, options)
        seconds = time.perf_counter() - started
        manifest = json.loads((out / "artifacts" / model_type / "manifest.json").read_text())
        rows.append(_row(model_type, manifest, seconds))
        print(rows[-1], flush=True)
    print("\n".join([HEADER, *rows]))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
