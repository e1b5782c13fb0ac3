"""``export_model``: a local Hugging Face classifier becomes a validated gradlight artifact.

The export is a sequence of steps over the table of graphs (export/graphs.py) and the table of
precisions (export/precisions.py): load the model, build each planned graph, store the weights
once, validate every graph against eager PyTorch, make and check the reduced-precision copies,
write the tokenizer and the manifest. Everything is written into a temporary sibling of
``OUT_DIR`` and renamed into place only after validation passed, so a failed export never
leaves a half-written artifact behind.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from gradlight.export.batches import TRACING_SHAPE, tracing_inputs
from gradlight.export.errors import ValidationFailedError
from gradlight.export.forward_optimization import fuse_forward
from gradlight.export.graphs import GRAPHS, GraphSpec, planned
from gradlight.export.model_loading import LoadedClassifier, load_classifier, read_spec
from gradlight.export.options import ExportOptions
from gradlight.export.precisions import PRECISIONS, PrecisionSpec
from gradlight.export.progress import Printer, Progress
from gradlight.export.shared_weights import share_weights
from gradlight.export.staging import build_into
from gradlight.export.tracing import (
    ForwardModule,
    GraphTarget,
    export_module_to_onnx,
    trace_to_onnx,
)
from gradlight.export.validation import validate_graphs
from gradlight.runtime.manifest import (
    FORMAT_VERSION,
    TOKENIZER_DIR,
    GraphInfo,
    Manifest,
    hash_artifact_files,
    write_manifest,
)

_TOOLS = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers", "gradlight")

Graphs = dict[str, GraphInfo]


def export_model(
    model_dir: Path | str,
    out_dir: Path | str,
    options: ExportOptions | None = None,
    printer: Printer | None = None,
) -> Manifest:
    """Export, validate and publish; return the manifest that was written.

    Raises ``ExportError`` for unusable inputs and ``ValidationFailedError`` when a graph
    disagrees with eager PyTorch; in both cases nothing is left at ``out_dir``.
    """
    options = options or ExportOptions()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if options.threads:
        torch.set_num_threads(options.threads)
    return build_into(
        out_dir,
        options.overwrite,
        lambda staging: _export_into(model_dir, staging, options, printer),
    )


def _export_into(
    model_dir: Path, staging: Path, options: ExportOptions, printer: Printer | None
) -> Manifest:
    spec = read_spec(model_dir)
    graphs = planned(spec, options)
    steps = 4 + len(graphs) + sum(graph.fuse for graph in graphs) + len(options.precisions)
    progress = Progress(total_steps=steps, printer=printer)
    with progress.step(f"loading {model_dir}", key="load"):
        loaded = load_classifier(model_dir)
    for graph in GRAPHS:
        if graph not in graphs and graph.skipped is not None:
            progress.say(graph.skipped(spec, options))
    built = {graph.key: _build_graph(graph, loaded, staging, options, progress) for graph in graphs}
    with progress.step("storing the weights once for all graphs", key="share_weights"):
        weights = share_weights(staging, [info.file for info in built.values()])
    validation = _validate(staging, built, loaded, progress)
    precisions = {
        name: _reduced_precision(PRECISIONS[name], staging, built, loaded, progress, validation)
        for name in options.precisions
    }
    with progress.step("saving the tokenizer and the manifest", key="manifest"):
        loaded.tokenizer.save_pretrained(staging / TOKENIZER_DIR)
        export = {
            "source": str(model_dir.resolve()),
            "max_loop_labels": options.max_loop_labels,
            "torch_threads": torch.get_num_threads(),
            **weights,
            "step_seconds": progress.durations,
        }
        manifest = Manifest(
            **vars(loaded.spec),
            format_version=FORMAT_VERSION,
            opset=options.opset,
            graphs=_with_sizes(staging, built),
            tokenizer_dir=TOKENIZER_DIR,
            tools=_tool_versions(),
            files=hash_artifact_files(staging),
            validation=validation,
            export=export,
            precisions={name: _with_sizes(staging, graphs) for name, graphs in precisions.items()},
        )
        write_manifest(staging, manifest)
    return manifest


def _build_graph(
    graph: GraphSpec,
    loaded: LoadedClassifier,
    staging: Path,
    options: ExportOptions,
    progress: Progress,
) -> GraphInfo:
    """Trace (or export) one graph into ``staging``; fuse it where its entry says so."""
    spec = loaded.spec
    target = GraphTarget(
        staging / graph.file,
        graph.inputs(spec),
        graph.outputs,
        graph.dynamic_axes(spec),
        spec.max_length,
        options.opset,
    )
    extra = graph.extra_feed(TRACING_SHAPE[0], spec, seed=0)
    example = (*tracing_inputs(loaded), *(torch.from_numpy(value) for value in extra.values()))
    details: dict[str, Any] = {}
    with progress.step(graph.describe(spec), key=graph.key):
        if graph.backward:
            timings = trace_to_onnx(graph.eager(loaded), example, target)
            details["trace_seconds"] = timings.rounded()
        else:
            export_module_to_onnx(ForwardModule(graph.eager(loaded), loaded.model), example, target)
    info = graph.info(spec)
    if graph.fuse:
        with progress.step(
            f"fusing the {graph.key} graph (onnxruntime transformer optimizer)",
            key=f"{graph.key}_fusion",
        ):
            threads = options.threads or torch.get_num_threads()
            enabled = options.optimize_forward
            details.update(fuse_forward(staging, info, loaded, enabled=enabled, threads=threads))
    return replace(info, details=details)


def _validate(
    staging: Path, built: Graphs, loaded: LoadedClassifier, progress: Progress
) -> dict[str, Any]:
    with progress.step("validating every graph against eager PyTorch", key="validation"):
        report = validate_graphs(staging, built, loaded)
        progress.say(report.format())
    if not report.passed:
        raise ValidationFailedError(report)
    return report.to_dict()


def _reduced_precision(
    precision: PrecisionSpec,
    staging: Path,
    built: Graphs,
    loaded: LoadedClassifier,
    progress: Progress,
    validation: dict[str, Any],
) -> Graphs:
    """The graphs in ``precision``, checked against fp32 (the report goes in ``validation``)."""
    with progress.step(precision.describe, key=precision.name):
        converted = precision.convert(staging, built)
        report = precision.validate(staging, built, converted, loaded)
        progress.say(report.format())
    if not report.passed:
        raise precision.error(report)
    validation[precision.name] = report.to_dict()
    return converted


def _with_sizes(staging: Path, graphs: Mapping[str, GraphInfo]) -> Graphs:
    return {
        key: replace(info, details={**info.details, "size_mb": _size_mb(staging / info.file)})
        for key, info in graphs.items()
    }


def _tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)
