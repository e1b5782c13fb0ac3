"""The HTTP side of ``gradlight serve``: the visualizer page and JSON endpoints that mirror the
gRPC API, served from the same process, engines and batchers.

- ``GET /``: the visualizer, one self-contained HTML file (no external script, style or font).
- ``GET /v1/models``: ``ListModelsResponse``.
- ``GET /v1/methods``: the attribution methods and their request fields, with defaults and
  limits (gradlight.wire.methods: ``as_json``), for the visualizer's form.
- ``POST /v1/predict``: ``PredictRequest`` -> ``PredictResponse``.
- ``POST /v1/attribute``: ``AttributeRequest`` -> ``AttributeResponse``.
- ``GET /healthz``: ``{"status": "SERVING"}`` (200) or ``NOT_SERVING`` (503).
- ``GET /metrics``: the Prometheus metrics (runtime/serving/metrics.py).
- ``POST /admin/reload``: reload the models whose artifacts changed on disk (as SIGHUP does):
  ``{"models": [{"model", "outcome", "revision", "error"}]}``, 409 when one was refused.
- ``/label-studio[/MODEL]/health|setup|predict|webhook|train``: Label Studio's ML backend
  protocol (label_studio.py); its health checks are open like ``/healthz``, and its routes
  accept HTTP Basic auth with a token as the password.

With tokens (``--auth-token-file``) every route but ``/``, ``/healthz`` and ``/favicon.ico``
(and ``/metrics`` with ``--metrics-public``) needs ``Authorization: Bearer <token>``; without
one the answer is 401 with ``WWW-Authenticate: Bearer realm="gradlight"``, counted in the
metrics as a refusal (UNAUTHENTICATED) under model "" (the body that names the model is not
read). With TLS the server speaks HTTPS only. Bound to a loopback address (any spelling:
127.0.0.0/8, ::1, localhost, a name that resolves to loopback only), the server answers only
requests whose ``Host`` is ``localhost``, a loopback address or the bound name (DNS rebinding).

Connections have limits (runtime/serving/http_limits.py): header, body and idle timeouts and a
cap on open connections. A body not complete within the body timeout gets 408 and the
connection is closed. Bodies are decoded, and answers encoded, in a worker thread, in pieces
that hold the GIL briefly (json_messages.py), so ``/healthz`` answers while the largest request
is worked on; answers over a MiB are streamed.

Bodies are protobuf's JSON mapping of the same messages: a request may name fields by their
proto names (``max_length``) or JSON names (``maxLength``); responses use the proto names, in
the proto's field order, with the fields that apply (json_messages.to_json). POST bodies must
be ``Content-Type: application/json`` (so a cross-site form cannot post to a local server).
Errors are ``{"error": {"code", "message", "reason", "field", "retry_after_s"}}``
(runtime/serving/status.py: the gRPC code's name, the API's ErrorReason name,
the offending field with its index or null, and a retry delay or null) with an HTTP status: 400 bad
field, 401 no accepted token, 404 unknown model or route, 408 body too slow, 413 body too
large, 415 wrong content type, 429 queue full or answer too large, 503 shutting down or too many
connections, 500 anything else; 429 and 503 that a retry may get past say when in
``Retry-After``. An answer over the server's message limit is refused as over gRPC
(RESPONSE_TOO_LARGE).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

import grpc
from aiohttp import web
from google.protobuf.message import Message

from gradlight.runtime.errors import ReloadError, ResponseTooLargeError, UnauthenticatedError
from gradlight.runtime.serving import status
from gradlight.runtime.serving.api import ATTRIBUTE, PREDICT, AttributorApi, count_unread_refusal
from gradlight.runtime.serving.http_limits import BodyTimeout, Connections, HttpLimits, close_after
from gradlight.runtime.serving.http_limits import HttpServer as HttpServer  # for server.py
from gradlight.runtime.serving.http_limits import start_http as start_http
from gradlight.runtime.serving.json_messages import encode_message, parse_message, shown_json
from gradlight.runtime.serving.label_studio import LabelStudioBackend, basic_as_bearer, is_public
from gradlight.runtime.serving.loopback import binds_loopback, host_name, loopback_name
from gradlight.runtime.serving.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gradlight.runtime.serving.model_registry import REFUSED
from gradlight.runtime.serving.security import WWW_AUTHENTICATE, TokenSet
from gradlight.runtime.serving.status import Status
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire.errors import RequestError, shown
from gradlight.wire.methods import as_json as methods_json

logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/", "/healthz", "/favicon.ico"})  # reachable without a token
COUNTED_ROUTES = {"/v1/predict": PREDICT, "/v1/attribute": ATTRIBUTE}  # requests in the metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Page:
    """The visualizer's HTML and the Content-Security-Policy that allows exactly its own inline
    script and style (by hash) and nothing from elsewhere."""

    html: bytes
    csp: str

    @classmethod
    def load(cls) -> Page:
        html = (
            resources.files("gradlight.runtime.serving")
            .joinpath("visualizer/index.html")
            .read_text(encoding="utf-8")
        )
        scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
        styles = re.findall(r"<style>(.*?)</style>", html, flags=re.DOTALL)
        if re.search(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=", html):
            raise RuntimeError("the visualizer page must not load external resources")

        def hashes(blocks: list[str]) -> str:
            return " ".join(
                "'sha256-"
                + base64.b64encode(hashlib.sha256(block.encode("utf-8")).digest()).decode()
                + "'"
                for block in blocks
            )

        csp = (
            f"default-src 'none'; script-src {hashes(scripts)}; style-src {hashes(styles)}; "
            "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        )
        return cls(html.encode("utf-8"), csp)


def _error(found: Status, http_status: int | None = None) -> web.Response:
    response = web.json_response(found.http_body(), status=http_status or found.http_status)
    if found.retry_after_s is not None:
        response.headers["Retry-After"] = str(max(1, math.ceil(found.retry_after_s)))
    if found.code == grpc.StatusCode.UNAUTHENTICATED:
        response.headers["WWW-Authenticate"] = WWW_AUTHENTICATE
    return response


class WebApp:
    """Routes of the HTTP server, on the same API object as the gRPC servicer."""

    def __init__(
        self,
        api: AttributorApi,
        *,
        max_body_bytes: int,
        max_response_bytes: int = 64 * 1024 * 1024,
        is_serving: Callable[[], bool],
        bind_host: str = "127.0.0.1",
        page: Page | None = None,
        tokens: TokenSet | None = None,
        metrics_public: bool = False,
        limits: HttpLimits | None = None,
    ) -> None:
        self.api = api
        self.max_body_bytes = max_body_bytes
        self.max_response_bytes = max_response_bytes
        self.is_serving = is_serving
        # Bound to loopback, only loopback names may appear in the Host header: a web page
        # whose domain was rebound to 127.0.0.1 (DNS rebinding) is refused.
        self.bind_host = bind_host
        self.loopback_only = binds_loopback(bind_host)
        self.page = page or Page.load()
        self.tokens = tokens  # None: no authentication
        self.public_paths = PUBLIC_PATHS | ({"/metrics"} if metrics_public else set())
        self.limits = limits or HttpLimits()
        self.connections = Connections(self.limits, api.metrics)

    def build(self) -> web.Application:
        app = web.Application(
            client_max_size=self.max_body_bytes,
            middlewares=[self.connections.middleware(), self._errors, self._host_check, self._auth],
        )
        app.router.add_get("/", self.index)
        app.router.add_get("/healthz", self.health)
        app.router.add_get("/favicon.ico", self.no_icon)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/methods", self.methods)
        app.router.add_post("/v1/predict", self.predict)
        app.router.add_post("/v1/attribute", self.attribute)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/admin/reload", self.reload)
        LabelStudioBackend(
            self.api, self._body, _send, self.is_serving, self.max_response_bytes
        ).add_routes(app)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        outcome = "200"
        try:
            response = await handler(request)
            outcome = str(response.status)
            return response
        except web.HTTPRequestEntityTooLarge:
            outcome = "413"
            description = (
                f"is larger than the limit of {self.max_body_bytes} bytes; send fewer or "
                "shorter texts per request"
            )
            return _error(
                Status(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"body: {description}",
                    "REQUEST_TOO_LARGE",
                    "body",
                    description,
                ),
                413,
            )
        except _UnsupportedMediaType as exc:
            outcome = "415"
            return _error(status.status_of(exc), 415)
        except BodyTimeout as exc:
            outcome = "408"
            return await close_after(request, _error(status.status_of(exc), 408))
        except ConnectionError:  # the client went away: no one to answer
            outcome = "client gone"
            return web.Response(status=400)
        except web.HTTPException as exc:  # 404 / 405 from the router
            outcome = str(exc.status)
            code = grpc.StatusCode.NOT_FOUND if exc.status == 404 else grpc.StatusCode.UNIMPLEMENTED
            message = f"{request.method} {request.path}: {exc.reason}"
            return _error(Status(code, message, "NO_SUCH_ROUTE"), exc.status)
        except Exception as exc:
            found = status.status_of(exc)
            outcome = str(found.http_status)
            return _error(found)
        finally:
            logger.debug(
                "HTTP %s %s %s %.1f ms",
                request.method,
                request.path,
                outcome,
                (time.perf_counter() - started) * 1000,
            )

    @web.middleware
    async def _host_check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        name = host_name(request.host).lower()
        if self.loopback_only and not loopback_name(name, self.bind_host):
            description = (
                f"{shown_json(request.host)} is not a loopback name of this server (it only "
                "answers localhost and loopback addresses such as 127.0.0.1 and [::1]; bind "
                "another --host to serve other names)"
            )
            return _error(
                Status(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"Host: {description}",
                    "HOST_NOT_ALLOWED",
                    "Host",
                    description,
                )
            )
        return await handler(request)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every route but the page, the health checks and Label Studio's webhooks needs an
        accepted bearer token (or, under ``/label-studio``, basic auth with a token as the
        password; UnauthenticatedError: 401 from ``_errors``), a refusal counted under model
        ""."""
        path = request.path
        authorization = request.headers.getall("Authorization", [])
        # a Label Studio backend's health and webhook are open, but credentials sent are checked
        # (so that Label Studio says "check the authentication parameters" when they are wrong)
        public = is_public(path) and not authorization
        if self.tokens is not None and path not in self.public_paths and not public:
            if path.startswith("/label-studio"):
                authorization = basic_as_bearer(authorization)
            try:
                self.tokens.check(authorization)
            except UnauthenticatedError as exc:
                method = COUNTED_ROUTES.get(request.path) if request.method == "POST" else None
                count_unread_refusal(self.api.metrics, method, status.status_of(exc))
                raise
        return await handler(request)

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self.page.html,
            content_type="text/html",
            charset="utf-8",
            headers={
                "Content-Security-Policy": self.page.csp,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
                "Cache-Control": "no-cache",
            },
        )

    async def no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def health(self, request: web.Request) -> web.Response:
        serving = self.is_serving()
        return web.json_response(
            {"status": "SERVING" if serving else "NOT_SERVING"}, status=200 if serving else 503
        )

    async def models(self, request: web.Request) -> web.StreamResponse:
        return await _send(request, await self._encoded(self.api.list_models()))

    async def methods(self, request: web.Request) -> web.Response:
        return web.json_response(methods_json())

    async def predict(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        message = await asyncio.to_thread(parse_message, body, pb.PredictRequest)
        answer = self._answer(self.api.predict(message))
        return await _send(request, await self.api.counted(PREDICT, message, answer))

    async def attribute(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        message = await asyncio.to_thread(parse_message, body, pb.AttributeRequest)
        answer = self._answer(self.api.attribute(message))
        return await _send(request, await self.api.counted(ATTRIBUTE, message, answer))

    async def _answer(self, call: Awaitable[Message]) -> list[bytes]:
        return await self._encoded(await call)  # within api.counted: RESPONSE_TOO_LARGE counted

    async def metrics(self, request: web.Request) -> web.Response:
        """The Prometheus metrics (runtime/serving/metrics.py), in its text format."""
        body = self.api.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def reload(self, request: web.Request) -> web.Response:
        """Reload the models whose artifacts changed on disk; 409 when one was refused (it
        keeps serving its old artifact). Like every POST, it needs ``Content-Type:
        application/json`` (so a cross-site form cannot trigger it); the body is not read."""
        if request.content_type != "application/json":
            raise _UnsupportedMediaType(request.content_type)
        outcomes = await self.api.reload()
        models = [dataclasses.asdict(outcome) for outcome in outcomes]
        refused = [outcome for outcome in outcomes if outcome.outcome == REFUSED]
        if not refused:
            return web.json_response({"models": models})
        error = ReloadError(
            "; ".join(f"model {o.model}: {o.error}" for o in refused)
            + " (the old artifacts keep serving)"
        )
        found = status.status_of(error)
        return web.json_response({**found.http_body(), "models": models}, status=found.http_status)

    async def _body(self, request: web.Request) -> bytes:
        """The whole body, within the body timeout (http_limits: ``BodyTimeout``)."""
        if request.content_type != "application/json":
            raise _UnsupportedMediaType(request.content_type)
        return await self.connections.read_body(request)

    async def _encoded(self, message: Message) -> list[bytes]:
        """The message as JSON, in chunks, made in a worker thread; ResponseTooLargeError over
        the send limit."""
        chunks = await asyncio.to_thread(encode_message, message)
        size = sum(len(chunk) for chunk in chunks)
        if size > self.max_response_bytes:
            raise ResponseTooLargeError(size, self.max_response_bytes)
        return chunks


async def _send(request: web.Request, chunks: list[bytes]) -> web.StreamResponse:
    """A JSON answer: whole when it is one chunk, else streamed chunk by chunk."""
    if len(chunks) == 1:
        return web.Response(body=chunks[0], content_type="application/json", charset="utf-8")
    response = web.StreamResponse()
    response.content_type, response.charset = "application/json", "utf-8"
    response.content_length = sum(len(chunk) for chunk in chunks)
    await response.prepare(request)
    for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response


class _UnsupportedMediaType(RequestError):
    def __init__(self, content_type: str) -> None:
        super().__init__(
            "Content-Type",
            f"is {shown(content_type)}; send the body as application/json",
        )
