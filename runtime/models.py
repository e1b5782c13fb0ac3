"""The models one server process serves: each with its engine, batcher and attributor."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gradlight.runtime.attributor import Attributor
from gradlight.runtime.batcher import DynamicBatcher
from gradlight.runtime.engine import Engine
from gradlight.runtime.errors import ModelNotFoundError, RequestError, shown
from gradlight.runtime.settings import BatchSettings, EngineSettings

logger = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_model_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"model name {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def load_engines(
    artifacts: Mapping[str, Path | str], settings: EngineSettings, *, warm_up: bool = True
) -> dict[str, Engine]:
    """Load (and warm up) one engine per named artifact. Blocking; call before serving."""
    engines = {}
    for name, artifact in artifacts.items():
        started = time.perf_counter()
        engine = Engine(artifact, settings)
        if warm_up:
            engine.warm_up()
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
        engines[name] = engine
    return engines


@dataclass
class ServedModel:
    name: str
    engine: Engine
    batcher: DynamicBatcher
    attributor: Attributor


class ModelRegistry:
    """Looks models up by request name; must be built inside the serving event loop."""

    def __init__(self, engines: Mapping[str, Engine], batch: BatchSettings, max_texts: int) -> None:
        if not engines:
            raise ValueError("at least one model must be served")
        for engine in engines.values():
            if batch.max_tokens_per_batch < engine.max_length:
                raise ValueError(
                    f"max_tokens_per_batch ({batch.max_tokens_per_batch}) must be at least the "
                    f"longest model input ({engine.max_length} tokens)"
                )
        self.models: dict[str, ServedModel] = {}
        for name, engine in engines.items():
            batcher = DynamicBatcher(engine, batch)
            self.models[name] = ServedModel(
                name, engine, batcher, Attributor(engine, batcher, max_texts)
            )

    def start(self) -> None:
        for model in self.models.values():
            model.batcher.start()

    async def close(self) -> None:
        for model in self.models.values():
            await model.batcher.close()

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
            raise ModelNotFoundError(
                f"model {shown(name)} is not served; serving: {', '.join(self.models)}"
            ) from None
