"""The figures of an answer that the output formats (formats.py) write besides its evidence:
per-label values by label name, the seed, a path method's steps and whether a completeness
tolerance was missed, and the windows of a text read as windows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gradlight.v1 import gradlight_pb2 as pb
from gradlight.wire.methods import FIELDS_BY_NAME


def per_label(result: pb.TextResult, values: Sequence[float]) -> dict[str, float]:
    """Per-label figures of ``result`` by label name, rounded to 6 places."""
    return {label: round(float(v), 6) for label, v in zip(result.labels, values, strict=True)}


def seed_of(result: pb.TextResult) -> int | None:
    """The seed the answer was computed with, when it depends on one (gradient_shap, the
    faithfulness floor's random ranking) or one was sent."""
    random = FIELDS_BY_NAME["seed"].read_by(result.method, result.HasField("faithfulness"))
    return result.seed if random or result.seed else None


def path_figures(results: Sequence[pb.TextResult]) -> dict[str, Any]:
    """``steps``: the most points per label a path method used (integrated gradients' steps,
    gradient_shap's samples) over ``results`` (a line's answer, or its spans'); and, for a
    method that reads a completeness tolerance (integrated gradients), ``tolerance_missed``:
    whether any of them is above the tolerance at the most steps."""
    figures: dict[str, Any] = {}
    steps = max((result.steps for result in results), default=0)
    if steps:
        figures["steps"] = steps
    tolerance = FIELDS_BY_NAME["completeness_tolerance"]
    if any(result.method and tolerance.read_by(result.method, False) for result in results):
        figures["tolerance_missed"] = any(result.tolerance_missed for result in results)
    return figures


def windows_figures(result: pb.TextResult, *, brief: bool = False) -> dict[str, Any]:
    """A text read as windows: ``aggregation`` (the rule that made the text's logits of its
    windows') and ``windows`` in text order, each with the code point offsets of what it reads
    (``start``, ``end``) and of the tokens whose scores it gives (``scored_start``,
    ``scored_end``; equal where none), its predicted ``label`` and its probabilities per label
    (``brief``: ``p``, the probability of that label when it was asked) and completeness
    gaps (path methods). Empty for a text read in one window (whose figures are the text's),
    whatever the other texts of its request."""
    if len(result.windows) < 2:
        return {}
    labels = list(result.labels)
    windows = []
    for window in result.windows:
        found: dict[str, Any] = {
            "start": window.start,
            "end": window.end,
            "scored_start": window.scored_start,
            "scored_end": window.scored_end,
            "label": window.predicted_label,
        }
        if brief and window.predicted_label in labels:
            p = window.probabilities[labels.index(window.predicted_label)]
            found["p"] = round(float(p), 6)
        elif not brief:
            found["probabilities"] = per_label(result, window.probabilities)
            if window.completeness_gaps:
                found["completeness_gaps"] = per_label(result, window.completeness_gaps)
        windows.append(found)
    return {"aggregation": result.aggregation, "windows": windows}
