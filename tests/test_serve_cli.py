"""``gradlight serve`` as a process (SIGTERM under load, exit 0, restart), ``gradlight attribute``,
the torch-free serving path, and the generated protobuf code being current."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import grpc
from processes import gradlight, serve_process

from gradlight.client import Client

ROOT = Path(__file__).resolve().parents[1]
TEXT = "The patient denies chest pain. No evidence of pneumonia."


def test_sigterm_under_load_finishes_in_flight_work_and_exits_0(exported):
    artifact = exported("bert")
    server = serve_process(str(artifact), "--name", "bert", "--max-wait-ms", "50")
    outcomes: list[tuple[float, str]] = []  # (when the request was sent, its outcome)
    stop = threading.Event()

    def load():
        with Client(server.address, timeout=30) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.attribute([TEXT] * 4, sentence_attributions=True)
                    assert len(response.results) == 4
                    outcomes.append((sent, "OK"))
                except grpc.RpcError as exc:
                    outcomes.append((sent, exc.code().name))
                    time.sleep(0.05)

    workers = [threading.Thread(target=load) for _ in range(8)]
    for worker in workers:
        worker.start()
    time.sleep(2)
    assert Client(server.address).health() == "SERVING"
    with urllib.request.urlopen(server.http_url + "healthz", timeout=10) as response:
        assert json.load(response) == {"status": "SERVING"}
    signalled = time.monotonic()
    code = server.terminate()
    stop.set()
    for worker in workers:
        worker.join(30)
    log = "".join(server.log)
    assert code == 0, log
    assert "stopping: health NOT_SERVING" in log
    assert "stopped" in log
    assert "Traceback" not in log
    before = [outcome for sent, outcome in outcomes if sent < signalled]
    after = [outcome for sent, outcome in outcomes if sent >= signalled]
    assert before.count("OK") > 8
    # Sent before the signal: answered, or refused whole (it had not started); never a
    # half-answered, cancelled or internal error.
    assert set(before) <= {"OK", "UNAVAILABLE"}, set(before)
    # Sent after it: refused with UNAVAILABLE. gRPC core reports a call it still holds
    # unmatched at the very instant the server stops as CANCELLED (grpc/grpc#41785); such a
    # call was never processed, and at most one per client can be caught there.
    assert "UNAVAILABLE" in after and set(after) <= {"UNAVAILABLE", "CANCELLED"}, set(after)
    assert after.count("CANCELLED") <= len(workers)

    # And it serves again after a restart.
    again = serve_process("--model", f"tiny={artifact}")
    with Client(again.address) as client:
        assert [model.name for model in client.list_models().models] == ["tiny"]
        assert client.predict([TEXT]).results[0].text == TEXT
    assert again.terminate() == 0


def test_attribute_command_prints_prediction_and_json(exported):
    server = serve_process(str(exported("bert")))
    try:
        plain = subprocess.run(
            gradlight("attribute", "--server", server.address, "--sentences", "--no-color", TEXT),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "predicted: label_" in plain
        assert "[+" in plain or "[-" in plain
        assert "No evidence of pneumonia." in plain
        raw = subprocess.run(
            gradlight(
                "attribute", "--server", server.address, "--json", "--label", "label_2", TEXT
            ),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        response = json.loads(raw)
        assert response["results"][0]["labels"] == ["label_2"]
        assert response["results"][0]["tokens"][0]["start"] == 0
        # Refused for what the user typed: said in the flag they typed, exit 2 (README).
        refusals = [
            (("--label", "nope", TEXT), "--label: unknown label 'nope'", "labels[0]"),
            ((TEXT, "  "), "TEXT 2: ", "texts[1]"),
            (("--model", "nope", TEXT), "--model: 'nope' is not", None),
        ]
        for args, said, not_said in refusals:
            bad = subprocess.run(
                gradlight("attribute", "--server", server.address, *args),
                capture_output=True,
                text=True,
            )
            assert bad.returncode == 2, bad.stderr
            assert bad.stderr.startswith(f"gradlight attribute: error: {said}"), bad.stderr
            assert not_said is None or not_said not in bad.stderr
    finally:
        assert server.terminate() == 0


def test_serve_refuses_a_missing_artifact_with_a_clear_message(tmp_path):
    result = subprocess.run(
        gradlight("serve", str(tmp_path / "nothing"), "--port", "0"),
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_the_serving_path_does_not_import_torch(exported):
    script = Path(__file__).with_name("isolated_serving.py")
    result = subprocess.run(
        [sys.executable, str(script), str(exported("bert"))], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"


# The version stamps protoc and grpcio-tools write into generated code: the least protobuf and
# grpcio the code runs on. A newer grpcio-tools writes its own version and otherwise the same
# code, so the comparison leaves the stamps out; the committed stamps are checked against the
# least versions pyproject.toml asks for instead, which the committed code must run on.
_STAMPS = (
    re.compile(r"^# Protobuf Python Version: .*$", re.M),
    re.compile(r"^_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:.*\n)*?\)$", re.M),
    re.compile(r"^GRPC_GENERATED_VERSION = .*$", re.M),
)


def _without_stamps(code: str) -> str:
    for stamp in _STAMPS:
        code = stamp.sub("<version stamp>", code)
    return code


def _least_version(requirement: str) -> tuple[int, ...]:
    pyproject = (ROOT / "pyproject.toml").read_text()
    found = re.search(rf'"{re.escape(requirement)}>=([0-9.]+)"', pyproject)
    assert found, f"pyproject.toml asks for no least {requirement}"
    return tuple(int(part) for part in found.group(1).split("."))


def test_generated_protobuf_code_is_current(tmp_path):
    import grpc_tools  # noqa: F401 (grpcio-tools is a test dependency: a missing one fails)

    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT / 'proto'}",
            f"--python_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            "gradlight/v1/gradlight.proto",
        ],
        check=True,
        cwd=ROOT,
    )
    for name in ("gradlight_pb2.py", "gradlight_pb2_grpc.py", "gradlight_pb2.pyi"):
        generated = (tmp_path / "gradlight" / "v1" / name).read_text()
        committed = (ROOT / "proto" / "gradlight" / "v1" / name).read_text()
        assert _without_stamps(generated) == _without_stamps(committed), (
            f"regenerate proto/gradlight/v1/{name} (README: API)"
        )
    committed = ROOT / "proto" / "gradlight" / "v1"
    protobuf_stamp = re.search(
        r"^# Protobuf Python Version: ([0-9.]+)$",
        (committed / "gradlight_pb2.py").read_text(),
        re.M,
    )
    grpc_stamp = re.search(
        r"^GRPC_GENERATED_VERSION = '([0-9.]+)'$",
        (committed / "gradlight_pb2_grpc.py").read_text(),
        re.M,
    )
    assert protobuf_stamp and grpc_stamp
    # The committed code refuses a runtime older than its stamps: they must not be newer than
    # the least versions the package installs with.
    for stamp, requirement in ((protobuf_stamp, "protobuf"), (grpc_stamp, "grpcio")):
        version = tuple(int(part) for part in stamp.group(1).split("."))
        assert version <= _least_version(requirement), (
            f"the committed stubs need {requirement} {stamp.group(1)}, newer than pyproject.toml's "
            f"least {requirement}: regenerate them with grpcio-tools of that least version, or "
            "raise the least version"
        )
