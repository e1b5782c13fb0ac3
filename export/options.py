"""Export settings, validated when built (torch-free, so the CLI can read the defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from gradlight.artifact.precisions import REDUCED as REDUCED_PRECISIONS
from gradlight.export.errors import ExportError

DEFAULT_OPSET = 18
DEFAULT_MAX_LOOP_LABELS = 10
"""Export the all-labels graph (one forward, one backward per label) up to this many labels.
Its export time grows with L (MiniLM-L6, 2 cores: 44 s at L=2, 151 s at L=10) while the
cotangent graph's stays flat (28-32 s at L=2..150); above the threshold the runtime attributes
all labels through the cotangent graph, one row per (text, label). docs/export-scaling.md."""


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    max_loop_labels: int = DEFAULT_MAX_LOOP_LABELS
    optimize_forward: bool = True
    overwrite: bool = False
    threads: int | None = None
    # Also write the graphs in these precisions, validated against fp32 (precisions.py); the
    # names are those `gradlight serve --precision` takes, fp32 aside.
    precisions: tuple[str, ...] = ()
    # The path graph serves integrated gradients and GradientSHAP (docs/explanations.md).
    path_graph: bool = True
    # The labels graph serves several labels of a text from one forward pass (a label subset,
    # or every label where there is no all-labels graph) instead of one cotangent row per label
    # (docs/export-internals.md). None: built where the all-labels graph is not (more labels
    # than max_loop_labels); True or False: always or never.
    labels_graph: bool | None = None

    def builds_labels_graph(self, num_labels: int) -> bool:
        if self.labels_graph is None:
            return num_labels > self.max_loop_labels
        return self.labels_graph

    def __post_init__(self) -> None:
        if self.opset < 18:
            raise ExportError(f"opset {self.opset} is too old: the exporter needs 18 or newer")
        if self.max_loop_labels < 0:
            raise ExportError("max_loop_labels must be 0 or more (0: cotangent graph only)")
        if self.threads is not None and self.threads < 1:
            raise ExportError(f"threads must be 1 or more, got {self.threads}")
        unknown = [name for name in self.precisions if name not in REDUCED_PRECISIONS]
        if unknown or len(set(self.precisions)) != len(self.precisions):
            raise ExportError(
                f"precisions must be distinct names among {', '.join(REDUCED_PRECISIONS)}, got "
                f"{list(self.precisions)}"
            )
