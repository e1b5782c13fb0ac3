"""TLS and bearer tokens on the real servers (gRPC and HTTP on loopback ports, real channels, real
HTTPS with a certificate made here): what is refused, what stays public, what never leaks, and
the flags of ``gradlight serve`` and ``gradlight attribute`` end to end."""

from __future__ import annotations

import asyncio
import datetime
import http.client
import ipaddress
import json
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from processes import gradlight, serve_process
from serving import ServerThread

from gradlight.client import Client
from gradlight.runtime.errors import SecurityConfigError
from gradlight.runtime.grpc_auth import BearerTokenInterceptor
from gradlight.runtime.security import TokenSet
from gradlight.runtime.server import ServerSettings
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc

TEXT = "The patient denies chest pain. No evidence of pneumonia."
TOKEN = "first-" + secrets.token_urlsafe(32)
SECOND = "second-" + secrets.token_urlsafe(32)
WRONG = "wrong-" + secrets.token_urlsafe(32)
CHALLENGE = 'Bearer realm="gradlight"'


# ---- the certificate, the token file, the servers ----


@dataclass(frozen=True)
class Pki:
    cert: Path
    key: Path
    other_key: Path  # a valid key of another certificate
    encrypted_key: Path


def _key_pem(key: ec.EllipticCurvePrivateKey, password: bytes | None = None) -> bytes:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    """A self-signed certificate for localhost and 127.0.0.1, and its key."""
    directory = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gradlight test server")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    pki = Pki(
        directory / "cert.pem",
        directory / "key.pem",
        directory / "other-key.pem",
        directory / "encrypted-key.pem",
    )
    pki.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pki.key.write_bytes(_key_pem(key))
    pki.other_key.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    pki.encrypted_key.write_bytes(_key_pem(key, b"passphrase"))
    for path in (pki.key, pki.other_key, pki.encrypted_key):
        path.chmod(0o600)
    return pki


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens"
    path.write_text(f"# gradlight tokens\n\n{TOKEN}\n   \n# the CI's:\n  {SECOND}  \n")
    path.chmod(0o600)
    return path


def _server(engine_for, **settings) -> ServerThread:
    return ServerThread(
        {"bert": engine_for("bert")}, ServerSettings(port=0, http_port=0, **settings)
    ).start()


@pytest.fixture(scope="module")
def tls_server(engine_for, pki):
    server = _server(engine_for, tls_cert=pki.cert, tls_key=pki.key)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_server(engine_for, token_file):
    server = _server(engine_for, auth_token_file=token_file)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_auth_server(engine_for, pki, token_file):
    server = _server(engine_for, tls_cert=pki.cert, tls_key=pki.key, auth_token_file=token_file)
    yield server
    server.stop()


