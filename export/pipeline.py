"""``export_model``: a local Hugging Face classifier becomes a validated gradlight artifact.

Everything is written into a temporary sibling of ``OUT_DIR`` and renamed into place only
after validation passed, so a failed export never leaves a half-written artifact behind.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from gradlight.export import attribution
from gradlight.export.errors import ExportError, ValidationFailedError
from gradlight.export.forward_optimization import median_latency_ms, optimize_forward_graph
from gradlight.export.model_loading import LoadedClassifier, load_classifier, read_spec
from gradlight.export.progress import Printer, Progress
from gradlight.export.shared_weights import share_weights
from gradlight.export.tracing import export_module_to_onnx, trace_to_onnx
from gradlight.export.validation import (
    TRACING_SHAPE,
    ValidationReport,
    make_batch,
    make_cotangent,
    tracing_inputs,
    validate_graphs,
)
from gradlight.runtime.manifest import (
    ATTRIBUTION,
    ATTRIBUTION_COTANGENT,
    FORMAT_VERSION,
    FORWARD,
    TOKENIZER_DIR,
    GraphInfo,
    Manifest,
    hash_artifact_files,
    load_manifest,
    write_manifest,
)

DEFAULT_OPSET = 18
DEFAULT_MAX_LOOP_LABELS = 10
"""Export the all-labels graph (one backward per label, traced as a loop) up to this many
labels. Its export time grows faster than linearly with L (tiny BERT, 2 cores: 13 s at L=2,
51 s at L=10, 370 s at L=30) while the cotangent graph's stays flat (9 s at L=150); above
the threshold the runtime attributes all labels through the cotangent graph, one row per
(text, label)."""

_FORWARD_FILE = "forward.onnx"
_UNFUSED_FORWARD_FILE = "forward.unfused.onnx"
_ATTRIBUTION_FILE = "attribution.onnx"
_COTANGENT_FILE = "attribution_cotangent.onnx"
_AXES = {0: "batch", 1: "sequence"}
_TOOLS = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers", "gradlight")


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    max_loop_labels: int = DEFAULT_MAX_LOOP_LABELS
    optimize_forward: bool = True
    overwrite: bool = False
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.opset < 18:
            raise ExportError(f"opset {self.opset} is too old: the exporter needs 18 or newer")
        if self.max_loop_labels < 0:
            raise ExportError("max_loop_labels must be 0 or more (0: cotangent graph only)")


class _ForwardModule(torch.nn.Module):
    """The plain ``input_ids`` forward, with parameters named as the graph's inputs."""

    def __init__(self, loaded: LoadedClassifier) -> None:
        super().__init__()
        self.model = loaded.model
        self._forward = attribution.forward_fn(loaded.model, loaded.spec)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = () if token_type_ids is None else (token_type_ids,)
        return self._forward(input_ids, attention_mask, *extra)


