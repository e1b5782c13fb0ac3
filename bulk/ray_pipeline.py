"""The same bulk job on a Ray cluster with Ray Data: groups of lines go to a pool of actors,
each of which loads the artifact once and runs the ONNX Runtime engine (the local backend);
answers come back in input order and are written by the same job code as a local run.

The driver reads the input (it keeps the checkpoint), so the cluster needs only the artifact:
ARTIFACT_DIR must be readable at the same path on every node. Lines go to the cluster in
waves of ``wave_lines`` (the driver holds one wave at a time); each wave is one Ray Data
dataset whose actor pool loads the artifact.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from gradlight.bulk.backends import (
    LocalBackend,
    ModelFacts,
    artifact_identity,
    artifact_revision,
)
from gradlight.bulk.explaining import RequestOptions
from gradlight.bulk.lines import BadLine, Item, Span
from gradlight.bulk.pipeline import AsyncPipeline, Outcome
from gradlight.v1 import gradlight_pb2 as pb


def _items_json(items: Sequence[Item]) -> str:
    return json.dumps(
        [
            [
                item.number,
                item.text,
                item.id,
                None if item.spans is None else [[s.start, s.end, s.label] for s in item.spans],
            ]
            for item in items
        ]
    )


def _items_from(data: str) -> list[Item]:
    return [
        Item(number, text, identifier, None if spans is None else tuple(Span(*s) for s in spans))
        for number, text, identifier, spans in json.loads(data)
    ]


def _outcomes_json(outcomes: Sequence[Outcome]) -> str:
    return json.dumps(
        [
            [outcome.number, outcome.reason]
            if isinstance(outcome, BadLine)
            else base64.b64encode(outcome.SerializeToString()).decode("ascii")
            for outcome in outcomes
        ]
    )


def _outcomes_from(data: str) -> list[Outcome]:
    return [
        BadLine(*entry)
        if isinstance(entry, list)
        else pb.TextResult.FromString(base64.b64decode(entry))
        for entry in json.loads(data)
    ]


class RayExplainer:
    """A Ray Data actor: the artifact loaded once, groups of lines explained per call."""

    def __init__(self, artifact: str, model: str, options: dict[str, Any], threads: int) -> None:
        request = RequestOptions(**options)
        if request.markers is not None:
            request = RequestOptions(**{**options, "markers": tuple(request.markers)})
        backend = LocalBackend(Path(artifact), provider="cpu", threads=threads)
        self.pipeline = AsyncPipeline(backend, request)
        self.pipeline.start(model)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        groups = [_items_from(data) for data in batch["items"]]
        answers = list(self.pipeline.outcomes(groups))
        return {"index": batch["index"], "outcomes": [_outcomes_json(a) for a in answers]}


class RayPipeline:
    def __init__(
        self,
        address: str,
        artifact: Path,
        options: RequestOptions,
        *,
        actors: int | None = None,
        threads_per_actor: int = 1,
        wave_lines: int = 20_000,
    ) -> None:
        self.address = address
        self.artifact = artifact.resolve()
        self.options = options
        self.actors = actors
        self.threads_per_actor = threads_per_actor
        self.wave_lines = wave_lines
        self._model = ""

    def start(self, model: str) -> ModelFacts:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        import ray
        import ray.data

        from gradlight.artifact.manifest import load_manifest
        from gradlight.runtime.settings import DocumentSettings

        warnings.filterwarnings("ignore", module="ray")
        logging.getLogger("ray").setLevel(logging.ERROR)
        ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        context.execution_options.preserve_order = True  # answers in input order
        if self.actors is None:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            self.actors = max(1, cpus // self.threads_per_actor)
        manifest = load_manifest(self.artifact)
        self._model = model or self.artifact.name
        return ModelFacts(
            self._model,
            manifest.labels,
            manifest.multi_label,
            manifest.max_length,
            max_texts=256,
            identity=artifact_identity(self.artifact),
            long_texts=DocumentSettings().long_texts,  # the actors' LocalBackend's
            revision=artifact_revision(self.artifact),
        )

    def outcomes(self, groups: Iterable[Sequence[Item]]) -> Iterator[list[Outcome]]:
        import ray
        import ray.data

        groups = iter(groups)
        while wave := self._wave(groups):
            rows = [{"index": i, "items": _items_json(g)} for i, g in enumerate(wave)]
            dataset = ray.data.from_items(rows).map_batches(
                RayExplainer,
                fn_constructor_kwargs={
                    "artifact": str(self.artifact),
                    "model": self._model,
                    "options": asdict(self.options),
                    "threads": self.threads_per_actor,
                },
                compute=ray.data.ActorPoolStrategy(size=self.actors),
                num_cpus=self.threads_per_actor,
                batch_size=4,
                batch_format="numpy",
                max_restarts=0,
            )
            returned = 0
            try:
                for row in dataset.iter_rows():
                    if int(row["index"]) != returned:
                        raise RuntimeError(
                            f"Ray returned group {row['index']} where {returned} was due"
                        )
                    returned += 1
                    yield _outcomes_from(row["outcomes"])
            except ray.exceptions.RayError as exc:  # an actor failed: its error, briefly
                last = [line for line in str(exc).splitlines() if line.strip()][-1:]
                raise RuntimeError(f"the Ray job failed: {' '.join(last)}") from exc
            if returned != len(rows):
                raise RuntimeError(f"Ray returned {returned} of {len(rows)} groups")

    def _wave(self, groups: Iterator[Sequence[Item]]) -> list[Sequence[Item]]:
        wave: list[Sequence[Item]] = []
        lines = 0
        while lines < self.wave_lines and (group := next(groups, None)) is not None:
            wave.append(group)
            lines += max(1, len(group))  # a group of bad lines only still counts
        return wave

    def close(self) -> None:
        import ray

        ray.shutdown()
