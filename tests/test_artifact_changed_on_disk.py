"""An artifact changed on disk under a running server: truncated, overwritten in place, replaced
by renaming another into place. The served model answers from its verified snapshot
(runtime/execution/artifact_snapshot.py) until a reload verifies the new files: never a crash,
never a mix of two models."""

from __future__ import annotations

import os
import shutil
import signal
import time

import grpc
import numpy as np
import pytest
from processes import serve_process
from serving import ServerThread

from gradlight.artifact.errors import ArtifactError
from gradlight.runtime.execution.artifact_snapshot import PREFIX, ArtifactSnapshot
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.settings import EngineSettings
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub

TEXTS = ["The patient denies chest pain.", "Possible pneumonia on the left. Follow up."]


def _requests(labels: tuple[str, ...]) -> dict[str, pb.AttributeRequest | pb.PredictRequest]:
    """Calls that between them run every graph; the path graphs and the cotangent graph load on
    their first call, which comes after the damage."""
    return {
        "predict": pb.PredictRequest(model="model", texts=TEXTS),
        "input x gradient": pb.AttributeRequest(model="model", texts=TEXTS),
        "one label": pb.AttributeRequest(model="model", texts=TEXTS, labels=labels[:1]),
        "integrated gradients": pb.AttributeRequest(
            model="model", texts=TEXTS, method="integrated_gradients", steps=16
        ),
        "integrated gradients, one label": pb.AttributeRequest(
            model="model", texts=TEXTS, method="integrated_gradients", steps=16, labels=labels[1:2]
        ),
    }


def _answers(stub: AttributorStub, labels: tuple[str, ...]) -> dict[str, list[np.ndarray]]:
    found = {}
    for name, request in _requests(labels).items():
        call = stub.Predict if isinstance(request, pb.PredictRequest) else stub.Attribute
        results = call(request, timeout=60).results
        found[name] = [np.array(r.probabilities) for r in results] + [
            np.array([token.scores for token in r.tokens]) for r in results
        ]
    return found


def _same(found: dict, expected: dict) -> None:
    assert found.keys() == expected.keys()
    for name in expected:
        for a, b in zip(found[name], expected[name], strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5, err_msg=name)


def _wait_for(server, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.text_log():
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{server.text_log()}"
        time.sleep(0.1)


def test_truncated_overwritten_and_replaced_files_never_reach_the_served_model(
    exported, engine_for, tmp_path
):
    artifact = tmp_path / "served"
    shutil.copytree(exported("bert"), artifact)
    snapshots = tmp_path / "snapshots"
    labels = engine_for("bert").labels
    with ServerThread({"model": engine_for("bert")}) as reference:
        expected = _answers(AttributorStub(grpc.insecure_channel(reference.address)), labels)
    server = serve_process(str(artifact), "--name", "model", "--snapshot-dir", str(snapshots))
    try:
        stub = AttributorStub(grpc.insecure_channel(server.address))
        (info,) = stub.ListModels(pb.ListModelsRequest()).models
        (snapshot,) = snapshots.glob(f"{PREFIX}*")
        # in place: weights.bin cut to half (the runtimes map it: SIGBUS if they read it),
        # a graph not loaded yet overwritten with other bytes of its size
        weights = artifact / "weights.bin"
        os.truncate(weights, weights.stat().st_size // 2)
        graph = artifact / "attribution_path_labels.onnx"
        graph.write_bytes(bytes(graph.stat().st_size))
        _same(_answers(stub, labels), expected)
        server.process.send_signal(signal.SIGHUP)
        _wait_for(server, "reload of model model refused")
        assert "does not match its sha256" in server.text_log()
        _same(_answers(stub, labels), expected)
        # another model renamed into place; until a reload, the served model is the old one
        staging = tmp_path / "staging"
        shutil.copytree(exported("distilbert"), staging)
        os.replace(artifact, tmp_path / "damaged")
        os.replace(staging, artifact)
        _same(_answers(stub, labels), expected)
        server.process.send_signal(signal.SIGHUP)
        _wait_for(server, "reload: model model reloaded")
        (now,) = stub.ListModels(pb.ListModelsRequest()).models
        assert now.architecture == "DistilBertForSequenceClassification"
        assert now.revision != info.revision
        deadline = time.monotonic() + 30  # the old model's snapshot goes with its engine
        while snapshot.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not snapshot.exists()
        assert len(list(snapshots.glob(f"{PREFIX}*"))) == 1
    finally:
        assert server.terminate() == 0, server.text_log()
    assert list(snapshots.glob(f"{PREFIX}*")) == []  # removed at exit


def test_a_snapshot_copies_what_the_served_precision_reads_and_refuses_a_bad_copy(
    exported, tmp_path
):
    artifact = tmp_path / "artifact"
    shutil.copytree(exported("bert"), artifact)
    engine = Engine(artifact, EngineSettings(provider="cpu", snapshot_dir=tmp_path / "s"))
    copy = engine.snapshot.directory
    assert copy.parent == tmp_path / "s" and oct(copy.stat().st_mode & 0o777) == "0o700"
    graphs = {graph.file for graph in engine.graphs.values()}
    assert graphs | {"weights.bin", "manifest.json"} <= set(engine.snapshot.copied)
    assert all(not os.access(copy / name, os.W_OK) or os.geteuid() == 0 for name in graphs)
    engine.close()
    assert not copy.exists()
    # the bytes copied are the bytes checked
    (artifact / "tokenizer" / "tokenizer.json").write_text("{}")
    with pytest.raises(ArtifactError, match=r"tokenizer\.json does not match its sha256"):
        Engine(artifact, EngineSettings(provider="cpu", snapshot_dir=tmp_path / "s"))
    assert list((tmp_path / "s").iterdir()) == []  # a refused load leaves nothing behind


def test_a_snapshot_left_by_a_dead_process_is_removed_by_the_next(exported, tmp_path):
    root = tmp_path / "snapshots"
    abandoned = root / f"{PREFIX}dead"
    abandoned.mkdir(parents=True)
    (abandoned / ".owner").touch()  # no process holds its lock
    (abandoned / "weights.bin").write_bytes(b"x" * 10)
    old = time.time() - 3600
    os.utime(abandoned, (old, old))
    live = ArtifactSnapshot(exported("bert"), root)
    try:
        assert not abandoned.exists()
        second = ArtifactSnapshot(exported("bert"), root)  # the first's lock is held: kept
        assert live.directory.exists() and second.directory.exists()
        second.close()
    finally:
        live.close()