def _tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def _staging_dir(out_dir: Path, overwrite: bool) -> Path:
    """Check ``out_dir`` can receive an artifact; return a fresh temporary sibling for it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"output {out_dir} exists and is not a directory; choose another OUT_DIR")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ExportError(
            f"output directory {out_dir} exists and is not empty; choose a new OUT_DIR or pass "
            "--overwrite to replace it"
        )
    parent = out_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    except OSError as exc:
        raise ExportError(
            f"cannot write the artifact under {parent}: {exc.strerror or exc}; choose a writable "
            "OUT_DIR"
        ) from exc


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished artifact into place; replace an old one only once the new one is whole."""
    backup = None
    if out_dir.exists():
        backup = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=staging.parent))
        os.replace(out_dir, backup / "artifact")
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp made it private
    os.replace(staging, out_dir)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 3)


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
    staging = _staging_dir(out_dir, options.overwrite)
    try:
        manifest = _export_into(model_dir, staging, options, printer)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _export_into(
    model_dir: Path, staging: Path, options: ExportOptions, printer: Printer | None
) -> Manifest:
    loop = read_spec(model_dir).num_labels <= options.max_loop_labels
    progress = Progress(total_steps=8 if loop else 7, printer=printer)
    with progress.step(f"loading {model_dir}", key="load"):
        loaded = load_classifier(model_dir)
    spec = loaded.spec
    names = spec.input_names
    example = tracing_inputs(loaded)
    axes = {name: _AXES for name in names}
    common: dict[str, Any] = {"max_length": spec.max_length, "opset": options.opset}
    graphs: dict[str, GraphInfo] = {}
    details: dict[str, dict[str, Any]] = {}

    with progress.step("exporting the forward graph", key="forward"):
        export_module_to_onnx(
            _ForwardModule(loaded),
            example,
            input_names=names,
            output_names=("logits",),
            dynamic_axes=axes,
            path=staging / _FORWARD_FILE,
            **common,
        )
    graphs[FORWARD] = GraphInfo(_FORWARD_FILE, names, ("logits",))

    with progress.step(
        "fusing the forward graph (onnxruntime transformer optimizer)", key="forward_fusion"
    ):
        details[FORWARD] = _fuse_forward(staging, graphs[FORWARD], loaded, options)

    cot_names = (*names, "cotangent")
    with progress.step(
        f"tracing the cotangent attribution graph ({spec.num_labels} labels)",
        key="attribution_cotangent",
    ):
        timings = trace_to_onnx(
            attribution.cotangent_fn(loaded.model, spec),
            (*example, torch.from_numpy(make_cotangent(len(example[0]), spec.num_labels, 0))),
            input_names=cot_names,
            output_names=("logits", "scores"),
            dynamic_axes={**axes, "cotangent": {0: "batch"}},
            path=staging / _COTANGENT_FILE,
            **common,
        )
    graphs[ATTRIBUTION_COTANGENT] = GraphInfo(_COTANGENT_FILE, cot_names, ("logits", "scores"))
    details[ATTRIBUTION_COTANGENT] = {"trace_seconds": timings.rounded()}

    if loop:
        with progress.step(
            f"tracing the all-labels attribution graph ({spec.num_labels} backward passes)",
            key="attribution",
        ):
            timings = trace_to_onnx(
                attribution.all_labels_fn(loaded.model, spec),
                example,
                input_names=names,
                output_names=("logits", "scores"),
                dynamic_axes=axes,
                path=staging / _ATTRIBUTION_FILE,
                **common,
            )
        graphs[ATTRIBUTION] = GraphInfo(_ATTRIBUTION_FILE, names, ("logits", "scores"))
        details[ATTRIBUTION] = {"trace_seconds": timings.rounded()}
    elif printer is not None:
        printer(
            f"skipping the all-labels graph: {spec.num_labels} labels > max_loop_labels "
            f"{options.max_loop_labels} (the cotangent graph serves them, one row per label)"
        )

    with progress.step("storing the weights once for all graphs", key="share_weights"):
        weights = share_weights(staging, [info.file for info in graphs.values()])

    with progress.step("validating every graph against eager PyTorch", key="validation"):
        report = validate_graphs(staging, graphs, loaded)
        if printer is not None:
            printer(report.format())
    if not report.passed:
        raise ValidationFailedError(report)

    with progress.step("saving the tokenizer and the manifest", key="manifest"):
        loaded.tokenizer.save_pretrained(staging / TOKENIZER_DIR)
        for key, info in graphs.items():
            details.setdefault(key, {})["size_mb"] = _size_mb(staging / info.file)
        graphs = {
            key: GraphInfo(info.file, info.inputs, info.outputs, details.get(key, {}))
            for key, info in graphs.items()
        }
        manifest = Manifest(
            format_version=FORMAT_VERSION,
            model_type=spec.model_type,
            architecture=spec.architecture,
            labels=spec.labels,
            problem_type=spec.problem_type,
            max_length=spec.max_length,
            pad_token_id=spec.pad_token_id,
            model_inputs=names,
            opset=options.opset,
            graphs=graphs,
            tokenizer_dir=TOKENIZER_DIR,
            tools=_tool_versions(),
            files=hash_artifact_files(staging),
            validation=report.to_dict(),
            export={
                "source": str(model_dir.resolve()),
                "max_loop_labels": options.max_loop_labels,
                "torch_threads": torch.get_num_threads(),
                **weights,
                "step_seconds": progress.durations,
            },
        )
        write_manifest(staging, manifest)
    return manifest


def _fuse_forward(
    staging: Path, info: GraphInfo, loaded: LoadedClassifier, options: ExportOptions
) -> dict[str, Any]:
    """Replace the forward graph by its fused version when that still validates."""
    if not options.optimize_forward:
        return {"fused": False, "reason": "disabled (--no-optimize)"}
    unfused = staging / _UNFUSED_FORWARD_FILE
    os.replace(staging / info.file, unfused)
    try:
        fusions = optimize_forward_graph(unfused, staging / info.file)
        report = validate_graphs(staging, {FORWARD: info}, loaded)
    except Exception as exc:  # the optimizer raises many types; fall back to the plain graph
        report, fusions, failure = None, {}, f"optimizer failed: {exc!r}"
    else:
        failure = None if report.passed else "fused graph failed validation"
    if failure is not None:
        os.replace(unfused, staging / info.file)
        return {"fused": False, "reason": failure}
    length = min(128, loaded.spec.max_length)
    feed = make_batch(loaded, [length] * 8, seed=7)
    threads = options.threads or torch.get_num_threads()
    before = median_latency_ms(unfused, feed, threads)
    after = median_latency_ms(staging / info.file, feed, threads)
    unfused.unlink()
    return {
        "fused": True,
        "fusions": fusions,
        "latency_benchmark": {
            "batch": 8,
            "sequence": length,
            "threads": threads,
            "unfused_median_ms": round(before, 3),
            "fused_median_ms": round(after, 3),
            "speedup": round(before / after, 3),
        },
    }


def validate_artifact(artifact_dir: Path | str, model_dir: Path | str) -> ValidationReport:
    """Check an artifact's files against its manifest, then its graphs against the model."""
    artifact_dir = Path(artifact_dir)
    manifest = load_manifest(artifact_dir)
    loaded = load_classifier(model_dir)
    spec = loaded.spec
    mismatches = [
        f"{what}: the artifact has {ours!r}, {model_dir} has {theirs!r}"
        for what, ours, theirs in (
            ("model_type", manifest.model_type, spec.model_type),
            ("labels", list(manifest.labels), list(spec.labels)),
            ("model inputs", list(manifest.model_inputs), list(spec.input_names)),
        )
        if ours != theirs
    ]
    if mismatches:
        report = ValidationReport(tracing_shape=TRACING_SHAPE, validation_shapes=[])
        report.problems += [f"exported from another model? {line}" for line in mismatches]
        return report
    return validate_graphs(artifact_dir, manifest.graphs, loaded)
