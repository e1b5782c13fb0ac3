"""What every timed method returns, and gradlight as one of them: the serving code in process.

``EngineMethod`` times what ``gradlight serve`` runs, without gRPC: the artifact loaded and
warmed up as the server loads it (``load_engine``), a ``ModelRegistry`` with the server's
default ``BatchSettings`` and per-request limit, and the ``AttributorApi`` that the gRPC
servicer and the HTTP endpoints call, given the same ``gradlight.v1`` request messages and
called as the servicer calls it (``api.counted(method, request, api.attribute(request))``:
metrics included; what it leaves out is gRPC itself: the wire, (de)serialization and the
response-size check).

The API takes one request at a time and sends its rows through the dynamic batcher, so a batch
of texts is ONE request, as a client submitting the whole batch at once sends it: the time of a
call is that request's, from the request message to the response message (tokenization,
planning, the batcher's wait of up to ``max_wait_ms`` for more work, its ONNX Runtime calls,
normalization and building the response). The batcher cuts the batch's rows into calls by
length where padding them together would cost more than a call (runtime/execution/packing.py), so
the engine is not always padded to the longest text of the batch as the eager ways are: that is
what the server does. Decoding the response into arrays (``Answer``) is the client's work and
is not timed: the worker reads it only after timing, for the agreement check.

Per cell kind: attributions are one Attribute request (token attributions, the cell's labels
or every label; sentence attributions too where the cell asks for both); the forward-only time
is one Predict request; leave-one-sentence-out is one Attribute request with sentence
attributions only (``one_call``: a text and its variants are one unit of the batcher, one
padded call), against the engine called once per variant (``per_variant``, the alternative
that design was chosen over; no server runs it).
No torch here.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from gradlight.bench import engine_calls
from gradlight.bench.workload import engine_name
from gradlight.runtime.execution.scores import normalize_scores
from gradlight.runtime.explanation.sentences import remove_span, split_sentences
from gradlight.runtime.serving.api import ATTRIBUTE, PREDICT, AttributorApi
from gradlight.runtime.serving.metrics import ServerMetrics
from gradlight.runtime.serving.model_registry import ModelRegistry, load_engine
from gradlight.runtime.settings import BatchSettings, EngineSettings, ServiceLimits
from gradlight.v1 import gradlight_pb2 as pb

T = TypeVar("T")


class Answer(Protocol):
    """What ``attribute`` returns: per text every attributed label's probability ``[B, K]``
    (the cell's labels, or every label), normalized scores ``[K, S]`` (no padding) and, when
    asked for, sentence scores ``[N, K]`` (None otherwise)."""

    @property
    def probabilities(self) -> np.ndarray: ...

    @property
    def scores(self) -> list[np.ndarray]: ...

    @property
    def sentences(self) -> list[np.ndarray] | None: ...


@dataclass(frozen=True)
class Output:
    """An ``Answer`` computed in the timed method itself (the eager ways)."""

    probabilities: np.ndarray  # [B, K]
    scores: list[np.ndarray]
    sentences: list[np.ndarray] | None = None  # [N, K] per text, when asked for

    @staticmethod
    def from_raw(probabilities: np.ndarray, raw: np.ndarray, lengths: Sequence[int]) -> Output:
        """``raw`` is ``[B, K, S_padded]``, right-padded; ``lengths`` the texts' token counts."""
        scores = [
            normalize_scores(raw[i, :, : int(n)][None], np.ones((1, int(n))))[0]
            for i, n in enumerate(lengths)
        ]
        return Output(np.asarray(probabilities, dtype=np.float64), scores)


def leave_one_out(text: str) -> list[str]:
    """``text`` and, for each of its sentences, ``text`` without it (gradlight's splitter)."""
    spans = split_sentences(text)
    return [text] + [remove_span(text, spans, i) for i in range(len(spans))]


class ServedAnswer:
    """An Attribute response, decoded into arrays only when read (after timing)."""

    def __init__(self, response: pb.AttributeResponse) -> None:
        self.response = response

    @functools.cached_property
    def probabilities(self) -> np.ndarray:
        results = self.response.results
        return np.asarray([list(r.probabilities) for r in results], dtype=np.float64)

    @functools.cached_property
    def scores(self) -> list[np.ndarray]:
        return [
            np.asarray([list(token.scores) for token in r.tokens], dtype=np.float32).T
            for r in self.response.results
        ]

    @functools.cached_property
    def sentences(self) -> list[np.ndarray] | None:
        results = self.response.results
        if not any(r.sentences for r in results):
            return None
        return [
            np.asarray([list(s.scores) for s in r.sentences], dtype=np.float64).reshape(
                len(r.sentences), -1
            )
            for r in results
        ]


class EngineMethod:
    """gradlight's serving code in process, at one precision (see the module's docstring)."""

    def __init__(
        self, artifact: Path, provider: str, threads: int, precision: str = "fp32"
    ) -> None:
        self.name = engine_name(precision)
        settings = EngineSettings(provider=provider, intra_op_threads=threads, precision=precision)
        self.engine = load_engine(self.name, artifact, settings)
        self.loop = asyncio.new_event_loop()
        self.api = self.loop.run_until_complete(self._serve())

    async def _serve(self) -> AttributorApi:
        """The server's registry and API over the engine, started in this object's loop."""
        registry = ModelRegistry(
            {self.name: self.engine},
            BatchSettings(),
            ServiceLimits().max_texts_per_request,
            metrics=ServerMetrics(),
        )
        registry.start()
        return AttributorApi(registry)

    def _call(
        self, method: str, request: pb.PredictRequest | pb.AttributeRequest, answer: Awaitable[T]
    ) -> T:
        """As the servicer calls the API: the answer, counted in the metrics."""
        return self.loop.run_until_complete(self.api.counted(method, request, answer))

    def attribute(
        self,
        texts: Sequence[str],
        max_length: int,
        labels: Sequence[int] | None = None,
        sentences: bool = False,
    ) -> ServedAnswer:
        """One Attribute request: token attributions, and sentence attributions with
        ``sentences`` (what the server answers a request asking for both)."""
        names = [] if labels is None else [self.engine.labels[k] for k in labels]
        request = pb.AttributeRequest(
            texts=list(texts),
            max_length=max_length,
            token_attributions=True,
            sentence_attributions=sentences,
            labels=names,
        )
        return ServedAnswer(self._call(ATTRIBUTE, request, self.api.attribute(request)))

    def forward(self, texts: Sequence[str], max_length: int) -> pb.PredictResponse:
        """One Predict request: the forward graph only."""
        request = pb.PredictRequest(texts=list(texts), max_length=max_length)
        return self._call(PREDICT, request, self.api.predict(request))

    def sentences(self, texts: Sequence[str], max_length: int, one_call: bool) -> list[np.ndarray]:
        """Leave-one-sentence-out scores ``[N, L]`` per text: one Attribute request with
        sentence attributions for the batch (each text and its N variants one padded call), or
        the engine called once per variant (``one_call=False``)."""
        if one_call:
            request = pb.AttributeRequest(
                texts=list(texts), max_length=max_length, sentence_attributions=True
            )
            response = self._call(ATTRIBUTE, request, self.api.attribute(request))
            return [
                np.asarray([list(s.scores) for s in result.sentences], dtype=np.float64)
                for result in response.results
            ]
        engine = self.engine
        results = []
        for text in texts:
            encoded = engine.encode(leave_one_out(text), max_length)
            logits = np.concatenate(
                [engine_calls.forward(engine, engine.batch([row])) for row in encoded]
            )
            probabilities = engine.probabilities(logits)
            results.append(probabilities[0][None, :] - probabilities[1:])
        return results

    def close(self) -> None:
        self.loop.run_until_complete(self.api.registry.close())
        self.loop.close()
