"""What the TLS and token tests share (tests/test_tls.py, test_tokens.py,
test_security_startup.py): the tokens, a self-signed certificate made here, the token file, a
real server with security settings, and plain HTTPS and gRPC calls that report what came back.
The fixtures built from these (``pki``, ``token_file``, ``auth_server``) are in conftest.py."""

from __future__ import annotations

import datetime
import ipaddress
import json
import secrets
import ssl
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
from serving import ServerThread

from gradlight.runtime.serving.server import ServerSettings

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


def make_pki(directory: Path) -> Pki:
    """A self-signed certificate for localhost and 127.0.0.1, and its key, in ``directory``."""
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


def write_token_file(directory: Path) -> Path:
    """A token file holding TOKEN and SECOND, with comments and blank lines around them."""
    path = directory / "tokens"
    path.write_text(f"# gradlight tokens\n\n{TOKEN}\n   \n# the CI's:\n  {SECOND}  \n")
    path.chmod(0o600)
    return path


def start_server(engine_for, **settings) -> ServerThread:
    return ServerThread(
        {"bert": engine_for("bert")}, ServerSettings(port=0, http_port=0, **settings)
    ).start()


# ---- calls that report what came back ----


def http_answer(url, body=None, *, token=None, authorization=None, context=None):
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


def trusting(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.cert))


def rpc_error_code(call) -> grpc.StatusCode:
    """The status code of the gRPC error that ``call()`` raises (it must raise one)."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()
