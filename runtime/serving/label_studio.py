"""Label Studio's ML backend protocol (label-studio-ml-backend) on the HTTP port of ``gradlight
serve``, so a Label Studio project can connect to it as a model (Settings > Model, URL
``http://HOST:PORT/label-studio/MODEL``; ``/label-studio`` alone selects the only model served;
``/label-studio/MODEL/OPTIONS`` with OPTIONS a method the model serves and/or ``sentences``,
comma-separated, e.g. ``/label-studio/bert/integrated_gradients,sentences``).

- ``GET  .../health``: ``{"status": "UP", "model_class": "gradlight", "model": name}`` (503
  ``DOWN`` while not serving); open without a token, as ``/healthz``.
- ``POST .../setup``: checks the project's labeling config (``schema``,
  label_studio_config.py) and answers ``{"model_version": ...}``; a config that does not fit is
  a 400 whose message names the mismatch.
- ``POST .../predict``: ``{"tasks": [{"data": {"text": ...}}, ...]}`` -> ``{"results":
  [prediction, ...]}``, one per task in order (label_studio_predict.py; the regions:
  label_studio_tasks.py); other keys (``params``, ``project``, ``label_config``) are ignored.
- ``POST .../webhook``: events are acknowledged (``{"status": "ok"}``) without reading them;
  open without a token, since Label Studio sends its webhooks without credentials.
- ``POST .../train``: 501, gradlight serves exported models and does not train.

``model_version`` is ``MODEL@REVISION (METHOD[, sentences])`` in ``/setup``'s answer and in
every prediction alike (Label Studio asks again for a task only when its predictions lack the
version ``/setup`` names; the revision changes when the artifact is reloaded). With tokens,
Label Studio's basic auth works with any user and a token as the password
(``basic_as_bearer``). Errors are the server's JSON errors (web.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from aiohttp import web

from gradlight.runtime.errors import ModelNotFoundError, ResponseTooLargeError
from gradlight.runtime.serving import label_studio_predict as lsp
from gradlight.runtime.serving import label_studio_tasks as ls
from gradlight.runtime.serving.api import AttributorApi
from gradlight.runtime.serving.json_messages import decode_body, encode_json
from gradlight.runtime.serving.label_studio_config import check_config
from gradlight.runtime.serving.messages import model_info
from gradlight.runtime.serving.status import Status
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire.errors import RequestError
from gradlight.wire.methods import FIELDS_BY_NAME

logger = logging.getLogger(__name__)

PREFIX = "/label-studio"
SENTENCES = "sentences"


def is_public(path: str) -> bool:
    """Whether ``path`` is a backend's health check or webhook (open without a token)."""
    return path.startswith(f"{PREFIX}/") and path.rstrip("/").endswith(("/health", "/webhook"))


def basic_as_bearer(authorization: Sequence[str]) -> list[str]:
    """The ``Authorization`` values with HTTP Basic credentials read as a bearer token (the
    password), as Label Studio sends them to a backend; others as they are."""
    found = []
    for value in authorization:
        scheme, _, credentials = value.strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                decoded = ""
            value = f"Bearer {decoded.partition(':')[2]}"
        found.append(value)
    return found


