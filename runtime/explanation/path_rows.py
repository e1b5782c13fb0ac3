"""One text's rows of the path graphs (integrated gradients, GradientSHAP), and its scores,
completeness gaps and steps read from them, refined where a completeness tolerance asks.

A point on the path is one row of the path labels graph holding the asked labels' one-hot
cotangents (one forward, one backward per label: ``shared``), or, without that graph or for
one label, one path graph row per label. The gap of label k is
``sum_s scores[k, s] - (f(x)[k] - f(b)[k])``:

f(b) is the logits of one more row, at ``alpha`` 0 (in no rule's sum); f(x) the text's forward
logits (the probabilities' own), or, where the path graph runs in a reduced precision
(``own_text``), the logits of a row at ``alpha`` 1: the gap then compares the scores with the
function that computed them, not with fp32's (whose bf16 difference would otherwise set a floor
under every gap). With a completeness tolerance the rule is Fejer's second
(runtime/explanation/methods.py: ``fejer``): refining doubles the steps and runs only the new
points, every point already run keeps its place.

No torch here: the runtime only feeds the exported graphs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from gradlight.artifact.manifest import ATTRIBUTION_PATH, ATTRIBUTION_PATH_LABELS
from gradlight.runtime.execution.feeds import Row, RowOutput
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.methods import NoiseDraw, PathPoints, path_points, text_seed
from gradlight.wire.methods import (
    INTEGRATED_GRADIENTS,
    TOLERANCE_STEPS,
    MethodSettings,
)


def shared_row_weight(count: int) -> int:
    """The path graph rows a path labels graph row of ``count`` cotangents counts as in the
    batcher's limits: its work, one forward and ``count`` backward passes (a backward costs
    about two forwards), against a path graph row's forward and backward, rounded up."""
    return -(-(1 + 2 * count) // 3)


def path_graph(has: Callable[[str], bool], labels: int) -> str:
    """The graph a request's path rows run on: the path labels graph where the artifact has it
    and a text's point holds two labels or more (``has``: the engine's ``has_graph``)."""
    if labels > 1 and has(ATTRIBUTION_PATH_LABELS):
        return ATTRIBUTION_PATH_LABELS
    return ATTRIBUTION_PATH


def first_steps(choice: MethodSettings) -> int:
    """The steps a text starts at: with a completeness tolerance the smallest level, else the
    request's (GradientSHAP: its samples)."""
    if choice.tolerance:
        return min(TOLERANCE_STEPS[0], choice.steps)
    return choice.steps if choice.method == INTEGRATED_GRADIENTS else choice.samples


@dataclass
class PathText:
    """One unit's path rows: those run (``outputs``, per point in ``points``' order: one row
    when ``shared``, else one per label) and the rows to run next (``pending``)."""

    encoded: EncodedText
    unit: int
    choice: MethodSettings
    cotangents: np.ndarray  # [K, L] one-hot: the asked labels
    shared: bool
    hidden: int
    steps: int  # IG: the steps of ``points``; GradientSHAP: its samples
    points: PathPoints
    own_text: bool = False  # f(x) from the path graph's row at alpha 1
    outputs: list[list[RowOutput] | None] = field(default_factory=list)
    baseline: RowOutput | None = None  # the alpha-0 row: f(b)
    text: RowOutput | None = None  # the alpha-1 row (``own_text``): f(x)
    pending: list[int] = field(default_factory=list)  # point indices of the rows last handed out

    @property
    def per_point(self) -> int:
        """Rows per point."""
        return 1 if self.shared else len(self.cotangents)

    def first_rows(self) -> list[Row]:
        """Every point's rows, then the baseline's."""
        self.outputs = [None] * len(self.points.alphas)
        self.pending = list(range(len(self.points.alphas)))
        # Only their logits are read: on the path labels graph with no cotangent (K = 0, the
        # forward only, run in calls of their own: runtime/execution/feeds.py, forward_only);
        # on the path graph, which takes one per row, with the first label's.
        cotangents = self.cotangents[:0] if self.shared else self.cotangents[0]
        ends = [self._row(self.points.end(0.0), cotangents)]
        if self.own_text:
            ends.append(self._row(self.points.end(1.0), cotangents))
        return [*self._rows(self.pending), *ends]

    def take(self, outputs: Sequence[RowOutput]) -> None:
        """The outputs of the rows last handed out, in their order."""
        count = self.per_point
        for index, point in enumerate(self.pending):
            self.outputs[point] = list(outputs[index * count : (index + 1) * count])
        ends = list(outputs[len(self.pending) * count :])  # the first rows' last: the ends
        if ends:
            self.baseline = ends[0]
            self.text = ends[1] if self.own_text else None
        self.pending = []

    def can_refine(self) -> bool:
        return bool(self.choice.tolerance) and self.steps * 2 <= self.choice.steps

    def refine(self) -> list[Row]:
        """Double the steps; the rows of the new points (Fejer's rule nests: point k of
        ``steps`` is point 2k of ``2 steps``; the odd-numbered points are new)."""
        self.steps *= 2
        # integrated gradients draw nothing: no seed
        self.points = path_points(self.choice, self.encoded.special, self.hidden, 0, self.steps)
        run = self.outputs
        self.outputs = [None] * len(self.points.alphas)
        self.outputs[1::2] = run
        self.pending = list(range(0, len(self.points.alphas), 2))
        return self._rows(self.pending)

    def raw(self) -> np.ndarray:
        """The raw scores ``[K, S]``: the points' scores weighed by the rule."""
        per_point = np.stack([self._scores(outputs) for outputs in self.outputs])  # [P, K, S]
        return np.tensordot(self.points.weights, per_point.astype(np.float64), axes=1)

    def gaps(self, raw: np.ndarray, text_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The completeness gaps ``[K]`` and ``f(x) - f(b)`` ``[K]`` of the asked labels
        (``text_logits``: the forward's f(x), unless ``own_text``)."""
        picked = self.cotangents.argmax(-1)
        assert self.baseline is not None
        if self.text is not None:
            text_logits = self.text.logits
        change = (text_logits[picked] - self.baseline.logits[picked]).astype(np.float64)
        return raw.sum(-1) - change, change

    def within(self, gaps: np.ndarray, change: np.ndarray) -> bool:
        """Whether every label's gap is within the tolerance of its ``|f(x) - f(b)|`` (both
        from ``gaps``)."""
        return bool(np.all(np.abs(gaps) <= self.choice.tolerance * np.abs(change)))

    def reached(self, text_logits: np.ndarray) -> bool:
        """Whether the points run so far bring every label's gap within the tolerance."""
        return self.within(*self.gaps(self.raw(), text_logits))

    def _scores(self, outputs: list[RowOutput] | None) -> np.ndarray:
        assert outputs is not None
        if self.shared:
            return outputs[0].scores[: len(self.cotangents)]
        return np.stack([output.scores for output in outputs])

    def _rows(self, indices: Sequence[int]) -> list[Row]:
        rows = []
        for point in indices:
            extras = self.points.extras(point)
            if self.shared:
                rows.append(self._row(extras, self.cotangents))
            else:
                rows.extend(self._row(extras, cotangent) for cotangent in self.cotangents)
        return rows

    def _row(self, extras: dict[str, np.ndarray | NoiseDraw], cotangent: np.ndarray) -> Row:
        """A row of ``cotangent`` ([L], or [K, L] on the path labels graph). Rows of no unit:
        the batcher packs every text's path rows into calls by width and its call cost
        (runtime/execution/packing.py), so a text whose rows overflow a call fills the next one
        with its neighbours' rows instead of running its last few alone."""
        weight = shared_row_weight(len(cotangent)) if cotangent.ndim == 2 else 1
        return Row(self.encoded, {**extras, "cotangent": cotangent}, weight=weight)


def path_text(
    encoded: EncodedText,
    unit: int,
    label_indices: Sequence[int],
    labels: int,
    choice: MethodSettings,
    hidden: int,
    seed: int,
    shared: bool,
    own_text: bool,
) -> PathText:
    """Unit ``unit``'s path rows at its first steps (``shared``: on the path labels graph;
    ``own_text``: f(x) from its row at alpha 1, the graph running in a reduced precision)."""
    steps = first_steps(choice)
    points = path_points(choice, encoded.special, hidden, text_seed(seed, encoded.ids), steps)
    cotangents = np.eye(labels, dtype=np.float32)[list(label_indices)]
    return PathText(encoded, unit, choice, cotangents, shared, hidden, steps, points, own_text)


def rows_per_text(choice: MethodSettings, labels: int, shared: bool, own_text: bool) -> int:
    """The rows (by weight) one text's path rows count as at its most steps, known before it
    is tokenized: its points, then the baseline's row (and, ``own_text``, the text's), one
    row each (on the path labels graph with no cotangent: ``shared_row_weight(0)``, 1)."""
    points = choice.steps if choice.method == INTEGRATED_GRADIENTS else choice.samples
    per_point = shared_row_weight(labels) if shared else labels
    ends = 2 if own_text else 1
    return points * per_point + ends


def most_rows(text: PathText) -> int:
    """The rows (by weight) ``text`` may run in all, refined to its most steps."""
    if not text.can_refine():
        return 0
    count = len(text.cotangents)
    per_point = shared_row_weight(count) if text.shared else count
    return (text.choice.steps - text.steps) * per_point
