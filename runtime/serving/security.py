"""TLS material and bearer tokens for ``gradlight serve``: loading and checking the files (every
error names the file), and checking an ``authorization`` value against the tokens.

Tokens never appear in a repr, a log line or an error message: ``TokenSet`` shows only how many
tokens it holds and where they came from, and refusals say what to send, not what was sent.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import re
import ssl
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from gradlight.runtime.errors import SecurityConfigError, UnauthenticatedError

logger = logging.getLogger(__name__)

REALM = "gradlight"
WWW_AUTHENTICATE = f'Bearer realm="{REALM}"'
MIN_TOKEN_LENGTH = 16
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: fits a header and metadata
_PRIVATE_KEY = re.compile(rb"-----BEGIN (?:RSA |EC |DSA )?PRIVATE KEY-----")
_HOW = 'send "authorization: Bearer <token>" with a token from the server\'s --auth-token-file'


def read_file(kind: str, path: Path) -> bytes:
    """The bytes of a file a user named; SecurityConfigError naming ``kind`` and the file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SecurityConfigError(f"{kind} {path}: does not exist") from None
    except IsADirectoryError:
        raise SecurityConfigError(f"{kind} {path}: is a directory, not a file") from None
    except OSError as exc:
        raise SecurityConfigError(f"{kind} {path}: cannot be read ({exc.strerror})") from None


@dataclass(frozen=True)
class TlsMaterial:
    """A PEM certificate (chain) and its private key, checked to belong together."""

    cert_file: Path
    key_file: Path
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    context: ssl.SSLContext = field(repr=False, compare=False)  # the HTTP server's, TLS >= 1.2

    def grpc_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key_pem, self.cert_pem)])


def load_tls(cert_file: Path, key_file: Path) -> TlsMaterial:
    """Read and check a PEM certificate and key; errors name the file at fault."""
    cert_pem = read_file("TLS certificate", cert_file)
    key_pem = read_file("TLS key", key_file)
    if b"-----BEGIN CERTIFICATE-----" not in cert_pem:
        raise SecurityConfigError(
            f"TLS certificate {cert_file}: is not a PEM certificate (no -----BEGIN "
            "CERTIFICATE----- line)"
        )
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(
            cadata=cert_pem.decode("ascii")
        )
    except (UnicodeDecodeError, ssl.SSLError) as exc:
        raise SecurityConfigError(
            f"TLS certificate {cert_file}: is not a valid PEM certificate ({_reason(exc)})"
        ) from None
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in key_pem or b"Proc-Type: 4,ENCRYPTED" in key_pem:
        raise SecurityConfigError(
            f"TLS key {key_file}: is encrypted; give the key without a passphrase (protect the "
            "file with its permissions instead)"
        )
    if not _PRIVATE_KEY.search(key_pem):
        raise SecurityConfigError(
            f"TLS key {key_file}: is not a PEM private key (no -----BEGIN PRIVATE KEY----- line)"
        )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file, password=b"")
    except ssl.SSLError as exc:
        raise SecurityConfigError(
            f"TLS key {key_file}: is not a usable private key for the certificate {cert_file} "
            f"({_reason(exc)})"
        ) from None
    return TlsMaterial(cert_file, key_file, cert_pem, key_pem, context)


def _reason(exc: Exception) -> str:
    """OpenSSL's reason, without the source location ("key values mismatch")."""
    if isinstance(exc, ssl.SSLError):
        if exc.reason:
            return str(exc.reason).replace("_", " ").lower()
        if exc.strerror:
            return re.sub(r"\s*\(_ssl\.c:\d+\)$", "", exc.strerror)
    return type(exc).__name__


