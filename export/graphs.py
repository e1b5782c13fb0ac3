"""The graphs of an artifact, one entry each: read by tracing, validation, precision conversion
and the manifest alike, so that adding a graph means adding an entry here.

An entry names the graph's key in the manifest, its file, the inputs it takes beyond the
model's (with how to make example values for them), its outputs, the eager PyTorch function it
must equal (export/attribution.py), how it is traced, and when it is built.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gradlight.artifact.manifest import (
    ATTRIBUTION,
    ATTRIBUTION_COTANGENT,
    ATTRIBUTION_LABELS,
    ATTRIBUTION_PATH,
    ATTRIBUTION_PATH_LABELS,
    FORWARD,
    GraphInfo,
)
from gradlight.artifact.model_spec import ModelSpec
from gradlight.export import attribution
from gradlight.export.options import ExportOptions

if TYPE_CHECKING:
    from gradlight.export.attribution import ModelFn
    from gradlight.export.model_loading import LoadedClassifier

BATCH_AXIS = {0: "batch"}
MODEL_INPUT_AXES = {0: "batch", 1: "sequence"}
COTANGENTS_AXES = {0: "batch", 1: "cotangents"}

COTANGENT_COUNTS = (3, 4, 1)
"""K of the labels graph's example cotangents by seed: traced with 3 per text, validated with 4
and 1 (seeds 1 and 2), so that neither K nor its edge case is baked in."""


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


def make_cotangents(num_rows: int, num_labels: int, seed: int) -> np.ndarray:
    """``[rows, K, L]``, K from ``COTANGENT_COUNTS``: each text's K vectors cycle like
    ``make_cotangent``'s rows (a label, a contrast, a random mix), on different labels."""
    count = COTANGENT_COUNTS[seed % len(COTANGENT_COUNTS)]
    rows = make_cotangent(num_rows * count, num_labels, seed)
    return rows.reshape(num_rows, count, num_labels)


@dataclass(frozen=True)
class ExampleShape:
    """What example extra inputs are made for: rows, padded length, and the width of the
    explained vectors (the path graph's noise)."""

    rows: int
    sequence: int
    loaded: LoadedClassifier

    @property
    def hidden(self) -> int:
        return int(
            attribution.explained_vector(self.loaded, self.loaded.spec.pad_token_id).shape[0]
        )


@dataclass(frozen=True)
class ExtraInput:
    """An input beyond the model's, one row per text: its name, dynamic axes, and example
    values ``(shape, seed) -> array`` for tracing and validation."""

    name: str
    axes: Mapping[int, str]
    example: Callable[[ExampleShape, int], np.ndarray]


COTANGENT = ExtraInput(
    "cotangent",
    BATCH_AXIS,
    lambda shape, seed: make_cotangent(shape.rows, shape.loaded.spec.num_labels, seed),
)


COTANGENTS = ExtraInput(
    "cotangent",
    COTANGENTS_AXES,
    lambda shape, seed: make_cotangents(shape.rows, shape.loaded.spec.num_labels, seed),
)
"""The labels graph's: K cotangent vectors per text, ``[B, K, L]``."""


def _uniform(shape: ExampleShape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape.rows).astype(np.float32)


