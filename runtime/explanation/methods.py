"""The attribution methods and their settings: input x gradient (the attribution graphs), and
integrated gradients and GradientSHAP (points of the path graph, export/attribution.py:
``path_fn``), with what each row of the path graph is fed and how the rows' scores combine.

- **Integrated gradients** (Sundararajan et al. 2017), as Captum's LayerIntegratedGradients on
  the word-embedding layer: ``sum_j w_j * grad(b + a_j (e - b)) . (e - b)`` per token, the
  points ``a_j`` and weights ``w_j`` of the integration rule (Captum's names and formulas).
- **GradientSHAP** (Lundberg and Lee 2017), as Captum's GradientShap on the word embeddings:
  the mean over ``samples`` draws of ``grad(b + a (x - b)) . (x - b)``, ``x = e + noise``,
  ``a ~ U(0, 1)``, ``noise ~ N(0, stdev^2)`` per element; draws from the text's seed
  (``text_seed``, ``draws``), the same for every label of a text, so a label asked alone gets the
  same answer. No noise where the baseline keeps the token's own vector (the pad baseline's
  special tokens): those tokens score 0, as with integrated gradients, instead of noise times
  their (often large) gradient.
- Baselines: ``pad``: the pad token's vector everywhere but the special tokens, which keep
  their own (transformers-interpret's baseline); ``zeros``: zero vectors everywhere.

No torch here: the runtime only feeds the exported graph.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradlight.artifact.manifest import ATTRIBUTION_PATH
from gradlight.runtime.execution.feeds import Row, RowOutput
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.requests import AttributeOptions
from gradlight.wire.methods import (
    FIELD_NAMES,
    GAUSS_LEGENDRE,
    INPUT_X_GRADIENT,
    INTEGRATED_GRADIENTS,
    METHODS,
    PAD,
    RIEMANN,
    MethodSettings,
    resolve,
)

if TYPE_CHECKING:
    from gradlight.runtime.execution.engine import Engine


def served_methods(engine: Engine) -> tuple[str, ...]:
    """The methods ``engine``'s artifact can compute (the path ones need its path graph)."""
    return METHODS if engine.has_graph(ATTRIBUTION_PATH) else (INPUT_X_GRADIENT,)


def resolve_method(
    method: str,
    steps: int = 0,
    integration: str = "",
    baseline: str = "",
    samples: int = 0,
    stdev: float | None = None,
) -> MethodSettings:
    """Check a request's method fields (errors name the field); empty or 0 means the default
    (gradlight.wire.methods: ``resolve``, without the request's other fields)."""
    values = dict(method=method, steps=steps, integration=integration, baseline=baseline)
    return resolve({**values, "samples": samples, "stdev": stdev})


def check_method(options: AttributeOptions, has_path_graph: bool) -> MethodSettings:
    """A request's method and faithfulness fields, checked (against what the artifact can
    compute: ``has_path_graph``) and resolved."""
    return resolve(
        {name: getattr(options, name) for name in FIELD_NAMES},
        token_attributions=options.token_attributions,
        has_path_graph=has_path_graph,
    )


