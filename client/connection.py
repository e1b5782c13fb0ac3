"""How a client reaches a gradlight server: one frozen description of the gRPC connection
(target, TLS, bearer token, message limit, load balancing, retries) that builds the channels,
sync (``gradlight.client.Client``) and asyncio (the bulk job's ``ServerBackend``), and the
metadata sent with every call.

Retries are gRPC's own (gRFC A6), set in the channel's service config for the
``gradlight.v1.Attributor`` service: a call answered UNAVAILABLE (a replica stopping, a server
not reachable yet) or RESOURCE_EXHAUSTED (a full queue) is sent again after an exponential,
jittered backoff, within the call's deadline. The server stops the retries of a refusal that
waiting cannot fix (an answer over its send limit) with the trailing metadata
``grpc-retry-pushback-ms: -1``, and may say how long to wait with a positive value.

Torch-free and runtime-free: grpc and the generated ``gradlight.v1`` code only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from gradlight.v1 import gradlight_pb2 as pb

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
SERVICE = pb.DESCRIPTOR.services_by_name["Attributor"].full_name  # gradlight.v1.Attributor
RETRYABLE_CODES = ("UNAVAILABLE", "RESOURCE_EXHAUSTED")
MAX_ATTEMPTS_LIMIT = 5  # gRPC treats a larger maxAttempts as 5
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: fits a metadata value
_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def _seconds(value: float) -> str:
    """A protobuf Duration in its JSON form: ``0.2s``, ``5s``."""
    return f"{value:.9f}".rstrip("0").rstrip(".") + "s"


@dataclass(frozen=True)
class RetryPolicy:
    """gRPC's retry policy (gRFC A6) for the calls of ``gradlight.v1.Attributor``.

    A call answered with one of ``RETRYABLE_CODES`` is sent again, at most ``max_attempts``
    times in all (2 to 5). Before retry n (1, 2, ...) gRPC waits a random time up to
    ``min(initial_backoff_s * backoff_multiplier ** (n - 1), max_backoff_s)``: the jitter is
    gRPC's own. A server's ``grpc-retry-pushback-ms`` overrides the wait (negative: no retry).
    Every attempt falls within the call's one deadline. ``buffer_bytes``: a request larger
    than this is sent once, never retried (gRPC keeps a sent request to send it again).
    """

    max_attempts: int = 5
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    backoff_multiplier: float = 2.0
    buffer_bytes: int = 8 * 1024 * 1024

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise ValueError(f"max_attempts must be an integer, got {attempts!r}")
        if not 2 <= attempts <= MAX_ATTEMPTS_LIMIT:
            raise ValueError(
                f"max_attempts must be between 2 and {MAX_ATTEMPTS_LIMIT} (gRPC's limit), got "
                f"{attempts}; for no retries give retry=None"
            )
        for name in ("initial_backoff_s", "max_backoff_s", "backoff_multiplier"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.max_backoff_s < self.initial_backoff_s:
            raise ValueError(
                f"max_backoff_s ({self.max_backoff_s}) must be at least initial_backoff_s "
                f"({self.initial_backoff_s})"
            )
        if isinstance(self.buffer_bytes, bool) or not isinstance(self.buffer_bytes, int):
            raise ValueError(f"buffer_bytes must be an integer, got {self.buffer_bytes!r}")
        if self.buffer_bytes < 1:
            raise ValueError(f"buffer_bytes must be at least 1, got {self.buffer_bytes}")

    def method_config(self) -> dict[str, Any]:
        """The service config's ``methodConfig`` entry for ``gradlight.v1.Attributor``."""
        return {
            "name": [{"service": SERVICE}],
            "retryPolicy": {
                "maxAttempts": self.max_attempts,
                "initialBackoff": _seconds(self.initial_backoff_s),
                "maxBackoff": _seconds(self.max_backoff_s),
                "backoffMultiplier": self.backoff_multiplier,
                "retryableStatusCodes": list(RETRYABLE_CODES),
            },
        }


def check_token(token: str) -> str:
    """``token`` without surrounding whitespace; a ValueError (which never shows it) unless it
    is printable ASCII without spaces."""
    stripped = token.strip() if isinstance(token, str) else ""
    if not _TOKEN.fullmatch(stripped):
        raise ValueError("token must be printable ASCII without spaces")
    return stripped


def root_certificates(tls_ca: bytes | str | Path) -> bytes:
    """PEM bytes from PEM bytes, PEM text, or the path of a PEM file (a str that does not hold
    a PEM block is a path)."""
    if isinstance(tls_ca, bytes):
        return tls_ca
    if isinstance(tls_ca, str) and "-----BEGIN" in tls_ca:
        return tls_ca.encode("ascii")
    return Path(tls_ca).read_bytes()


