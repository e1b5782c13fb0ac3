"""``export_model``: a local Hugging Face classifier becomes a validated gradlight artifact.

Everything is written into a temporary sibling of ``OUT_DIR`` and renamed into place only
after validation passed, so a failed export never leaves a half-written artifact behind.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from gradlight.export import attribution, half_precision
from gradlight.export.errors import ValidationFailedError
from gradlight.export.forward_optimization import fuse_forward
from gradlight.export.model_loading import LoadedClassifier, load_classifier, read_spec
from gradlight.export.options import ExportOptions
from gradlight.export.progress import Printer, Progress
from gradlight.export.shared_weights import share_weights
from gradlight.export.staging import build_into
from gradlight.export.tracing import GraphTarget, export_module_to_onnx, trace_to_onnx
from gradlight.export.validation import (
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
    write_manifest,
)

_FORWARD_FILE = "forward.onnx"
_ATTRIBUTION_FILE = "attribution.onnx"
_COTANGENT_FILE = "attribution_cotangent.onnx"
_AXES = {0: "batch", 1: "sequence"}
_TOOLS = ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers", "gradlight")


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
    return build_into(
        out_dir,
        options.overwrite,
        lambda staging: _export_into(model_dir, staging, options, printer),
    )


def _export_into(
    model_dir: Path, staging: Path, options: ExportOptions, printer: Printer | None
) -> Manifest:
    loop = read_spec(model_dir).num_labels <= options.max_loop_labels
    progress = Progress(total_steps=(8 if loop else 7) + options.fp16, printer=printer)
    with progress.step(f"loading {model_dir}", key="load"):
        loaded = load_classifier(model_dir)
    spec = loaded.spec
    names = spec.input_names
    example = tracing_inputs(loaded)
    axes = {name: _AXES for name in names}
    outputs = ("logits", "scores")
    cot_names = (*names, "cotangent")
    targets = {
        FORWARD: GraphTarget(
            staging / _FORWARD_FILE, names, ("logits",), axes, spec.max_length, options.opset
        ),
        ATTRIBUTION_COTANGENT: GraphTarget(
            staging / _COTANGENT_FILE,
            cot_names,
            outputs,
            {**axes, "cotangent": {0: "batch"}},
            spec.max_length,
            options.opset,
        ),
        ATTRIBUTION: GraphTarget(
            staging / _ATTRIBUTION_FILE, names, outputs, axes, spec.max_length, options.opset
        ),
    }
    graphs: dict[str, GraphInfo] = {}
    details: dict[str, dict[str, Any]] = {}

    def written(key: str) -> GraphInfo:
        target = targets[key]
        graphs[key] = GraphInfo(target.path.name, target.input_names, target.output_names)
        return graphs[key]

    with progress.step("exporting the forward graph", key="forward"):
        export_module_to_onnx(_ForwardModule(loaded), example, targets[FORWARD])
    with progress.step(
        "fusing the forward graph (onnxruntime transformer optimizer)", key="forward_fusion"
    ):
        details[FORWARD] = fuse_forward(
            staging,
            written(FORWARD),
            loaded,
            enabled=options.optimize_forward,
            threads=options.threads or torch.get_num_threads(),
        )

    with progress.step(
        f"tracing the cotangent attribution graph ({spec.num_labels} labels)",
        key="attribution_cotangent",
    ):
        cotangent = torch.from_numpy(make_cotangent(len(example[0]), spec.num_labels, 0))
        timings = trace_to_onnx(
            attribution.cotangent_fn(loaded.model, spec),
            (*example, cotangent),
            targets[ATTRIBUTION_COTANGENT],
        )
    written(ATTRIBUTION_COTANGENT)
    details[ATTRIBUTION_COTANGENT] = {"trace_seconds": timings.rounded()}

    if loop:
        with progress.step(
            f"tracing the all-labels attribution graph ({spec.num_labels} backward passes)",
            key="attribution",
        ):
            timings = trace_to_onnx(
                attribution.all_labels_fn(loaded.model, spec), example, targets[ATTRIBUTION]
            )
        written(ATTRIBUTION)
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

    fp16_graphs: dict[str, GraphInfo] = {}
    validation = report.to_dict()
    if options.fp16:
        with progress.step("converting to fp16 and validating against fp32", key="fp16"):
            fp16_graphs = half_precision.convert_graphs(staging, graphs)
            half = half_precision.validate_fp16(staging, graphs, fp16_graphs, loaded)
            if printer is not None:
                printer(half.format())
        if not half.passed:
            raise half_precision.HalfPrecisionError(half)
        validation["fp16"] = half.to_dict()

    with progress.step("saving the tokenizer and the manifest", key="manifest"):
        loaded.tokenizer.save_pretrained(staging / TOKENIZER_DIR)
        for key, info in graphs.items():
            details.setdefault(key, {})["size_mb"] = _size_mb(staging / info.file)
        graphs = {
            key: GraphInfo(info.file, info.inputs, info.outputs, details.get(key, {}))
            for key, info in graphs.items()
        }
        fp16_graphs = {
            key: GraphInfo(
                info.file, info.inputs, info.outputs, {"size_mb": _size_mb(staging / info.file)}
            )
            for key, info in fp16_graphs.items()
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
            validation=validation,
            export={
                "source": str(model_dir.resolve()),
                "max_loop_labels": options.max_loop_labels,
                "torch_threads": torch.get_num_threads(),
                **weights,
                "step_seconds": progress.durations,
            },
            fp16_graphs=fp16_graphs,
        )
        write_manifest(staging, manifest)
    return manifest
