"""The attribution methods and their settings, said once for every side of the API: the ten
AttributeRequest fields of the method and of faithfulness (``FIELDS``), the methods
(``METHOD_LIST``), and the check that resolves a request's values (``resolve``). The server
checks requests with it, the client and the CLI make their keywords and flags from it, the bulk
job its checks and checkpoint, the visualizer its choices and limits (``as_json``, served as
``GET /v1/methods``).

A field's name is the AttributeRequest field, the client keyword and the CLI flag (``--name``).
Stdlib only: the CLI starts without numpy, and a client need not have it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gradlight.wire.errors import RequestError, shown

INPUT_X_GRADIENT = "input_x_gradient"
INTEGRATED_GRADIENTS = "integrated_gradients"
GRADIENT_SHAP = "gradient_shap"

GAUSS_LEGENDRE = "gausslegendre"
FEJER = "fejer"  # Fejer's second rule: steps - 1 interior points, nested on doubling
RIEMANN = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
INTEGRATIONS = (GAUSS_LEGENDRE, FEJER, *RIEMANN)
PAD, ZEROS = "pad", "zeros"
BASELINES = (PAD, ZEROS)
DELETE, MASK = "delete", "mask"  # how faithfulness removes a word (faithfulness.py)
REMOVALS = (DELETE, MASK)

DEFAULT_STEPS = 32
DEFAULT_SAMPLES = 16
DEFAULT_STDEV = 0.01
MAX_POINTS = 512  # steps or samples per text and label
# Steps chosen per text (``completeness_tolerance``): the Fejer levels tried, in order,
# each reusing the points of the one before; ``steps`` is then the most a text may get.
TOLERANCE_STEPS = (8, 16, 32, 64, 128, 256, 512)
DEFAULT_MAX_TOLERANCE_STEPS = 64
MAX_SEED = 2**64 - 1
FAITHFULNESS = "faithfulness"  # the field: a reader of settings, as a method is


@dataclass(frozen=True)
class Method:
    """A token attribution method: ``path_graph``, whether the artifact's path graph computes
    it; ``points``, the field counting its path-graph rows per text and label."""

    name: str
    help: str
    path_graph: bool = False
    points: str | None = None


METHOD_LIST = (  # the first is the default
    Method(INPUT_X_GRADIENT, "one backward pass per label"),
    Method(
        INTEGRATED_GRADIENTS,
        "the gradient integrated from a baseline to the text (steps points, each a backward "
        "pass per label)",
        True,
        "steps",
    ),
    Method(
        GRADIENT_SHAP,
        "the mean over samples random points between the baseline and the text with Gaussian noise",
        True,
        "samples",
    ),
)
METHODS = tuple(method.name for method in METHOD_LIST)
PATH_METHODS = tuple(method.name for method in METHOD_LIST if method.path_graph)
METHODS_BY_NAME = {method.name: method for method in METHOD_LIST}


@dataclass(frozen=True)
class Field:
    """One request field. ``unset``: the proto's value when not given (None: a proto3
    ``optional``, read with HasField); ``default``: what unset means (None: the server draws
    the seed). ``read_with``: the methods, or ``FAITHFULNESS``, that read it (empty: always)."""

    name: str
    type: type
    unset: Any
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    low: int | None = None
    high: int | None = None
    read_with: tuple[str, ...] = ()

    @property
    def optional(self) -> bool:
        return self.unset is None

    @property
    def annotation(self) -> Any:
        """Its type as a dataclass field's (``T | None`` where it may be unset)."""
        return self.type | None if self.optional else self.type

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def said_default(self) -> str:
        """Its default and limit in words (``default 32, at most 512``; empty: none)."""
        if self.default is None or self.default is False:
            return ""
        high = f", at most {self.high}" if self.high is not None else ""
        return f"default {self.default}{high}"

    def read_by(self, method: str, faithfulness: bool) -> bool:
        """Whether a request of ``method`` (empty: the default) reads this field."""
        method = method or INPUT_X_GRADIENT
        return (
            not self.read_with
            or method in self.read_with
            or (faithfulness and FAITHFULNESS in self.read_with)
        )