def is_pem_certificate(data: bytes) -> bool:
    return _PEM_CERTIFICATE in data


@dataclass(frozen=True)
class Connection:
    """Everything about the channel to a gradlight server.

    - ``target``: ``HOST:PORT``, or a gRPC name (``dns:///gradlight.internal:50051``).
    - ``tls``: connect with TLS; ``root_certificates`` (PEM) are the roots to trust, None the
      system's. Giving ``root_certificates`` turns ``tls`` on.
    - ``token``: sent as ``authorization: Bearer <token>`` on every call (printable ASCII
      without spaces; never shown in the repr).
    - ``max_message_bytes``: the largest answer accepted.
    - ``round_robin``: spread the calls over all the addresses the target resolves to (the bulk
      job, against replicas behind one name); off: gRPC's default, the first address that
      connects.
    - ``retry``: the retry policy (None: every call is sent once).
    """

    target: str = DEFAULT_TARGET
    tls: bool = False
    root_certificates: bytes | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    max_message_bytes: int = MAX_MESSAGE_BYTES
    round_robin: bool = False
    retry: RetryPolicy | None = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if not isinstance(self.target, str) or not self.target.strip():
            raise ValueError(f"target must be HOST:PORT or a gRPC name, got {self.target!r}")
        if self.root_certificates is not None:
            if not isinstance(self.root_certificates, bytes):
                raise ValueError("root_certificates must be PEM bytes")
            object.__setattr__(self, "tls", True)
        if self.token is not None:
            object.__setattr__(self, "token", check_token(self.token))
        size = self.max_message_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"max_message_bytes must be a positive integer, got {size!r}")
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise ValueError(f"retry must be a RetryPolicy or None, got {self.retry!r}")

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The metadata every call sends (the bearer token, when there is one)."""
        return (("authorization", f"Bearer {self.token}"),) if self.token is not None else ()

    def service_config(self) -> dict[str, Any]:
        """gRPC's service config: load balancing and the retry policy."""
        config: dict[str, Any] = {}
        if self.round_robin:
            config["loadBalancingConfig"] = [{"round_robin": {}}]
        if self.retry is not None:
            config["methodConfig"] = [self.retry.method_config()]
        return config

    def options(self) -> list[tuple[str, Any]]:
        """The channel arguments."""
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.enable_retries", 1 if self.retry is not None else 0),
        ]
        if self.retry is not None:
            options.append(("grpc.per_rpc_retry_buffer_size", self.retry.buffer_bytes))
        config = self.service_config()
        if config:
            options.append(("grpc.service_config", json.dumps(config)))
        return options

    def credentials(self) -> grpc.ChannelCredentials | None:
        """TLS credentials (None: plaintext)."""
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)

    def channel(self) -> grpc.Channel:
        """A new synchronous channel."""
        credentials = self.credentials()
        if credentials is None:
            return grpc.insecure_channel(self.target, options=self.options())
        return grpc.secure_channel(self.target, credentials, options=self.options())

    def aio_channel(self) -> grpc.aio.Channel:
        """A new asyncio channel (create it in the event loop that will use it)."""
        credentials = self.credentials()
        if credentials is None:
            return grpc.aio.insecure_channel(self.target, options=self.options())
        return grpc.aio.secure_channel(self.target, credentials, options=self.options())


def connection_for(
    connection: Connection | None,
    target: str | None,
    *,
    tls: bool = False,
    tls_ca: bytes | str | Path | None = None,
    token: str | None = None,
    round_robin: bool = False,
) -> Connection:
    """``connection`` as given, or one made of ``target``, ``tls``, ``tls_ca`` and ``token``
    (what ``Client`` and ``ServerBackend`` take): one or the other, not both."""
    if connection is None:
        return Connection(
            target if target is not None else DEFAULT_TARGET,
            tls=tls,
            root_certificates=root_certificates(tls_ca) if tls_ca is not None else None,
            token=token,
            round_robin=round_robin,
        )
    if not isinstance(connection, Connection):
        raise ValueError(f"connection must be a Connection, got {type(connection).__name__}")
    if tls or tls_ca is not None or token is not None:
        raise ValueError("give either connection or tls/tls_ca/token: a Connection holds its own")
    if target is not None and target != connection.target:
        raise ValueError(
            f"target {target!r} differs from the connection's {connection.target!r}; give one"
        )
    return connection
