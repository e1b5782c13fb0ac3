"""A startup check of the graphs an engine runs in bf16 on this machine: each against its fp32
graph in ONNX Runtime on a probe batch. The export validated them on the machine that exported;
OpenVINO picks its kernels by the CPU it runs on, so a graph whose probe disagrees is served in
fp32 instead, with a warning (no torch)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from gradlight.runtime.scores import normalize_scores

logger = logging.getLogger(__name__)

# The export's gates (export/bf16.py) that a probe of two short texts can judge.
PROBABILITY_GATE = 0.01
SCORE_MEAN_GATE = 0.02
PROBE_TEXT = (
    "The patient denies chest pain or shortness of breath. A chest x-ray shows no evidence of "
    "pneumonia, and she will follow up in two weeks."
)


def probe_disagreement(
    low: Any,
    full: Any,
    feed: Mapping[str, np.ndarray],
    probabilities: Callable[[np.ndarray], np.ndarray],
) -> str | None:
    """None when the bf16 session ``low`` agrees with the fp32 session ``full`` on ``feed``,
    else what differs and by how much."""
    ours, theirs = (
        session.run(None, {node.name: feed[node.name] for node in session.get_inputs()})
        for session in (low, full)
    )
    gap = float(np.max(np.abs(probabilities(ours[0]) - probabilities(theirs[0]))))
    if gap > PROBABILITY_GATE:
        return f"probabilities differ by {gap:.3g} (more than {PROBABILITY_GATE:g})"
    if len(ours) > 1:
        mask = feed["attention_mask"]
        diff = np.abs(normalize_scores(ours[1], mask) - normalize_scores(theirs[1], mask))
        mean = float(diff.sum(-1).mean() / mask.sum(-1).mean())
        if mean > SCORE_MEAN_GATE:
            return f"normalized scores differ by {mean:.3g} on average (> {SCORE_MEAN_GATE:g})"
    return None
