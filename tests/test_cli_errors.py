"""The ``gradlight`` command's exit statuses, as real processes: a usage error (a flag's value
that cannot work) is one line naming the flag and exit 2; anything else is a bug and keeps its
traceback (exit 1), never passed off as a bad flag."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import pytest
from processes import gradlight

TEXT = "The patient denies chest pain."


def _run(*args, timeout=120):
    return subprocess.run(
        list(map(str, gradlight(*args))), capture_output=True, text=True, timeout=timeout
    )


def _assert_usage_error(result, command, *expected):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith(f"gradlight {command}: error: "), lines[0]
    for text in expected:
        assert text in lines[0]


@pytest.mark.parametrize("error", ["ValueError", "KeyError", "OSError"])
def test_an_internal_bug_keeps_its_traceback_and_is_not_a_usage_error(error):
    # No code path of gradlight is known to raise one (that is the point): the handler of
    # `gradlight attribute` is replaced, in a real process, by one that does.
    script = textwrap.dedent(
        f"""
        import sys
        import gradlight.cli.serving as serving

        def handler(args):
            raise {error}("an internal bug")

        serving._attribute = handler
        from gradlight.cli.main import main
        sys.exit(main(["attribute", "--server", "127.0.0.1:1", "text"]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert f"{error}: " in result.stderr and "an internal bug" in result.stderr
    assert "gradlight attribute: error:" not in result.stderr


def test_bad_flag_values_are_usage_errors_naming_the_flag(tmp_path):
    missing = tmp_path / "missing-ca.pem"
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    source = tmp_path / "in.jsonl"
    source.write_text('{"text": "x"}\n')
    out = tmp_path / "out.jsonl"
    artifact = tmp_path / "no-artifact-needed"  # refused before any model would load
    cases = [
        (
            ("serve", artifact, "--max-batch-size", "0"),
            ("--max-batch-size must be between 1 and 4096, got 0",),
        ),
        (("serve", artifact, "--grace-period", "-1"), ("--grace-period must be between",)),
        (("serve", artifact, "--max-message-bytes", "5"), ("--max-message-bytes must be",)),
        (("serve", artifact, "--tls-key", not_pem), ("--tls-key is given without --tls-cert",)),
        (("serve", "--model", f"two words={artifact}"), ("--model: model name 'two words'",)),
        (("explain", source, out, "--artifact", artifact, "--top-k", "0"), ("--top-k is 0",)),
        (
            ("explain", source, out, "--artifact", artifact, "--threads", "-1"),
            ("--threads must be between 0 and 1024, got -1",),
        ),
        (("explain", source, tmp_path / "nowhere" / "out.jsonl", "--server", "h:1"), ("OUTPUT",)),
        (
            ("attribute", "--server", "127.0.0.1:1", "--tls-ca", missing, TEXT),
            (f"--tls-ca {missing}: does not exist",),
        ),
        (
            ("attribute", "--server", "127.0.0.1:1", "--tls-ca", not_pem, TEXT),
            (f"--tls-ca {not_pem}: is not a PEM certificate",),
        ),
    ]
    for args, expected in cases:
        _assert_usage_error(_run(*args), args[0], *expected)
    assert not out.exists()


def test_argparse_refusals_stay_exit_2():
    result = _run("serve", "x", "--port", "70000")
    assert result.returncode == 2
    assert "argument --port: must be between 0 and 65535, got 70000" in result.stderr


@pytest.mark.parametrize("which", ["--port", "--http-port"])
def test_a_port_in_use_is_a_usage_error(exported, which):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--port": "0", "--http-port": "0", which: str(port)}
        flags = [item for pair in ports.items() for item in pair]
        result = _run("serve", exported("bert"), *flags, "--provider", "cpu")
    # Refused before any model loads, in one line naming the flag (no gRPC core log line).
    _assert_usage_error(result, "serve", f":{port} is in use", f"choose another {which}")
    assert "serving model" not in result.stderr


def test_the_same_port_for_grpc_and_http_is_a_usage_error(tmp_path):
    result = _run("serve", tmp_path, "--port", "50999", "--http-port", "50999")
    _assert_usage_error(result, "serve", "--port and --http-port are both 50999")
