"""The HTTP server's connections and their limits: binding, the cap on open connections, the
read timeouts and the idle keep-alive timeout (``HttpLimits``).

aiohttp closes a connection that has no complete request head for ``idle_timeout_s`` after it
opened or after its last answer (its ``keepalive_timeout``). What aiohttp has no setting for is
done here, around its protocol: each connection is a ``_Connection`` that passes everything on
to aiohttp's and adds

- the cap: a connection beyond ``max_connections`` open ones gets ``503`` with
  ``Retry-After: 1`` and ``Connection: close`` at once (a JSON error, RESOURCE_EXHAUSTED /
  QUEUE_FULL) and is closed, without reaching aiohttp;
- the header timeout: a request head must be complete within ``header_timeout_s`` of its first
  byte, else the connection is closed. ``Connections.middleware`` tells a connection when
  aiohttp has a request's head, and when the request is over.

The body timeout (``body_timeout_s``) is the JSON endpoints' own (runtime/serving/web.py reads
bodies within it). A client that times out is logged once at INFO, without a traceback, and
counted in ``gradlight_http_client_errors`` by reason; refused connections in
``gradlight_http_connections_refused``; open ones in ``gradlight_http_connections``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gradlight.runtime.errors import BindError
from gradlight.runtime.settings import SettingsError
from gradlight.wire.errors import RequestError

if TYPE_CHECKING:  # aiohttp is imported where it is used: the command line reads HttpLimits
    import ssl

    from aiohttp import web

    from gradlight.runtime.serving.metrics import ServerMetrics

    Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

logger = logging.getLogger(__name__)

HEADER_TIMEOUT, BODY_TIMEOUT, BODY_INCOMPLETE = "header_timeout", "body_timeout", "body_incomplete"
_REFUSED_LINGER_S = 1.0  # how long a refused connection waits for its request before closing
_WARN_EVERY_S = 60.0  # at most one warning a minute about refused connections


@dataclass(frozen=True)
class HttpLimits:
    """Limits on the HTTP server's connections (``gradlight serve --http-*``).

    - ``header_timeout_s`` (10): from a request head's first byte to its end. A head is a few
      hundred bytes, sent in a single write by any client; 10 s leaves room for a slow link
      and a busy client, while a client that trickles its head (slowloris) holds a connection
      for 10 s, not for ever. It also bounds a TLS handshake.
    - ``body_timeout_s`` (30): the whole body, from the end of the head; the largest body
      (``--max-message-bytes``, 8 MiB by default) then needs about 2.2 Mbit/s. Raise it for
      large bodies over slow links.
    - ``idle_timeout_s`` (15): a connection with no complete request head this long after it
      opened or after its last answer is closed (aiohttp's keep-alive timeout; a head begun
      late in that time is cut off by it too, and not counted as a client error). A browser
      or client opens a new connection cheaply. Behind a reverse proxy that keeps upstream
      connections alive, set it above the proxy's own idle timeout (nginx and AWS load
      balancers: 60 s) so that the proxy never sends on a connection being closed.
    - ``max_connections`` (512): each open connection holds a file descriptor and buffers;
      512 stays well under the common limit of 1024 descriptors (leaving room for gRPC and
      the models' files) and is far more than the server answers at once (requests queue in
      the batchers; a browser opens at most 6 per server).
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    idle_timeout_s: float = 15.0
    max_connections: int = 512

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "body_timeout_s", "idle_timeout_s"):
            value = getattr(self, name)
            usable = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not usable or not (math.isfinite(value) and 0 < value <= 3600):
                raise SettingsError(name, f"must be over 0 and at most 3600 seconds, got {value!r}")
        count = self.max_connections
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise SettingsError("max_connections", f"must be an integer >= 1, got {count!r}")


class Connections:
    """The HTTP server's open connections, each a ``_Connection`` around aiohttp's protocol;
    ``metrics``: the server's, where connections and client errors are counted."""

    def __init__(self, limits: HttpLimits, metrics: ServerMetrics | None = None) -> None:
        self.limits = limits
        self.metrics = metrics
        self.open: dict[asyncio.BaseTransport, _Connection] = {}
        self._warned_at = -math.inf
        self.refusal = _refusal(limits)
        if metrics is not None:
            metrics.http_connections.set_function(lambda: len(self.open))

    def protocol_factory(self, make: Callable[[], asyncio.Protocol]) -> Callable[[], _Connection]:
        """The factory the listening socket uses: aiohttp's protocols (``make``) wrapped."""
        return lambda: _Connection(self, make)

    def middleware(self) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
        """The app's outermost middleware: it tells a request's connection that its head
        arrived, and when the request is over: its answer given and its body read (if not,
        aiohttp discards the rest of the body first, for at most its lingering time, and
        closes the connection if that is not done)."""
        from aiohttp import web

        @web.middleware
        async def tell_connection(request: web.Request, handler: Handler) -> web.StreamResponse:
            connection = self.open.get(request.transport) if request.transport else None
            if connection is not None:
                connection.head_received()
            try:
                return await handler(request)
            finally:
                if connection is not None and request.content.is_eof():
                    connection.awaiting_head()

        return tell_connection

    async def read_body(self, request: web.Request) -> bytes:
        """The request's whole body within the body timeout (``BodyTimeout`` after it); a body
        broken off or malformed is a RequestError (400). Either is a client error."""
        from aiohttp import web

        timeout = self.limits.body_timeout_s
        try:
            return await asyncio.wait_for(request.read(), timeout)
        except asyncio.TimeoutError:
            self.client_error(
                BODY_TIMEOUT,
                "HTTP %s %s from %s: the body did not arrive within %g s "
                "(--http-body-timeout); answered 408, connection closed",
                request.method,
                request.path,
                request.remote,
                timeout,
            )
            raise BodyTimeout(timeout) from None
        except (ConnectionError, web.RequestPayloadError) as exc:
            self.client_error(
                BODY_INCOMPLETE,
                "HTTP %s %s from %s: the body was broken off (%s)",
                request.method,
                request.path,
                request.remote,
                exc,
            )
            raise RequestError("body", f"could not be read whole ({exc})") from None

    def client_error(self, reason: str, message: str, *args: object) -> None:
        """Log (INFO, once, no traceback) and count a client's timeout or broken request."""
        logger.info(message, *args)
        if self.metrics is not None:
            self.metrics.http_client_errors.labels(reason).inc()

    def refused(self) -> None:
        if self.metrics is not None:
            self.metrics.http_connections_refused.inc()
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            logger.warning(
                "%d HTTP connections are open (--http-max-connections): new ones get 503 until "
                "some close (gradlight_http_connections_refused counts them)",
                len(self.open),
            )


