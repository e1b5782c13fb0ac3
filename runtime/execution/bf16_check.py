"""A startup check of the graphs an engine runs in bf16 on this machine, and the margin that
decides where a text's bf16 probabilities may be served (no torch).

Each bf16 graph is checked against its fp32 graph in ONNX Runtime on a probe batch. The export
validated them on the machine that exported; OpenVINO picks its kernels by the CPU it runs on,
so a graph whose probe disagrees is served in fp32 instead, with a warning.

A bf16 attribution graph's logits are not fp32's: on the demo classifier's held-out notes they
moved by up to 0.14, its probabilities by up to 0.032, more than ``PROBABILITY_GATE``. A text's
probabilities are served from the bf16 graph's logits only where no move of each logit by up to
the graph's margin (``LOGIT_MARGIN_FACTOR`` times the largest logit difference seen on the
export's validation batches or this probe) can take a probability further than
``PROBABILITY_GATE`` (runtime/execution/scores.py, ``probability_error_bound``); elsewhere the fp32
forward graph runs for that text (runtime/explanation/attributor.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradlight.runtime.execution.scores import normalize_scores

logger = logging.getLogger(__name__)

# The export's gates (export/bf16.py has them all) that a probe of two short texts can judge.
PROBABILITY_GATE = 0.01
SCORE_MEAN_GATE = 0.02
PROBE_TEXT = (
    "The patient denies chest pain or shortness of breath. A chest x-ray shows no evidence of "
    "pneumonia, and she will follow up in two weeks."
)


LOGITS_DIFF = "logits_max_abs_diff"
"""A bf16 graph's largest logit difference from fp32 on the export's validation batches (its
manifest details)."""
LOGIT_MARGIN_FACTOR = 4.0
"""The margin is this times the largest logit difference measured. Real text moves logits more
than the validation batches' random tokens: the demo classifier's 2100 notes by up to 0.177,
2.0-3.0 times what its validation batches did (0.059-0.088 by the batches drawn); its export's
0.059 gives a margin of 0.236 (docs/cpu-precision.md)."""


@dataclass(frozen=True)
class Probe:
    """What a probe found: ``problem`` None where the bf16 graph agrees with fp32, and its
    largest logit difference."""

    problem: str | None
    logits_diff: float


def probe(
    low: Any,
    full: Any,
    feed: Mapping[str, np.ndarray],
    probabilities: Callable[[np.ndarray], np.ndarray],
) -> Probe:
    """The bf16 session ``low`` against the fp32 session ``full`` on ``feed``."""
    ours, theirs = (
        session.run(None, {node.name: feed[node.name] for node in session.get_inputs()})
        for session in (low, full)
    )
    logits_diff = float(np.max(np.abs(ours[0] - theirs[0])))
    gap = float(np.max(np.abs(probabilities(ours[0]) - probabilities(theirs[0]))))
    if gap > PROBABILITY_GATE:
        problem = f"probabilities differ by {gap:.3g} (more than {PROBABILITY_GATE:g})"
        return Probe(problem, logits_diff)
    if len(ours) > 1:
        mask = feed["attention_mask"]
        diff = np.abs(normalize_scores(ours[1], mask) - normalize_scores(theirs[1], mask))
        mean = float(diff.sum(-1).mean() / mask.sum(-1).mean())
        if mean > SCORE_MEAN_GATE:
            problem = f"normalized scores differ by {mean:.3g} on average (> {SCORE_MEAN_GATE:g})"
            return Probe(problem, logits_diff)
    return Probe(None, logits_diff)


def logit_margin(exported: float | None, probed: float) -> float | None:
    """A bf16 graph's logit margin from its export figure and this machine's probe; None for an
    artifact exported without the figure (its probabilities then always come from fp32)."""
    if exported is None:
        return None
    return LOGIT_MARGIN_FACTOR * max(float(exported), probed)
