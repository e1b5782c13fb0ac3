"""The ONNX Runtime engine: one artifact's graphs, tokenizer and label semantics. No torch."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from gradlight.runtime.errors import ArtifactError
from gradlight.runtime.manifest import (
    ATTRIBUTION,
    ATTRIBUTION_COTANGENT,
    FORWARD,
    Manifest,
    load_manifest,
)
from gradlight.runtime.settings import EngineSettings
from gradlight.runtime.tokenization import EncodedText, TextEncoder

logger = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


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


def provider_options(providers: Sequence[str], precision: str) -> list[tuple[str, dict[str, str]]]:
    """Each provider with its options: CUDA's TF32 is off for fp32 (TF32 keeps 10 mantissa
    bits in matrix products, so "fp32" would not mean fp32); fp16 graphs do not use it."""
    return [
        (name, {"use_tf32": "0"} if name == CUDA and precision == "fp32" else {})
        for name in providers
    ]


@dataclass(frozen=True)
class Batch:
    """Right-padded model inputs for rows of token ids, padded to the longest row only."""

    feed: dict[str, np.ndarray]
    lengths: tuple[int, ...]

    @property
    def attention_mask(self) -> np.ndarray:
        return self.feed["attention_mask"]


class Engine:
    """Runs an artifact's forward and attribution graphs on padded batches."""

    def __init__(self, artifact_dir: Path | str, settings: EngineSettings | None = None) -> None:
        self.artifact_dir = Path(artifact_dir)
        self.settings = settings or EngineSettings()
        self.manifest: Manifest = load_manifest(self.artifact_dir)
        self.encoder = TextEncoder(
            self.artifact_dir / self.manifest.tokenizer_dir / "tokenizer.json"
        )
        providers = resolve_providers(self.settings.provider)
        graphs = self.manifest.graphs
        if self.settings.precision == "fp16":
            if not self.manifest.fp16_graphs:
                raise ArtifactError(
                    f"{self.artifact_dir} has no fp16 graphs: export it again with --fp16, "
                    "or serve it in fp32"
                )
            graphs = self.manifest.fp16_graphs
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.intra_op_threads
        options.inter_op_num_threads = self.settings.inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._sessions: dict[str, ort.InferenceSession] = {}
        chosen = provider_options(providers, self.settings.precision)
        for key, graph in graphs.items():
            path = self.artifact_dir / graph.file
            try:
                session = ort.InferenceSession(str(path), options, providers=chosen)
            except Exception as exc:
                raise ArtifactError(f"{path} could not be loaded by onnxruntime: {exc}") from exc
            names = tuple(node.name for node in session.get_inputs())
            if names != graph.inputs:
                raise ArtifactError(
                    f"{path} has inputs {names}; the manifest says {graph.inputs}: re-export"
                )
            self._check_label_count(key, session, path)
            self._sessions[key] = session
        self.execution_provider = self._sessions[FORWARD].get_providers()[0]
        if self.settings.provider == "cuda" and self.execution_provider != CUDA:
            raise ArtifactError(
                "provider 'cuda' was asked but ONNX Runtime fell back to "
                f"{self.execution_provider} (CUDA or cuDNN libraries not found?); check "
                "LD_LIBRARY_PATH, or use --provider cpu"
            )
        self.graph_files = {key: graph.file for key, graph in graphs.items()}
        self._uses_token_types = "token_type_ids" in self.manifest.model_inputs
        io_binding = self.settings.io_binding
        self.io_binding = self.execution_provider == CUDA if io_binding is None else io_binding
        self._device = "cuda" if self.execution_provider == CUDA else "cpu"

    def _check_label_count(self, key: str, session: ort.InferenceSession, path: Path) -> None:
        declared = session.get_outputs()[0].shape[-1]
        if isinstance(declared, int) and declared != self.manifest.num_labels:
            raise ArtifactError(
                f"{path} outputs {declared} logits but the manifest lists "
                f"{self.manifest.num_labels} labels: the artifact is inconsistent, re-export"
            )

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    @property
    def has_all_labels_graph(self) -> bool:
        return ATTRIBUTION in self._sessions

    def encode(self, texts: Sequence[str], max_length: int) -> list[EncodedText]:
        return self.encoder.encode(texts, max_length)

    def batch(self, rows: Sequence[EncodedText]) -> Batch:
        width = max(len(row) for row in rows)
        input_ids = np.full((len(rows), width), self.manifest.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = row.ids
            attention_mask[index, : len(row)] = 1
            token_type_ids[index, : len(row)] = row.type_ids
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self._uses_token_types:
            feed["token_type_ids"] = token_type_ids
        return Batch(feed=feed, lengths=tuple(len(row) for row in rows))

    def _run(self, key: str, outputs: list[str], feed: dict[str, np.ndarray]) -> list[Any]:
        """One ONNX Runtime call. With IOBinding the inputs go to the device once, the outputs
        are bound on the device and copied back once, after the call (one sync per batch)."""
        session = self._sessions[key]
        if not self.io_binding:
            return session.run(outputs, feed)
        binding = session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        for name in outputs:
            binding.bind_output(name, self._device)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def forward(self, batch: Batch) -> np.ndarray:
        """Logits ``[B, L]``."""
        (logits,) = self._run(FORWARD, ["logits"], batch.feed)
        return logits

    def attribute_all(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``[B, L]`` and raw scores ``[B, L, S]`` for every label (small L only)."""
        logits, scores = self._run(ATTRIBUTION, ["logits", "scores"], batch.feed)
        return logits, scores

    def attribute_mix(self, batch: Batch, cotangent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``[B, L]`` and raw scores ``[B, S]`` of ``sum_c cotangent[b, c] * logit_c``."""
        feed = {**batch.feed, "cotangent": np.ascontiguousarray(cotangent, dtype=np.float32)}
        logits, scores = self._run(ATTRIBUTION_COTANGENT, ["logits", "scores"], feed)
        return logits, scores

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Sigmoid for multi-label models, softmax otherwise (float64 for stable differences)."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.manifest.multi_label:
            return 1.0 / (1.0 + np.exp(-logits))
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    def warm_up(self) -> None:
        """Run every graph once on short and long inputs, so the first request is not slow."""
        for length in (8, min(self.max_length, 128)):
            texts = ["warm up " * length]
            rows = self.encode(texts, length) * 2
            batch = self.batch(rows)
            self.forward(batch)
            if self.has_all_labels_graph:
                self.attribute_all(batch)
            cotangent = np.zeros((len(rows), self.manifest.num_labels), dtype=np.float32)
            cotangent[:, 0] = 1.0
            self.attribute_mix(batch, cotangent)