_IG, _SHAP = (INTEGRATED_GRADIENTS,), (GRADIENT_SHAP,)
FIELDS = (
    Field("method", str, "", INPUT_X_GRADIENT, "how the token scores are computed", METHODS),
    Field("steps", int, 0, DEFAULT_STEPS, "integrated_gradients: points on the path",
          low=1, high=MAX_POINTS, read_with=_IG),
    Field("integration", str, "", GAUSS_LEGENDRE, "integrated_gradients: the integration rule",
          INTEGRATIONS, read_with=_IG),
    Field("completeness_tolerance", float, None, 0.0, "integrated_gradients: choose the steps "
          "per text, refining (Fejer's second rule, 8 steps doubled up to steps, default 64 then) "
          "until every label's completeness gap is within this fraction of |f(x) - f(b)| "
          "(unset or 0: fixed steps)", low=0, read_with=_IG),
    Field("baseline", str, "", PAD, "integrated_gradients and gradient_shap: the pad token's "
          "embedding (special tokens keep theirs) or zero vectors", BASELINES,
          read_with=PATH_METHODS),
    Field("samples", int, 0, DEFAULT_SAMPLES, "gradient_shap: random points per text and label",
          low=1, high=MAX_POINTS, read_with=_SHAP),
    Field("stdev", float, None, DEFAULT_STDEV, "gradient_shap: standard deviation of the noise "
          "on the embeddings", low=0, read_with=_SHAP),
    Field("seed", int, None, None, "gradient_shap and faithfulness' random ranking: the random "
          "seed (unset: the server draws one and reports it)", low=0, high=MAX_SEED,
          read_with=(*_SHAP, FAITHFULNESS)),
    Field(FAITHFULNESS, bool, False, False, "also ERASER comprehensiveness and sufficiency "
          "(AOPC) of the token scores per label, and the same for a random ranking of the words "
          "(the floor)"),
    Field("removal", str, "", DELETE, "faithfulness: remove a word by deleting its tokens or "
          "by masking them", REMOVALS, read_with=(FAITHFULNESS,)),
)  # fmt: skip
FIELD_NAMES = tuple(field.name for field in FIELDS)
FIELDS_BY_NAME = {field.name: field for field in FIELDS}


class _Resolved:
    """What a resolved request's settings tell besides their values."""

    method: str
    faithfulness: bool

    @property
    def on_path(self) -> bool:
        """Whether the path graph computes it."""
        return METHODS_BY_NAME[self.method].path_graph

    @property
    def points(self) -> int:
        """Path graph points per text and label, at the most."""
        field = METHODS_BY_NAME[self.method].points
        return getattr(self, field) if field else 0

    @property
    def tolerance(self) -> float:
        """The completeness tolerance the steps are chosen by (0: fixed steps)."""
        if self.method != INTEGRATED_GRADIENTS:
            return 0.0
        return self.completeness_tolerance

    @property
    def random(self) -> bool:
        """Whether the answers depend on a seed."""
        return FIELDS_BY_NAME["seed"].read_by(self.method, self.faithfulness)


def with_fields(name: str, module: str, base: type, *, resolved: bool = False) -> type:
    """A frozen dataclass ``name`` (of ``module``): ``base``'s fields, then one per field of
    ``FIELDS``, as the request has it (unset by default), or with ``resolved`` its default
    filled in (no default: every value is given). The classes that carry a request's method
    fields are made so, so that a new field is one entry of ``FIELDS``."""
    fields = [
        (f.name, f.annotation)
        if resolved
        else (f.name, f.annotation, dataclasses.field(default=f.unset))
        for f in FIELDS
    ]
    made = dataclasses.make_dataclass(name, fields, bases=(base,), frozen=True)
    made.__module__, made.__qualname__ = module, name  # pickled by reference (Ray)
    return made


MethodSettings = with_fields("MethodSettings", __name__, _Resolved, resolved=True)
"""A request's method and faithfulness fields, checked, defaults filled in (``seed`` stays
None when unset: the server draws one); ``on_path``, ``points`` and ``random`` besides."""


def check_names(names: Iterable[str]) -> None:
    """TypeError for a name that is no method field (a misspelt keyword)."""
    unknown = sorted(set(names) - set(FIELD_NAMES))
    if unknown:
        raise TypeError(
            f"unknown method setting {', '.join(unknown)}; the settings are "
            f"{', '.join(FIELD_NAMES)}"
        )


