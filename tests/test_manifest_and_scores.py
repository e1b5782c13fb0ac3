"""Torch-free pieces the runtime shares with export: score normalization, manifest loading."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    SPLIT_AT_SPACES,
    WHOLE_TEXT,
    hash_artifact_files,
    load_manifest,
)
from gradlight.runtime.execution.scores import (
    normalize_scores,
    probabilities,
    probability_error_bound,
)


def test_normalize_divides_by_the_largest_magnitude_over_real_tokens():
    raw = np.array([[[2.0, -4.0, 1.0, 100.0]], [[0.5, 0.25, 0.0, 0.0]]])  # [B=2, L=1, S=4]
    mask = np.array([[1, 1, 1, 0], [1, 1, 0, 0]])
    out = normalize_scores(raw, mask)
    np.testing.assert_allclose(out[0, 0], [0.5, -1.0, 0.25, 0.0])  # padding ignored and zeroed
    np.testing.assert_allclose(out[1, 0], [1.0, 0.5, 0.0, 0.0])


def test_normalize_is_per_label_and_zero_when_all_scores_are_zero():
    raw = np.array([[[0.0, 0.0, 0.0], [3.0, -1.5, 0.0]]])  # [B=1, L=2, S=3]
    out = normalize_scores(raw, np.ones((1, 3)))
    np.testing.assert_array_equal(out[0, 0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(out[0, 1], [1.0, -0.5, 0.0])
    assert out.dtype == np.float32


def test_normalize_accepts_one_score_row_per_text():
    out = normalize_scores(np.array([[1.0, -2.0]]), np.array([[1, 1]]))
    np.testing.assert_allclose(out, [[0.5, -1.0]])


def _write_artifact(directory, **overrides):
    directory.mkdir()
    (directory / "forward.onnx").write_bytes(b"forward graph bytes")
    (directory / "attribution_cotangent.onnx").write_bytes(b"cotangent graph bytes")
    graph = {"inputs": ["input_ids", "attention_mask"], "outputs": ["logits"], "details": {}}
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_type": "bert",
        "architecture": "BertForSequenceClassification",
        "labels": ["a", "b"],
        "problem_type": "single_label_classification",
        "max_length": 64,
        "pad_token_id": 0,
        "model_inputs": ["input_ids", "attention_mask"],
        "opset": 18,
        "graphs": {
            "forward": {**graph, "file": "forward.onnx"},
            "attribution_cotangent": {**graph, "file": "attribution_cotangent.onnx"},
        },
        "tokenizer_dir": "tokenizer",
        "tools": {},
        "files": hash_artifact_files(directory),
        "validation": {"passed": True},
        "export": {},
    }
    manifest.update(overrides)
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest))
    return directory


@pytest.mark.parametrize("multi_label", [False, True])
def test_the_probability_bound_holds_for_every_move_within_the_margin_and_is_reached(
    multi_label,
):
    """runtime/execution/scores.py: no move of each logit by at most the margin moves a probability
    by more than the bound (checked on random moves, corners included), and a corner reaches it."""
    rng = np.random.default_rng(0)
    logits, margin = rng.normal(0, 3, (200, 4)), 0.3
    bound = probability_error_bound(logits, margin, multi_label)
    central = probabilities(logits, multi_label)
    worst = np.zeros(len(logits))
    for _ in range(500):
        move = rng.uniform(-margin, margin, logits.shape)
        move = np.where(rng.random(logits.shape) < 0.5, np.sign(move) * margin, move)
        moved = np.abs(probabilities(logits + move, multi_label) - central).max(-1)
        worst = np.maximum(worst, moved)
    assert np.all(worst <= bound + 1e-12)
    assert np.isclose((worst / bound).max(), 1.0, atol=1e-9)
    assert np.all(probability_error_bound(logits, 0.0, multi_label) == 0)


def test_manifest_round_trip(tmp_path):
    manifest = load_manifest(_write_artifact(tmp_path / "art"))
    assert manifest.labels == ("a", "b")
    assert manifest.num_labels == 2
    assert not manifest.multi_label
    assert manifest.graphs["forward"].file == "forward.onnx"


def test_pre_tokenization_is_read_written_and_checked(tmp_path):
    """Absent (a manifest from before the field): the whole string; a known value is read and
    written back; an unknown one is refused, naming it."""
    assert load_manifest(_write_artifact(tmp_path / "old")).pre_tokenization == WHOLE_TEXT
    words = load_manifest(_write_artifact(tmp_path / "words", pre_tokenization=SPLIT_AT_SPACES))
    assert words.pre_tokenization == SPLIT_AT_SPACES
    assert json.loads(words.to_json())["pre_tokenization"] == SPLIT_AT_SPACES
    with pytest.raises(ArtifactError, match="unknown pre_tokenization 'bytes'"):
        load_manifest(_write_artifact(tmp_path / "new", pre_tokenization="bytes"))


def test_a_version_1_manifest_still_loads_its_fp16_graphs(tmp_path):
    """Format 1 held the fp16 graphs under ``fp16_graphs``; format 2 under ``precisions``."""
    graph = {"inputs": ["input_ids", "attention_mask"], "outputs": ["logits"], "details": {}}
    artifact = _write_artifact(
        tmp_path / "art",
        format_version=1,
        fp16_graphs={"forward": {**graph, "file": "forward.onnx"}},
    )
    manifest = load_manifest(artifact)
    assert manifest.format_version == 1 and set(manifest.precisions) == {"fp16"}
    assert manifest.graphs_at("fp16")["forward"].file == "forward.onnx"
    with pytest.raises(ArtifactError, match="no int8 graphs: export it again"):
        manifest.graphs_at("int8")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "forward.onnx").write_bytes(b"tampered"), "forward.onnx does not match"),
        (lambda d: (d / "attribution_cotangent.onnx").unlink(), "attribution_cotangent.onnx is"),
        (lambda d: (d / MANIFEST_NAME).write_text("{not json"), "not valid JSON"),
        (lambda d: (d / MANIFEST_NAME).unlink(), "manifest.json is missing"),
    ],
    ids=["changed-file", "missing-file", "bad-json", "no-manifest"],
)
def test_damaged_artifacts_are_refused_naming_the_file(tmp_path, damage, message):
    artifact = _write_artifact(tmp_path / "art")
    damage(artifact)
    with pytest.raises(ArtifactError, match=message):
        load_manifest(artifact)


def test_unknown_format_version_is_refused(tmp_path):
    artifact = _write_artifact(tmp_path / "art", format_version=99)
    with pytest.raises(ArtifactError, match="unknown manifest format_version 99"):
        load_manifest(artifact)


def test_files_outside_the_artifact_are_refused(tmp_path):
    (tmp_path / "outside.onnx").write_bytes(b"elsewhere")
    artifact = _write_artifact(tmp_path / "art")
    data = json.loads((artifact / MANIFEST_NAME).read_text())
    data["files"]["../outside.onnx"] = hash_artifact_files(tmp_path)["outside.onnx"]
    data["graphs"]["forward"]["file"] = "../outside.onnx"
    (artifact / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="points outside"):
        load_manifest(artifact)


def test_incomplete_manifest_is_refused(tmp_path):
    artifact = _write_artifact(tmp_path / "art")
    data = json.loads((artifact / MANIFEST_NAME).read_text())
    del data["labels"]
    (artifact / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="labels"):
        load_manifest(artifact)


def test_the_runtime_side_and_the_cli_import_without_torch():
    code = (
        "import sys\n"
        "import gradlight.artifact.manifest, gradlight.runtime.execution.scores\n"
        "import gradlight.cli.main, gradlight.runtime.serving.server\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'transformers' not in sys.modules, 'transformers was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_help_lists_the_commands():
    result = subprocess.run(
        [sys.executable, "-m", "gradlight.cli.main", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("export", "validate", "demo"):
        assert command in result.stdout
