"""Reloading served artifacts without dropping requests: a changed artifact is checked and
swapped in while requests keep coming (none fails), a broken one is refused and the old one
keeps serving; by the admin call (behind the token) and by SIGHUP to a real ``gradlight
serve``."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from http_json import request_json
from processes import serve_process
from serving import ServerThread

from gradlight.bench import engine_calls
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.serving.server import ServerSettings
from gradlight.runtime.settings import EngineSettings
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub

TEXTS = ["The patient denies chest pain.", "Possible pneumonia on the left. Follow up."]


def _swap_in(source: Path, artifact: Path) -> None:
    """Replace ``artifact`` by a copy of ``source`` the way ``gradlight export --overwrite``
    publishes: the new directory is renamed into place in one step."""
    staging = artifact.with_name(artifact.name + ".new")
    shutil.copytree(source, staging)
    old = artifact.with_name(artifact.name + ".old")
    os.replace(artifact, old)
    os.replace(staging, artifact)
    shutil.rmtree(old)


class Load:
    """Clients sending Predict and Attribute without pause (no retries), every answer checked
    against its request, until stopped; failures are kept."""

    def __init__(self, address: str, clients: int = 3) -> None:
        self.stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []
        self._channel = grpc.insecure_channel(address)
        self._stub = AttributorStub(self._channel)
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, index: int) -> None:
        while not self.stop.is_set():
            texts = [f"{index} {self.answered}: {TEXTS[self.answered % 2]}"]
            try:
                if index % 2:
                    answer = self._stub.Predict(pb.PredictRequest(texts=texts), timeout=30)
                else:
                    request = pb.AttributeRequest(texts=texts, sentence_attributions=True)
                    answer = self._stub.Attribute(request, timeout=30)
                assert [r.text for r in answer.results] == texts
                self.answered += 1
            except Exception as exc:
                self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)
        self.stop.set()
        for thread in self._threads:
            thread.join(30)
        self._channel.close()


def _revision(stub: AttributorStub) -> tuple[str, str]:
    (info,) = stub.ListModels(pb.ListModelsRequest()).models
    return info.revision, info.architecture


@pytest.fixture
def artifact(exported, tmp_path):
    """A copy of the tiny BERT's artifact that the test may replace."""
    copy = tmp_path / "served"
    shutil.copytree(exported("bert"), copy)
    return copy


def test_a_changed_artifact_is_swapped_in_under_load_without_a_failed_request(artifact, exported):
    engine = Engine(artifact, EngineSettings(provider="cpu"))
    with ServerThread({"model": engine}, ServerSettings(port=0)) as server:
        stub = AttributorStub(grpc.insecure_channel(server.address))
        before, _ = _revision(stub)
        (unchanged,) = server.call(server.running.reload())
        assert (unchanged.outcome, unchanged.revision) == ("unchanged", before)
        with Load(server.address) as load:
            _swap_in(exported("distilbert"), artifact)
            (outcome,) = server.call(server.running.reload())
        assert outcome.outcome == "reloaded" and outcome.revision != before
        assert load.failures == [] and load.answered > 10
        assert _revision(stub) == (outcome.revision, "DistilBertForSequenceClassification")
        served = stub.Predict(pb.PredictRequest(texts=TEXTS)).results
    reference = Engine(exported("distilbert"), EngineSettings(provider="cpu"))
    expected = reference.probabilities(
        engine_calls.forward(reference, reference.batch(reference.encode(TEXTS, 64)))
    )
    np.testing.assert_allclose([list(r.probabilities) for r in served], expected, atol=1e-5)


def test_a_broken_artifact_is_refused_and_the_old_one_keeps_serving(artifact, exported, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exported("roberta"), broken)
    with (broken / "weights.bin").open("r+b") as weights:
        weights.truncate(1000)  # its manifest's sha256 no longer matches
    engine = Engine(artifact, EngineSettings(provider="cpu"))
    with ServerThread({"model": engine}, ServerSettings(port=0, http_port=0)) as server:
        stub = AttributorStub(grpc.insecure_channel(server.address))
        before = _revision(stub)
        with Load(server.address) as load:
            _swap_in(broken, artifact)
            status, answer = request_json(server.http_url + "admin/reload", {})
        assert status == 409 and answer["error"]["reason"] == "RELOAD_FAILED"
        (model,) = answer["models"]
        assert (model["outcome"], model["revision"]) == ("refused", before[0])
        assert "weights.bin does not match its sha256" in model["error"]
        assert load.failures == [] and load.answered > 5
        assert _revision(stub) == before
        _, metrics = _scrape_reloads(server.http_url)
        assert metrics == {("model", "refused"): 1.0}


