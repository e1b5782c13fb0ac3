"""The synchronous client (see the package docstring)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gradlight.client.connection import (
    DEFAULT_TARGET,
    MAX_MESSAGE_BYTES,
    Connection,
    connection_for,
)
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc
from gradlight.wire.methods import FIELDS, check_names

__all__ = [
    "DEFAULT_TARGET",
    "MAX_MESSAGE_BYTES",
    "Client",
    "ServerNotReadyError",
    "entity_fields",
    "method_fields",
]


class ServerNotReadyError(RuntimeError):
    """The server did not report SERVING in time."""


def entity_fields(
    entities: Sequence[Sequence[tuple[int, int]]] | None,
    marking: tuple[str, str] | None,
    context_chars: int | None,
) -> dict[str, object]:
    """The request fields for entity-focused classification (see the proto's TextEntities)."""
    fields: dict[str, object] = {}
    if entities is not None:
        fields["entities"] = [
            pb.TextEntities(spans=[pb.EntitySpan(start=a, end=b) for a, b in spans])
            for spans in entities
        ]
    if marking is not None or context_chars is not None:
        open_marker, close_marker = marking if marking is not None else (None, None)
        fields["entity_marking"] = pb.EntityMarking(
            open=open_marker, close=close_marker, context_chars=context_chars
        )
    return fields


def method_fields(**settings: Any) -> dict[str, object]:
    """The request fields of the token attribution method and of faithfulness, by their names
    (gradlight.wire.methods: ``FIELDS``); the ones left out or None are unset (the server's
    default). An unknown name is a TypeError."""
    check_names(settings)
    return {name: value for name, value in settings.items() if value is not None}


class Client:
    def __init__(
        self,
        target: str | None = None,
        *,
        timeout: float | None = 60.0,
        channel: grpc.Channel | None = None,
        tls: bool = False,
        tls_ca: bytes | str | Path | None = None,
        token: str | None = None,
        connection: Connection | None = None,
    ) -> None:
        """``target``: ``HOST:PORT`` (default 127.0.0.1:50051). ``timeout`` is the per-call
        deadline in seconds, retries included (None: no deadline).

        TLS: ``tls_ca`` is the root certificate to trust (PEM bytes or text, or a file's path);
        ``tls=True`` trusts the system's roots. ``token`` is sent as ``authorization: Bearer
        <token>`` on every call, the health check included. ``connection``: all of these, and
        the retry policy, in one ``gradlight.client.connection.Connection`` (instead of
        ``target``/``tls``/``tls_ca``/``token``). ``channel``: a channel of your own (then
        without ``tls``/``tls_ca``/``connection``; ``token`` still applies)."""
        if channel is not None and (tls or tls_ca is not None or connection is not None):
            raise ValueError(
                "give either channel or tls/tls_ca/connection: a channel brings its own"
            )
        self.connection = connection_for(connection, target, tls=tls, tls_ca=tls_ca, token=token)
        self.target = self.connection.target
        self.timeout = timeout
        self._channel = channel if channel is not None else self.connection.channel()
        self._metadata = self.connection.metadata
        self._stub = pb_grpc.AttributorStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def predict(
        self,
        texts: Sequence[str],
        *,
        model: str = "",
        max_length: int = 0,
        long_texts: str = "",
        window_stride: int = 0,
        aggregation: str = "",
        entities: Sequence[Sequence[tuple[int, int]]] | None = None,
        markers: tuple[str, str] | None = None,
        context_chars: int | None = None,
    ) -> pb.PredictResponse:
        """``long_texts``, ``window_stride``, ``aggregation``: texts longer than the window
        (see ``attribute``). ``entities``: per text, the ``(start, end)`` spans to classify on
        their own (see ``attribute``)."""
        request = pb.PredictRequest(
            model=model,
            texts=list(texts),
            max_length=max_length,
            long_texts=long_texts,
            window_stride=window_stride,
            aggregation=aggregation,
            **entity_fields(entities, markers, context_chars),  # type: ignore[arg-type]
        )
        return self._stub.Predict(request, timeout=self.timeout, metadata=self._metadata)

    def attribute(
        self,
        texts: Sequence[str],
        *,
        model: str = "",
        max_length: int = 0,
        long_texts: str = "",
        window_stride: int = 0,
        aggregation: str = "",
        token_attributions: bool = True,
        sentence_attributions: bool = False,
        labels: Sequence[str] = (),
        raw_scores: bool = False,
        entities: Sequence[Sequence[tuple[int, int]]] | None = None,
        markers: tuple[str, str] | None = None,
        context_chars: int | None = None,
        method: str = "",
        **settings: Any,
    ) -> pb.AttributeResponse:
        """Texts longer than the window (``max_length``; 0: the model's): ``long_texts``
        ``"truncate"`` cuts them (``truncated`` set), ``"windows"`` reads them whole in
        overlapping windows (``""``: the server's default, ``gradlight serve --long-texts``).
        A text read as windows has ``windows`` (each one's character span, the span whose token
        scores it gives, and its own prediction) and ``aggregation``; its tokens, sentences
        and offsets cover the whole text. ``window_stride``: text tokens between windows'
        starts (0: the server's, else half a window); ``aggregation``: ``"mean"`` or ``"max"``
        of the windows' logits (``""``: max for multi-label models, mean for single-label).

        ``entities``: per text, the ``(start, end)`` code point spans to classify on their
        own (each read with ``markers`` around it, default ``("<e>", "</e>")``, and
        ``context_chars`` characters of context on each side, default 100); a text's result
        then holds one ``entities`` entry per span.

        ``method`` and ``settings``: the method and faithfulness fields by name, listed below
        from gradlight.wire.methods (left out: the server's default; another name is a
        TypeError). The proto's AttributeRequest says more.
        """
        request = pb.AttributeRequest(
            model=model,
            texts=list(texts),
            max_length=max_length,
            long_texts=long_texts,
            window_stride=window_stride,
            aggregation=aggregation,
            token_attributions=token_attributions,
            sentence_attributions=sentence_attributions,
            labels=list(labels),
            raw_scores=raw_scores,
            **entity_fields(entities, markers, context_chars),  # type: ignore[arg-type]
            **method_fields(method=method, **settings),  # type: ignore[arg-type]
        )
        return self._stub.Attribute(request, timeout=self.timeout, metadata=self._metadata)

    def attribute_stream(
        self, requests: Iterable[pb.AttributeRequest], *, timeout: float | None = None
    ) -> Iterator[pb.AttributeResponse]:
        """One response per request, in order (the whole stream shares ``timeout``)."""
        return self._stub.AttributeStream(iter(requests), timeout=timeout, metadata=self._metadata)

    def list_models(self) -> pb.ListModelsResponse:
        return self._stub.ListModels(
            pb.ListModelsRequest(), timeout=self.timeout, metadata=self._metadata
        )

    def health(self, service: str = "") -> str:
        """``SERVING``, ``NOT_SERVING``, ... as reported by the standard health service."""
        response = self._health.Check(
            health_pb2.HealthCheckRequest(service=service),
            timeout=self.timeout,
            metadata=self._metadata,
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_until_serving(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                last = self.health()
                if last == "SERVING":
                    return
            except grpc.RpcError as exc:
                last = f"{exc.code().name}: {exc.details()}"
            time.sleep(0.1)
        raise ServerNotReadyError(f"{self.target} not SERVING after {timeout:.0f} s ({last})")

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _fields_doc() -> str:
    """The method and faithfulness fields, one line each, for ``Client.attribute``'s docstring."""
    lines = [
        f"- ``{field.name}``{f' ({field.said_default})' if field.said_default else ''}: "
        f"{field.help}" + (f"; one of {', '.join(field.choices)}" if field.choices else "")
        for field in FIELDS
    ]
    return "\n".join(f"        {line}" for line in lines) + "\n"


Client.attribute.__doc__ = (Client.attribute.__doc__ or "") + "\n" + _fields_doc()