def _keep(shape: ExampleShape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    return (rng.uniform(size=(shape.rows, shape.sequence)) < 0.3).astype(np.float32)


def _fill(shape: ExampleShape, seed: int) -> np.ndarray:
    return (np.arange(shape.rows) % 2 == 0).astype(np.float32)  # pad baseline, zero baseline


def _noise(shape: ExampleShape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 2)
    noise = rng.normal(0.0, 0.05, size=(shape.rows, shape.sequence, shape.hidden))
    noise[::3] = 0.0  # integrated gradients' rows have none
    return noise.astype(np.float32)


PATH_INPUTS = (
    COTANGENT,
    ExtraInput("alpha", BATCH_AXIS, _uniform),
    ExtraInput("keep", MODEL_INPUT_AXES, _keep),
    ExtraInput("fill", BATCH_AXIS, _fill),
    ExtraInput("noise", MODEL_INPUT_AXES, _noise),
)
"""The path graph's inputs beyond the model's (attribution.path_fn); ``keep`` and ``noise``
are per token (axis 1 the sequence), the runtime pads them with the batch."""

PATH_LABELS_INPUTS = (*PATH_INPUTS[1:], COTANGENTS)
"""The path labels graph's: the point's inputs, then K cotangents per row (last: the axis its
backward is vmapped over, export/batched_backward.py)."""


def _path_at_input(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``alpha`` 1, the zero baseline, no noise: the path graph's point is the input and its
    scores are input x gradient."""
    return {
        "alpha": np.ones_like(feed["alpha"]),
        "keep": np.zeros_like(feed["keep"]),
        "fill": np.zeros_like(feed["fill"]),
        "noise": np.zeros_like(feed["noise"]),
    }


@dataclass(frozen=True)
class GraphSpec:
    """One graph. ``backward``: traced with ``make_fx`` (forward and backward ops), else
    exported as a plain forward module. ``fuse``: offered to ONNX Runtime's transformer
    optimizer (kept only when the fused graph validates and is not slower). ``built``: whether
    the graph is made for this model and these options (``skipped`` says why when it is not).
    ``describe``: the progress line. ``batched_from``: traced not from ``eager`` but from this
    per-row function with its backward vmapped over the cotangents' K axis (one forward, a
    batched backward: export/batched_backward.py). ``optional``: a model it cannot be traced
    for gets an artifact without it (the runtime serves what it does another way) instead of a
    failed export."""

    key: str
    file: str
    outputs: tuple[str, ...]
    eager: Callable[[LoadedClassifier], ModelFn]
    describe: Callable[[ModelSpec], str]
    extra_inputs: tuple[ExtraInput, ...] = ()
    backward: bool = True
    fuse: bool = False
    built: Callable[[ModelSpec, ExportOptions], bool] = lambda spec, options: True
    skipped: Callable[[ModelSpec, ExportOptions], str] | None = None  # said when not built
    # A graph that runs the model at a point moved from the input (the path graph): the extra
    # inputs that put the point at the input itself, given a feed. Validation then checks its
    # logits against its eager function, and at the input against the plain forward.
    at_input: Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]] | None = None
    batched_from: Callable[[LoadedClassifier], ModelFn] | None = None
    optional: bool = False

    def inputs(self, spec: ModelSpec) -> tuple[str, ...]:
        return (*spec.model_inputs, *(extra.name for extra in self.extra_inputs))

    def info(self, spec: ModelSpec, file: str | None = None) -> GraphInfo:
        return GraphInfo(file or self.file, self.inputs(spec), self.outputs)

    def dynamic_axes(self, spec: ModelSpec) -> dict[str, Mapping[int, str]]:
        axes: dict[str, Mapping[int, str]] = dict.fromkeys(spec.model_inputs, MODEL_INPUT_AXES)
        axes.update({extra.name: extra.axes for extra in self.extra_inputs})
        return axes

    def extra_feed(
        self, batch: Mapping[str, np.ndarray], loaded: LoadedClassifier, seed: int
    ) -> dict[str, np.ndarray]:
        """Example values of the extra inputs for ``batch`` (its model inputs)."""
        if not self.extra_inputs:
            return {}
        shape = ExampleShape(*batch["input_ids"].shape, loaded)
        return {extra.name: extra.example(shape, seed) for extra in self.extra_inputs}


GRAPHS: tuple[GraphSpec, ...] = (
    GraphSpec(
        key=FORWARD,
        file="forward.onnx",
        outputs=("logits",),
        eager=attribution.forward_fn,
        describe=lambda spec: "exporting the forward graph",
        backward=False,
        fuse=True,
    ),
    GraphSpec(
        key=ATTRIBUTION_COTANGENT,
        file="attribution_cotangent.onnx",
        outputs=("logits", "scores"),
        eager=attribution.cotangent_fn,
        describe=lambda spec: f"tracing the cotangent attribution graph ({spec.num_labels} labels)",
        extra_inputs=(COTANGENT,),
    ),
    GraphSpec(
        key=ATTRIBUTION,
        file="attribution.onnx",
        outputs=("logits", "scores"),
        eager=attribution.all_labels_fn,
        describe=lambda spec: (
            f"tracing the all-labels attribution graph ({spec.num_labels} backward passes)"
        ),
        built=lambda spec, options: spec.num_labels <= options.max_loop_labels,
        skipped=lambda spec, options: (
            f"skipping the all-labels graph: {spec.num_labels} labels > max_loop_labels "
            f"{options.max_loop_labels} ("
            + (
                "the labels graph serves them, one forward per text"
                if options.builds_labels_graph(spec.num_labels)
                else "the cotangent graph serves them, one row per label"
            )
            + ")"
        ),
    ),
    GraphSpec(
        key=ATTRIBUTION_LABELS,
        file="attribution_labels.onnx",
        outputs=("logits", "scores"),
        eager=attribution.labels_fn,
        describe=lambda spec: (
            "tracing the labels graph (one forward, a batched backward for K labels per text)"
        ),
        extra_inputs=(COTANGENTS,),
        batched_from=attribution.cotangent_fn,
        # a backward operator vmap cannot batch with symbolic shapes (beyond those mended in
        # export/batched_backward.py) leaves it out, and label subsets run cotangent rows
        optional=True,
        built=lambda spec, options: options.builds_labels_graph(spec.num_labels),
        skipped=lambda spec, options: (
            "skipping the labels graph"
            + (
                " (labels_graph=False)"
                if options.labels_graph is False
                else f": {spec.num_labels} labels <= max_loop_labels {options.max_loop_labels}, "
                "so the all-labels graph serves a request for every label"
            )
            + "; a label subset runs one cotangent row per label"
        ),
    ),
    GraphSpec(
        key=ATTRIBUTION_PATH,
        file="attribution_path.onnx",
        outputs=("logits", "scores"),
        eager=attribution.path_fn,
        describe=lambda spec: (
            "tracing the path graph (integrated gradients and GradientSHAP, one point per row)"
        ),
        extra_inputs=PATH_INPUTS,
        at_input=_path_at_input,
        built=lambda spec, options: options.path_graph,
        skipped=lambda spec, options: (
            "skipping the path graph (--no-path-graph): the artifact serves input x gradient only"
        ),
    ),
    GraphSpec(
        key=ATTRIBUTION_PATH_LABELS,
        file="attribution_path_labels.onnx",
        outputs=("logits", "scores"),
        eager=attribution.path_labels_fn,
        describe=lambda spec: (
            "tracing the path labels graph (one forward per point, a batched backward for K labels)"
        ),
        extra_inputs=PATH_LABELS_INPUTS,
        at_input=_path_at_input,
        batched_from=attribution.path_row_fn,
        # as the labels graph: where vmap cannot batch a backward operator symbolically, the
        # path graph runs one row per label
        optional=True,
        built=lambda spec, options: options.path_graph and spec.num_labels > 1,
        skipped=lambda spec, options: (
            "skipping the path labels graph ("
            + ("--no-path-graph" if not options.path_graph else "one label")
            + "): a path point runs one path graph row per label"
        ),
    ),
)
"""Every graph an artifact can hold, in the order they are built."""

BY_KEY = {graph.key: graph for graph in GRAPHS}


def planned(spec: ModelSpec, options: ExportOptions) -> list[GraphSpec]:
    """The graphs built for this model with these options."""
    return [graph for graph in GRAPHS if graph.built(spec, options)]
