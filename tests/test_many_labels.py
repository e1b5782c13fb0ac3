"""150 labels: the all-labels loop graph is skipped (its export time grows with L); the
cotangent graph, whose size does not depend on L, attributes any label or mix."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from eager_reference import input_x_gradient
from tiny_models import CORPUS, save_tiny_classifier
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from gradlight.runtime.manifest import ATTRIBUTION_COTANGENT, FORWARD, load_manifest
from gradlight.runtime.scores import normalize_scores

NUM_LABELS = 150


@pytest.fixture(scope="module")
def many_labels(tmp_path_factory):
    root = tmp_path_factory.mktemp("many-labels")
    model = save_tiny_classifier(root / "model", "bert", NUM_LABELS)
    out = root / "artifact"
    result = subprocess.run(
        # (--no-path-graph: the path graph is exported and tested for the architecture cases)
        [
            sys.executable,
            "-m",
            "gradlight.cli.main",
            "export",
            str(model.path),
            str(out),
            "--no-path-graph",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return model.path, out, result


def test_cli_export_reports_progress_and_skips_the_loop_graph(many_labels):
    _, artifact, result = many_labels
    assert "[1/8] loading" in result.stderr
    assert "skipping the all-labels graph: 150 labels > max_loop_labels 10" in result.stderr
    assert "skipping the path graph (--no-path-graph)" in result.stderr
    assert "PASSED" in result.stderr
    manifest = load_manifest(artifact)
    assert set(manifest.graphs) == {FORWARD, ATTRIBUTION_COTANGENT}
    assert manifest.num_labels == NUM_LABELS
    on_disk = json.loads((artifact / "manifest.json").read_text())
    assert on_disk["export"]["step_seconds"]["attribution_cotangent"] > 0


def test_cotangent_rows_attribute_any_of_150_labels(many_labels):
    model_dir, artifact, _ = many_labels
    manifest = load_manifest(artifact)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    encoded = tokenizer(CORPUS[:2], padding=True, return_tensors="np")
    batch = {name: encoded[name].astype(np.int64) for name in manifest.model_inputs}
    _, ref = input_x_gradient(model, batch)
    # Rows: text 0 / label 149, text 1 / label 73 minus label 12.
    feed = {name: value.copy() for name, value in batch.items()}
    cotangent = np.zeros((2, NUM_LABELS), dtype=np.float32)
    cotangent[0, 149] = 1.0
    cotangent[1, 73], cotangent[1, 12] = 1.0, -1.0
    session = ort.InferenceSession(str(artifact / manifest.graphs[ATTRIBUTION_COTANGENT].file))
    logits, scores = session.run(None, {**feed, "cotangent": cotangent})
    assert logits.shape == (2, NUM_LABELS)
    expected = np.stack([ref[0, 149], ref[1, 73] - ref[1, 12]])
    mask = batch["attention_mask"]
    np.testing.assert_allclose(
        normalize_scores(scores, mask), normalize_scores(expected, mask), atol=1e-4, rtol=0
    )


def test_validate_command_accepts_it(many_labels):
    model_dir, artifact, _ = many_labels
    result = subprocess.run(
        [sys.executable, "-m", "gradlight.cli.main", "validate", str(artifact), str(model_dir)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "attribution_cotangent.scores (normalized)" in result.stdout
