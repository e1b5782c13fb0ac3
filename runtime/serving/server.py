"""The server's lifecycle: gRPC (with health and reflection) and, optionally, the HTTP
visualizer and JSON endpoints, both on the same engines and batchers, both behind the same TLS
and bearer tokens when asked; graceful stop."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gradlight.runtime.errors import BindError
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.serving.api import AttributorApi
from gradlight.runtime.serving.grpc_auth import BearerTokenInterceptor
from gradlight.runtime.serving.http_limits import HttpLimits
from gradlight.runtime.serving.metrics import ServerMetrics
from gradlight.runtime.serving.model_registry import ModelRegistry, ReloadOutcome
from gradlight.runtime.serving.security import (
    Security,
    is_loopback,
    load_security,
    tls_pair_problem,
)
from gradlight.runtime.serving.service import AttributorService, attributor_handler
from gradlight.runtime.serving.web import HttpServer, WebApp, start_http
from gradlight.runtime.settings import BatchSettings, DocumentSettings, ServiceLimits
from gradlight.v1 import gradlight_pb2 as pb

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Attributor"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 50051  # 0 = any free port
    http_port: int | None = None  # the visualizer and JSON endpoints; None = no HTTP server
    batch: BatchSettings = field(default_factory=BatchSettings)
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    documents: DocumentSettings = field(default_factory=DocumentSettings)
    # PEM files: TLS on both servers (both or neither), and the accepted bearer tokens (one
    # per line). Only the paths live here; the files are read when the server starts.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    auth_token_file: Path | None = None
    # /metrics without a token even when tokens are on (for a Prometheus that has none).
    metrics_public: bool = False
    # The HTTP server's timeouts and cap on open connections (runtime/serving/http_limits.py).
    http: HttpLimits = field(default_factory=HttpLimits)

    def __post_init__(self) -> None:
        for name, port in (("port", self.port), ("http_port", self.http_port)):
            if port is not None and not 0 <= port <= 65535:
                raise ValueError(f"{name} must be between 0 and 65535, got {port}")
        if problem := tls_pair_problem(self.tls_cert, self.tls_key):
            raise ValueError(problem)
        for name in ("tls_cert", "tls_key", "auth_token_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    def load_security(self) -> Security:
        """Read and check the TLS and token files (errors name the file)."""
        return load_security(self.tls_cert, self.tls_key, self.auth_token_file)


class RunningServer:
    """A started server; ``port`` is the bound gRPC port (useful with port 0), ``http`` the HTTP
    server when one was asked for."""

    def __init__(
        self,
        server: grpc.aio.Server,
        port: int,
        registry: ModelRegistry,
        health_service: health.aio.HealthServicer,
        settings: ServerSettings,
        http: HttpServer | None,
        ready: asyncio.Event,
        api: AttributorApi,
        security: Security,
    ) -> None:
        self.server = server
        self.port = port
        self.registry = registry
        self.health = health_service
        self.settings = settings
        self.http = http
        self._ready = ready
        self.api = api
        self.security = security
        self._stopping: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        """Health NOT_SERVING, refuse new RPCs, let in-flight ones finish within ``grace``
        seconds, then drain the batchers. Safe to call more than once."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(grace))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace: float | None) -> None:
        grace = self.settings.limits.grace_period_s if grace is None else grace
        logger.info(
            "stopping: health NOT_SERVING, finishing in-flight requests (grace %.1f s)", grace
        )
        started = time.monotonic()
        self._ready.clear()
        await self.health.enter_graceful_shutdown()
        # Drain first, with the transports still up: new calls get UNAVAILABLE from the API
        # itself. (A call that gRPC core holds unmatched when the server itself stops is
        # reported CANCELLED to its client, grpc/grpc#41785; draining first keeps that window
        # to the last instant.)
        self.api.stop_accepting()
        if not await self.api.drained(grace):
            logger.warning("grace period over with requests still running; cancelling them")
        remaining = max(0.0, grace - (time.monotonic() - started))
        stopping = [self.server.stop(remaining)]
        if self.http is not None:
            stopping.append(self.http.stop())
        await asyncio.gather(*stopping)
        await self.registry.close()
        logger.info("stopped")

    async def wait(self) -> None:
        await self.server.wait_for_termination()

    async def reload(self) -> list[ReloadOutcome]:
        """Reload the models whose artifacts changed on disk (SIGHUP, ``POST /admin/reload``);
        a broken new artifact is refused and the old one keeps serving."""
        outcomes = await self.api.reload()
        for outcome in outcomes:
            logger.info(
                "reload: model %s %s (revision %s)",
                outcome.model,
                outcome.outcome,
                outcome.revision,
            )
        return outcomes