class TokenSet:
    """The accepted bearer tokens. Compared in constant time; never shown."""

    def __init__(self, tokens: Sequence[str], source: Path | str = "<given>") -> None:
        if not tokens:
            raise SecurityConfigError(f"auth tokens {source}: none given")
        for number, token in enumerate(tokens, 1):
            if not _TOKEN.fullmatch(token):
                raise SecurityConfigError(
                    f"auth tokens {source}: token {number} has a character a token cannot have "
                    "(printable ASCII without spaces only)"
                )
        self._tokens = tuple(token.encode("ascii") for token in tokens)
        self.source = str(source)

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"TokenSet({len(self)} tokens from {self.source})"

    @property
    def first(self) -> str:
        """The first token (what ``gradlight attribute --auth-token-file`` sends)."""
        return self._tokens[0].decode("ascii")

    def accepts(self, token: str) -> bool:
        if not token.isascii():
            return False
        candidate = token.encode("ascii")
        accepted = False
        for known in self._tokens:  # every one compared: the time does not say which matched
            accepted |= hmac.compare_digest(candidate, known)
        return accepted

    def check(self, authorization: Sequence[str]) -> None:
        """Raise ``UnauthenticatedError`` unless ``authorization`` (the values of the header or
        metadata key) is exactly one ``Bearer <token>`` with an accepted token."""
        if not authorization:
            raise UnauthenticatedError(f"this server requires a token: {_HOW}")
        if len(authorization) > 1:
            raise UnauthenticatedError(f"authorization is given more than once; {_HOW}")
        scheme, _, credentials = authorization[0].strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise UnauthenticatedError(f"authorization is not a bearer token; {_HOW}")
        if not self.accepts(credentials.strip()):
            raise UnauthenticatedError(f"the bearer token is not accepted; {_HOW}")


def load_tokens(path: Path) -> TokenSet:
    """One token per line; blank lines and lines starting with ``#`` are ignored."""
    data = read_file("auth token file", path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SecurityConfigError(f"auth token file {path}: is not UTF-8 text") from None
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if not _TOKEN.fullmatch(token):
            raise SecurityConfigError(
                f"auth token file {path}: line {number} is not a token (one token per line, "
                "printable ASCII without spaces; # starts a comment line)"
            )
        if len(token) < MIN_TOKEN_LENGTH:
            logger.warning(
                "auth token file %s: the token on line %d is shorter than %d characters; use "
                "long random tokens (python -c 'import secrets; print(secrets.token_urlsafe(32))')",
                path,
                number,
                MIN_TOKEN_LENGTH,
            )
        tokens.append(token)
    if not tokens:
        raise SecurityConfigError(
            f"auth token file {path}: holds no token (one token per line; blank lines and "
            "# comment lines are ignored)"
        )
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "auth token file %s can be read by other users (mode %o); chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    return TokenSet(tokens, path)


@dataclass(frozen=True)
class Security:
    """What protects a server: TLS (None: plaintext) and tokens (None: no authentication)."""

    tls: TlsMaterial | None = None
    tokens: TokenSet | None = None

    def describe(self) -> str:
        tls = f"TLS on (certificate {self.tls.cert_file})" if self.tls else "TLS off"
        if self.tokens:
            count = len(self.tokens)
            auth = f"authentication on ({count} bearer token{'s' if count > 1 else ''} from "
            auth += f"{self.tokens.source})"
        else:
            auth = "authentication off"
        return f"{tls}; {auth}"


def tls_pair_problem(
    cert: object, key: object, names: tuple[str, str] = ("tls_cert", "tls_key")
) -> str | None:
    """What is wrong when only one of the certificate and its key is given (None: nothing);
    ``names``: how the two are called where they were given."""
    if (cert is None) == (key is None):
        return None
    given, missing = names if key is None else names[::-1]
    return (
        f"{given} is given without {missing}: TLS needs the certificate and its key "
        "(--tls-cert and --tls-key), or neither"
    )


def load_security(
    tls_cert: Path | None, tls_key: Path | None, auth_token_file: Path | None
) -> Security:
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key must be given together (or neither)")
    tls = load_tls(tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    tokens = load_tokens(auth_token_file) if auth_token_file is not None else None
    return Security(tls, tokens)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
