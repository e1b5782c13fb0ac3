"""Where a bulk job's requests are answered: in this process on an artifact (the serving
engine, batcher and API, without the transports) or by a running ``gradlight serve`` over gRPC.
Both answer ``gradlight.v1`` messages, so the output does not depend on which one ran."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import grpc

from gradlight.client.connection import Connection, connection_for
from gradlight.v1 import gradlight_pb2 as pb
from gradlight.v1 import gradlight_pb2_grpc as pb_grpc
from gradlight.wire.error_details import ErrorDetails, error_details


class BackendError(Exception):
    """A request failed; ``details`` says how, as a program reads it (wire/error_details.py)."""

    def __init__(self, details: ErrorDetails) -> None:
        super().__init__(f"{details.code.name}: {details.message}")
        self.details = details

    @classmethod
    def of(cls, code: grpc.StatusCode, message: str) -> BackendError:
        """An error found by the job itself (not a server's answer)."""
        return cls(ErrorDetails(code, message))

    @property
    def code(self) -> grpc.StatusCode:
        return self.details.code


@dataclass(frozen=True)
class ModelFacts:
    name: str
    labels: tuple[str, ...]
    multi_label: bool
    max_length: int
    max_texts: int  # per request
    identity: str  # what a resumed job must find again (the artifact's manifest, or the model)
    # What a request that leaves long_texts unset gets: "truncate" or "windows" ("": not known,
    # a server's --long-texts).
    long_texts: str = ""
    revision: str = ""  # the served artifact's (the start of its manifest's sha256)


def _facts(info: pb.ModelInfo, max_texts: int, identity: str = "") -> ModelFacts:
    return ModelFacts(
        info.name,
        tuple(info.labels),
        info.problem_type == "multi_label_classification",
        info.max_length,
        max_texts,
        identity
        or f"served {info.name} {info.architecture} {info.model_type} {info.max_length} "
        f"{','.join(info.labels)}",
        revision=info.revision,
    )


def _manifest_sha256(artifact: Path) -> str:
    return hashlib.sha256((artifact / "manifest.json").read_bytes()).hexdigest()


def artifact_identity(artifact: Path) -> str:
    """The sha256 of the artifact's manifest (which holds every file's sha256)."""
    return "artifact " + _manifest_sha256(artifact)


def artifact_revision(artifact: Path) -> str:
    """The revision a server shows for the artifact (``ModelInfo.revision``)."""
    return _manifest_sha256(artifact)[:16]


class LocalBackend:
    """The artifact served in this process: engine, dynamic batcher and API, no sockets."""

    def __init__(
        self,
        artifact: Path,
        *,
        provider: str = "auto",
        threads: int = 0,
        max_texts: int = 256,
    ) -> None:
        self.artifact = artifact
        self.provider = provider
        self.threads = threads
        self.max_texts = max_texts
        self._api = None
        self._registry = None

    async def start(self, model: str = "") -> ModelFacts:
        """Load the artifact (must be called in the loop that will run the requests)."""
        from gradlight.runtime.execution.engine import Engine
        from gradlight.runtime.serving.api import AttributorApi
        from gradlight.runtime.serving.model_registry import ModelRegistry
        from gradlight.runtime.settings import BatchSettings, EngineSettings

        settings = EngineSettings(provider=self.provider, intra_op_threads=self.threads)
        engine = Engine(self.artifact, settings)
        engine.warm_up()
        name = model or self.artifact.name
        self._registry = ModelRegistry({name: engine}, BatchSettings(), self.max_texts)
        self._registry.start()
        self._api = AttributorApi(self._registry)
        (info,) = self._api.list_models().models
        facts = _facts(info, self.max_texts, artifact_identity(self.artifact))
        return replace(facts, long_texts=self._registry.documents.long_texts)

    async def attribute(self, request: pb.AttributeRequest) -> pb.AttributeResponse:
        from gradlight.runtime.serving import status

        assert self._api is not None, "start() first"
        request.model = ""  # the only model here
        try:
            return await self._api.attribute(request)
        except Exception as exc:
            raise BackendError(status.status_of(exc)) from exc

    async def close(self) -> None:
        if self._registry is not None:
            await self._registry.close()


class ServerBackend:
    """A running ``gradlight serve`` (or several behind a load balancer) over gRPC.

    ``connection`` (client/connection.py) says how to reach it; or give ``target`` with
    ``tls``/``tls_ca``/``token``, which connect with round robin over the name's addresses (a
    name resolving to several replicas, ``dns:///gradlight.internal:50051``, spreads the
    requests over all of them) and gRPC's retries of UNAVAILABLE and RESOURCE_EXHAUSTED."""

    def __init__(
        self,
        target: str | None = None,
        *,
        tls: bool = False,
        tls_ca: bytes | None = None,
        token: str | None = None,
        timeout: float = 300.0,
        connection: Connection | None = None,
    ) -> None:
        self.connection = connection_for(
            connection, target, tls=tls, tls_ca=tls_ca, token=token, round_robin=True
        )
        self.target = self.connection.target
        self.timeout = timeout
        self._metadata = self.connection.metadata
        self._channel: grpc.aio.Channel | None = None
        self._model = ""

    async def start(self, model: str = "") -> ModelFacts:
        self._channel = self.connection.aio_channel()
        self._stub = pb_grpc.AttributorStub(self._channel)
        try:
            listed = await self._stub.ListModels(
                pb.ListModelsRequest(), timeout=30, metadata=self._metadata, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as exc:
            found = error_details(exc)
            raise BackendError(replace(found, message=f"{self.target}: {found.message}")) from exc
        models = {info.name: info for info in listed.models}
        if model and model not in models:
            raise BackendError.of(
                grpc.StatusCode.NOT_FOUND,
                f"{self.target} does not serve {model!r}; it serves {', '.join(models)}",
            )
        if not model and len(models) != 1:
            raise BackendError.of(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{self.target} serves {', '.join(models)}; name one with --model",
            )
        info = models[model] if model else next(iter(models.values()))
        self._model = info.name
        return _facts(info, max_texts=64)  # well under any server's per-request limit

    async def attribute(self, request: pb.AttributeRequest) -> pb.AttributeResponse:
        request.model = self._model
        try:
            return await self._stub.Attribute(
                request, timeout=self.timeout, metadata=self._metadata, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as exc:
            raise BackendError(error_details(exc)) from exc

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
