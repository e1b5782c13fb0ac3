"""The models one server process serves, each with its engine, batcher and attributor, and
their reload: a model whose artifact changed on disk (its manifest, or any file's size or
modification time) is loaded again beside the one serving,
checked (every file's sha256, then loaded and warmed up in ONNX Runtime) and swapped in; the
requests already using the old one finish on it, then its batcher drains and closes. A new
artifact that fails its checks is refused and the old one keeps serving."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gradlight.artifact.manifest import MANIFEST_NAME, sha256_file
from gradlight.artifact.names import check_model_name
from gradlight.runtime.errors import ModelNotFoundError
from gradlight.runtime.execution.artifact_snapshot import source_files
from gradlight.runtime.execution.batcher import DynamicBatcher
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.process_memory import release_freed_memory
from gradlight.runtime.explanation.attributor import Attributor
from gradlight.runtime.serving.metrics import ServerMetrics
from gradlight.runtime.settings import (
    BatchSettings,
    DocumentSettings,
    EngineSettings,
    SettingsError,
)
from gradlight.wire.errors import RequestError

logger = logging.getLogger(__name__)

RELOADED, UNCHANGED, REFUSED = "reloaded", "unchanged", "refused"


Seen = tuple[str, tuple[tuple[str, int, int], ...]]


def on_disk(artifact_dir: Path) -> Seen:
    """What a reload compares: the revision (the start of the manifest's sha256; the manifest
    holds every file's sha256), and every file's size and modification time (a file changed
    under an unchanged manifest is a change too, and then fails its checksum)."""
    return sha256_file(artifact_dir / MANIFEST_NAME)[:16], source_files(artifact_dir)


def loaded_from(engine: Engine) -> Seen:
    """What ``on_disk`` said of ``engine``'s artifact when the engine copied it."""
    return engine.snapshot.revision, engine.snapshot.source_files


def load_engine(name: str, artifact: Path | str, settings: EngineSettings) -> Engine:
    """Load and warm up one artifact (checksums verified). Blocking."""
    started = time.perf_counter()
    engine = Engine(artifact, settings)
    try:
        engine.warm_up()
    except BaseException:
        engine.close()
        raise
    release_freed_memory()
    logger.info(
        "model %s: %s from %s, %d labels, max length %d, %s, loaded in %.1f s",
        check_model_name(name),
        engine.manifest.architecture,
        artifact,
        len(engine.labels),
        engine.max_length,
        engine.execution_provider,
        time.perf_counter() - started,
    )
    return engine


def load_engines(
    artifacts: Mapping[str, Path | str], settings: EngineSettings
) -> dict[str, Engine]:
    """Load (and warm up) one engine per named artifact. Blocking; call before serving."""
    return {name: load_engine(name, artifact, settings) for name, artifact in artifacts.items()}


@dataclass
class ServedModel:
    name: str
    engine: Engine
    batcher: DynamicBatcher
    attributor: Attributor
    seen: Seen  # ``on_disk`` of its artifact when it was copied
    owned: bool = False  # loaded by the registry (a reload): closed with it
    users: int = 0  # requests using this model now
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def revision(self) -> str:
        return self.seen[0]

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.idle.set()

    async def retire(self) -> None:
        """Wait for the requests using this model, then drain and close its batcher and its
        engine (its artifact changed: nothing serves it again)."""
        if self.users:
            self.idle.clear()
            await self.idle.wait()
        await self.batcher.close()
        # In a worker thread: freeing a compiled OpenVINO graph takes up to about 0.3 s, and
        # the snapshot's files are removed from disk.
        await asyncio.to_thread(self.engine.close)
        logger.info("model %s: revision %s retired", self.name, self.revision)


@dataclass(frozen=True)
class ReloadOutcome:
    model: str
    outcome: str  # RELOADED, UNCHANGED or REFUSED
    revision: str  # the revision serving after the reload
    error: str = ""


class ModelRegistry:
    """Looks models up by request name; must be built inside the serving event loop."""

    def __init__(
        self,
        engines: Mapping[str, Engine],
        batch: BatchSettings,
        max_texts: int,
        metrics: ServerMetrics | None = None,
        documents: DocumentSettings | None = None,
    ) -> None:
        if not engines:
            raise ValueError("at least one model must be served")
        for engine in engines.values():
            _check_budget(engine, batch)
        self.batch = batch
        self.max_texts = max_texts
        self.documents = documents or DocumentSettings()
        self.metrics = metrics or ServerMetrics()
        self.models: dict[str, ServedModel] = {
            name: self._served(name, engine, loaded_from(engine))
            for name, engine in engines.items()
        }
        self._retiring: set[asyncio.Task[None]] = set()
        self._reloading = asyncio.Lock()

    def _served(self, name: str, engine: Engine, seen: Seen) -> ServedModel:
        batcher = DynamicBatcher(engine, self.batch, self.metrics.model(name))
        attributor = Attributor(engine, batcher, self.max_texts, self.documents)
        model = ServedModel(name, engine, batcher, attributor, seen)
        self.metrics.model_info.labels(
            name, model.revision, engine.precision, engine.execution_provider
        ).set(1)
        return model

    def start(self) -> None:
        for model in self.models.values():
            model.batcher.start()

    async def close(self) -> None:
        if self._retiring:
            await asyncio.gather(*self._retiring)
        for model in self.models.values():
            await model.batcher.close()
            if model.owned:
                await asyncio.to_thread(model.engine.close)

    def get(self, name: str) -> ServedModel:
        if not name:
            if len(self.models) == 1:
                return next(iter(self.models.values()))
            raise RequestError(
                "model",
                f"is empty but several models are served ({', '.join(self.models)}); name one",
            )
        try:
            return self.models[name]
        except KeyError:
            raise ModelNotFoundError(name, list(self.models)) from None

    @contextlib.asynccontextmanager
    async def use(self, name: str) -> AsyncIterator[ServedModel]:
        """The model ``name`` for one request: a reload meanwhile does not close it under it."""
        model = self.get(name)
        model.users += 1
        try:
            yield model
        finally:
            model.release()

    async def reload(self) -> list[ReloadOutcome]:
        """Reload every model whose artifact changed on disk (one reload at a time)."""
        async with self._reloading:
            return [await self._reload(name) for name in list(self.models)]

    async def _reload(self, name: str) -> ReloadOutcome:
        old = self.models[name]
        artifact = old.engine.artifact_dir
        try:
            seen = await asyncio.to_thread(on_disk, artifact)
            if seen == old.seen:
                return self._counted(ReloadOutcome(name, UNCHANGED, old.revision))
            engine = await asyncio.to_thread(load_engine, name, artifact, old.engine.settings)
            try:
                _check_budget(engine, self.batch)
            except SettingsError:
                await asyncio.to_thread(engine.close)
                raise
        except Exception as exc:  # a broken artifact, whatever ORT or the checks raise
            logger.error(
                "reload of model %s refused, still serving %s: %s", name, old.revision, exc
            )
            return self._counted(ReloadOutcome(name, REFUSED, old.revision, str(exc)))
        new = self._served(name, engine, loaded_from(engine))
        new.owned = True
        new.batcher.start()
        self.models[name] = new
        self.metrics.model_info.remove(
            name, old.revision, old.engine.precision, old.engine.execution_provider
        )
        task = asyncio.ensure_future(self._retire(old))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        logger.info("model %s reloaded: revision %s -> %s", name, old.revision, new.revision)
        return self._counted(ReloadOutcome(name, RELOADED, new.revision))

    @staticmethod
    async def _retire(model: ServedModel) -> None:
        await model.retire()
        del model  # this frame's reference
        # The requests that used the model can leave what they held in reference cycles (an
        # exception's traceback holds its frames): a full collection frees them, on the event
        # loop, whose objects (gRPC's among them) they are; glibc then gives the memory back.
        # It takes a few milliseconds: the modules' objects are frozen out of collections
        # (runtime/serving/process.py).
        gc.collect()
        await asyncio.to_thread(release_freed_memory)

    def _counted(self, outcome: ReloadOutcome) -> ReloadOutcome:
        self.metrics.reloads.labels(outcome.model, outcome.outcome).inc()
        return outcome


def _check_budget(engine: Engine, batch: BatchSettings) -> None:
    if batch.max_tokens_per_batch is not None and batch.max_tokens_per_batch < engine.max_length:
        raise SettingsError(
            "max_tokens_per_batch",
            f"must be at least the longest model input ({engine.max_length} tokens), got "
            f"{batch.max_tokens_per_batch}",
        )