class LabelStudioBackend:
    """The routes under ``PREFIX``, on the same API object as the rest of the HTTP server."""

    def __init__(
        self,
        api: AttributorApi,
        read_body: Callable[[web.Request], Awaitable[bytes]],
        send: Callable[[web.Request, list[bytes]], Awaitable[web.StreamResponse]],
        is_serving: Callable[[], bool],
        max_response_bytes: int,
    ) -> None:
        self.api = api
        self.read_body = read_body
        self.send = send
        self.is_serving = is_serving
        self.max_response_bytes = max_response_bytes  # the server's send limit

    def add_routes(self, app: web.Application) -> None:
        for base in (PREFIX, PREFIX + "/{target:.+}"):  # target: MODEL[/OPTIONS]
            app.router.add_get(f"{base}/health", self.health)
            app.router.add_get(f"{base}/", self.health)  # Label Studio's first check
            app.router.add_post(f"{base}/setup", self.setup)
            app.router.add_post(f"{base}/predict", self.predict)
            app.router.add_post(f"{base}/webhook", self.webhook)
            app.router.add_post(f"{base}/train", self.train)

    def _target(self, request: web.Request) -> tuple[pb.ModelInfo, str]:
        """The model a URL's ``MODEL[/OPTIONS]`` names (a name may hold slashes, as a cnlpt
        task's ``MODEL/TASK``), and its options."""
        target = request.match_info.get("target", "")
        parts = target.split("/")
        if target and not all(parts):
            raise RequestError("url", f"has an empty part in {target!r}: name the model")
        registry = self.api.registry
        for end in range(len(parts), 0, -1):
            if (name := "/".join(parts[:end])) in registry.models:
                options = parts[end:]
                if len(options) > 1:
                    raise RequestError(
                        "url", f"has {'/'.join(options)!r} after the model; at most one part"
                    )
                return model_info(registry.models[name]), "".join(options)
        name = parts[0] if len(parts) == 1 else "/".join(parts[:-1])
        return model_info(registry.get(name)), ""  # not served: NOT_FOUND naming those that are

    def _model(self, request: web.Request) -> pb.ModelInfo:
        return self._target(request)[0]

    async def health(self, request: web.Request) -> web.Response:
        try:
            model = self._model(request)
        except ModelNotFoundError as exc:  # open to anyone: the models are not listed
            raise ModelNotFoundError(request.match_info.get("target", ""), None) from exc
        serving = self.is_serving()
        return web.json_response(
            {
                "status": "UP" if serving else "DOWN",
                "model_class": "gradlight",
                "model": model.name,
            },
            status=200 if serving else 503,
        )

    async def _json(self, request: web.Request) -> dict[str, Any]:
        data = await asyncio.to_thread(decode_body, await self.read_body(request))
        if not isinstance(data, dict):
            raise RequestError("body", "must be a JSON object")
        return data

    async def setup(self, request: web.Request) -> web.Response:
        model, options = self._target(request)
        asked = _asked(options, model)
        data = await self._json(request)
        schema = data.get("schema", data.get("label_config"))
        if schema is not None:
            if not isinstance(schema, str):
                raise RequestError("schema", "must be the labeling config as a string of XML")
            try:
                await asyncio.to_thread(check_config, schema, list(model.labels), asked.sentences)
            except RequestError as exc:  # Label Studio shows only that the setup failed
                logger.info("Label Studio setup of %s refused: %s", model.name, exc)
                raise
        version = ls.model_version(model.name, model.revision, asked.method, asked.sentences)
        return web.json_response({"model_version": version})

    async def predict(self, request: web.Request) -> web.StreamResponse:
        model, options = self._target(request)
        asked = _asked(options, model)
        data = await self._json(request)
        results = await lsp.predict(self.api, model, asked, data.get("tasks"))
        if refused := [r["error"] for r in results if "error" in r]:
            logger.info(
                "Label Studio predict for %s: %d of %d tasks refused, the first: %s: %s",
                model.name, len(refused), len(results), refused[0]["field"],
                refused[0]["message"],
            )  # fmt: skip
        chunks = await asyncio.to_thread(encode_json, {"results": results})
        if (size := sum(map(len, chunks))) > self.max_response_bytes:
            raise ResponseTooLargeError(size, self.max_response_bytes)
        return await self.send(request, chunks)

    async def webhook(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def train(self, request: web.Request) -> web.Response:
        model = self._model(request)
        found = Status(
            grpc.StatusCode.UNIMPLEMENTED,
            f"train: gradlight serves the exported model {model.name!r} and does not train it; "
            "fine-tune it elsewhere, export it again and reload (POST /admin/reload)",
            "NO_SUCH_ROUTE",
        )
        return web.json_response(found.http_body(), status=501)


def _asked(options: str, model: pb.ModelInfo) -> lsp.Asked:
    """The method and sentences that ``options`` ask for (``/label-studio/MODEL/OPTIONS``)."""
    method, sentences = "", False
    for part in options.split(","):
        if part == SENTENCES:
            sentences = True
        elif part in model.methods and not method:
            method = part
        elif part:
            raise RequestError(
                "url",
                f"names {part!r} after the model; the options there are one method it serves "
                f"({', '.join(model.methods)}) and 'sentences', comma-separated, as in "
                f"{PREFIX}/{model.name}/{model.methods[-1]},{SENTENCES}",
            )
    return lsp.Asked(method or str(FIELDS_BY_NAME["method"].default), sentences)