def _http(url, body=None, *, token=None, authorization=None, context=None):
    """(status, headers, JSON or None) of a GET (no body) or a JSON POST."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if authorization is not None:
        headers["Authorization"] = authorization
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            status, answer, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, answer, payload = error.code, error.headers, error.read()
    is_json = answer.get("Content-Type", "").startswith("application/json")
    return status, answer, json.loads(payload) if is_json else None


def _trusting(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.cert))


def _code(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


# ---- TLS ----


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
        assert _code(lambda: plain.predict([TEXT])) == grpc.StatusCode.UNAVAILABLE
    with Client(tls_server.address, tls=True, timeout=10) as untrusting:
        assert _code(lambda: untrusting.predict([TEXT])) == grpc.StatusCode.UNAVAILABLE


def test_https_trusts_the_given_ca_and_refuses_plain_http(tls_server, pki):
    url = tls_server.http_url
    assert url == f"https://127.0.0.1:{tls_server.running.http.port}/"
    status, _, answer = _http(
        url + "v1/attribute",
        {"texts": [TEXT], "token_attributions": True, "sentence_attributions": True},
        context=_trusting(pki),
    )
    assert status == 200
    assert answer["results"][0]["text"] == TEXT and len(answer["results"][0]["sentences"]) == 2
    status, _, _ = _http(url.replace("127.0.0.1", "localhost") + "healthz", context=_trusting(pki))
    assert status == 200
    with pytest.raises(urllib.error.URLError) as caught:  # only the test's CA is trusted
        _http(url + "healthz", context=ssl.create_default_context())
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
    plain = url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        _http(plain + "healthz")
    # TLS 1.2 and later only (1.2 itself works).
    assert tls_server.running.security.tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = _trusting(pki)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert _http(url + "healthz", context=tls12)[0] == 200


# ---- tokens on gRPC ----


def _grpc_calls(channel, metadata):
    """Each Attributor method, called with ``metadata``; returns what it answered."""
    stub = pb_grpc.AttributorStub(channel)
    request = pb.AttributeRequest(texts=[TEXT], token_attributions=True)
    return {
        "Predict": lambda: stub.Predict(pb.PredictRequest(texts=[TEXT]), metadata=metadata),
        "Attribute": lambda: stub.Attribute(request, metadata=metadata),
        "AttributeStream": lambda: list(
            stub.AttributeStream(iter([request, request]), metadata=metadata, timeout=30)
        ),
        "ListModels": lambda: stub.ListModels(pb.ListModelsRequest(), metadata=metadata),
    }


@pytest.mark.parametrize(
    "authorization",
    [None, f"Bearer {WRONG}", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x"],
    ids=["none", "wrong", "not-bearer", "empty", "longer"],
)
def test_grpc_methods_refuse_calls_without_an_accepted_token(auth_server, authorization):
    metadata = [] if authorization is None else [("authorization", authorization)]
    with grpc.insecure_channel(auth_server.address) as channel:
        for method, call in _grpc_calls(channel, metadata).items():
            with pytest.raises(grpc.RpcError) as caught:
                call()
            error = caught.value
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED, method
            assert "authorization: Bearer <token>" in error.details()
            assert TOKEN not in error.details() and WRONG not in error.details()
        # Reflection lists the services: behind the token too.
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        with pytest.raises(grpc.RpcError) as caught:
            list(reflection.ServerReflectionInfo(iter([listing]), metadata=metadata, timeout=30))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_grpc_health_is_public_and_the_right_tokens_work(auth_server):
    with grpc.insecure_channel(auth_server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        checked = health.Check(health_pb2.HealthCheckRequest(), timeout=30)
        assert checked.status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=30)  # unary-stream
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        for token in (TOKEN, SECOND):  # every token of the file
            answers = _grpc_calls(channel, [("authorization", f"Bearer {token}")])
            assert answers["Predict"]().results[0].text == TEXT
            assert answers["Attribute"]().results[0].tokens
            assert len(answers["AttributeStream"]()) == 2
            assert [model.name for model in answers["ListModels"]().models] == ["bert"]
        # The scheme is case-insensitive (RFC 7235).
        answers = _grpc_calls(channel, [("authorization", f"bearer {TOKEN}")])
        assert answers["Predict"]().results[0].text == TEXT
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        listing = reflection_pb2.ServerReflectionRequest(list_services="")
        answers = list(
            reflection.ServerReflectionInfo(
                iter([listing]), metadata=[("authorization", f"Bearer {TOKEN}")], timeout=30
            )
        )
        services = {service.name for service in answers[0].list_services_response.service}
        assert "gradlight.v1.Attributor" in services
    with Client(auth_server.address, token=TOKEN) as client:
        assert client.health() == "SERVING"
        assert client.attribute([TEXT], sentence_attributions=True).results[0].sentences
        assert len(list(client.attribute_stream([pb.AttributeRequest(texts=[TEXT])] * 3))) == 3
        assert client.list_models().models[0].name == "bert"
    with Client(auth_server.address) as anonymous:
        assert anonymous.health() == "SERVING"
        assert _code(anonymous.list_models) == grpc.StatusCode.UNAUTHENTICATED
    with Client(auth_server.address, token=WRONG) as wrong:
        assert _code(lambda: wrong.predict([TEXT])) == grpc.StatusCode.UNAUTHENTICATED


def test_the_refusal_matches_every_rpc_kind():
    """Unary and streaming in both directions: each refused call gets UNAUTHENTICATED from a
    handler of its own kind (no hang, no INTERNAL); accepted calls reach the real handler."""

    async def unary_unary(request, context):
        return request

    async def unary_stream(request, context):
        yield request
        yield request

    async def stream_unary(requests, context):
        return b"".join([request async for request in requests])

    async def stream_stream(requests, context):
        async for request in requests:
            yield request

    handlers = {
        "UnaryUnary": grpc.unary_unary_rpc_method_handler(unary_unary),
        "UnaryStream": grpc.unary_stream_rpc_method_handler(unary_stream),
        "StreamUnary": grpc.stream_unary_rpc_method_handler(stream_unary),
        "StreamStream": grpc.stream_stream_rpc_method_handler(stream_stream),
    }

    async def run() -> None:
        server = grpc.aio.server(interceptors=[BearerTokenInterceptor(TokenSet([TOKEN]))])
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.K", handlers)])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await _check_kinds(channel)
        finally:
            await server.stop(None)

    asyncio.run(run())


async def _check_kinds(channel: grpc.aio.Channel) -> None:
    accepted = (("authorization", f"Bearer {TOKEN}"),)
    refused = ((), (("authorization", f"Bearer {WRONG}"),))
    for kind, method in (
        ("UnaryUnary", channel.unary_unary("/t.K/UnaryUnary")),
        ("UnaryStream", channel.unary_stream("/t.K/UnaryStream")),
    ):
        for metadata in refused:
            call = method(b"x", metadata=metadata, timeout=10)
            assert await call.code() == grpc.StatusCode.UNAUTHENTICATED, kind
            assert "authorization: Bearer <token>" in await call.details()
    assert await channel.unary_unary("/t.K/UnaryUnary")(b"x", metadata=accepted) == b"x"
    answers = channel.unary_stream("/t.K/UnaryStream")(b"x", metadata=accepted)
    assert [answer async for answer in answers] == [b"x", b"x"]
    # Request streams: the refused calls send nothing (an aio client's write into a call the
    # server has already ended is reported INTERNAL by the client itself, grpc/grpc#36066).
    for kind, method in (
        ("StreamUnary", channel.stream_unary("/t.K/StreamUnary")),
        ("StreamStream", channel.stream_stream("/t.K/StreamStream")),
    ):
        for metadata in refused:
            call = method(metadata=metadata, timeout=10)
            assert await call.code() == grpc.StatusCode.UNAUTHENTICATED, kind
            assert "authorization: Bearer <token>" in await call.details()
    answer = channel.stream_unary("/t.K/StreamUnary")(iter([b"a", b"b"]), metadata=accepted)
    assert await answer == b"ab"
    answers = channel.stream_stream("/t.K/StreamStream")(iter([b"a", b"b"]), metadata=accepted)
    assert [answer async for answer in answers] == [b"a", b"b"]
    # An unknown method is UNIMPLEMENTED, with or without a token.
    call = channel.unary_unary("/t.K/Nothing")(b"x", timeout=10)
    assert await call.code() == grpc.StatusCode.UNIMPLEMENTED


def test_tokens_never_reach_the_log_or_a_repr(engine_for, token_file, pki, caplog):
    caplog.set_level("DEBUG")
    server = _server(engine_for, auth_token_file=token_file, tls_cert=pki.cert, tls_key=pki.key)
    try:
        with Client(server.address, tls_ca=pki.cert, token=TOKEN) as client:
            client.attribute([TEXT])
        with Client(server.address, tls_ca=pki.cert, token=WRONG) as client:
            assert _code(lambda: client.predict([TEXT])) == grpc.StatusCode.UNAUTHENTICATED
        for token in (TOKEN, WRONG, None):
            _http(server.http_url + "v1/models", token=token, context=_trusting(pki))
        running = server.running
        for shown in (repr(running.security), repr(running.settings), str(vars(running))):
            assert TOKEN not in shown and SECOND not in shown
    finally:
        server.stop()
    log = caplog.text
    assert "security: TLS on (certificate" in log
    assert f"authentication on (2 bearer tokens from {token_file})" in log
    assert "refused" in log  # the refusals are logged (at debug), without what was sent
    for secret in (TOKEN, SECOND, WRONG):
        assert secret not in log


# ---- tokens on HTTP ----


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("v1/attribute", {"texts": [TEXT], "token_attributions": True}),
        ("v1/predict", {"texts": [TEXT]}),
        ("v1/models", None),
        ("v1/nothing", None),  # unknown routes too: nothing is learnt without a token
    ],
)
def test_http_api_refuses_requests_without_an_accepted_token(auth_server, path, body):
    url = auth_server.http_url + path
    for authorization in (None, f"Bearer {WRONG}", f"Basic {TOKEN}", "Bearer "):
        status, headers, answer = _http(url, body, authorization=authorization)
        assert status == 401, authorization
        assert headers["WWW-Authenticate"] == CHALLENGE
        assert answer["error"]["code"] == "UNAUTHENTICATED"
        assert "authorization: Bearer <token>" in answer["error"]["message"]
        assert TOKEN not in json.dumps(answer) and WRONG not in json.dumps(answer)
    status, _, answer = _http(url, body, token=TOKEN)
    assert status == (404 if path == "v1/nothing" else 200)


def test_http_page_and_health_are_public_and_the_right_tokens_work(auth_server):
    url = auth_server.http_url
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200 and b"Access token" in response.read()
    assert _http(url + "healthz")[0::2] == (200, {"status": "SERVING"})
    assert _http(url + "favicon.ico")[0] == 204
    for token in (TOKEN, SECOND):
        body = {"texts": [TEXT], "token_attributions": True}
        status, _, answer = _http(url + "v1/attribute", body, token=token)
        assert status == 200 and answer["results"][0]["tokens"]
        status, _, answer = _http(url + "v1/models", token=token)
        assert status == 200 and answer["models"][0]["name"] == "bert"
    status, _, _ = _http(url + "v1/models", authorization=f"bearer {TOKEN}")
    assert status == 200


def test_tls_and_tokens_together_on_both_servers(tls_auth_server, pki):
    with Client(tls_auth_server.address, tls_ca=pki.cert, token=TOKEN) as client:
        response = client.attribute([TEXT], sentence_attributions=True)
        assert response.results[0].sentences
        assert len(list(client.attribute_stream([pb.AttributeRequest(texts=[TEXT])] * 2))) == 2
    with Client(tls_auth_server.address, tls_ca=pki.cert) as anonymous:
        assert anonymous.health() == "SERVING"
        assert _code(lambda: anonymous.predict([TEXT])) == grpc.StatusCode.UNAUTHENTICATED
    with Client(tls_auth_server.address, token=TOKEN, timeout=10) as plaintext:
        assert _code(lambda: plaintext.predict([TEXT])) == grpc.StatusCode.UNAVAILABLE
    url = tls_auth_server.http_url
    assert url.startswith("https://")
    context = _trusting(pki)
    status, _, answer = _http(url + "v1/attribute", {"texts": [TEXT]}, token=TOKEN, context=context)
    assert status == 200 and answer["results"][0]["text"] == TEXT
    status, headers, answer = _http(url + "v1/attribute", {"texts": [TEXT]}, context=context)
    assert status == 401 and headers["WWW-Authenticate"] == CHALLENGE
    assert answer["error"]["code"] == "UNAUTHENTICATED"
    assert _http(url + "healthz", context=context)[0] == 200


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
        context = _trusting(pki)
        assert _http(server.http_url + "healthz", context=context)[0] == 200
        assert _http(server.http_url + "v1/models", context=context)[0] == 401
        assert _http(server.http_url + "v1/models", token=SECOND, context=context)[0] == 200

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
