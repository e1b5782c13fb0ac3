"""One graph's session: the ONNX Runtime providers asked for, the session options every graph
gets, the OpenVINO session for graphs exported to run in bf16, and the checks of a loaded
session against the manifest. No torch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import GraphInfo
from gradlight.runtime.execution.cpu_arena import use_shared_cpu_arena
from gradlight.runtime.execution.openvino_session import OPENVINO, OpenVinoSession
from gradlight.runtime.execution.shared_initializers import SharedInitializers
from gradlight.runtime.settings import EngineSettings

STOP_SPINNING = "session.force_spinning_stop"
"""ONNX Runtime's intra-op threads spin for work between the operators of a call (fast for small
operators) and, by default, on after it ends. A request runs two graphs (the forward rows of
sentences, or of bf16 probabilities too close to a decision, and an attribution graph), each
with its own threads, and on a small machine the first graph's threads still spinning take a
core from the second's. This option stops them at the end of each call (docs/engine-settings.md:
Call sizes, threads and graphs)."""

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

Providers = list[tuple[str, dict[str, str]]]


def resolve_providers(choice: str) -> list[str]:
    """ONNX Runtime providers for ``auto``, ``cpu`` or ``cuda`` (CPU always kept as fallback)."""
    available = ort.get_available_providers()
    if choice == "cpu":
        return [CPU]
    if choice == "cuda" and CUDA not in available:
        raise ArtifactError(
            "provider 'cuda' was asked but this onnxruntime has no CUDAExecutionProvider "
            f"(available: {', '.join(available)}); install onnxruntime-gpu or use --provider cpu"
        )
    return [CUDA, CPU] if CUDA in available else [CPU]


def provider_options(providers: Sequence[str], precision: str) -> Providers:
    """Each provider with its options: CUDA's TF32 is off for fp32 (TF32 keeps 10 mantissa
    bits in matrix products, so "fp32" would not mean fp32); fp16 graphs do not use it."""
    return [
        (name, {"use_tf32": "0"} if name == CUDA and precision == "fp32" else {})
        for name in providers
    ]


def runs_on_openvino(graph: GraphInfo) -> bool:
    return graph.details.get("runtime") == OPENVINO


def open_session(
    artifact_dir: Path,
    graph: GraphInfo,
    providers: Providers,
    shared: SharedInitializers,
    settings: EngineSettings,
    num_labels: int,
    compile_now: bool = True,
) -> Any:
    """Graph ``graph`` of the artifact in ``artifact_dir``: an OpenVINO session for a bf16
    graph (compiled now or by its first call), else an ONNX Runtime session checked against the
    manifest (its inputs, its number of logits)."""
    path = artifact_dir / graph.file
    if runs_on_openvino(graph):
        try:
            return OpenVinoSession(path, settings.intra_op_threads, compile_now)
        except Exception as exc:  # OpenVINO's own RuntimeError subclasses
            raise ArtifactError(f"{path} could not be compiled by OpenVINO: {exc}") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry(STOP_SPINNING, "1")
    disabled: list[str] = []
    try:
        if [name for name, _ in providers] == [CPU]:
            use_shared_cpu_arena(options)
            disabled = shared.configure(path, options)
        session = ort.InferenceSession(
            str(path), options, providers=providers, disabled_optimizers=disabled
        )
    except Exception as exc:
        raise ArtifactError(f"{path} could not be loaded by onnxruntime: {exc}") from exc
    _check_against_manifest(session, path, graph, num_labels)
    return session


def _check_against_manifest(
    session: ort.InferenceSession, path: Path, graph: GraphInfo, num_labels: int
) -> None:
    names = tuple(node.name for node in session.get_inputs())
    if names != graph.inputs:
        raise ArtifactError(
            f"{path} has inputs {names}; the manifest says {graph.inputs}: re-export"
        )
    declared = session.get_outputs()[0].shape[-1]
    if isinstance(declared, int) and declared != num_labels:
        raise ArtifactError(
            f"{path} outputs {declared} logits but the manifest lists "
            f"{num_labels} labels: the artifact is inconsistent, re-export"
        )


def per_token_inputs(session: Any) -> frozenset[str]:
    """The extra inputs whose axis 1 is the model input's sequence axis (the same symbol)."""
    nodes = session.get_inputs()
    sequence = nodes[0].shape[1]
    return frozenset(
        node.name
        for node in nodes[1:]
        if isinstance(sequence, str) and len(node.shape) > 1 and node.shape[1] == sequence
    )


def per_token_outputs(session: Any) -> frozenset[str]:
    """The outputs whose last axis is the input's sequence axis (the same symbolic size)."""
    sequence = session.get_inputs()[0].shape[1]
    return frozenset(
        node.name
        for node in session.get_outputs()
        if isinstance(sequence, str) and len(node.shape) > 1 and node.shape[-1] == sequence
    )