def test_a_file_changed_under_an_unchanged_manifest_is_a_change_and_refused(artifact, tmp_path):
    """The same manifest with a damaged weights file (a bad copy) swapped in: refused. (A
    served file must never be changed in place: ONNX Runtime maps the weights file into
    memory, so the running engine would read the damage.)"""
    damaged = tmp_path / "damaged"
    shutil.copytree(artifact, damaged)
    with (damaged / "weights.bin").open("r+b") as weights:
        weights.truncate(1000)
    engine = Engine(artifact, EngineSettings(provider="cpu"))
    with ServerThread({"model": engine}, ServerSettings(port=0)) as server:
        stub = AttributorStub(grpc.insecure_channel(server.address))
        before = _revision(stub)
        _swap_in(damaged, artifact)
        (outcome,) = server.call(server.running.reload())
        assert (outcome.outcome, outcome.revision) == ("refused", before[0])
        assert "weights.bin does not match its sha256" in outcome.error
        assert len(stub.Predict(pb.PredictRequest(texts=TEXTS)).results) == 2  # still serving


def _scrape_reloads(url: str) -> tuple[int, dict[tuple[str, str], float]]:
    from http_json import request
    from prometheus_client.parser import text_string_to_metric_families

    status, _, payload = request(url + "metrics")
    found = {}
    for family in text_string_to_metric_families(payload.decode()):
        for sample in family.samples:
            if sample.name == "gradlight_reloads_total":
                found[(sample.labels["model"], sample.labels["outcome"])] = sample.value
    return status, found


def test_sighup_reloads_a_real_server_and_the_admin_call_needs_the_token(
    artifact, exported, tmp_path
):
    token = "reload-token-0123456789abcdef"
    tokens = tmp_path / "tokens"
    tokens.write_text(token + "\n")
    tokens.chmod(0o600)
    server = serve_process(str(artifact), "--name", "model", "--auth-token-file", str(tokens))
    metadata = (("authorization", f"Bearer {token}"),)
    try:
        channel = grpc.insecure_channel(server.address)
        stub = AttributorStub(channel)
        (info,) = stub.ListModels(pb.ListModelsRequest(), metadata=metadata).models
        url = server.http_url + "admin/reload"
        status, answer = request_json(url, {})
        assert (status, answer["error"]["reason"]) == (401, "UNAUTHENTICATED")
        headers = {"Authorization": f"Bearer {token}"}
        status, answer = request_json(url, {}, headers=headers)
        assert status == 200 and answer["models"][0]["outcome"] == "unchanged"
        _swap_in(exported("electra"), artifact)
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            (now,) = stub.ListModels(pb.ListModelsRequest(), metadata=metadata).models
            if now.revision != info.revision:
                break
            time.sleep(0.2)
        assert now.architecture == "ElectraForSequenceClassification" and len(now.labels) == 4
        answer = stub.Predict(pb.PredictRequest(texts=TEXTS), metadata=metadata)
        assert len(answer.results[0].probabilities) == 4
        channel.close()
    finally:
        assert server.terminate() == 0
    assert "reload: model model reloaded" in server.text_log()


def test_a_replaced_model_is_freed_once_retired(artifact, exported):
    """A model a reload replaced is freed (and its snapshot removed) once its requests are
    done, even where a failed request left it in a reference cycle (an exception's traceback
    holds the frames that held it), without anyone collecting garbage but the server."""
    import weakref

    engine = Engine(artifact, EngineSettings(provider="cpu"))
    with ServerThread({"model": engine}, ServerSettings(port=0)) as server:
        stub = AttributorStub(grpc.insecure_channel(server.address))
        replaced = []
        for source in ("distilbert", "bert", "distilbert"):
            with pytest.raises(grpc.RpcError):  # refused inside the model's use
                stub.Attribute(pb.AttributeRequest(texts=TEXTS, labels=["no such label"]))
            assert len(stub.Predict(pb.PredictRequest(texts=TEXTS)).results) == 2
            served = server.running.registry.models["model"].engine
            replaced.append((weakref.ref(served), served.snapshot.directory))
            del served
            _swap_in(exported(source), artifact)
            (outcome,) = server.call(server.running.reload())
            assert outcome.outcome == "reloaded"
        deadline = time.monotonic() + 30
        while any(ref() is not None for ref, _ in replaced[1:]) and time.monotonic() < deadline:
            time.sleep(0.1)
        # the first engine is the test's own; those the server loaded are freed, copies gone
        assert [ref() is None for ref, _ in replaced[1:]] == [True, True]
        assert not any(directory.exists() for _, directory in replaced)
