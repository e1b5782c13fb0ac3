"""Validate exported graphs in ONNX Runtime against eager PyTorch autograd.

Every graph runs on batches whose sizes differ from the tracing shapes, with padding in some
rows, so an axis baked in by accident cannot hide. Checks go names, then shapes, then values;
every output is reported with its max absolute difference, and all failures are collected
before the verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from gradlight.export import attribution
from gradlight.export.model_loading import LoadedClassifier, ModelSpec, load_classifier
from gradlight.runtime.manifest import (
    ATTRIBUTION,
    ATTRIBUTION_COTANGENT,
    FORWARD,
    GraphInfo,
    load_manifest,
)
from gradlight.runtime.scores import normalize_scores

TOLERANCE = 1e-4
"""fp32: max absolute difference allowed on logits and on normalized scores."""

TRACING_SHAPE = (2, 16)
"""(batch, sequence) of the example inputs the graphs are traced with."""

VALIDATION_ROW_LENGTHS = ((23, 9, 15), (7,))
"""One validation batch per entry: the unpadded length of each row (padded to the longest)."""


@dataclass(frozen=True)
class OutputCheck:
    graph: str
    output: str
    compared_with: str
    max_abs_diff: float
    tolerance: float
    passed: bool

    def describe(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return (
            f"{self.graph}.{self.output} vs {self.compared_with}: max abs diff "
            f"{self.max_abs_diff:.3g} (tolerance {self.tolerance:.3g}) {verdict}"
        )


@dataclass
class ValidationReport:
    tracing_shape: tuple[int, int]
    validation_shapes: list[tuple[int, int]]
    checks: list[OutputCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems and all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance": TOLERANCE,
            "tracing_shape": list(self.tracing_shape),
            "validation_shapes": [list(shape) for shape in self.validation_shapes],
            "checks": [asdict(check) for check in self.checks],
            "problems": list(self.problems),
        }

    def format(self) -> str:
        lines = [
            f"validation on (batch, sequence) {self.validation_shapes} "
            f"(traced on {self.tracing_shape}); padding in some rows"
        ]
        lines += [f"  {check.describe()}" for check in self.checks]
        lines += [f"  PROBLEM: {problem}" for problem in self.problems]
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


def tracing_inputs(loaded: LoadedClassifier) -> tuple[torch.Tensor, ...]:
    """The example inputs the graphs are traced with (no padding, ``TRACING_SHAPE``)."""
    batch = make_batch(loaded, [TRACING_SHAPE[1]] * TRACING_SHAPE[0], seed=0)
    return tuple(torch.from_numpy(batch[name]) for name in loaded.spec.input_names)


def _special_framing(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a single text."""
    encoding = tokenizer.backend_tokenizer.encode("a")
    special = encoding.special_tokens_mask
    first = special.index(0)
    last = len(special) - 1 - special[::-1].index(0)
    return encoding.ids[:first], encoding.ids[last + 1 :]


def make_batch(
    loaded: LoadedClassifier, lengths: Sequence[int], seed: int
) -> dict[str, np.ndarray]:
    """Right-padded rows of random ordinary tokens framed by the tokenizer's special tokens."""
    tokenizer, spec = loaded.tokenizer, loaded.spec
    rng = np.random.default_rng(seed)
    special = set(tokenizer.all_special_ids)
    vocab_size = min(len(tokenizer), loaded.model.get_input_embeddings().num_embeddings)
    ordinary = np.array([i for i in range(vocab_size) if i not in special])
    prefix, suffix = _special_framing(tokenizer)
    width = min(max(lengths), spec.max_length)
    input_ids = np.full((len(lengths), width), spec.pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(lengths), width), dtype=np.int64)
    for row, length in enumerate(lengths):
        body_length = max(min(length, width) - len(prefix) - len(suffix), 1)
        ids = [*prefix, *rng.choice(ordinary, size=body_length).tolist(), *suffix][:width]
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if spec.uses_token_type_ids:
        batch["token_type_ids"] = np.zeros_like(input_ids)
    return batch