def integration_points(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` of an integration rule on [0, 1], as Captum computes them
    (captum.attr._utils.approximation_methods)."""
    if rule == GAUSS_LEGENDRE:
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1 + nodes), 0.5 * weights
    if rule not in RIEMANN:
        raise ValueError(f"unknown integration rule {rule!r}")
    if steps < 2:
        raise ValueError(f"{rule} needs 2 or more steps")
    weights = np.full(steps, 1.0 / steps)
    kind = rule.removeprefix("riemann_")
    if kind == "trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return np.linspace(0, 1, steps), weights
    first, last = {
        "left": (0.0, 1 - 1 / steps),
        "right": (1 / steps, 1.0),
        "middle": (1 / (2 * steps), 1 - 1 / (2 * steps)),
    }[kind]
    return np.linspace(first, last, steps), weights


def text_seed(seed: int, ids: np.ndarray) -> list[int]:
    """The seed of one text's random draws (GradientSHAP's, faithfulness's random ranking): the
    request's ``seed`` and the crc32 of the text's token ids (int64), for
    ``numpy.random.default_rng``. Texts of one request draw differently; a text draws the same
    whatever else its request or batch holds."""
    return [seed, zlib.crc32(np.ascontiguousarray(ids, dtype=np.int64).tobytes())]


def draws(
    seed: int | Sequence[int], samples: int, tokens: int, hidden: int, stdev: float
) -> tuple[np.ndarray, np.ndarray | None]:
    """GradientSHAP's random draws for one text: ``alphas [samples]`` from U(0, 1), then noise
    ``[samples, tokens, hidden]`` from N(0, stdev^2) (None when stdev is 0), in this order from
    ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    alphas = rng.uniform(0.0, 1.0, size=samples)
    if stdev == 0:
        return alphas, None
    return alphas, rng.normal(0.0, stdev, size=(samples, tokens, hidden)).astype(np.float32)


@dataclass(frozen=True)
class PathPoints:
    """One text's points on the path: what each path-graph row of a label gets besides its
    cotangent, and how the rows' scores combine (``weights``)."""

    alphas: np.ndarray  # [P]
    weights: np.ndarray  # [P]
    keep: np.ndarray  # [S] float32, 1: the baseline keeps the token's own vector
    fill: float  # the pad vector's weight elsewhere (0: zero baseline)
    noise: np.ndarray | None  # [P, S, H] or None (no noise)

    def extras(self, point: int, zeros: np.ndarray) -> dict[str, np.ndarray]:
        """The path graph's inputs for one row (``zeros``: [S, H], shared by noiseless rows)."""
        return {
            "alpha": np.float32(self.alphas[point]),
            "keep": self.keep,
            "fill": np.float32(self.fill),
            "noise": zeros if self.noise is None else self.noise[point],
        }

    def baseline_extras(self, zeros: np.ndarray) -> dict[str, np.ndarray]:
        """The row that runs the model at the baseline (``alpha`` 0): its logits are f(b)."""
        return {
            "alpha": np.float32(0.0),
            "keep": self.keep,
            "fill": np.float32(self.fill),
            "noise": zeros,
        }

    def combine(self, scores: np.ndarray) -> np.ndarray:
        """``scores [P, S]`` of one label's rows -> the label's raw scores ``[S]``."""
        return np.tensordot(self.weights, np.asarray(scores, dtype=np.float64), axes=1)


def path_points(
    choice: MethodSettings, special: Sequence[bool], hidden: int, seed: int | Sequence[int]
) -> PathPoints:
    """The points of ``choice`` (a path method) for a text whose tokens are ``special`` or not
    (``seed``: the text's, ``text_seed``)."""
    tokens = len(special)
    if choice.baseline == PAD:
        keep, fill = np.asarray(special, dtype=np.float32), 1.0
    else:
        keep, fill = np.zeros(tokens, dtype=np.float32), 0.0
    if choice.method == INTEGRATED_GRADIENTS:
        alphas, weights = integration_points(choice.integration, choice.steps)
        return PathPoints(alphas, weights, keep, fill, None)
    alphas, noise = draws(seed, choice.samples, tokens, hidden, choice.stdev)
    if noise is not None:  # none where the baseline is the token itself: those score 0
        noise *= (1 - keep)[None, :, None]
    weights = np.full(choice.samples, 1.0 / choice.samples)
    return PathPoints(alphas, weights, keep, fill, noise)


def path_rows(
    encoded: EncodedText,
    unit: int,
    label_indices: Sequence[int],
    labels: int,
    choice: MethodSettings,
    hidden: int,
    seed: int,
) -> tuple[PathPoints, list[Row]]:
    """One text's path graph rows: per label (``label_indices`` of ``labels``), one row per
    point, then one row at the baseline (its logits are f(b)); all of ``unit``, so that they
    share a padded call (the batcher keeps a unit together within its limits)."""
    points = path_points(choice, encoded.special, hidden, text_seed(seed, encoded.ids))
    zeros = np.zeros((len(encoded), hidden), dtype=np.float32)
    one_hot = np.eye(labels, dtype=np.float32)
    rows = [
        Row(encoded, {"cotangent": one_hot[k], **points.extras(point, zeros)}, unit=unit)
        for k in label_indices
        for point in range(len(points.alphas))
    ]
    baseline = {"cotangent": one_hot[label_indices[0]], **points.baseline_extras(zeros)}
    return points, [*rows, Row(encoded, baseline, unit=unit)]


def path_scores(
    points: PathPoints, rows: Sequence[RowOutput], logits: np.ndarray, label_indices: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """A text's raw scores ``[K, S]`` from its ``path_rows`` outputs, and the completeness gaps
    ``[K]``: ``sum_s scores - (f(x) - f(b))``, ``logits`` being f(x) (the forward graph's)."""
    count = len(points.alphas)
    raw = np.stack(
        [
            points.combine(np.stack([row.scores for row in rows[k * count : (k + 1) * count]]))
            for k in range(len(label_indices))
        ]
    )
    picked = list(label_indices)
    gaps = raw.sum(-1) - (logits[picked] - rows[-1].logits[picked])
    return raw.astype(np.float32), gaps.astype(np.float32)
