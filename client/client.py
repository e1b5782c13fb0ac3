"""The synchronous client (see the package docstring)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from types import TracebackType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ServerNotReadyError(RuntimeError):
    """The server did not report SERVING in time."""


class Client:
    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = 60.0,
        channel: grpc.Channel | None = None,
    ) -> None:
        """``timeout`` is the per-call deadline in seconds (None: no deadline)."""
        self.target = target
        self.timeout = timeout
        self._channel = channel or grpc.insecure_channel(
            target, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]
        )
        self._stub = pb_grpc.AttributorStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def predict(
        self, texts: Sequence[str], *, model: str = "", max_length: int = 0
    ) -> pb.PredictResponse:
        request = pb.PredictRequest(model=model, texts=list(texts), max_length=max_length)
        return self._stub.Predict(request, timeout=self.timeout)

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
    ) -> pb.AttributeResponse:
        request = pb.AttributeRequest(
            model=model,
            texts=list(texts),
            max_length=max_length,
            token_attributions=token_attributions,
            sentence_attributions=sentence_attributions,
            labels=list(labels),
            raw_scores=raw_scores,
        )
        return self._stub.Attribute(request, timeout=self.timeout)

    def attribute_stream(
        self, requests: Iterable[pb.AttributeRequest], *, timeout: float | None = None
    ) -> Iterator[pb.AttributeResponse]:
        """One response per request, in order (the whole stream shares ``timeout``)."""
        return self._stub.AttributeStream(iter(requests), timeout=timeout)

    def list_models(self) -> pb.ListModelsResponse:
        return self._stub.ListModels(pb.ListModelsRequest(), timeout=self.timeout)

    def health(self, service: str = "") -> str:
        """``SERVING``, ``NOT_SERVING``, ... as reported by the standard health service."""
        response = self._health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout
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