class BodyTimeout(RequestError):
    def __init__(self, timeout: float) -> None:
        super().__init__(
            "body",
            f"did not arrive within {timeout:g} s (--http-body-timeout); send the whole body "
            "at once",
        )


async def close_after(request: web.Request, response: web.Response) -> web.Response:
    """``response`` sent now, then the connection closed (the rest of the body is not read)."""
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.transport is not None:
        request.transport.close()
    return response


def _refusal(limits: HttpLimits) -> bytes:
    """The whole answer a connection over the cap gets."""
    message = (
        f"the server has its limit of {limits.max_connections} HTTP connections open; retry shortly"
    )
    error = {
        "code": "RESOURCE_EXHAUSTED",
        "message": message,
        "reason": "QUEUE_FULL",
        "field": None,
        "retry_after_s": 1.0,
    }
    body = json.dumps({"error": error}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Retry-After: 1\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's protocol, made by ``make`` once the connection is
    under the cap, gets every event; this adds the header timeout. Over the cap, the refusal
    is written and the connection closed when the client's request arrives (reading it first
    spares the client a reset before it reads the answer), or after a second."""

    def __init__(self, connections: Connections, make: Callable[[], asyncio.Protocol]) -> None:
        self._connections = connections
        self._make = make
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        connections = self._connections
        if len(connections.open) >= connections.limits.max_connections:
            connections.refused()
            transport.write(connections.refusal)
            if transport.can_write_eof():
                transport.write_eof()
            self._timer = asyncio.get_running_loop().call_later(_REFUSED_LINGER_S, transport.close)
            return
        connections.open[transport] = self
        self._inner = self._make()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:  # refused: its request is read, the answer was sent
            assert self._transport is not None
            self._transport.close()
            return
        if self._awaiting_head and self._timer is None and data:
            timeout = self._connections.limits.header_timeout_s
            self._timer = asyncio.get_running_loop().call_later(timeout, self._head_timed_out)
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None if self._inner is None else self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._inner is not None:
            self._connections.open.pop(self._transport, None)  # type: ignore[arg-type]
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def head_received(self) -> None:
        self._awaiting_head = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def awaiting_head(self) -> None:
        """The request is over: the next byte starts the next head's timeout."""
        self._awaiting_head = True

    def _head_timed_out(self) -> None:
        self._timer = None
        transport = self._transport
        if not self._awaiting_head or transport is None or transport.is_closing():
            return
        timeout = self._connections.limits.header_timeout_s
        self._connections.client_error(
            HEADER_TIMEOUT,
            "HTTP client %s: no complete request head within %g s (--http-header-timeout); "
            "connection closed",
            _peer(transport),
            timeout,
        )
        transport.close()


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)


class HttpServer:
    """A started HTTP server (``port`` is the bound one, useful with port 0)."""

    def __init__(
        self,
        runner: web.AppRunner,
        listening: asyncio.AbstractServer,
        host: str,
        port: int,
        scheme: str = "http",
    ) -> None:
        self.runner = runner
        self.listening = listening
        self.host = host
        self.port = port
        self.scheme = scheme

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/"

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the runner's shutdown timeout)."""
        self.listening.close()
        await self.runner.cleanup()


async def start_http(
    app: web.Application,
    connections: Connections,
    host: str,
    port: int,
    grace: float,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpServer:
    """Bind and start ``app`` with ``connections``' limits; with ``ssl_context`` the server
    speaks HTTPS only. ``host`` may be an IPv6 address in brackets (``[::1]``)."""
    from aiohttp import web

    limits = connections.limits
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=grace, keepalive_timeout=limits.idle_timeout_s
    )
    await runner.setup()
    assert runner.server is not None
    bind = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        listening = await asyncio.get_running_loop().create_server(
            connections.protocol_factory(runner.server),
            bind,
            port,
            ssl=ssl_context,
            reuse_address=True,
            ssl_handshake_timeout=limits.header_timeout_s if ssl_context is not None else None,
        )
    except OSError as exc:
        await runner.cleanup()
        raise BindError(
            f"could not bind the HTTP server to {host}:{port} ({exc.strerror}); choose another "
            "--http-port, or --no-http to serve gRPC only"
        ) from exc
    scheme = "https" if ssl_context is not None else "http"
    return HttpServer(runner, listening, bind, listening.sockets[0].getsockname()[1], scheme)
