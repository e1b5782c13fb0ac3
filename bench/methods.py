"""What every timed method returns, and gradlight's engine as one of them (no torch here)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gradlight.runtime.engine import Engine
from gradlight.runtime.scores import normalize_scores
from gradlight.runtime.sentences import remove_span, split_sentences
from gradlight.runtime.settings import EngineSettings


@dataclass(frozen=True)
class Output:
    """Per text: every label's probability, and normalized scores ``[K, S]`` (no padding)."""

    probabilities: np.ndarray  # [B, L]
    scores: list[np.ndarray]

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


class EngineMethod:
    """gradlight's ONNX Runtime engine in-process: the graphs the server runs, no server."""

    name = "engine"

    def __init__(self, artifact: Path, provider: str, threads: int) -> None:
        self.engine = Engine(artifact, EngineSettings(provider=provider, intra_op_threads=threads))
        self.engine.warm_up()

    def forward(self, texts: Sequence[str], max_length: int) -> np.ndarray:
        return self.engine.forward(self.engine.batch(self.engine.encode(texts, max_length)))

    def attribute(
        self, texts: Sequence[str], max_length: int, labels: Sequence[int] | None = None
    ) -> Output:
        engine = self.engine
        encoded = engine.encode(texts, max_length)
        lengths = [len(row) for row in encoded]
        if labels is None and engine.has_all_labels_graph:
            logits, raw = engine.attribute_all(engine.batch(encoded))
        else:  # the server's label-subset path: one cotangent row per (text, label)
            picked = list(range(len(engine.labels))) if labels is None else list(labels)
            rows = [row for row in encoded for _ in picked]
            cotangent = np.tile(
                np.eye(len(engine.labels), dtype=np.float32)[picked], (len(texts), 1)
            )
            logits, flat = engine.attribute_mix(engine.batch(rows), cotangent)
            logits = logits[:: len(picked)]
            raw = flat.reshape(len(texts), len(picked), -1)
        return Output.from_raw(engine.probabilities(logits), raw, lengths)

    def sentences(self, texts: Sequence[str], max_length: int, one_call: bool) -> list[np.ndarray]:
        """Leave-one-sentence-out scores ``[N, L]`` per text: the full text and its N variants
        as ONE padded forward call per text, or one call per variant (``one_call=False``)."""
        results = []
        for text in texts:
            encoded = self.engine.encode(leave_one_out(text), max_length)
            if one_call:
                logits = self.engine.forward(self.engine.batch(encoded))
            else:
                logits = np.concatenate(
                    [self.engine.forward(self.engine.batch([row])) for row in encoded]
                )
            probabilities = self.engine.probabilities(logits)
            results.append(probabilities[0][None, :] - probabilities[1:])
        return results