def make_cotangent(num_rows: int, num_labels: int, seed: int) -> np.ndarray:
    """Rows cycle through a one-hot label, a contrast (label 0 minus label 1), a random mix."""
    rng = np.random.default_rng(seed)
    cotangent = np.zeros((num_rows, num_labels), dtype=np.float32)
    for row in range(num_rows):
        kind = row % 3
        if kind == 0:
            cotangent[row, row % num_labels] = 1.0
        elif kind == 1:
            cotangent[row, 0], cotangent[row, 1] = 1.0, -1.0
        else:
            cotangent[row] = rng.standard_normal(num_labels)
    return cotangent


class _Comparison:
    """Collects the max abs difference of each (graph, output) over all validation batches."""

    def __init__(self) -> None:
        # key -> (worst difference, smallest tolerance, every batch within its tolerance)
        self._worst: dict[tuple[str, str, str], tuple[float, float, bool]] = {}

    def add(
        self,
        graph: str,
        output: str,
        compared_with: str,
        actual: Any,
        expected: Any,
        tolerance: float,
    ) -> None:
        actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
        if actual.shape != expected.shape:
            diff = float("inf")  # the shape problem itself is reported by _expect_shape
        else:
            diff = float(np.max(np.abs(actual - expected)))
        key = (graph, output, compared_with)
        worst, smallest, passed = self._worst.get(key, (0.0, tolerance, True))
        self._worst[key] = (
            max(worst, diff),
            min(smallest, tolerance),
            passed and diff <= tolerance,
        )

    def checks(self) -> list[OutputCheck]:
        return [
            OutputCheck(graph, output, against, diff, tol, passed)
            for (graph, output, against), (diff, tol, passed) in self._worst.items()
        ]


def _raw_tolerance(reference: np.ndarray) -> float:
    """Raw scores have no fixed scale: the tolerance is relative to the largest |score|."""
    return TOLERANCE * max(1.0, float(np.max(np.abs(reference))))


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _check_signature(
    name: str, session: ort.InferenceSession, info: GraphInfo, report: ValidationReport
) -> bool:
    inputs = tuple(node.name for node in session.get_inputs())
    outputs = tuple(node.name for node in session.get_outputs())
    if inputs != info.inputs or outputs != info.outputs:
        report.problems.append(
            f"graph {name!r} ({info.file}) has inputs {inputs} and outputs {outputs}; "
            f"the manifest says {info.inputs} and {info.outputs}"
        )
        return False
    return True


def validate_graphs(
    artifact_dir: Path, graphs: Mapping[str, GraphInfo], loaded: LoadedClassifier
) -> ValidationReport:
    """Run every graph in ``graphs`` in ONNX Runtime and compare with eager PyTorch."""
    spec = loaded.spec
    report = ValidationReport(
        tracing_shape=TRACING_SHAPE,
        validation_shapes=[(len(rows), max(rows)) for rows in VALIDATION_ROW_LENGTHS],
    )
    sessions = {}
    for name, info in graphs.items():
        try:
            session = _session(artifact_dir / info.file)
        except Exception as exc:  # ORT raises its own exception types for unreadable graphs
            report.problems.append(f"graph {name!r} ({info.file}) does not load: {exc}")
            continue
        if _check_signature(name, session, info, report):
            sessions[name] = session
    comparison = _Comparison()
    for seed, lengths in enumerate(VALIDATION_ROW_LENGTHS, start=1):
        batch = make_batch(loaded, lengths, seed=seed)
        _compare_batch(loaded.model, spec, sessions, batch, seed, comparison, report)
    report.checks = comparison.checks()
    return report


