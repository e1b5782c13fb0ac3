"""Validate exported graphs in ONNX Runtime against eager PyTorch autograd.

Every graph runs on batches whose sizes differ from the tracing shapes, with padding in some
rows, so an axis baked in by accident cannot hide. Checks go names, then shapes, then values;
every output is reported with its max absolute difference, and all failures are collected
before the verdict.

Scores are compared raw and normalized (divided by the text's peak |score| per label). A score
sums ``grad_h * v_h`` over the hidden axis, so float32 rounding moves it by a fraction of the
terms' scale ``|grad| |v|``, not of its value: where those terms cancel (the gradient nearly
orthogonal to the explained vectors, as in DeBERTa-v3 and ModernBERT at their default
initialization), the normalized scores of eager PyTorch itself move by far more than 1e-4. Each
text's normalized-score tolerance therefore covers a rounding bound, ``SCORE_PRECISION`` of
its largest ``|grad| |v|`` over its peak (docs/export-internals.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from gradlight.artifact.manifest import GraphInfo, load_manifest
from gradlight.export import attribution, cnlpt
from gradlight.export.batches import (
    TRACING_SHAPE,
    VALIDATION_ROW_LENGTHS,
    model_tensors,
    validation_batches,
)
from gradlight.export.errors import ExportError
from gradlight.export.graphs import BY_KEY, COTANGENT, ExampleShape, GraphSpec
from gradlight.export.model_loading import LoadedClassifier, load_classifier
from gradlight.runtime.execution.scores import normalize_scores

TOLERANCE = 1e-4
"""fp32: max absolute difference allowed on logits and on normalized scores."""

MAX_SCORE_TOLERANCE = 1e-3
"""The normalized-score tolerance grows with eager PyTorch's own rounding noise up to this; a
text whose normalized scores move by more when padded, beyond what rounding can explain, means
the model reads its padding."""

SCORE_PRECISION = 2.0**-19
"""How far float32 rounding can move a score, as a fraction of its text's largest
``|grad| |v|`` (the scale of the terms a score sums, which its rounding follows, not its
value): 32 units of float32 rounding. The peak a text's normalized scores are divided by moves
too, so their bound is ``2 * SCORE_PRECISION * max |grad| |v| / peak``. Measured in those
units (normalized difference times peak over ``max |grad| |v|``), normalized scores moved at
most 2e-7 between a graph and eager PyTorch and 4e-7 between eager float32 and float64 (the
tests' tiny models, MiniLM-L6, 12-layer BERT and DeBERTa-v2 at default initialization), and
6e-8 in the texts whose scores cancel: ``2 * SCORE_PRECISION`` = 3.8e-6 is 10 to 60 times that
(docs/export-internals.md)."""

MIN_GRADIENT_ALIGNMENT = 1e-3
"""Below this median ``|cos(gradient, embedding)|`` the scores are rounding noise
(attribution.gradient_alignment)."""

EAGER_FORWARD = "eager input_ids forward"
EAGER_AUTOGRAD = "eager autograd"


@dataclass(frozen=True)
class OutputCheck:
    """One output of one graph over every validation batch. ``tolerance``: the smallest
    tolerance applied; ``max_tolerance``: the largest (tolerances differ by batch and, for
    normalized scores, by text: ``SCORE_PRECISION``); ``worst_fraction``: the largest
    ``|difference| / tolerance`` over the values compared, each against its own tolerance.
    Passed: ``worst_fraction <= 1``."""

    graph: str
    output: str
    compared_with: str
    max_abs_diff: float
    tolerance: float
    passed: bool
    max_tolerance: float
    worst_fraction: float

    def describe(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        tolerance = f"tolerance {self.tolerance:.3g}"
        if self.max_tolerance > self.tolerance:
            tolerance += (
                f" to {self.max_tolerance:.3g}, the worst value at {self.worst_fraction:.2g} of "
                "its own"
            )
        return (
            f"{self.graph}.{self.output} vs {self.compared_with}: max abs diff "
            f"{self.max_abs_diff:.3g} ({tolerance}) {verdict}"
        )


@dataclass
class ValidationReport:
    tracing_shape: tuple[int, int]
    validation_shapes: list[tuple[int, int]]
    checks: list[OutputCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    eager_noise: float = 0.0
    score_tolerance: float = TOLERANCE

    @property
    def passed(self) -> bool:
        return not self.problems and all(check.passed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance": TOLERANCE,
            "eager_noise": self.eager_noise,
            "score_tolerance": self.score_tolerance,
            "score_precision": SCORE_PRECISION,
            "tracing_shape": list(self.tracing_shape),
            "validation_shapes": [list(shape) for shape in self.validation_shapes],
            "checks": [asdict(check) for check in self.checks],
            "problems": list(self.problems),
        }

    def format(self) -> str:
        lines = [
            f"validation on (batch, sequence) {self.validation_shapes} "
            f"(traced on {self.tracing_shape}); padding in some rows",
            f"eager PyTorch's own rounding noise on normalized scores (a padded batch vs each "
            f"row alone): {self.eager_noise:.3g}; normalized-score tolerance "
            f"{self.score_tolerance:.3g}, or a text's rounding bound where larger "
            f"(2 x {SCORE_PRECISION:.3g} of its largest |gradient| |vector| over its peak)",
        ]
        lines += [f"  {check.describe()}" for check in self.checks]
        lines += [f"  PROBLEM: {problem}" for problem in self.problems]
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


class _Comparison:
    """Collects, for each (graph, output), the max abs difference over all validation batches
    and how close any value came to its tolerance."""

    def __init__(self) -> None:
        # key -> (worst difference, smallest tolerance, largest tolerance, worst fraction)
        self._worst: dict[tuple[str, str, str], tuple[float, float, float, float]] = {}

    def add(
        self,
        graph: str,
        output: str,
        compared_with: str,
        actual: Any,
        expected: Any,
        tolerance: float | np.ndarray | None = None,
    ) -> None:
        """``tolerance``: one for every value, or an array that broadcasts against them."""
        tolerance = np.asarray(TOLERANCE if tolerance is None else tolerance, np.float64)
        actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
        if actual.shape != expected.shape:
            # the shape problem itself is reported as a problem
            diff, fraction = float("inf"), float("inf")
        else:
            diffs = np.abs(actual - expected)
            diff = float(np.max(diffs, initial=0.0))
            allowed = np.broadcast_to(tolerance, diffs.shape)
            fractions = np.divide(
                diffs, allowed, out=np.where(diffs > 0, np.inf, 0.0), where=allowed > 0
            )
            fraction = float(np.max(fractions, initial=0.0))
        key = (graph, output, compared_with)
        low, high = float(np.min(tolerance)), float(np.max(tolerance))
        worst, smallest, largest, worst_fraction = self._worst.get(key, (0.0, low, high, 0.0))
        self._worst[key] = (
            max(worst, diff),
            min(smallest, low),
            max(largest, high),
            max(worst_fraction, fraction),
        )

    def checks(self) -> list[OutputCheck]:
        return [
            OutputCheck(graph, output, against, diff, low, fraction <= 1.0, high, fraction)
            for (graph, output, against), (diff, low, high, fraction) in self._worst.items()
        ]


def cpu_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_sessions(
    artifact_dir: Path, graphs: Mapping[str, GraphInfo], problems: list[str]
) -> dict[str, ort.InferenceSession]:
    """A CPU session per graph that loads with the inputs and outputs ``graphs`` lists; what
    does not is said in ``problems``."""
    sessions = {}
    for name, info in graphs.items():
        try:
            session = cpu_session(artifact_dir / info.file)
        except Exception as exc:  # ORT raises its own exception types for unreadable graphs
            problems.append(f"graph {name!r} ({info.file}) does not load: {exc}")
            continue
        inputs = tuple(node.name for node in session.get_inputs())
        outputs = tuple(node.name for node in session.get_outputs())
        if inputs != info.inputs or outputs != info.outputs:
            problems.append(
                f"graph {name!r} ({info.file}) has inputs {inputs} and outputs {outputs}; "
                f"the manifest says {info.inputs} and {info.outputs}"
            )
            continue
        sessions[name] = session
    return sessions


def validate_graphs(
    artifact_dir: Path, graphs: Mapping[str, GraphInfo], loaded: LoadedClassifier
) -> ValidationReport:
    """Run every graph in ``graphs`` in ONNX Runtime and compare with eager PyTorch."""
    report = ValidationReport(
        tracing_shape=TRACING_SHAPE,
        validation_shapes=[(len(rows), max(rows)) for rows in VALIDATION_ROW_LENGTHS],
    )
    sessions = load_sessions(artifact_dir, graphs, report.problems)
    comparison = _Comparison()
    plain = attribution.forward_fn(loaded)
    batches = validation_batches(loaded)
    noise = eager_noise(loaded, batches[0][1])
    report.eager_noise = noise.worst
    report.score_tolerance = min(max(TOLERANCE, 2 * noise.worst), MAX_SCORE_TOLERANCE)
    if noise.beyond_rounding > MAX_SCORE_TOLERANCE:
        report.problems.append(
            f"eager PyTorch's own normalized scores move by {noise.beyond_rounding:.3g} when a "
            f"text is padded (more than {MAX_SCORE_TOLERANCE:g}, and more than rounding can "
            "explain): the model reads its padding"
        )
    for seed, batch in batches:
        plain_logits = plain(*model_tensors(loaded, batch)).numpy()
        for key, session in sessions.items():
            check = _GraphCheck(BY_KEY[key], loaded, batch, seed, plain_logits)
            check.run(session, comparison, report)
    report.checks = comparison.checks()
    return report


@dataclass(frozen=True)
class EagerNoise:
    """How far eager PyTorch's normalized scores move when only the shape changes: ``worst``
    over every text, ``beyond_rounding`` over the texts that move by more than their rounding
    bound (``rounding_bounds``; 0 where none does)."""

    worst: float
    beyond_rounding: float


def eager_noise(loaded: LoadedClassifier, batch: dict[str, np.ndarray]) -> EagerNoise:
    """Each row of ``batch`` attributed in the padded batch and alone. A graph cannot be asked
    to agree with eager PyTorch more closely than eager PyTorch agrees with itself; a model
    whose scores depend on its padding shows here too, and fails when a text moves by more
    than MAX_SCORE_TOLERANCE and more than rounding can explain."""
    attribute = attribution.cotangent_fn(loaded)
    names = loaded.spec.model_inputs
    cotangent = torch.from_numpy(
        COTANGENT.example(ExampleShape(*batch["input_ids"].shape, loaded), 0)
    )
    together_inputs = (*(torch.from_numpy(batch[name]) for name in names), cotangent)
    (_, together), magnitudes = attribution.with_magnitudes(attribute, *together_inputs)
    mask = batch["attention_mask"]
    bounds = rounding_bounds(together.numpy(), magnitudes.numpy(), mask)
    worst = beyond = 0.0
    for row, length in enumerate(mask.sum(axis=1)):
        rows = slice(row, row + 1)
        alone = (torch.from_numpy(batch[name][rows, :length]) for name in names)
        _, scores = attribute(*alone, cotangent[rows])
        ours = normalize_scores(together[rows, :length].numpy(), mask[rows, :length])
        theirs = normalize_scores(scores.numpy(), mask[rows, :length])
        moved = float(np.max(np.abs(ours - theirs)))
        worst = max(worst, moved)
        if moved > bounds[row].item():
            beyond = max(beyond, moved)
    return EagerNoise(worst, beyond)


def rounding_bounds(raw: np.ndarray, magnitudes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``raw``'s shape with a last axis of 1: per text (and label), the most float32 rounding
    can move its normalized scores, ``2 * SCORE_PRECISION * max |grad| |v| / peak |score|``
    over its unpadded tokens (``magnitudes``: ``|grad| |v|`` per token, as ``raw``), at most 2
    (which any two normalized scores are within)."""
    mask = np.asarray(mask).astype(bool)
    while mask.ndim < raw.ndim:
        mask = np.expand_dims(mask, axis=1)
    peak = np.max(np.where(mask, np.abs(raw.astype(np.float64)), 0.0), axis=-1, keepdims=True)
    scale = np.max(np.where(mask, magnitudes.astype(np.float64), 0.0), axis=-1, keepdims=True)
    bound = np.divide(
        2 * SCORE_PRECISION * scale, peak, out=np.where(scale > 0, 2.0, 0.0), where=peak > 0
    )
    return np.minimum(bound, 2.0)


def check_scores_are_defined(loaded: LoadedClassifier) -> None:
    """Refuse, before anything is traced, a model whose scores would be rounding noise."""
    _, batch = validation_batches(loaded)[0]
    alignment = attribution.gradient_alignment(loaded, model_tensors(loaded, batch))
    if alignment >= MIN_GRADIENT_ALIGNMENT:
        return
    explained = loaded.architecture.explained(loaded.model.config)
    raise ExportError(
        f"{loaded.spec.model_type}: the scores would be rounding noise: the gradient at the "
        f"{explained} is orthogonal to them (median |cos| {alignment:.2g} < "
        f"{MIN_GRADIENT_ALIGNMENT:g}), as when they feed a normalization with nothing added to "
        "them (input x gradient is zero on a scale-invariant layer's input); give "
        f"{loaded.spec.model_type!r} an entry in export/architectures.py that explains that "
        "normalization's output (docs/architectures.md)"
    )


class _GraphCheck:
    """One graph on one validation batch, against its eager function and the plain forward."""

    def __init__(
        self,
        graph: GraphSpec,
        loaded: LoadedClassifier,
        batch: dict[str, np.ndarray],
        seed: int,
        plain_logits: np.ndarray,
    ) -> None:
        self.graph, self.loaded, self.plain_logits = graph, loaded, plain_logits
        self.mask = batch["attention_mask"]
        self.feed = {**batch, **graph.extra_feed(batch, loaded, seed)}

    def run(
        self, session: ort.InferenceSession, comparison: _Comparison, report: ValidationReport
    ) -> None:
        key, at_input = self.graph.key, self.graph.at_input
        outputs = self._outputs(session, self.feed, report)
        if outputs is None:
            return
        if at_input is None:  # its logits are the text's own
            comparison.add(key, "logits", EAGER_FORWARD, outputs["logits"], self.plain_logits)
        if self.graph.eager is attribution.forward_fn:
            return  # the plain forward is its own eager function
        tensors = [
            torch.from_numpy(self.feed[name]) for name in self.graph.inputs(self.loaded.spec)
        ]
        eager_outputs, magnitudes = attribution.with_magnitudes(
            self.graph.eager(self.loaded), *tensors
        )
        expected = dict(zip(self.graph.outputs, eager_outputs, strict=True))
        ref_logits = expected["logits"].numpy()
        if at_input is None:
            # The eager function itself must predict what the plain forward predicts.
            comparison.add(f"eager {key}", "logits", EAGER_FORWARD, ref_logits, self.plain_logits)
        else:
            comparison.add(key, "logits on the path", EAGER_AUTOGRAD, outputs["logits"], ref_logits)
        self._scores(
            outputs["scores"], expected["scores"].numpy(), magnitudes.numpy(), comparison, report
        )
        if at_input is not None:
            self._at_input(session, at_input(self.feed), comparison, report)
        if at_input is not None and self.feed["cotangent"].ndim == 3:
            self._forward_only(session, ref_logits, comparison, report)

    def _forward_only(
        self,
        session: ort.InferenceSession,
        ref_logits: np.ndarray,
        comparison: _Comparison,
        report: ValidationReport,
    ) -> None:
        """A path graph taking K cotangents per row, run with none (K = 0: how the runtime
        gets a path's end points, the forward alone): the eager logits, and no scores."""
        feed = {**self.feed, "cotangent": self.feed["cotangent"][:, :0]}
        outputs = self._outputs(session, feed, report)
        if outputs is None:
            return
        key = self.graph.key
        comparison.add(
            key, "logits with no cotangent", EAGER_AUTOGRAD, outputs["logits"], ref_logits
        )
        if outputs["scores"].shape[1] != 0:
            report.problems.append(
                f"{key}.scores with no cotangent has shape {outputs['scores'].shape}, not "
                f"({len(ref_logits)}, 0, sequence)"
            )

    def _outputs(
        self, session: ort.InferenceSession, feed: dict[str, np.ndarray], report: ValidationReport
    ) -> dict[str, np.ndarray] | None:
        try:
            return dict(zip(self.graph.outputs, session.run(None, feed), strict=True))
        except Exception as exc:  # a baked-in axis fails here, with ORT's own exception types
            shape = tuple(feed["input_ids"].shape)
            key = self.graph.key
            report.problems.append(f"graph {key!r} fails on (batch, sequence) {shape}: {exc}")
            return None

    def _at_input(
        self,
        session: ort.InferenceSession,
        overrides: dict[str, np.ndarray],
        comparison: _Comparison,
        report: ValidationReport,
    ) -> None:
        """A graph whose point moves from the input, run at the input itself: the plain
        forward's logits, and input x gradient of the same cotangent (the eager function of the
        cotangent graph)."""
        feed = {**self.feed, **overrides}
        outputs = self._outputs(session, feed, report)
        if outputs is None:
            return
        key = self.graph.key
        comparison.add(
            key, "logits at the input", EAGER_FORWARD, outputs["logits"], self.plain_logits
        )
        names = self.loaded.spec.model_inputs
        inputs = [torch.from_numpy(feed[name]) for name in (*names, "cotangent")]
        # K cotangents per row ([B, K, L]): the labels graph's function, else the cotangent's
        at_input_fn = attribution.labels_fn if inputs[-1].dim() == 3 else attribution.cotangent_fn
        (_, reference), magnitudes = attribution.with_magnitudes(at_input_fn(self.loaded), *inputs)
        self._scores(
            outputs["scores"],
            reference.numpy(),
            magnitudes.numpy(),
            comparison,
            report,
            " at the input",
        )

    def _scores(
        self,
        scores: np.ndarray,
        reference: np.ndarray,
        magnitudes: np.ndarray,
        comparison: _Comparison,
        report: ValidationReport,
        where: str = "",
    ) -> None:
        """Raw scores within TOLERANCE of the largest |score| (at least 1), or of the rounding
        bound of the largest ``|grad| |v|``; normalized scores within the report's score
        tolerance, or each text's rounding bound (``rounding_bounds``) where larger."""
        key = self.graph.key
        if scores.shape != reference.shape:
            report.problems.append(
                f"{key}.scores{where} has shape {scores.shape}, eager PyTorch gives "
                f"{reference.shape}"
            )
            return
        raw_tolerance = max(
            TOLERANCE * max(1.0, float(np.max(np.abs(reference)))),
            SCORE_PRECISION * float(np.max(magnitudes)),
        )
        comparison.add(
            key, f"scores (raw, relative){where}", EAGER_AUTOGRAD, scores, reference, raw_tolerance
        )
        ours, theirs = normalize_scores(scores, self.mask), normalize_scores(reference, self.mask)
        bounds = rounding_bounds(reference, magnitudes, self.mask)
        comparison.add(
            key,
            f"scores (normalized){where}",
            EAGER_AUTOGRAD,
            ours,
            theirs,
            np.maximum(report.score_tolerance, bounds),
        )


def validate_artifact(artifact_dir: Path | str, model_dir: Path | str) -> ValidationReport:
    """Check an artifact's files against its manifest, then its graphs against the model."""
    artifact_dir = Path(artifact_dir)
    manifest = load_manifest(artifact_dir)
    task = manifest.export.get("cnlpt_task")  # one task of a cnlp_transformers checkpoint
    loaded = cnlpt.load_task(Path(model_dir), task) if task else load_classifier(model_dir)
    spec = loaded.spec
    mismatches = [
        f"{what}: the artifact has {ours!r}, {model_dir} has {theirs!r}"
        for what, ours, theirs in (
            ("model_type", manifest.model_type, spec.model_type),
            ("labels", list(manifest.labels), list(spec.labels)),
            ("model inputs", list(manifest.model_inputs), list(spec.model_inputs)),
        )
        if ours != theirs
    ]
    if mismatches:
        report = ValidationReport(tracing_shape=TRACING_SHAPE, validation_shapes=[])
        report.problems += [f"exported from another model? {line}" for line in mismatches]
        return report
    report = validate_graphs(artifact_dir, manifest.graphs, loaded)
    if manifest.pre_tokenization != loaded.pre_tokenization:
        report.problems.append(
            f"the artifact gives the tokenizer text as {manifest.pre_tokenization!r}, the model "
            f"was trained on {loaded.pre_tokenization!r} (exported by an older gradlight): "
            "re-export it"
        )
    return report
