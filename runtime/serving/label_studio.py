"""Label Studio's ML backend protocol (label-studio-ml-backend) on the HTTP port of ``gradlight
serve``, so a Label Studio project can connect to it as a model (Settings > Model, URL
``http://HOST:PORT/label-studio/MODEL``; ``/label-studio`` alone selects the only model served).

- ``GET  /label-studio[/MODEL]/health``: ``{"status": "UP", "model_class": "gradlight",
  "model": name}`` (503 ``DOWN`` while not serving); open without a token, as ``/healthz``.
- ``POST /label-studio[/MODEL]/setup``: checks the project's labeling config (``schema``,
  label_studio_config.py) and answers ``{"model_version": ...}``; a config that does not fit is
  a 400 whose message names the mismatch (Label Studio shows it when it validates the backend).
- ``POST /label-studio[/MODEL]/predict``: ``{"tasks": [{"data": {"text": ...}}, ...],
  "params": {...}}`` -> ``{"results": [prediction, ...]}``, one per task in order
  (label_studio_tasks.py: the predicted labels as ``Choices``, the graded evidence words).
  ``params`` may hold ``method`` (an attribution method the model serves) and ``sentences``
  (true: sentence regions too); other keys are ignored.
- ``POST /label-studio[/MODEL]/webhook``: events are acknowledged (``{"status": "ok"}``).
- ``POST /label-studio[/MODEL]/train``: 501, gradlight serves exported models and does not
  train.

``model_version`` is ``MODEL@REVISION (METHOD)`` (the revision changes when the artifact is
reloaded). With tokens, Label Studio's basic auth works with any user and a token as the
password (``basic_as_bearer``). Errors are the server's JSON errors (web.py) with ``field``
naming the task: ``tasks[2].data.text``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from aiohttp import web

from gradlight.runtime.serving import label_studio_tasks as ls
from gradlight.runtime.serving.api import ATTRIBUTE, AttributorApi
from gradlight.runtime.serving.json_messages import decode_body, encode_json
from gradlight.runtime.serving.label_studio_config import check_config
from gradlight.runtime.serving.messages import model_info
from gradlight.runtime.serving.status import Status
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire.errors import RequestError
from gradlight.wire.methods import FIELDS_BY_NAME

PREFIX = "/label-studio"
ACTIONS = ("health", "setup", "predict", "webhook", "train")
_TEXT_FIELD = re.compile(r"^texts\[(\d+)\]")


def is_public(path: str) -> bool:
    """Whether ``path`` is a backend health check (open without a token)."""
    return path in (f"{PREFIX}/health", f"{PREFIX}/health/") or (
        path.startswith(f"{PREFIX}/") and path.rstrip("/").endswith("/health")
    )


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
    ) -> None:
        self.api = api
        self.read_body = read_body
        self.send = send
        self.is_serving = is_serving

    def add_routes(self, app: web.Application) -> None:
        for base in (PREFIX, PREFIX + "/{model}"):
            app.router.add_get(f"{base}/health", self.health)
            app.router.add_get(f"{base}/", self.health)  # Label Studio's first check
            app.router.add_post(f"{base}/setup", self.setup)
            app.router.add_post(f"{base}/predict", self.predict)
            app.router.add_post(f"{base}/webhook", self.webhook)
            app.router.add_post(f"{base}/train", self.train)

    def _model(self, request: web.Request) -> pb.ModelInfo:
        return model_info(self.api.registry.get(request.match_info.get("model", "")))

    async def health(self, request: web.Request) -> web.Response:
        model = self._model(request)
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
        model = self._model(request)
        data = await self._json(request)
        schema = data.get("schema", data.get("label_config"))
        if schema is not None:
            if not isinstance(schema, str):
                raise RequestError("schema", "must be the labeling config as a string of XML")
            await asyncio.to_thread(check_config, schema, list(model.labels))
        return web.json_response({"model_version": _version(model, _default_method())})

    async def predict(self, request: web.Request) -> web.StreamResponse:
        model = self._model(request)
        data = await self._json(request)
        texts = _texts(data.get("tasks"), self.api.registry.max_texts)
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise RequestError("params", "must be a JSON object")
        message = pb.AttributeRequest(
            model=model.name, texts=texts, token_attributions=True, raw_scores=True
        )
        if (method := params.get("method")) is not None:
            if not isinstance(method, str):
                raise RequestError("params.method", "must be a method's name")
            message.method = method
        message.sentence_attributions = params.get("sentences") is True
        try:
            answer = await self.api.counted(ATTRIBUTE, message, self.api.attribute(message))
        except RequestError as exc:
            raise _about_tasks(exc) from None
        chunks = await asyncio.to_thread(_results, model, texts, answer)
        return await self.send(request, chunks)

    async def webhook(self, request: web.Request) -> web.Response:
        data = await self._json(request)
        action = data.get("action")
        if not isinstance(action, str):
            action = None
        return web.json_response({"status": "ok", "action": action})

    async def train(self, request: web.Request) -> web.Response:
        model = self._model(request)
        found = Status(
            grpc.StatusCode.UNIMPLEMENTED,
            f"train: gradlight serves the exported model {model.name!r} and does not train it; "
            "fine-tune it elsewhere, export it again and reload (POST /admin/reload)",
            "NO_SUCH_ROUTE",
        )
        return web.json_response(found.http_body(), status=501)


def _default_method() -> str:
    return str(FIELDS_BY_NAME["method"].default)


def _version(model: pb.ModelInfo, method: str) -> str:
    return f"{model.name}@{model.revision} ({method or _default_method()})"


def _texts(tasks: Any, max_texts: int) -> list[str]:
    """The texts of Label Studio tasks, in order; RequestError naming the task that has none."""
    if not isinstance(tasks, list) or not tasks:
        raise RequestError("tasks", "must be a non-empty list of tasks")
    if len(tasks) > max_texts:
        raise RequestError(
            "tasks", f"has {len(tasks)} tasks; the limit is {max_texts} per request: send fewer"
        )
    texts = []
    for index, task in enumerate(tasks):
        text = task.get("data", {}).get("text") if isinstance(task, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise RequestError(
                f"tasks[{index}].data.text",
                "is missing or empty; the project's tasks need a text in data.text",
            )
        texts.append(text)
    return texts


def _about_tasks(exc: RequestError) -> RequestError:
    """``exc`` with a field ``texts[i]`` named as the task's, ``tasks[i].data.text``."""
    field = _TEXT_FIELD.sub(lambda m: f"tasks[{m.group(1)}].data.text", exc.field)
    return exc if field == exc.field else RequestError(field, exc.description)


def _results(model: pb.ModelInfo, texts: list[str], answer: pb.AttributeResponse) -> list[bytes]:
    results = [
        ls.prediction(text, result, _version(model, result.method))
        for text, result in zip(texts, answer.results, strict=True)
    ]
    return encode_json({"results": results})
