"""What a user of the ``gradlight`` command meets first: every flag says what it does, a wrong
flag shows the failing command's usage, a port in use is refused before anything loads (the
demo prints its link only once it serves), and the README's reload command finds the demo's
server as it finds ``gradlight serve``."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from processes import gradlight

from gradlight.cli.main import build_parser, main
from gradlight.client import Client

# The README's: every `gradlight serve` and `gradlight demo` server.
RELOAD_PATTERN = r"gradlight( |\.demo\.)serve"


def _parsers(parser, path="gradlight"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_flag_of_every_command_has_help():
    missing = [
        f"{path}: {'/'.join(action.option_strings) or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction)
        and (not (action.help or "").strip() or action.help == argparse.SUPPRESS)
    ]
    assert not missing, missing


@pytest.mark.parametrize(
    "argv",
    [
        ["attribute", "--bogus", "a text"],
        ["serve", "ART", "--bogus"],
        ["explain", "in.jsonl", "out.jsonl", "--server", "h:1", "--bogus", "1"],
        ["demo", "--bogus"],
    ],
)
def test_a_wrong_flag_shows_the_commands_usage(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"usage: gradlight {argv[0]} "), error
    assert f"gradlight {argv[0]}: error: unrecognized arguments: --bogus" in error


@pytest.fixture
def taken_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_the_demo_refuses_a_port_in_use_before_training(tmp_path, taken_port):
    workdir = tmp_path / "demo"
    result = subprocess.run(
        gradlight("demo", "--workdir", str(workdir), "--port", str(taken_port)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"gradlight demo: error: gRPC port 127.0.0.1:{taken_port} is in use (another server "
        "running?); choose another --port (0: any free one)"
    ]
    assert "visualizer" not in result.stdout and not workdir.exists()


def test_the_demo_server_prints_no_link_when_a_port_is_in_use(exported, taken_port):
    ports = ["--port", "0", "--http-port", str(taken_port)]
    result = subprocess.run(
        [sys.executable, "-m", "gradlight.demo.serve", str(exported("bert")), *ports],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert f"HTTP port 127.0.0.1:{taken_port} is in use" in result.stderr
    assert "choose another --http-port" in result.stderr and "Traceback" not in result.stderr


class DemoServer:
    """``python -m gradlight.demo.serve`` (what ``gradlight demo`` starts) on free ports; its
    stdout and log read all along."""

    def __init__(self, artifact):
        command = [sys.executable, "-m", "gradlight.demo.serve", str(artifact)]
        command += ["--port", "0", "--http-port", "0"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.log: list[str] = []
        self.out: list[str] = []
        for stream, lines in ((self.process.stderr, self.log), (self.process.stdout, self.out)):
            threading.Thread(target=lambda s=stream, x=lines: x.extend(s), daemon=True).start()

    def wait_for(self, lines, pattern, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(lines):
                if match := re.search(pattern, line):
                    return match
            assert self.process.poll() is None, "".join(self.log)
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in {''.join(lines)}")


def test_the_demo_server_prints_its_link_once_serving_and_reloads_as_the_readme_says(exported):
    server = DemoServer(exported("bert"))
    try:
        served = server.wait_for(server.out, r"^gRPC: (\S+) ").group(1)
        log = "".join(server.log)
        assert "gradlight serving on" in log  # the link comes after the server serves
        page = re.search(r"^visualizer: (\S+) ", "".join(server.out), re.M)
        assert page and page.group(1).startswith("http://127.0.0.1:")
        with Client(served) as client:  # the demo's name, as `serve` of its artifact gives
            assert [model.name for model in client.list_models().models] == ["assertion"]
        pid = server.process.pid
        assert f"process {pid}; reload changed artifacts: kill -HUP {pid}" in log
        assert "=None" not in log  # only effective figures (call cost, tokens per call)
        found = subprocess.run(["pgrep", "-f", RELOAD_PATTERN], capture_output=True, text=True)
        assert str(pid) in found.stdout.split()
        os.kill(pid, signal.SIGHUP)
        server.wait_for(server.log, r"reload: model assertion ")
    finally:
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(60) == 0, "".join(server.log)


def test_the_visualizer_shows_the_models_maximum_length_and_sends_0(page, tiny_server):
    from visualizer_actions import TEXT, explain_text

    page.goto(tiny_server.http_url)
    page.wait_for_selector("body[data-state=ready]")
    page.select_option("#model", "bert")
    with Client(tiny_server.address) as client:
        models = {model.name: model for model in client.list_models().models}
    assert page.input_value("#max-length") == ""
    placeholder = page.get_attribute("#max-length", "placeholder")
    assert placeholder == f"model max ({models['bert'].max_length})"
    with page.expect_request("**/v1/attribute") as sent:
        explain_text(page, TEXT, model="bert")
    assert sent.value.post_data_json["max_length"] == 0
    # An answer without the attribution-only fields (no seed for input x gradient) is shown.
    assert page.text_content("#predicted")
