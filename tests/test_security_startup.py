"""What the servers check and decide as they start: bad certificate, key and token files are
refused naming the file (by ``gradlight serve`` too, exit 2, before any model is loaded), both
servers bind loopback by default, and a host reachable from other machines without TLS or
tokens is warned about. TLS: tests/test_tls.py; tokens: tests/test_tokens.py."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import time
from pathlib import Path

import pytest
from processes import gradlight
from secure_serving import SECOND, TOKEN, Pki
from serving import ServerThread

from gradlight.runtime.errors import SecurityConfigError
from gradlight.runtime.serving.server import ServerSettings

# ---- bad files are refused at start, naming the file ----


def _bad_files(pki: Pki, directory: Path) -> dict[str, tuple[dict, str]]:
    garbage = directory / "garbage.pem"
    garbage.write_text("this is not PEM\n")
    broken_cert = directory / "broken-cert.pem"
    broken_cert.write_text("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
    empty = directory / "empty-tokens"
    empty.write_text("# no token yet\n\n   \n")
    spaced = directory / "spaced-tokens"
    spaced.write_text(f"{TOKEN}\n{SECOND} # a comment after a token\n")
    missing = directory / "missing.pem"
    tls = {"tls_cert": pki.cert, "tls_key": pki.key}
    return {
        "missing cert": (
            {**tls, "tls_cert": missing},
            f"TLS certificate {missing}: does not exist",
        ),
        "cert not PEM": (
            {**tls, "tls_cert": garbage},
            f"TLS certificate {garbage}: is not a PEM certificate",
        ),
        "cert PEM of nothing": (
            {**tls, "tls_cert": broken_cert},
            f"TLS certificate {broken_cert}: is not a valid PEM certificate",
        ),
        "garbage key": (
            {**tls, "tls_key": garbage},
            f"TLS key {garbage}: is not a PEM private key",
        ),
        "key of another cert": (
            {**tls, "tls_key": pki.other_key},
            f"TLS key {pki.other_key}: is not a usable private key for the certificate {pki.cert}",
        ),
        "encrypted key": (
            {**tls, "tls_key": pki.encrypted_key},
            f"TLS key {pki.encrypted_key}: is encrypted",
        ),
        "key is a directory": (
            {**tls, "tls_key": directory},
            f"TLS key {directory}: is a directory",
        ),
        "empty token file": (
            {"auth_token_file": empty},
            f"auth token file {empty}: holds no token",
        ),
        "missing token file": (
            {"auth_token_file": missing},
            f"auth token file {missing}: does not exist",
        ),
        "token with a space": (
            {"auth_token_file": spaced},
            f"auth token file {spaced}: line 2 is not a token",
        ),
    }


CASES = [
    "missing cert",
    "cert not PEM",
    "cert PEM of nothing",
    "garbage key",
    "key of another cert",
    "encrypted key",
    "key is a directory",
    "empty token file",
    "missing token file",
    "token with a space",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_files_are_refused_at_start_naming_the_file(engine_for, pki, tmp_path, case):
    settings, message = _bad_files(pki, tmp_path)[case]
    server = ServerThread({"bert": engine_for("bert")}, ServerSettings(port=0, **settings))
    try:
        with pytest.raises(SecurityConfigError) as caught:
            server.start()
    finally:
        server.stop()
    assert message in str(caught.value)
    assert TOKEN not in str(caught.value) and SECOND not in str(caught.value)


def test_a_certificate_needs_its_key_and_the_cli_exits_2_naming_the_file(pki, tmp_path):
    with pytest.raises(ValueError, match="tls_cert is given without tls_key"):
        ServerSettings(tls_cert=pki.cert)
    with pytest.raises(ValueError, match="tls_key is given without tls_cert"):
        ServerSettings(tls_key=pki.key)
    missing = tmp_path / "missing.pem"
    for flags, message in (
        (["--tls-cert", str(pki.cert)], "--tls-cert is given without --tls-key"),
        (
            ["--tls-cert", str(missing), "--tls-key", str(pki.key)],
            f"TLS certificate {missing}: does not exist",
        ),
        (["--auth-token-file", str(missing)], f"auth token file {missing}: does not exist"),
    ):
        started = time.monotonic()
        result = subprocess.run(
            gradlight("serve", str(tmp_path / "no-artifact-needed"), "--port", "0", *flags),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        # The files are checked before any model is loaded (the artifact does not even exist).
        assert "no-artifact-needed" not in result.stderr, result.stderr
        assert time.monotonic() - started < 60


# ---- loopback by default ----


def test_both_servers_bind_loopback_by_default(auth_server):
    from gradlight.cli.main import build_parser

    assert ServerSettings().host == "127.0.0.1"
    assert build_parser().parse_args(["serve", "X"]).host == "127.0.0.1"
    running = auth_server.running
    assert running.settings.host == "127.0.0.1" and running.http.host == "127.0.0.1"
    ports = {running.port, running.http.port}
    listening = _listening()
    if listening is not None:  # Linux: the kernel's own table of listening sockets
        assert {(address, port) for address, port in listening if port in ports} == {
            ("127.0.0.1", port) for port in ports
        }
    address = _outward_address()
    for port in ports:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        if address is not None:
            with pytest.raises((ConnectionRefusedError, TimeoutError)):
                socket.create_connection((address, port), timeout=5).close()


def _listening() -> list[tuple[str, int]] | None:
    """(address, port) of every listening TCP socket (IPv4 and IPv6), or None off Linux."""
    found = []
    for name, width in (("tcp", 4), ("tcp6", 16)):
        path = Path("/proc/net") / name
        if not path.exists():
            return None
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != "0A":  # LISTEN
                continue
            hex_address, hex_port = local.split(":")
            raw = bytes.fromhex(hex_address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = [raw[i : i + 4][::-1] for i in range(0, width, 4)]
            address = ipaddress.ip_address(b"".join(words))
            address = getattr(address, "ipv4_mapped", None) or address  # ::ffff:127.0.0.1
            found.append((str(address), int(hex_port, 16)))
    return found


def _outward_address() -> str | None:
    """This machine's address toward other machines, if it has one (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only
            address = probe.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(address).is_loopback else address


# ---- a host reachable from other machines, unprotected ----


def test_a_non_loopback_host_without_tls_or_tokens_is_warned_about(engine_for, caplog):
    # 0.0.0.0 (every address) exists on every machine, with or without a network.
    server = ServerThread({"bert": engine_for("bert")}, ServerSettings(host="0.0.0.0", port=0))
    server.start()
    try:
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    finally:
        server.stop()
    assert any("TLS is off" in warning for warning in warnings), warnings
    assert any("authentication is off" in warning for warning in warnings), warnings
