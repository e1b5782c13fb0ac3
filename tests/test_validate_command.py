"""`gradlight validate`: tampered files are refused by checksum, and a graph whose numbers are
wrong (even with a consistent manifest) is rejected by the comparison with eager PyTorch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import gradlight.export.validation as validation
from gradlight.artifact.manifest import MANIFEST_NAME, hash_artifact_files, load_manifest
from gradlight.export.errors import ValidationFailedError
from gradlight.export.options import ExportOptions
from gradlight.export.pipeline import export_model


def _validate_cli(artifact, model_dir):
    return subprocess.run(
        [sys.executable, "-m", "gradlight.cli.main", "validate", str(artifact), str(model_dir)],
        capture_output=True,
        text=True,
    )


def _perturb_largest_weight(path):
    model = onnx.load(str(path))
    largest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    array = numpy_helper.to_array(largest).copy()
    array *= 1.5
    largest.CopyFrom(numpy_helper.from_array(array, largest.name))
    onnx.save(model, str(path))


def _rehash(artifact):
    manifest_path = artifact / MANIFEST_NAME
    data = json.loads(manifest_path.read_text())
    data["files"] = hash_artifact_files(artifact)
    manifest_path.write_text(json.dumps(data))


def test_validate_accepts_an_untouched_artifact(exported, tiny_model_dirs):
    result = _validate_cli(exported("bert"), tiny_model_dirs["bert"])
    assert result.returncode == 0, result.stderr
    assert "PASSED" in result.stdout
    assert "attribution.scores (normalized) vs eager autograd" in result.stdout


def test_a_corrupted_graph_is_rejected(exported, tiny_model_dirs, tmp_path):
    artifact = tmp_path / "artifact"
    shutil.copytree(exported("bert"), artifact)
    _perturb_largest_weight(artifact / "attribution.onnx")

    tampered = _validate_cli(artifact, tiny_model_dirs["bert"])
    assert tampered.returncode == 2
    assert "attribution.onnx does not match its sha256" in tampered.stderr

    _rehash(artifact)  # a consistent manifest: only the numbers can tell
    load_manifest(artifact)
    wrong = _validate_cli(artifact, tiny_model_dirs["bert"])
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    failed = [line for line in wrong.stdout.splitlines() if line.endswith("FAILED")]
    assert failed, wrong.stdout
    assert all(line.strip().startswith("attribution.") for line in failed[:-1])
    assert any("attribution.logits vs eager input_ids forward" in line for line in failed)
    assert "forward.logits vs eager input_ids forward" not in "\n".join(failed)


def test_validating_against_another_model_fails(exported, tiny_model_dirs):
    result = _validate_cli(exported("bert"), tiny_model_dirs["electra"])
    assert result.returncode == 1, result.stderr
    assert "exported from another model? model_type: the artifact has 'bert'" in result.stdout
    assert "FAILED" in result.stdout


def test_a_failed_validation_leaves_nothing_behind(tiny_model_dirs, tmp_path, monkeypatch):
    # A zero tolerance makes real float32 rounding differences fail validation for real.
    monkeypatch.setattr(validation, "TOLERANCE", 0.0)
    out = tmp_path / "out"
    with pytest.raises(ValidationFailedError, match="exceed tolerance") as failure:
        export_model(
            tiny_model_dirs["roberta"],
            out,
            ExportOptions(max_loop_labels=0, labels_graph=False, path_graph=False),
        )
    assert not failure.value.report.passed
    assert not out.exists()
    assert not list(tmp_path.glob(".out.*"))
