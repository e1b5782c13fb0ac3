"""TLS on the real servers (gRPC and HTTP on loopback ports, real channels, real HTTPS with a
certificate made here): the given CA is trusted, plaintext and untrusted connections are
refused, TLS and tokens work together, and the TLS and token flags of ``gradlight serve`` and
``gradlight attribute`` end to end. Tokens alone: tests/test_tokens.py; what is checked at
start: tests/test_security_startup.py."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import urllib.error

import grpc
import pytest
from processes import gradlight, serve_process
from secure_serving import (
    CHALLENGE,
    SECOND,
    TEXT,
    TOKEN,
    http_answer,
    rpc_error_code,
    start_server,
    trusting,
)

from gradlight.client import Client
from gradlight.v1 import gradlight_pb2 as pb


@pytest.fixture(scope="module")
def tls_server(engine_for, pki):
    server = start_server(engine_for, tls_cert=pki.cert, tls_key=pki.key)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_auth_server(engine_for, pki, token_file):
    server = start_server(
        engine_for, tls_cert=pki.cert, tls_key=pki.key, auth_token_file=token_file
    )
    yield server
    server.stop()


def test_grpc_over_tls_trusts_the_given_ca_and_refuses_plaintext(tls_server, pki):
    port = tls_server.running.port
    for target, tls_ca in (
        (tls_server.address, pki.cert),  # a path: the IP in the certificate's names
        (f"localhost:{port}", pki.cert.read_bytes()),  # PEM bytes: the DNS name
        (tls_server.address, pki.cert.read_text()),  # PEM text
    ):
        with Client(target, tls_ca=tls_ca, timeout=30) as client:
            result = client.predict([TEXT]).results[0]
            assert result.text == TEXT and result.predicted_label.startswith("label_")
            assert client.health() == "SERVING"
    # Plaintext to the TLS port, and TLS trusting only the system's roots: no connection.
    with Client(tls_server.address, timeout=10) as plain:
        assert rpc_error_code(lambda: plain.predict([TEXT])) == grpc.StatusCode.UNAVAILABLE
    with Client(tls_server.address, tls=True, timeout=10) as untrusting:
        assert rpc_error_code(lambda: untrusting.predict([TEXT])) == grpc.StatusCode.UNAVAILABLE


def test_https_trusts_the_given_ca_and_refuses_plain_http(tls_server, pki):
    url = tls_server.http_url
    assert url == f"https://127.0.0.1:{tls_server.running.http.port}/"
    status, _, answer = http_answer(
        url + "v1/attribute",
        {"texts": [TEXT], "token_attributions": True, "sentence_attributions": True},
        context=trusting(pki),
    )
    assert status == 200
    assert answer["results"][0]["text"] == TEXT and len(answer["results"][0]["sentences"]) == 2
    status, _, _ = http_answer(
        url.replace("127.0.0.1", "localhost") + "healthz", context=trusting(pki)
    )
    assert status == 200
    with pytest.raises(urllib.error.URLError) as caught:  # only the test's CA is trusted
        http_answer(url + "healthz", context=ssl.create_default_context())
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
    plain = url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        http_answer(plain + "healthz")
    # TLS 1.2 and later only (1.2 itself works).
    assert tls_server.running.security.tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = trusting(pki)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert http_answer(url + "healthz", context=tls12)[0] == 200


def test_tls_and_tokens_together_on_both_servers(tls_auth_server, pki):
    with Client(tls_auth_server.address, tls_ca=pki.cert, token=TOKEN) as client:
        response = client.attribute([TEXT], sentence_attributions=True)
        assert response.results[0].sentences
        assert len(list(client.attribute_stream([pb.AttributeRequest(texts=[TEXT])] * 2))) == 2
    with Client(tls_auth_server.address, tls_ca=pki.cert) as anonymous:
        assert anonymous.health() == "SERVING"
        assert rpc_error_code(lambda: anonymous.predict([TEXT])) == grpc.StatusCode.UNAUTHENTICATED
    with Client(tls_auth_server.address, token=TOKEN, timeout=10) as plaintext:
        assert rpc_error_code(lambda: plaintext.predict([TEXT])) == grpc.StatusCode.UNAVAILABLE
    url = tls_auth_server.http_url
    assert url.startswith("https://")
    context = trusting(pki)
    status, _, answer = http_answer(
        url + "v1/attribute", {"texts": [TEXT]}, token=TOKEN, context=context
    )
    assert status == 200 and answer["results"][0]["text"] == TEXT
    status, headers, answer = http_answer(url + "v1/attribute", {"texts": [TEXT]}, context=context)
    assert status == 401 and headers["WWW-Authenticate"] == CHALLENGE
    assert answer["error"]["code"] == "UNAUTHENTICATED"
    assert http_answer(url + "healthz", context=context)[0] == 200


# ---- the command line, end to end ----


def test_serve_and_attribute_flags_end_to_end(exported, pki, token_file):
    server = serve_process(
        str(exported("bert")),
        "--tls-cert",
        str(pki.cert),
        "--tls-key",
        str(pki.key),
        "--auth-token-file",
        str(token_file),
    )
    try:
        assert server.http_url.startswith("https://127.0.0.1:")
        context = trusting(pki)
        assert http_answer(server.http_url + "healthz", context=context)[0] == 200
        assert http_answer(server.http_url + "v1/models", context=context)[0] == 401
        assert http_answer(server.http_url + "v1/models", token=SECOND, context=context)[0] == 200

        def attribute(*flags):
            return subprocess.run(
                gradlight("attribute", "--server", server.address, *flags, "--json", TEXT),
                capture_output=True,
                text=True,
                timeout=120,
            )

        secure = ["--tls-ca", str(pki.cert)]
        answered = attribute(*secure, "--auth-token-file", str(token_file))
        assert answered.returncode == 0, answered.stderr
        assert json.loads(answered.stdout)["results"][0]["text"] == TEXT
        anonymous = attribute(*secure)
        assert anonymous.returncode == 1
        assert "UNAUTHENTICATED" in anonymous.stderr and "authorization: Bearer" in anonymous.stderr
        plaintext = attribute("--auth-token-file", str(token_file), "--timeout", "10")
        assert plaintext.returncode == 1 and "UNAVAILABLE" in plaintext.stderr
        for result in (answered, anonymous, plaintext):
            assert TOKEN not in result.stderr
    finally:
        code = server.terminate()
    log = "".join(server.log)
    assert code == 0, log
    assert f"security: TLS on (certificate {pki.cert}); authentication on" in log
    assert "reachable from other machines" not in log  # loopback: no warning
    for secret in (TOKEN, SECOND):
        assert secret not in log