def _compare_batch(
    model: Any,
    spec: ModelSpec,
    sessions: Mapping[str, ort.InferenceSession],
    batch: dict[str, np.ndarray],
    seed: int,
    comparison: _Comparison,
    report: ValidationReport,
) -> None:
    inputs = tuple(torch.from_numpy(batch[name]) for name in spec.input_names)
    mask = batch["attention_mask"]
    plain_logits = attribution.forward_fn(model, spec)(*inputs).numpy()
    eager = "eager input_ids forward"

    def run(graph: str, feed: dict[str, np.ndarray]) -> list[np.ndarray] | None:
        try:
            return sessions[graph].run(None, feed)
        except Exception as exc:  # a baked-in axis fails here, with ORT's own exception types
            shape = tuple(feed["input_ids"].shape)
            report.problems.append(f"graph {graph!r} fails on (batch, sequence) {shape}: {exc}")
            return None

    if FORWARD in sessions and (outputs := run(FORWARD, batch)) is not None:
        comparison.add(FORWARD, "logits", eager, outputs[0], plain_logits, TOLERANCE)

    if ATTRIBUTION in sessions and (outputs := run(ATTRIBUTION, batch)) is not None:
        logits, scores = outputs
        ref_logits, ref_scores = (
            t.numpy() for t in attribution.all_labels_fn(model, spec)(*inputs)
        )
        comparison.add("eager attribution", "logits", eager, ref_logits, plain_logits, TOLERANCE)
        _expect_shape(report, ATTRIBUTION, "scores", scores.shape, ref_scores.shape)
        comparison.add(ATTRIBUTION, "logits", eager, logits, plain_logits, TOLERANCE)
        if scores.shape == ref_scores.shape:
            _compare_scores(comparison, ATTRIBUTION, scores, ref_scores, mask)

    cotangent = make_cotangent(len(mask), spec.num_labels, seed)
    feed = {**batch, "cotangent": cotangent}
    if ATTRIBUTION_COTANGENT in sessions and (outputs := run(ATTRIBUTION_COTANGENT, feed)):
        logits, scores = outputs
        ref_logits, ref_scores = (
            t.numpy()
            for t in attribution.cotangent_fn(model, spec)(*inputs, torch.from_numpy(cotangent))
        )
        _expect_shape(report, ATTRIBUTION_COTANGENT, "scores", scores.shape, ref_scores.shape)
        comparison.add(ATTRIBUTION_COTANGENT, "logits", eager, logits, plain_logits, TOLERANCE)
        if scores.shape == ref_scores.shape:
            _compare_scores(comparison, ATTRIBUTION_COTANGENT, scores, ref_scores, mask)


def _expect_shape(
    report: ValidationReport,
    graph: str,
    output: str,
    actual: tuple[int, ...],
    expected: tuple[int, ...],
) -> None:
    if tuple(actual) != tuple(expected):
        report.problems.append(
            f"{graph}.{output} has shape {tuple(actual)}, eager PyTorch gives {tuple(expected)}"
        )


def _compare_scores(
    comparison: _Comparison,
    graph: str,
    scores: np.ndarray,
    reference: np.ndarray,
    mask: np.ndarray,
) -> None:
    against = "eager autograd"
    comparison.add(
        graph, "scores (raw, relative)", against, scores, reference, _raw_tolerance(reference)
    )
    comparison.add(
        graph,
        "scores (normalized)",
        against,
        normalize_scores(scores, mask),
        normalize_scores(reference, mask),
        TOLERANCE,
    )


def validate_artifact(artifact_dir: Path | str, model_dir: Path | str) -> ValidationReport:
    """Check an artifact's files against its manifest, then its graphs against the model."""
    artifact_dir = Path(artifact_dir)
    manifest = load_manifest(artifact_dir)
    loaded = load_classifier(model_dir)
    spec = loaded.spec
    mismatches = [
        f"{what}: the artifact has {ours!r}, {model_dir} has {theirs!r}"
        for what, ours, theirs in (
            ("model_type", manifest.model_type, spec.model_type),
            ("labels", list(manifest.labels), list(spec.labels)),
            ("model inputs", list(manifest.model_inputs), list(spec.input_names)),
        )
        if ours != theirs
    ]
    if mismatches:
        report = ValidationReport(tracing_shape=TRACING_SHAPE, validation_shapes=[])
        report.problems += [f"exported from another model? {line}" for line in mismatches]
        return report
    return validate_graphs(artifact_dir, manifest.graphs, loaded)
