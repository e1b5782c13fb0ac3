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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from gradlight.artifact.manifest import (
    FORMAT_VERSION,
    TOKENIZER_DIR,
    GraphInfo,
    Manifest,
    hash_artifact_files,
    write_manifest,
)
from gradlight.artifact.model_spec import ModelSpec
from gradlight.artifact.names import check_model_name
from gradlight.artifact.tasks import TaskList, write_tasks
from gradlight.export import cnlpt, first_token_layer
from gradlight.export.batched_backward import vmap_cotangents
from gradlight.export.batches import model_tensors, tracing_inputs, validation_batches
from gradlight.export.errors import ExportError, ValidationFailedError
from gradlight.export.forward_optimization import fuse_forward
from gradlight.export.graphs import GRAPHS, GraphSpec, planned
from gradlight.export.model_loading import LoadedClassifier, load_classifier, read_spec
from gradlight.export.options import ExportOptions
from gradlight.export.precisions import COPIES, PrecisionSpec
from gradlight.export.progress import Printer, Progress
from gradlight.export.shared_weights import share_weights
from gradlight.export.staging import build_into
from gradlight.export.tracing import (
    ForwardModule,
    GraphTarget,
    export_module_to_onnx,
    trace_to_onnx,
    untraceable,
)
from gradlight.export.validation import check_scores_are_defined, validate_graphs

_TOOLS = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers", "gradlight")

Graphs = dict[str, GraphInfo]


@dataclass(frozen=True)
class _Source:
    """Where a classifier comes from: ``read_spec`` checks it cheaply, ``load`` loads it;
    ``details`` go into the manifest's export record."""

    path: Path
    read_spec: Callable[[], ModelSpec]
    load: Callable[[], LoadedClassifier]
    details: Mapping[str, Any]


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
    source = _Source(
        model_dir, partial(read_spec, model_dir), partial(load_classifier, model_dir), {}
    )
    return build_into(
        out_dir,
        options.overwrite,
        lambda staging: _export_into(source, staging, options, printer),
    )


def export_cnlpt(
    model_dir: Path | str,
    out_dir: Path | str,
    options: ExportOptions | None = None,
    printer: Printer | None = None,
) -> dict[str, Manifest]:
    """Export every classification task of a cnlp_transformers checkpoint (export/cnlpt.py),
    each as its own validated artifact in ``out_dir/TASK``, listed in ``out_dir/tasks.json``;
    return their manifests by task. All or nothing, like ``export_model``."""
    options = options or ExportOptions()
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if options.threads:
        torch.set_num_threads(options.threads)
    checkpoint = cnlpt.read_checkpoint(model_dir)
    refused = checkpoint.refused()
    if not checkpoint.classification_tasks:
        raise ExportError(
            f"{model_dir}: no classification task to explain: "
            + "; ".join(f"{name}: {why}" for name, why in refused.items())
        )
    for name in (task.name for task in checkpoint.classification_tasks):
        try:
            check_model_name(name)
        except ValueError as exc:
            raise ExportError(f"{model_dir}: task {name!r} cannot name a model: {exc}") from None
    say = printer or (lambda line: None)
    for name, why in refused.items():
        say(f"not exporting task {name}: {why}")

    def build(staging: Path) -> dict[str, Manifest]:
        manifests = {}
        for task in checkpoint.classification_tasks:
            say(f"task {task.name} ({len(task.labels)} labels)")
            (staging / task.name).mkdir()
            source = _Source(
                model_dir,
                partial(cnlpt.read_task_spec, model_dir, task.name),
                partial(cnlpt.load_task, model_dir, task.name),
                {"cnlpt_task": task.name},
            )
            manifests[task.name] = _export_into(source, staging / task.name, options, printer)
        write_tasks(staging, TaskList({task: task for task in manifests}, refused))
        return manifests

    return build_into(out_dir, options.overwrite, build)


