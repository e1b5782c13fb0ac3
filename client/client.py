"""The synchronous client (see the package docstring)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

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


def method_fields(
    method: str = "",
    steps: int = 0,
    integration: str = "",
    baseline: str = "",
    samples: int = 0,
    stdev: float | None = None,
    seed: int | None = None,
    faithfulness: bool = False,
    removal: str = "",
) -> dict[str, object]:
    """The request fields of the token attribution method and of faithfulness (see the proto's
    AttributeRequest); ``stdev`` and ``seed`` only when given (unset: the server's default)."""
    fields: dict[str, object] = {
        "method": method,
        "steps": steps,
        "integration": integration,
        "baseline": baseline,
        "samples": samples,
        "faithfulness": faithfulness,
        "removal": removal,
    }
    if stdev is not None:
        fields["stdev"] = stdev
    if seed is not None:
        fields["seed"] = seed
    return fields


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
        entities: Sequence[Sequence[tuple[int, int]]] | None = None,
        markers: tuple[str, str] | None = None,
        context_chars: int | None = None,
    ) -> pb.PredictResponse:
        """``entities``: per text, the ``(start, end)`` spans to classify on their own (see
        ``attribute``)."""
        request = pb.PredictRequest(
            model=model,
            texts=list(texts),
            max_length=max_length,
            **entity_fields(entities, markers, context_chars),  # type: ignore[arg-type]
        )
        return self._stub.Predict(request, timeout=self.timeout, metadata=self._metadata)

    def attribute(
        self,
        texts: Sequence[str],
        *,
        model: str = "",
        max_length: int = 0,
        token_attributions: bool = True,
        sentence_attributions: bool = False,
        labels: Sequence[str] = (),
        raw_scores: bool = False,
        entities: Sequence[Sequence[tuple[int, int]]] | None = None,
        markers: tuple[str, str] | None = None,
        context_chars: int | None = None,
        method: str = "",
        steps: int = 0,
        integration: str = "",
        baseline: str = "",
        samples: int = 0,
        stdev: float | None = None,
        seed: int | None = None,
        faithfulness: bool = False,
        removal: str = "",
    ) -> pb.AttributeResponse:
        """``entities``: per text, the ``(start, end)`` code point spans to classify on their
        own (each read with ``markers`` around it, default ``("<e>", "</e>")``, and
        ``context_chars`` characters of context on each side, default 100); a text's result
        then holds one ``entities`` entry per span.

        ``method``: ``"input_x_gradient"`` (empty: this), ``"integrated_gradients"`` (``steps``
        points, 0 = 32, by the ``integration`` rule, empty = ``"gausslegendre"``) or
        ``"gradient_shap"`` (``samples`` points, 0 = 16, with Gaussian noise of ``stdev``, None =
        0.01); both from ``baseline`` ``"pad"`` (empty) or ``"zeros"``. ``seed`` (None: the
        server draws one) makes gradient_shap and faithfulness' random ranking reproducible;
        each result reports the seed used. ``faithfulness``: also ERASER comprehensiveness and
        sufficiency of the token scores, removing words by ``removal`` (``"delete"``, empty, or
        ``"mask"``). The proto's AttributeRequest says more."""
        request = pb.AttributeRequest(
            model=model,
            texts=list(texts),
            max_length=max_length,
            token_attributions=token_attributions,
            sentence_attributions=sentence_attributions,
            labels=list(labels),
            raw_scores=raw_scores,
            **entity_fields(entities, markers, context_chars),  # type: ignore[arg-type]
            **method_fields(  # type: ignore[arg-type]
                method, steps, integration, baseline, samples, stdev, seed, faithfulness, removal
            ),
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
