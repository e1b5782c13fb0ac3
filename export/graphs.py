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

from gradlight.export import attribution
from gradlight.export.options import ExportOptions
from gradlight.runtime.manifest import ATTRIBUTION, ATTRIBUTION_COTANGENT, FORWARD, GraphInfo
from gradlight.runtime.model_spec import ModelSpec

if TYPE_CHECKING:
    from gradlight.export.attribution import ModelFn
    from gradlight.export.model_loading import LoadedClassifier

BATCH_AXIS = {0: "batch"}
MODEL_INPUT_AXES = {0: "batch", 1: "sequence"}


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


@dataclass(frozen=True)
class ExtraInput:
    """An input beyond the model's, one row per text: its name, dynamic axes, and example
    values ``(rows, spec, seed) -> array`` for tracing and validation."""

    name: str
    axes: Mapping[int, str]
    example: Callable[[int, ModelSpec, int], np.ndarray]


COTANGENT = ExtraInput(
    "cotangent", BATCH_AXIS, lambda rows, spec, seed: make_cotangent(rows, spec.num_labels, seed)
)


@dataclass(frozen=True)
class GraphSpec:
    """One graph. ``backward``: traced with ``make_fx`` (forward and backward ops), else
    exported as a plain forward module. ``fuse``: offered to ONNX Runtime's transformer
    optimizer (kept only when the fused graph validates and is not slower). ``built``: whether
    the graph is made for this model and these options (``skipped`` says why when it is not).
    ``describe``: the progress line."""

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

    def inputs(self, spec: ModelSpec) -> tuple[str, ...]:
        return (*spec.model_inputs, *(extra.name for extra in self.extra_inputs))

    def info(self, spec: ModelSpec, file: str | None = None) -> GraphInfo:
        return GraphInfo(file or self.file, self.inputs(spec), self.outputs)

    def dynamic_axes(self, spec: ModelSpec) -> dict[str, Mapping[int, str]]:
        axes: dict[str, Mapping[int, str]] = dict.fromkeys(spec.model_inputs, MODEL_INPUT_AXES)
        axes.update({extra.name: extra.axes for extra in self.extra_inputs})
        return axes

    def extra_feed(self, rows: int, spec: ModelSpec, seed: int) -> dict[str, np.ndarray]:
        return {extra.name: extra.example(rows, spec, seed) for extra in self.extra_inputs}


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
            f"{options.max_loop_labels} (the cotangent graph serves them, one row per label)"
        ),
    ),
)
"""Every graph an artifact can hold, in the order they are built."""

BY_KEY = {graph.key: graph for graph in GRAPHS}


def planned(spec: ModelSpec, options: ExportOptions) -> list[GraphSpec]:
    """The graphs built for this model with these options."""
    return [graph for graph in GRAPHS if graph.built(spec, options)]