def _build_graphs(
    graphs: Sequence[GraphSpec],
    spec: ModelSpec,
    loaded: LoadedClassifier,
    staging: Path,
    options: ExportOptions,
    progress: Progress,
    first_token: bool,
) -> tuple[Graphs, dict[str, str]]:
    """The planned ``graphs`` traced into ``staging``, in the table's order, each said where it
    is built or left out; an optional graph that cannot be built is left out (with why)."""
    built: Graphs = {}
    left_out: dict[str, str] = {}
    for graph in GRAPHS:
        if graph not in graphs:
            if graph.skipped is not None:
                progress.say(graph.skipped(spec, options))
            continue
        try:
            with first_token_layer.first_token_last_layer(loaded, first_token):
                built[graph.key] = _build_graph(graph, loaded, staging, options, progress)
        except ExportError as error:
            if not graph.optional:
                raise
            (staging / graph.file).unlink(missing_ok=True)
            left_out[graph.key] = str(error)
            progress.say(f"leaving out the {graph.key} graph (served without it): {error}")
    return built, left_out


def _export_into(
    source: _Source, staging: Path, options: ExportOptions, printer: Printer | None
) -> Manifest:
    spec = source.read_spec()
    graphs = planned(spec, options)
    steps = 6 + len(graphs) + sum(graph.fuse for graph in graphs) + len(options.precisions)
    progress = Progress(total_steps=steps, printer=printer)
    with progress.step(f"loading {source.path}", key="load"):
        loaded = source.load()
    with progress.step("checking that input x gradient is defined for this model", key="check"):
        check_scores_are_defined(loaded)
    with progress.step("checking the last layer for the first token only", key="first_token"):
        batches = [model_tensors(loaded, batch) for _, batch in validation_batches(loaded)]
        whole_last_layer = first_token_layer.check(loaded, batches)
    if whole_last_layer is not None:
        progress.say(f"tracing the last layer for every token: {whole_last_layer}")
    built, left_out = _build_graphs(
        graphs, spec, loaded, staging, options, progress, whole_last_layer is None
    )
    with progress.step("storing the weights once for all graphs", key="share_weights"):
        weights = share_weights(staging, [info.file for info in built.values()])
    validation = _validate(staging, built, loaded, progress)
    precisions = {
        name: _reduced_precision(COPIES[name], staging, built, loaded, progress, validation)
        for name in options.precisions
    }
    with progress.step("saving the tokenizer and the manifest", key="manifest"):
        loaded.tokenizer.save_pretrained(staging / TOKENIZER_DIR)
        export = {
            "source": str(source.path.resolve()),
            **source.details,
            "explains": loaded.architecture.explained(loaded.model.config),
            "last_layer": "first token" if whole_last_layer is None else "every token",
            "max_loop_labels": options.max_loop_labels,
            **({"left_out": left_out} if left_out else {}),
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
            precisions={
                name: _with_sizes(staging, graphs) for name, graphs in precisions.items() if graphs
            },
            pre_tokenization=loaded.pre_tokenization,
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
    inputs = tracing_inputs(loaded)
    extra = graph.extra_feed({"input_ids": inputs[0].numpy()}, loaded, seed=0)
    example = (*inputs, *(torch.from_numpy(value) for value in extra.values()))
    details: dict[str, Any] = {}
    with progress.step(graph.describe(spec), key=graph.key), untraceable(spec, graph.key):
        if graph.backward:
            if graph.batched_from is None:
                fn = graph.eager(loaded)
            else:
                fn = vmap_cotangents(graph.batched_from(loaded), example)
            timings = trace_to_onnx(fn, example, target)
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
    """The graphs in ``precision``, checked against fp32 (the report goes in ``validation``):
    all of them, or for a lenient precision those that passed."""
    with progress.step(precision.describe, key=precision.name):
        converted = precision.convert(staging, built)
        report = precision.validate(staging, built, converted, loaded)
        progress.say(report.format())
    if not report.passed:
        raise precision.error(report)
    validation[precision.name] = report.to_dict()
    return converted if precision.select is None else precision.select(report, converted)


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
