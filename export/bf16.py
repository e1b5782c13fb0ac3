"""bf16 on the CPU (``gradlight export --bf16``): the fp32 graphs themselves, run by OpenVINO
with bf16 matrix products (runtime/execution/openvino_session.py), each graph kept only where it
passes the quality gates against fp32 ONNX Runtime on the validation batches.

No new files: the manifest's ``bf16`` entry lists the graphs that passed, pointing at the fp32
files, with ``runtime: openvino``. A graph that misses a gate is left out (the engine runs it in
fp32) and the report says which gate it missed and by how much. On a CPU without native bf16
(AVX512-BF16 or AMX), or without OpenVINO installed, nothing is validated and the report says
why: bf16 is then not offered by the artifact.

The gates, per graph, over every row and label of the validation batches and 16 more rows
(``MORE_ROWS``):

- probabilities within ``PROBABILITY_GATE`` of fp32 (max abs): a text's served probabilities
  come from a bf16 graph's logits only where a margin made from the graph's largest logit
  difference (``LOGITS_DIFF``, kept in its manifest entry) keeps them within the gate
  (runtime/execution/bf16_check.py), else from the forward graph, which stays fp32
  (``KEPT_IN_FP32``);
  the graphs' own figures (``graph_probabilities_max_abs_diff``) are reported, not gated;
- normalized token scores (per text and label, in [-1, 1]) within ``SCORE_MEAN_GATE`` on
  average over a text's tokens (the mean over texts and labels) and ``SCORE_MAX_GATE`` at most;
- top-3 token agreement at least ``TOP3_GATE`` (ties as export/half_precision.py counts them);
- sentence scores (probability of the text minus probability without a sentence) within
  ``SENTENCE_GATE``: they come from the forward graph, which stays fp32 (``KEPT_IN_FP32``), so
  they are fp32's; tests/test_bf16.py checks all the gates on the demo classifier's notes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.artifact.manifest import FORWARD, GraphInfo
from gradlight.export.batches import make_batch, validation_batches
from gradlight.export.graphs import BY_KEY
from gradlight.export.half_precision import top3_agreement
from gradlight.export.model_loading import LoadedClassifier
from gradlight.export.validation import cpu_session
from gradlight.runtime.execution.bf16_check import LOGITS_DIFF, PROBABILITY_GATE, SCORE_MEAN_GATE
from gradlight.runtime.execution.openvino_session import (
    OPENVINO,
    OpenVinoSession,
)
from gradlight.runtime.execution.precision_choice import bf16_unavailable_here
from gradlight.runtime.execution.scores import normalize_scores, probabilities

SCORE_MAX_GATE = 0.1
TOP3_GATE = 0.95
SENTENCE_GATE = 0.01
GATES = {
    "probabilities_max_abs_diff": ("<=", PROBABILITY_GATE),
    "normalized_scores_mean_abs_diff": ("<=", SCORE_MEAN_GATE),
    "normalized_scores_max_abs_diff": ("<=", SCORE_MAX_GATE),
    "top3_token_agreement": (">=", TOP3_GATE),
    "sentence_scores_max_abs_diff": ("<=", SENTENCE_GATE),
}
RUNTIME = {"runtime": OPENVINO, "inference_precision": "bf16"}
MORE_ROWS = ((31, 12, 20, 27, 5, 16, 24, 11), (40, 18, 33, 9, 26, 14, 37, 21))
"""Rows (their lengths) the gates see besides the validation batches': the gates are rates
and maxima over rows, which four rows would measure too coarsely (top-3 agreement in steps of
1/12)."""
KEPT_IN_FP32 = (FORWARD,)
"""The forward graph gives the sentence scores (leave-one-out differences of probabilities),
and the probabilities of texts whose bf16 logits are too close to a decision to be within the
gate: it stays fp32, so both are fp32's exactly. In bf16 the probabilities of the demo's
classifier moved by up to 0.049 on its held-out notes while passing on the validation batches,
and its sentence scores by up to 0.0104 (docs/cpu-precision.md)."""


def missed_gates(measured: Mapping[str, float]) -> list[str]:
    """The gates ``measured`` misses, each with its figure: "top3_token_agreement 0.91 < 0.95"."""
    missed = []
    for name, (sense, bound) in GATES.items():
        if name not in measured:
            continue
        value = measured[name]
        if (sense == "<=" and value > bound) or (sense == ">=" and value < bound):
            missed.append(f"{name} {value:.4g} {'>' if sense == '<=' else '<'} {bound:g}")
    return missed


@dataclass
class Bf16Report:
    checks: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None
    threads: int = 0

    @property
    def passed(self) -> bool:
        """A report never fails the export: graphs that miss a gate are only left out."""
        return True

    @property
    def kept(self) -> list[str]:
        return [check["graph"] for check in self.checks if not check["missed"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            **RUNTIME,
            "compared_with": "the fp32 graphs in ONNX Runtime",
            "gates": {name: f"{sense} {bound:g}" for name, (sense, bound) in GATES.items()},
            "kept_in_fp32": list(KEPT_IN_FP32),
            "skipped": self.skipped,
            "checks": self.checks,
            "served_in_bf16": self.kept,
        }

    def format(self) -> str:
        if self.skipped:
            return f"bf16: not offered: {self.skipped}"
        lines = ["bf16 (OpenVINO) against fp32:"]
        for check in self.checks:
            figures = ", ".join(
                f"{name.replace('_', ' ')} {value:.3g}"
                for name, value in check.items()
                if isinstance(value, float)
            )
            verdict = "ok" if not check["missed"] else "NOT USED: " + "; ".join(check["missed"])
            lines.append(f"  {check['graph']}: {figures} {verdict}")
        return "\n".join(lines)


def bf16_graphs(staging: Path, graphs: Mapping[str, GraphInfo]) -> dict[str, GraphInfo]:
    """The attribution graphs, marked to run in OpenVINO bf16 (no new files); the forward
    graph stays fp32 (``KEPT_IN_FP32``)."""
    return {
        key: replace(info, details=dict(RUNTIME))
        for key, info in graphs.items()
        if key not in KEPT_IN_FP32
    }


def validate_bf16(
    staging: Path,
    fp32: Mapping[str, GraphInfo],
    bf16: Mapping[str, GraphInfo],
    loaded: LoadedClassifier,
) -> Bf16Report:
    report = Bf16Report()
    why_not = bf16_unavailable_here()
    if why_not is not None:
        report.skipped = why_not
        return report
    batches = [
        *validation_batches(loaded),
        *(
            (seed, make_batch(loaded, lengths, seed))
            for seed, lengths in enumerate(MORE_ROWS, start=len(validation_batches(loaded)) + 1)
        ),
    ]
    for key, info in bf16.items():
        try:
            low = OpenVinoSession(staging / info.file, threads=0)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            report.checks.append({"graph": key, "missed": [f"does not compile: {exc}"]})
            continue
        measured = _measure(key, low, cpu_session(staging / fp32[key].file), batches, loaded)
        report.checks.append({"graph": key, **measured, "missed": missed_gates(measured)})
    return report


def select_bf16(report: Bf16Report, graphs: Mapping[str, GraphInfo]) -> dict[str, GraphInfo]:
    """The graphs that passed every gate, each with its largest logit difference
    (``LOGITS_DIFF``): the runtime serves a text's bf16 probabilities only where a margin made
    from it keeps them within ``PROBABILITY_GATE`` of fp32 (runtime/execution/bf16_check.py)."""
    figures = {check["graph"]: check.get(LOGITS_DIFF) for check in report.checks}
    return {
        key: replace(info, details={**info.details, LOGITS_DIFF: figures[key]})
        for key, info in graphs.items()
        if key in report.kept
    }


def _measure(
    key: str,
    low: OpenVinoSession,
    full: Any,
    batches: list[tuple[int, dict[str, np.ndarray]]],
    loaded: LoadedClassifier,
) -> dict[str, float]:
    multi_label = loaded.spec.multi_label
    probability = logit = score_max = 0.0
    score_means: list[float] = []
    agreements: list[float] = []
    for seed, batch in batches:
        mask = batch["attention_mask"]
        feed = {**batch, **BY_KEY[key].extra_feed(batch, loaded, seed)}
        got, expected = low.run(None, feed), full.run(None, feed)
        ours, theirs = (probabilities(x[0], multi_label) for x in (got, expected))
        probability = max(probability, float(np.max(np.abs(ours - theirs))))
        logit = max(logit, float(np.max(np.abs(got[0] - expected[0]))))
        if len(got) > 1:
            diff = np.abs(normalize_scores(got[1], mask) - normalize_scores(expected[1], mask))
            tokens = np.maximum(mask.sum(-1), 1).reshape(-1, *[1] * (diff.ndim - 2))
            per_text = diff.sum(-1) / tokens
            score_means.append(float(per_text.mean()))
            score_max = max(score_max, float(diff.max()))
            agreements.append(top3_agreement(got[1], expected[1], mask))
    # not gated: a text's bf16 probabilities are served only within a margin made from
    # LOGITS_DIFF, else the fp32 forward's (KEPT_IN_FP32)
    measured = {"graph_probabilities_max_abs_diff": probability, LOGITS_DIFF: logit}
    if agreements:
        measured["normalized_scores_mean_abs_diff"] = float(np.mean(score_means))
        measured["normalized_scores_max_abs_diff"] = score_max
        measured["top3_token_agreement"] = float(np.mean(agreements))
    return measured