async def start_server(
    engines: Mapping[str, Engine], settings: ServerSettings, security: Security | None = None
) -> RunningServer:
    """Serve already loaded (and warmed up) engines; returns once the port is bound.
    ``security``: the loaded TLS and token files (default: loaded from ``settings`` now)."""
    if security is None:
        security = settings.load_security()
    limits = settings.limits
    registry = ModelRegistry(
        engines,
        settings.batch,
        limits.max_texts_per_request,
        metrics=ServerMetrics(),
        documents=settings.documents,
    )
    api = AttributorApi(registry)
    server, port = _grpc_server(api, settings, security)
    health_service = health.aio.HealthServicer()
    for service in ("", SERVICE_NAME):
        await health_service.set(service, NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_service, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    ready = asyncio.Event()
    http = (
        await _http_server(api, settings, security, ready)
        if settings.http_port is not None
        else None
    )
    registry.start()
    try:
        await server.start()
    except BaseException:
        if http is not None:
            await http.stop()
        await registry.close()
        raise
    for service in ("", SERVICE_NAME):
        await health_service.set(service, SERVING)
    ready.set()
    running = RunningServer(
        server, port, registry, health_service, settings, http, ready, api, security
    )
    _log_summary(running)
    return running


def _grpc_server(
    api: AttributorApi, settings: ServerSettings, security: Security
) -> tuple[grpc.aio.Server, int]:
    """The gRPC server with the Attributor service, bound (not started)."""
    limits = settings.limits
    server = grpc.aio.server(
        interceptors=(
            [BearerTokenInterceptor(security.tokens, metrics=api.metrics)]
            if security.tokens
            else None
        ),
        options=[
            ("grpc.max_receive_message_length", limits.max_receive_message_bytes),
            ("grpc.max_send_message_length", limits.max_send_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    server.add_generic_rpc_handlers(
        (attributor_handler(AttributorService(api, limits.max_send_message_bytes)),)
    )
    address = f"{settings.host}:{settings.port}"
    try:
        if security.tls is not None:
            port = server.add_secure_port(address, security.tls.grpc_credentials())
        else:
            port = server.add_insecure_port(address)
    except RuntimeError:  # grpcio refuses an address it cannot bind this way (1.85)
        port = 0
    if port == 0:
        raise BindError(
            f"could not bind gRPC to {address} (in use?); choose another --port (0: any free one)"
        )
    return server, port


async def _http_server(
    api: AttributorApi, settings: ServerSettings, security: Security, ready: asyncio.Event
) -> HttpServer:
    limits = settings.limits
    web_app = WebApp(
        api,
        max_body_bytes=limits.max_receive_message_bytes,
        max_response_bytes=limits.max_send_message_bytes,
        is_serving=ready.is_set,
        bind_host=settings.host,
        tokens=security.tokens,
        metrics_public=settings.metrics_public,
        limits=settings.http,
    )
    assert settings.http_port is not None
    return await start_http(
        web_app.build(),
        web_app.connections,
        settings.host,
        settings.http_port,
        limits.grace_period_s,
        ssl_context=security.tls.context if security.tls is not None else None,
    )


def _log_summary(running: RunningServer) -> None:
    settings = running.settings
    for model in running.registry.models.values():
        engine = model.engine
        logger.info(
            "serving model %r (%s, labels: %s) on %s, %s, IOBinding %s, intra-op threads %s, "
            "inter-op threads %d; calls of at most %d padded tokens, a call costing %d",
            model.name,
            engine.manifest.architecture,
            ", ".join(engine.labels),
            engine.execution_provider,
            engine.precision,
            "on" if engine.io_binding else "off",
            engine.settings.intra_op_threads or "auto",
            engine.settings.inter_op_threads,
            model.batcher.max_tokens_per_call,
            model.batcher.call_cost_tokens,
        )
    batch = settings.batch  # the per-call figures were said per model, as they apply
    logger.info(
        "batching: at most %d rows per call, waiting up to %g ms for companions, queues of "
        "%d rows; limits: %s; long texts: %s",
        batch.max_batch_size,
        batch.max_wait_ms,
        batch.max_queue_size,
        settings.limits,
        settings.documents,
    )
    security = running.security
    logger.info("security: %s", security.describe())
    if not is_loopback(settings.host):
        if security.tls is None:
            logger.warning(
                "%s is reachable from other machines and TLS is off: requests, answers and "
                "tokens travel in clear text (give --tls-cert and --tls-key)",
                settings.host,
            )
        if security.tokens is None:
            logger.warning(
                "%s is reachable from other machines and authentication is off: anyone who "
                "reaches it can use it (give --auth-token-file)",
                settings.host,
            )
    if running.http is not None:
        logger.info("visualizer and JSON endpoints on %s", running.http.url)
    logger.info("gradlight serving on %s", running.address)
    reload_url = f" or POST {running.http.url}admin/reload" if running.http is not None else ""
    logger.info(
        "process %d; reload changed artifacts: kill -HUP %d%s", os.getpid(), os.getpid(), reload_url
    )


def check_ports(settings: ServerSettings) -> None:
    """Refuse, with a BindError naming the flag, a gRPC or HTTP port that is taken on the host,
    before minutes go into loading models. The servers bind for real later: this only saves
    the wait (and gRPC core's own log line) in the common case of a server already running."""
    wanted = [("gRPC", settings.port, "--port")]
    if settings.http_port is not None:
        wanted.append(("HTTP", settings.http_port, "--http-port"))
    if settings.http_port == settings.port != 0:
        raise BindError(
            f"--port and --http-port are both {settings.port}; give them different ports"
        )
    problems = [
        f"{server} port {settings.host}:{port} {problem}; choose another {flag} (0: any free one)"
        for server, port, flag in wanted
        if port != 0 and (problem := _bind_problem(settings.host, port))
    ]
    if problems:
        raise BindError("; ".join(problems))


def _bind_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on now (None: it can, or the host itself is the
    problem, which the real bind reports)."""
    try:
        found = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return None
    for family, kind, protocol, _, address in found:
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return "is in use (another server running?)"
                if exc.errno == errno.EACCES:
                    return "needs privileges to bind"
    return None
