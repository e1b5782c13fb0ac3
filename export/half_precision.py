"""fp16 variants of the exported graphs (``gradlight export --fp16``), validated against fp32.

Each graph is converted with ONNX Runtime's float16 converter, inputs and outputs kept int64 /
fp32 (``keep_io_types``), so clients and the engine feed and read the same arrays. Operators
that lose too much in fp16 stay in fp32 behind casts: the converter's default list plus
LayerNormalization and the fused forward graph's SkipLayerNormalization (their statistics; an
fp16 LayerNormalization also fails to type-check in the backward graph), and the scatters of
gathers' backward passes (DeBERTa's relative-position buckets; ONNX Runtime's CPU kernels have
no fp16 ScatterElements with ``reduction="add"``). The fp16 graphs share one weights file,
``weights_fp16.bin``.

Validation runs the fp16 graphs and the fp32 graphs on the fp32 validation batches (shapes
other than the tracing shape, padding included) and requires, per graph:

- logits within ``LOGIT_TOLERANCE`` of fp32, relative to the largest |logit| (at least 1);
- normalized scores (per text and label, in [-1, 1]) within ``SCORE_TOLERANCE`` of fp32;
- top-3 token agreement (per text and label, the overlap of the three tokens with the largest
  |score|, averaged; tokens within ``TOP3_TIE`` of the third are tied with it) of at least
  ``TOP3_AGREEMENT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

from gradlight.artifact.manifest import GraphInfo
from gradlight.export.batches import validation_batches
from gradlight.export.errors import ValidationFailedError
from gradlight.export.graphs import BY_KEY
from gradlight.export.model_loading import LoadedClassifier
from gradlight.export.shared_weights import share_weights
from gradlight.export.validation import cpu_session
from gradlight.runtime.execution.scores import normalize_scores

FP16_WEIGHTS_FILE = "weights_fp16.bin"
KEPT_IN_FP32 = (
    *DEFAULT_OP_BLOCK_LIST,
    "LayerNormalization",
    "SkipLayerNormalization",
    "ScatterElements",
    "ScatterND",
)
LOGIT_TOLERANCE = 0.02
SCORE_TOLERANCE = 0.05
TOP3_AGREEMENT = 0.9
TOP3_TIE = 1e-3  # reference |scores| this close (relative to the row's largest) are tied


@dataclass
class HalfPrecisionReport:
    checks: list[dict[str, Any]]
    problems: list[str]

    @property
    def passed(self) -> bool:
        return not self.problems and all(check["passed"] for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "compared_with": "the fp32 graphs in ONNX Runtime",
            "thresholds": {
                "logits_max_abs_diff_relative": LOGIT_TOLERANCE,
                "normalized_scores_max_abs_diff": SCORE_TOLERANCE,
                "top3_token_agreement_min": TOP3_AGREEMENT,
            },
            "kept_in_fp32": list(KEPT_IN_FP32),
            "checks": self.checks,
            "problems": self.problems,
        }

    def format(self) -> str:
        lines = ["fp16 against fp32:"]
        for check in self.checks:
            verdict = "ok" if check["passed"] else "FAILED"
            lines.append(
                f"  {check['graph']}: logits {check['logits_max_abs_diff']:.2e}, normalized "
                f"scores {check['normalized_scores_max_abs_diff']:.2e}, top-3 agreement "
                f"{check['top3_token_agreement']:.3f} {verdict}"
            )
        lines += [f"  PROBLEM: {problem}" for problem in self.problems]
        return "\n".join(lines)


class HalfPrecisionError(ValidationFailedError):
    """The fp16 graphs disagree with fp32 beyond the thresholds."""

    def __init__(self, report: HalfPrecisionReport) -> None:
        Exception.__init__(
            self,
            f"{report.format()}\nfp16 validation failed: export without --fp16, or serve fp32",
        )
        self.report = report  # type: ignore[assignment]


def convert_graphs(staging: Path, graphs: Mapping[str, GraphInfo]) -> dict[str, GraphInfo]:
    """Write an fp16 copy of each graph next to it; their weights shared in one file."""
    converted = {}
    for key, info in graphs.items():
        model = onnx.load(str(staging / info.file))  # with its weights from weights.bin
        half = convert_float_to_float16(model, keep_io_types=True, op_block_list=KEPT_IN_FP32)
        target = info.file.removesuffix(".onnx") + "_fp16.onnx"
        onnx.save(half, str(staging / target), save_as_external_data=False)
        converted[key] = GraphInfo(target, info.inputs, info.outputs)
    share_weights(staging, [info.file for info in converted.values()], FP16_WEIGHTS_FILE)
    return converted


def top3_agreement(scores: np.ndarray, reference: np.ndarray, mask: np.ndarray) -> float:
    """Mean overlap of the 3 tokens with the largest |score| (per text and label: ``[..., S]``
    arrays whose leading axes are rows first), over the row's real tokens.

    A token of ``scores``' top 3 counts as one of ``reference``'s when its reference |score|
    is within ``TOP3_TIE`` (of the row's largest reference |score|) of the reference's third
    largest: tokens that close are tied, and which of them the reference ranks third is its
    rounding, not its explanation. Past their strongest token, a tiny random model's scores
    are often such ties."""
    agreements = []
    for row in np.ndindex(scores.shape[:-1]):
        real = np.flatnonzero(mask[row[0]])
        k = min(3, len(real))
        top = real[np.argsort(-np.abs(scores[row][real]), kind="stable")[:k]]
        expected = np.abs(reference[row])
        kth = np.sort(expected[real])[-k]
        tie = TOP3_TIE * np.max(expected[real])
        agreements.append(float(np.mean(expected[top] >= kth - tie)))
    return float(np.mean(agreements))


def validate_fp16(
    staging: Path,
    fp32: Mapping[str, GraphInfo],
    fp16: Mapping[str, GraphInfo],
    loaded: LoadedClassifier,
) -> HalfPrecisionReport:
    report = HalfPrecisionReport([], [])
    batches = validation_batches(loaded)
    for key, info in fp16.items():
        try:
            half, full = cpu_session(staging / info.file), cpu_session(staging / fp32[key].file)
        except Exception as exc:  # ORT's own exception types
            report.problems.append(f"fp16 graph {key!r} ({info.file}) does not load: {exc}")
            continue
        report.checks.append(_compare(key, half, full, batches, loaded))
    return report


def _compare(
    key: str,
    half: ort.InferenceSession,
    full: ort.InferenceSession,
    batches: list[tuple[int, dict[str, np.ndarray]]],
    loaded: LoadedClassifier,
) -> dict[str, Any]:
    """The fp16 graph ``key`` against its fp32 graph on the validation batches."""
    logit_diff = score_diff = 0.0
    agreements = []
    for seed, batch in batches:
        mask = batch["attention_mask"]
        feed = {**batch, **BY_KEY[key].extra_feed(batch, loaded, seed)}
        got, expected = half.run(None, feed), full.run(None, feed)
        scale = max(1.0, float(np.max(np.abs(expected[0]))))
        logit_diff = max(logit_diff, float(np.max(np.abs(got[0] - expected[0]))) / scale)
        if len(got) > 1:
            ours, theirs = normalize_scores(got[1], mask), normalize_scores(expected[1], mask)
            score_diff = max(score_diff, float(np.max(np.abs(ours - theirs))))
            agreements.append(top3_agreement(got[1], expected[1], mask))
    agreement = float(np.mean(agreements)) if agreements else 1.0
    return {
        "graph": key,
        "logits_max_abs_diff": logit_diff,
        "normalized_scores_max_abs_diff": score_diff,
        "top3_token_agreement": agreement,
        "passed": logit_diff <= LOGIT_TOLERANCE
        and score_diff <= SCORE_TOLERANCE
        and agreement >= TOP3_AGREEMENT,
    }