def resolve(
    values: Mapping[str, Any], *, token_attributions: bool = True, has_path_graph: bool = True
) -> MethodSettings:
    """Check a request's method and faithfulness fields (``values``, by name; a missing one is
    unset) and fill in the defaults; RequestError names the field. Fields of another method are
    checked too, and otherwise ignored. ``has_path_graph``: whether the artifact can compute the
    path methods; ``token_attributions``: whether the request asks for token scores."""
    check_names(values)
    got = {field.name: _filled(field, values.get(field.name)) for field in FIELDS}
    for name in ("method", "integration", "baseline"):
        _one_of(FIELDS_BY_NAME[name], got[name])
    tolerance = float(got["completeness_tolerance"])
    got["completeness_tolerance"] = tolerance
    _in_range(FIELDS_BY_NAME["completeness_tolerance"], tolerance)
    if tolerance and got["method"] == INTEGRATED_GRADIENTS:
        _tolerance_steps(got, values)
    riemann = got["integration"] in RIEMANN
    note = f" ({got['integration']} needs 2 or more)" if riemann else ""
    _in_range(FIELDS_BY_NAME["steps"], got["steps"], 2 if riemann else 1, note)
    if got["integration"] == FEJER and got["steps"] % 2:
        raise RequestError(
            "steps", f"is {got['steps']}; {FEJER} takes an even number of steps (2 to {MAX_POINTS})"
        )
    _in_range(FIELDS_BY_NAME["samples"], got["samples"])
    got["stdev"] = float(got["stdev"])
    _in_range(FIELDS_BY_NAME["stdev"], got["stdev"])
    settings = MethodSettings(**got)
    if settings.on_path and not has_path_graph:
        raise RequestError(
            "method",
            f"{settings.method} needs the path graph, which this model's artifact was exported "
            "without (--no-path-graph): export it again without that flag, or use "
            "input_x_gradient",
        )
    if settings.faithfulness and not token_attributions:
        raise RequestError("faithfulness", "measures the token scores: ask token_attributions too")
    _one_of(FIELDS_BY_NAME["removal"], settings.removal)
    if settings.seed is not None:
        _in_range(FIELDS_BY_NAME["seed"], settings.seed)
    return settings


def _tolerance_steps(got: dict[str, Any], values: Mapping[str, Any]) -> None:
    """With a completeness tolerance the steps are chosen per text by the nested
    Fejer levels (``TOLERANCE_STEPS``); ``steps`` is the most (unset: 64)."""
    if got["completeness_tolerance"] >= 1:
        raise RequestError(
            "completeness_tolerance",
            f"is {got['completeness_tolerance']}; use a fraction of |f(x) - f(b)| below 1 "
            "(for example 0.01), or 0 for fixed steps",
        )
    if values.get("integration") not in (None, "", FEJER):
        raise RequestError(
            "integration",
            f"is {shown(values['integration'])}, but completeness_tolerance refines with the "
            f"nested {FEJER} rule: leave integration empty, or drop the tolerance",
        )
    got["integration"] = FEJER
    if values.get("steps") in (None, 0):
        got["steps"] = DEFAULT_MAX_TOLERANCE_STEPS
    elif got["steps"] not in TOLERANCE_STEPS:
        raise RequestError(
            "steps",
            f"is {got['steps']}; with completeness_tolerance it is the most steps a text may "
            f"get, one of {', '.join(map(str, TOLERANCE_STEPS))} (0: "
            f"{DEFAULT_MAX_TOLERANCE_STEPS})",
        )


def _filled(field: Field, value: Any) -> Any:
    return field.default if value is None or value == field.unset else value


def _one_of(field: Field, value: str) -> None:
    if value not in field.choices:
        raise RequestError(
            field.name,
            f"unknown value {shown(value)}; use one of {', '.join(field.choices)} "
            f"(empty: {field.default})",
        )


def _in_range(field: Field, value: float, least: int | None = None, note: str = "") -> None:
    low = field.low if least is None else least
    if field.type is float:
        if not (math.isfinite(value) and value >= low):
            raise RequestError(
                field.name, f"is {value}; use a finite value >= {low} (unset: {field.default})"
            )
        return
    if not low <= value <= field.high:
        high = "2**64 - 1" if field.high == MAX_SEED else field.high
        unset = f"{field.unset} (the default, {field.default}) or " if not field.optional else ""
        raise RequestError(field.name, f"is {value}; use {unset}{low} to {high}{note}")


def as_json() -> dict[str, Any]:
    """The methods and fields as JSON values (for the visualizer: names, defaults, limits)."""
    return {
        "methods": [
            {"name": m.name, "help": m.help, "path_graph": m.path_graph, "points": m.points}
            for m in METHOD_LIST
        ],
        "fields": [
            {
                "name": f.name,
                "type": f.type.__name__,
                "unset": f.unset,
                "default": f.default,
                "help": f.help,
                "choices": list(f.choices),
                "low": f.low,
                "high": f.high,
                "read_with": list(f.read_with),
            }
            for f in FIELDS
        ],
    }
