"""Small robustness guarantees: gRPC calls refused for want of a token are counted in
``/metrics``; ``gradlight serve`` survives a SIGHUP while its models load (reloading once
serving) and stops cleanly on a SIGTERM or SIGINT then; and every path a manifest names must
stay inside the artifact."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import pytest
from artifact_copies import copy_artifact, edit_manifest
from http_json import request
from processes import gradlight
from prometheus_client.parser import text_string_to_metric_families
from secure_serving import TEXT, TOKEN, WRONG, start_server

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import MANIFEST_NAME, load_manifest, sha256_file
from gradlight.client import Client
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1.gradlight_pb2_grpc import AttributorStub

# ---- unauthenticated gRPC calls in /metrics ----


def _samples(url: str, token: str) -> list:
    status, _, payload = request(url + "metrics", headers={"Authorization": f"Bearer {token}"})
    assert status == 200
    families = text_string_to_metric_families(payload.decode())
    return [sample for family in families for sample in family.samples]


def _value(samples: list, name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_unauthenticated_grpc_calls_are_counted_as_refusals_under_no_model(engine_for, token_file):
    server = start_server(engine_for, auth_token_file=token_file)
    try:
        with grpc.insecure_channel(server.address) as channel:
            stub = AttributorStub(channel)
            wrong = [("authorization", f"Bearer {WRONG}")]
            refused = [
                # The body names the served model; it is never read, so the call counts under "".
                lambda: stub.Predict(pb.PredictRequest(model="bert", texts=[TEXT])),
                lambda: stub.Predict(pb.PredictRequest(texts=[TEXT]), metadata=wrong),
                lambda: stub.Attribute(pb.AttributeRequest(texts=[TEXT])),
                lambda: list(stub.AttributeStream(iter([pb.AttributeRequest(texts=[TEXT])]))),
                lambda: stub.ListModels(pb.ListModelsRequest()),
            ]
            for call in refused:
                with pytest.raises(grpc.RpcError) as caught:
                    call()
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            accepted = [("authorization", f"Bearer {TOKEN}")]
            stub.Predict(pb.PredictRequest(texts=[TEXT]), metadata=accepted)
        samples = _samples(server.http_url, TOKEN)
    finally:
        server.stop()

    refusals, requests = "gradlight_refusals_total", "gradlight_requests_total"
    assert _value(samples, refusals, model="", reason="UNAUTHENTICATED") == 5
    assert _value(samples, refusals, model="bert") == 0
    unauthenticated = {
        s.labels["method"]: s.value
        for s in samples
        if s.name == requests and s.labels["code"] == "UNAUTHENTICATED"
    }
    # Requests are counted for the methods whose requests the metrics count (not ListModels).
    assert unauthenticated == {"Predict": 2, "Attribute": 1, "AttributeStream": 1}
    assert {
        s.labels["model"] for s in samples if s.name == requests and s.labels["code"] != "OK"
    } == {""}
    assert _value(samples, requests, model="bert", method="Predict", code="OK") == 1


# ---- signals while `gradlight serve` loads ----


class _Starting:
    """``gradlight serve ARGS`` as a process, its log read as it comes: ``loading`` is set once
    it says its models are loading (its signal handlers are in place by then), ``serving`` once
    it serves."""

    def __init__(self, *args: str) -> None:
        flags = ("--port", "0", "--http-port", "0", "--provider", "cpu", "--grace-period", "5")
        command = gradlight("serve", *args, *flags)
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        self.loading = threading.Event()
        self.serving = threading.Event()
        self.address = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:  # type: ignore[union-attr]
            self.log.append(line)
            if "loading " in line and " model(s): " in line:
                self.loading.set()
            if "gradlight serving on " in line:
                self.address = line.rsplit(" ", 1)[1].strip()
                self.serving.set()
        self.loading.set()  # the process ended: nobody waits for ever
        self.serving.set()

    def text(self) -> str:
        return "".join(self.log)

    def wait_for(self, event: threading.Event, timeout: float = 120) -> None:
        assert event.wait(timeout) and self.process.poll() is None, self.text()

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            assert time.monotonic() < deadline and self.process.poll() is None, self.text()
            time.sleep(0.05)

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code


def _several(artifact: Path, count: int = 3) -> list[str]:
    """The artifact served under ``count`` names: a load that takes a while."""
    return [arg for i in range(count) for arg in ("--model", f"m{i}={artifact}")]


def test_sighup_while_loading_is_kept_for_a_reload_once_serving(exported):
    server = _Starting(*_several(exported("bert")))
    try:
        server.wait_for(server.loading)
        sent = 0
        # SIGHUP again and again from the moment the load starts until the server serves.
        while not server.serving.is_set() and server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGHUP)
            sent += 1
            time.sleep(0.005)
        server.wait_for(server.serving)
        assert sent > 0
        with Client(server.address, timeout=30) as client:
            assert client.predict([TEXT], model="m0").results[0].text == TEXT
        server.wait_for_log("SIGHUP before serving started: reloading once serving")
        server.wait_for_log("reload: model m2 unchanged")
        server.process.send_signal(signal.SIGTERM)
        code = server.finish()
    finally:
        if server.process.poll() is None:
            server.process.kill()
    log = server.text()
    assert code == 0, log
    assert "stopped" in log and "Traceback" not in log


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_while_loading_stops_at_once_with_exit_0(exported, stop):
    server = _Starting(*_several(exported("bert"), 4))
    try:
        server.wait_for(server.loading)
        signalled = time.monotonic()
        server.process.send_signal(stop)
        code = server.finish()
        took = time.monotonic() - signalled
    finally:
        if server.process.poll() is None:
            server.process.kill()
    log = server.text()
    assert code == 0, log
    assert f"{stop.name} while loading: stopped before serving" in log, log
    assert "gradlight serving on" not in log and "Traceback" not in log, log
    assert took < 30, took


# ---- manifest paths confined to the artifact ----


def _tokenizer_beside(artifact: Path) -> None:
    """A working tokenizer in ``../other``: what a manifest pointing there would load."""
    shutil.copytree(artifact / "tokenizer", artifact.parent / "other")
    edit_manifest(artifact, lambda d: d.update(tokenizer_dir="../other"))


def _tokenizer_linked_outside(artifact: Path) -> None:
    """The tokenizer folder moved out of the artifact and linked back: the checksums match."""
    (artifact / "tokenizer").rename(artifact.parent / "elsewhere")
    (artifact / "tokenizer").symlink_to(artifact.parent / "elsewhere")


def _weights_linked_outside(artifact: Path) -> None:
    (artifact / "weights.bin").rename(artifact.parent / "weights.bin")
    (artifact / "weights.bin").symlink_to(artifact.parent / "weights.bin")


def _precision_graph_outside(artifact: Path) -> None:
    shutil.copy(artifact / "forward.onnx", artifact.parent / "forward_fp16.onnx")

    def change(data):
        graph = {**data["graphs"]["forward"], "file": "../forward_fp16.onnx"}
        data["precisions"] = {"fp16": {"forward": graph}}
        data["files"]["../forward_fp16.onnx"] = sha256_file(artifact.parent / "forward_fp16.onnx")

    edit_manifest(artifact, change)


def _graph_at_an_absolute_path(artifact: Path) -> None:
    outside = artifact.parent / "forward.onnx"
    shutil.copy(artifact / "forward.onnx", outside)

    def change(data):
        data["graphs"]["forward"]["file"] = str(outside)
        data["files"][str(outside)] = sha256_file(outside)

    edit_manifest(artifact, change)


OUTSIDE = {
    "tokenizer_dir ..": (_tokenizer_beside, "tokenizer_dir '../other' points outside"),
    "tokenizer_dir absolute": (
        lambda a: edit_manifest(a, lambda d: d.update(tokenizer_dir="/etc")),
        "tokenizer_dir '/etc' points outside the artifact (an absolute path)",
    ),
    "tokenizer linked outside": (
        _tokenizer_linked_outside,
        "tokenizer_dir 'tokenizer' points outside the artifact through a symbolic link",
    ),
    "weights linked outside": (
        _weights_linked_outside,
        "files entry 'weights.bin' points outside the artifact through a symbolic link",
    ),
    "a precision's graph outside": (
        _precision_graph_outside,
        "precisions.fp16.forward.file '../forward_fp16.onnx' points outside",
    ),
    "graph at an absolute path": (
        _graph_at_an_absolute_path,
        "graphs.forward.file '/",
    ),
    "tokenizer_dir not a string": (
        lambda a: edit_manifest(a, lambda d: d.update(tokenizer_dir=7)),
        "tokenizer_dir 7 is not a path",
    ),
}


@pytest.mark.parametrize("case", list(OUTSIDE))
def test_a_manifest_path_leading_out_of_the_artifact_is_refused(exported, tmp_path, case):
    artifact = copy_artifact(exported, tmp_path)
    damage, message = OUTSIDE[case]
    damage(artifact)
    with pytest.raises(ArtifactError) as refused:
        load_manifest(artifact)
    said = str(refused.value)
    assert said.startswith(str(artifact / MANIFEST_NAME)), said
    assert message in said, said
    assert "must be relative to the artifact directory and stay inside it" in said, said
    # Even without checking the files, the paths are checked.
    with pytest.raises(ArtifactError, match=r"points outside|is not a path"):
        load_manifest(artifact, verify_files=False)


def test_a_symbolic_link_within_the_artifact_is_accepted(exported, tmp_path):
    artifact = copy_artifact(exported, tmp_path)
    (artifact / "tokenizer").rename(artifact / "tokenizer-files")
    (artifact / "tokenizer").symlink_to("tokenizer-files")
    assert load_manifest(artifact).tokenizer_dir == "tokenizer"


def test_serve_refuses_a_tokenizer_dir_outside_the_artifact(exported, tmp_path):
    artifact = copy_artifact(exported, tmp_path)
    _tokenizer_beside(artifact)
    result = subprocess.run(
        gradlight("serve", str(artifact), "--port", "0", "--no-http", "--provider", "cpu"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "tokenizer_dir '../other' points outside the artifact" in result.stderr
    assert "re-export the model" in result.stderr
    assert "Traceback" not in result.stderr
