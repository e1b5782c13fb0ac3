"""The engine's graphs called directly on a batch, for the bench and the tests that compare
graphs (the server goes through the batcher instead)."""

from __future__ import annotations

import numpy as np

from gradlight.artifact.manifest import ATTRIBUTION, ATTRIBUTION_COTANGENT, FORWARD
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.feeds import Batch


def forward(engine: Engine, batch: Batch) -> np.ndarray:
    """Logits ``[B, L]``."""
    return engine.run(FORWARD, batch)["logits"]


def attribute_all(engine: Engine, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``[B, L]`` and raw scores ``[B, L, S]`` for every label (the all-labels graph)."""
    outputs = engine.run(ATTRIBUTION, batch)
    return outputs["logits"], outputs["scores"]


def attribute_mix(
    engine: Engine, batch: Batch, cotangent: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``[B, L]`` and raw scores ``[B, S]`` of ``sum_c cotangent[b, c] * logit_c``."""
    outputs = engine.run(ATTRIBUTION_COTANGENT, batch, {"cotangent": cotangent})
    return outputs["logits"], outputs["scores"]
