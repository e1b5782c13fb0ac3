"""A corrupted or tampered artifact is refused when ``gradlight serve`` starts, with a message
naming the file; and loading an artifact never runs code from it (no pickle), even one whose
manifest an attacker rewrote to match planted files."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from artifact_copies import copy_artifact, edit_manifest
from processes import gradlight

from gradlight.artifact.manifest import MANIFEST_NAME, sha256_file

ISOLATED = Path(__file__).with_name("isolated_serving.py")


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _add_label(data):
    data["labels"].append("label_extra")


def _rehash(artifact: Path):
    """What an attacker who rewrites the manifest does: every checksum made to match."""

    def change(data):
        for relative in data["files"]:
            data["files"][relative] = sha256_file(artifact / relative)

    return change


def _serve(artifact: Path) -> subprocess.CompletedProcess:
    """``gradlight serve`` on an artifact expected to be refused (it exits by itself)."""
    return subprocess.run(
        gradlight("serve", str(artifact), "--port", "0", "--no-http", "--provider", "cpu"),
        capture_output=True,
        text=True,
        timeout=120,
    )


DAMAGE = {
    "checksum mismatch": (lambda a: _flip_a_byte(a / "weights.bin"), "weights.bin does not match"),
    "changed graph": (
        lambda a: shutil.copy(a / "forward.onnx", a / "attribution.onnx"),
        "attribution.onnx does not match its sha256",
    ),
    "missing file": (
        lambda a: (a / "tokenizer" / "tokenizer.json").unlink(),
        "tokenizer.json is missing from the artifact",
    ),
    "unknown format version": (
        lambda a: edit_manifest(a, lambda d: d.update(format_version=7)),
        "manifest.json: unknown manifest format_version 7",
    ),
    "labels not matching the graph": (
        lambda a: edit_manifest(a, _add_label),
        "forward.onnx outputs 3 logits but the manifest lists 4 labels",
    ),
    "labels as a string": (
        lambda a: edit_manifest(a, lambda d: d.update(labels="abc")),
        "manifest.json is incomplete or malformed: TypeError('labels must be a JSON list",
    ),
    "labels as an object": (
        lambda a: edit_manifest(a, lambda d: d.update(labels={"0": "x", "1": "y", "2": "z"})),
        "labels must be a JSON list, got dict",
    ),
    "a blank label": (
        lambda a: edit_manifest(a, lambda d: d.update(labels=["x", " ", "y"])),
        "manifest.json: labels must be a list of 2 or more non-blank strings",
    ),
    "labels listed twice": (
        lambda a: edit_manifest(a, lambda d: d.update(labels=["x", "x", "y"])),
        "manifest.json: labels must be distinct",
    ),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_artifact_is_refused_at_start_naming_the_file(exported, tmp_path, case):
    artifact = copy_artifact(exported, tmp_path)
    damage, message = DAMAGE[case]
    damage(artifact)
    result = _serve(artifact)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr, result.stderr
    assert str(artifact) in result.stderr or MANIFEST_NAME in result.stderr
    assert "Traceback" not in result.stderr


class _Trap:
    """Unpickling this creates the marker file: proof that code from the artifact ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _plant_pickles(artifact: Path, marker: Path) -> None:
    payload = pickle.dumps(_Trap(marker))
    for relative in ("pytorch_model.bin", "model.pkl", "tokenizer/tokenizer.pkl"):
        (artifact / relative).write_bytes(payload)

    def list_them(data):
        for relative in ("pytorch_model.bin", "model.pkl", "tokenizer/tokenizer.pkl"):
            data["files"][relative] = sha256_file(artifact / relative)

    edit_manifest(artifact, list_them)


def test_serving_never_unpickles_or_runs_code_from_the_artifact(exported, tmp_path):
    """Pickles planted in the artifact and listed in its manifest with valid checksums: the
    server loads, serves a gRPC and an HTTP request under an audit hook that fails on any
    unpickling, spawned process, or code compiled, run or imported from the artifact."""
    artifact = copy_artifact(exported, tmp_path)
    marker = tmp_path / "pwned"
    _plant_pickles(artifact, marker)
    result = subprocess.run(
        [sys.executable, str(ISOLATED), str(artifact)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert not marker.exists()


def test_weights_replaced_by_a_pickle_are_refused_without_running_it(exported, tmp_path):
    """The weights file itself swapped for a pickle, checksums rewritten: ONNX Runtime reads
    it as raw tensor bytes (it cannot hold the weights), so the artifact is refused; the pickle
    never runs."""
    artifact = copy_artifact(exported, tmp_path)
    marker = tmp_path / "pwned"
    (artifact / "weights.bin").write_bytes(pickle.dumps(_Trap(marker)))
    edit_manifest(artifact, _rehash(artifact))
    result = _serve(artifact)
    assert result.returncode == 2, result.stderr
    assert "could not be loaded by onnxruntime" in result.stderr
    assert not marker.exists()
