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
from gradlight.runtime.explanation.requests import AttributeOptions
from gradlight.wire.methods import (
    FEJER,
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


def fejer(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` of Fejer's second rule of ``steps`` (even) intervals on [0, 1]: the
    ``steps - 1`` interior points ``(1 - cos(k pi / steps)) / 2`` of Clenshaw-Curtis, positive
    weights. The points of ``steps`` are the odd-numbered points of ``2 steps``: doubling reuses
    every point computed (about as accurate as Gauss-Legendre at equal points on smooth
    integrands: Trefethen, "Is Gauss quadrature better than Clenshaw-Curtis?", SIAM Review
    2008). No end point: the gradient at the baseline itself is never taken (at a zero vector
    fed to a normalization it is huge)."""
    if steps < 2 or steps % 2:
        raise ValueError(f"{FEJER} needs an even number of steps, got {steps}")
    theta = np.arange(1, steps) * np.pi / steps
    odd = 2 * np.arange(1, steps // 2 + 1) - 1
    weights = 4 * np.sin(theta) / steps * (np.sin(np.outer(theta, odd)) / odd).sum(-1)
    return (1.0 - np.cos(theta)) / 2.0, weights / 2.0


def integration_points(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)`` of an integration rule on [0, 1], as Captum computes them
    (captum.attr._utils.approximation_methods); Fejer's second rule: ``fejer``."""
    if rule == FEJER:
        return fejer(steps)
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
    """GradientSHAP's random draws for one text, all at once (the served rows draw each
    point's noise only when its batch is built: ``NoiseDraw``): ``alphas [samples]`` from
    U(0, 1) by ``numpy.random.default_rng(seed)``, and noise ``[samples, tokens, hidden]``,
    point p's from N(0, stdev^2) by its own generator (``NoiseDraw``; None when stdev is 0)."""
    alphas = np.random.default_rng(seed).uniform(0.0, 1.0, size=samples)
    if stdev == 0:
        return alphas, None
    return alphas, np.stack([_normal(seed, p, (tokens, hidden), stdev) for p in range(samples)])


def _normal(
    seed: int | Sequence[int], point: int, shape: tuple[int, int], stdev: float
) -> np.ndarray:
    """Point ``point``'s noise: ``default_rng([*seed, point])``, float32."""
    words = [seed] if isinstance(seed, int) else list(seed)
    return np.random.default_rng([*words, point]).normal(0.0, stdev, size=shape).astype(np.float32)


@dataclass(frozen=True)
class NoiseDraw:
    """One point's noise ``[tokens, hidden]`` for the path graph's ``noise`` input, drawn
    only when its row's batch is built (runtime/execution/feeds.py: ``DeferredInput``); zero
    where ``keep`` is 1 (the baseline keeps the token's own vector). ``stdev`` 0: zeros
    (integrated gradients)."""

    seed: tuple[int, ...]
    point: int
    stdev: float
    keep: np.ndarray  # [S]
    hidden: int

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.keep), self.hidden)

    def write(self, out: np.ndarray) -> None:
        if self.stdev:
            out[...] = _normal(self.seed, self.point, self.shape, self.stdev)
            out *= (1 - self.keep)[:, None]


@dataclass(frozen=True)
class PathPoints:
    """One text's points on the path: what each path-graph row gets besides its cotangents,
    and how the rows' scores combine (``weights``)."""

    alphas: np.ndarray  # [P]
    weights: np.ndarray  # [P]
    keep: np.ndarray  # [S] float32, 1: the baseline keeps the token's own vector
    fill: float  # the pad vector's weight elsewhere (0: zero baseline)
    hidden: int
    seed: tuple[int, ...] = ()  # GradientSHAP's noise: the text's seed, and its stdev
    stdev: float = 0.0

    def extras(self, point: int) -> dict[str, np.ndarray | NoiseDraw]:
        """The path graph's inputs for a row at point ``point`` (``alphas[point]``)."""
        noise = NoiseDraw(self.seed, point, self.stdev, self.keep, self.hidden)
        return self._inputs(float(self.alphas[point]), noise)

    def end(self, alpha: float) -> dict[str, np.ndarray | NoiseDraw]:
        """The inputs for a row at the path's end ``alpha`` (0: the baseline, 1: the text),
        without noise."""
        return self._inputs(alpha, NoiseDraw((), 0, 0.0, self.keep, self.hidden))

    def _inputs(self, alpha: float, noise: NoiseDraw) -> dict[str, np.ndarray | NoiseDraw]:
        return {
            "alpha": np.float32(alpha),
            "keep": self.keep,
            "fill": np.float32(self.fill),
            "noise": noise,
        }


def path_points(
    choice: MethodSettings,
    special: Sequence[bool],
    hidden: int,
    seed: int | Sequence[int],
    steps: int | None = None,
) -> PathPoints:
    """The points of ``choice`` (a path method) for a text whose tokens are ``special`` or not
    (``seed``: the text's, ``text_seed``); integrated gradients at ``steps`` (None: the
    choice's)."""
    tokens = len(special)
    if choice.baseline == PAD:
        keep, fill = np.asarray(special, dtype=np.float32), 1.0
    else:
        keep, fill = np.zeros(tokens, dtype=np.float32), 0.0
    if choice.method == INTEGRATED_GRADIENTS:
        alphas, weights = integration_points(choice.integration, steps or choice.steps)
        return PathPoints(alphas, weights, keep, fill, hidden)
    alphas = np.random.default_rng(seed).uniform(0.0, 1.0, size=choice.samples)
    weights = np.full(choice.samples, 1.0 / choice.samples)
    words = (seed,) if isinstance(seed, int) else tuple(seed)
    return PathPoints(alphas, weights, keep, fill, hidden, words, choice.stdev)
