"""The README's demo: a real model (MiniLM-L6 with a classification head) exported and validated.

A second run reuses the model and the artifact the first one wrote.
"""

from __future__ import annotations

from pathlib import Path

from gradlight.export.minilm import save_minilm_classifier
from gradlight.export.pipeline import export_model
from gradlight.export.progress import Printer
from gradlight.runtime.errors import ArtifactError
from gradlight.runtime.manifest import Manifest, load_manifest


def run_demo(workdir: Path, printer: Printer) -> Manifest:
    model_dir = workdir / "minilm-classifier"
    artifact_dir = workdir / "minilm-artifact"
    if not (model_dir / "config.json").is_file():
        printer(f"building the MiniLM-L6 classifier in {model_dir}")
        save_minilm_classifier(model_dir)
    try:
        manifest = load_manifest(artifact_dir)
        printer(f"reusing the artifact in {artifact_dir} (checksums verified)")
    except ArtifactError:
        manifest = export_model(model_dir, artifact_dir, printer=printer)
    return manifest
