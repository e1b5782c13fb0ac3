"""The ONNX Runtime engine: one artifact's graphs, tokenizer and label semantics. No torch."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import (
    ATTRIBUTION,
    ATTRIBUTION_COTANGENT,
    ATTRIBUTION_LABELS,
    FORWARD,
    GraphInfo,
    Manifest,
    load_manifest,
)
from gradlight.runtime.execution.bf16_check import (
    LOGITS_DIFF,
    PROBABILITY_GATE,
    PROBE_TEXT,
    logit_margin,
    probe,
)
from gradlight.runtime.execution.cpu_arena import use_shared_cpu_arena
from gradlight.runtime.execution.openvino_session import OPENVINO, OpenVinoSession
from gradlight.runtime.execution.precision_choice import BF16, choose_precision
from gradlight.runtime.execution.process_memory import release_freed_memory
from gradlight.runtime.execution.scores import probabilities, probability_error_bound
from gradlight.runtime.execution.shared_initializers import SharedInitializers
from gradlight.runtime.execution.tokenization import EncodedText, TextEncoder
from gradlight.runtime.settings import EngineSettings

logger = logging.getLogger(__name__)

PATH_ZEROS = ("keep", "noise")
"""The path graph's inputs the bf16 startup probe sets to zero (``_check_bf16``)."""

STOP_SPINNING = "session.force_spinning_stop"
"""ONNX Runtime's intra-op threads spin for work between the operators of a call (fast for small
operators) and, by default, on after it ends. A request runs two graphs (the forward rows of
sentences, or of bf16 probabilities too close to a decision, and an attribution graph), each
with its own threads, and on a 2-core machine the first graph's threads still spinning take a
core from the second's. This option stops them at the end of each call. Served, MiniLM-L6,
AMD EPYC, 2 threads, three runs each, median ms: one note with sentences, fp32 38-57 -> 22-28;
8 notes with sentences, fp32 380-451 -> 328-365; 8 texts x 16 tokens, bf16 (OpenVINO after the
fp32 forward) 58-63 -> 46-49, x 128 253-305 -> 229-246; one graph alone, fp32 at 8 x 16-128
tokens, no change (docs/benchmarks.md, sixth pass)."""

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
    """Runs an artifact's graphs on padded batches: ``run(key, batch, extras)`` for any graph
    the manifest lists (its inputs beyond the model's come as ``extras``, one row per text),
    with ``forward``, ``attribute_all`` and ``attribute_mix`` for the three graphs every
    artifact may hold."""

    def __init__(self, artifact_dir: Path | str, settings: EngineSettings | None = None) -> None:
        self.artifact_dir = Path(artifact_dir)
        self.settings = settings or EngineSettings()
        self.manifest: Manifest = load_manifest(self.artifact_dir)
        self.encoder = TextEncoder(
            self.artifact_dir / self.manifest.tokenizer_dir / "tokenizer.json"
        )
        providers = resolve_providers(self.settings.provider)
        self.precision, reason = choose_precision(self.manifest, self.settings.precision, providers)
        logger.info("%s: serving %s (%s)", self.artifact_dir, self.precision, reason)
        self.graphs = self.manifest.graphs_at(self.precision)
        chosen = provider_options(providers, self.precision)
        shared = SharedInitializers(self.settings.share_weights)
        startup = self._startup_graph()
        now = {FORWARD, self._plain_request_graph()}
        self._sessions: dict[str, Any] = {}
        self._per_token: dict[str, frozenset[str]] = {}
        self._per_token_inputs: dict[str, frozenset[str]] = {}
        for key, info in self.graphs.items():
            if key in now or info.details.get("runtime") == OPENVINO:
                self._keep(key, self._session(info, chosen, shared, compile_now=key == startup))
        self.shared_weights = shared  # set after the sessions, so it is released after them
        self._providers = chosen
        self._bring_up_lock = threading.Lock()
        later = [key for key in self.graphs if key not in self._sessions]
        if later:
            logger.info(
                "%s: loaded %s; %s load on their first call",
                self.artifact_dir,
                ", ".join(self._sessions),
                ", ".join(later),
            )
        self.execution_provider = self._sessions[FORWARD].get_providers()[0]
        if self.settings.provider == "cuda" and self.execution_provider != CUDA:
            raise ArtifactError(
                "provider 'cuda' was asked but ONNX Runtime fell back to "
                f"{self.execution_provider} (CUDA or cuDNN libraries not found?); check "
                "LD_LIBRARY_PATH, or use --provider cpu"
            )
        self.graph_files = {key: graph.file for key, graph in self.graphs.items()}
        self._uses_token_types = self.manifest.uses_token_type_ids
        # bf16 graphs' logit margins: from the export's figure until the probe adds its own
        self._logit_margins = {
            key: logit_margin(info.details.get(LOGITS_DIFF), 0.0)
            for key, info in self.graphs.items()
            if info.details.get("runtime") == OPENVINO
        }
        if self.precision == BF16 and startup is not None:
            self._check_bf16(startup)
        io_binding = self.settings.io_binding
        self.io_binding = self.execution_provider == CUDA if io_binding is None else io_binding
        self._device = "cuda" if self.execution_provider == CUDA else "cpu"

    def _plain_request_graph(self) -> str:
        """The attribution graph a request without labels or methods runs."""
        return next(
            key
            for key in (ATTRIBUTION, ATTRIBUTION_LABELS, ATTRIBUTION_COTANGENT)
            if key in self.graphs
        )

    def _keep(self, key: str, session: Any) -> None:
        """Serve graph ``key`` with ``session`` from now on."""
        self._per_token[key] = _per_token_outputs(session)
        self._per_token_inputs[key] = _per_token_inputs(session)
        self._sessions[key] = session

    def _session_for(self, key: str) -> Any:
        """Graph ``key``'s session, loaded by its first call where it was not at startup.

        An ONNX Runtime session holds its own pre-packed copies of the weights (the attribution
        graphs two: the forward's and the backward's transposed ones), so the graphs a
        deployment never calls, often the cotangent, labels and path graphs, should not cost
        memory: on a BERT-base-sized artifact served fp32 for all labels, not loading its
        cotangent graph takes peak RSS from 3134 to 2469 MB (docs/benchmarks.md). At startup
        the engine loads the forward graph and the graph a plain request runs
        (``_plain_request_graph``); the others load when first needed."""
        session = self._sessions.get(key)
        if session is not None:
            return session
        with self._bring_up_lock:
            if key not in self._sessions:
                started = time.perf_counter()
                info = self.graphs[key]
                self._keep(key, self._session(info, self._providers, self.shared_weights))
                logger.info(
                    "%s: %s loaded on its first call, in %.1f s",
                    self.artifact_dir,
                    key,
                    time.perf_counter() - started,
                )
            return self._sessions[key]

    def _per_token_inputs_of(self, key: str) -> frozenset[str]:
        """Graph ``key``'s per-token extra inputs (known once its session is loaded)."""
        self._session_for(key)
        return self._per_token_inputs[key]

    def _startup_graph(self) -> str | None:
        """The one bf16 graph compiled at startup: the one a request without labels or methods
        runs. Each other bf16 graph is compiled, probed and warmed up by the first call that
        needs it (``_bring_up``): a compiled OpenVINO graph holds its own copies of the
        weights (runtime/execution/openvino_session.py), so graphs a deployment never calls should
        not cost memory. None when nothing is served by OpenVINO."""
        key = self._plain_request_graph()
        return key if self.graphs[key].details.get("runtime") == OPENVINO else None

    def _check_bf16(self, key: str) -> None:
        """Graph ``key`` in bf16 against its fp32 graph on a probe batch
        (runtime/execution/bf16_check.py); if it disagrees on this machine it is served in fp32."""
        batch = self.batch(self.encode([PROBE_TEXT, PROBE_TEXT[:60]], self.max_length))
        full = self._session(self.manifest.graphs[key], self._providers, self.shared_weights)
        # ones for the extra inputs (cotangents, alpha, fill); the path graph at its end
        # point against the pad baseline, without noise (keep and noise zero)
        extras = self._ones_for_extras(key, batch)
        extras.update({n: np.zeros_like(v) for n, v in extras.items() if n in PATH_ZEROS})
        feed = {**batch.feed, **extras}
        found = probe(self._sessions[key], full, feed, self.probabilities)
        if found.problem is not None:
            logger.warning(
                "%s: %s served in fp32: in bf16 %s", self.artifact_dir, key, found.problem
            )
            self._serve_in_fp32(key, full)
            return
        margin = logit_margin(self.graphs[key].details.get(LOGITS_DIFF), found.logits_diff)
        self._logit_margins[key] = margin
        if margin is None:
            logger.info(
                "%s: %s in bf16: probabilities from the fp32 forward graph (the artifact "
                "records no bf16 logit difference: re-export it to serve them from bf16)",
                self.artifact_dir,
                key,
            )
        else:
            logger.info(
                "%s: %s in bf16 (logits within %.3g of fp32 on the probe): a text's "
                "probabilities from its logits unless moving each by %.3g could move one by "
                "more than %g; else from the fp32 forward graph",
                self.artifact_dir,
                key,
                found.logits_diff,
                margin,
                PROBABILITY_GATE,
            )

    def _serve_in_fp32(self, key: str, session: ort.InferenceSession) -> None:
        self._logit_margins.pop(key, None)
        self._keep(key, session)
        self.graphs = {**self.graphs, key: self.manifest.graphs[key]}

    def _bring_up(self, key: str) -> None:
        """Compile bf16 graph ``key`` on its first call, probe it, and warm it up; a graph
        OpenVINO cannot compile here is served in fp32, with a warning."""
        with self._bring_up_lock:
            session = self._sessions[key]
            if not isinstance(session, OpenVinoSession) or session.compiled:
                return
            started = time.perf_counter()
            try:
                session.compile()
            except Exception as exc:  # OpenVINO's own RuntimeError subclasses
                logger.warning(
                    "%s: %s served in fp32: OpenVINO could not compile it: %s",
                    self.artifact_dir,
                    key,
                    exc,
                )
                info = self.manifest.graphs[key]
                self._serve_in_fp32(key, self._session(info, self._providers, self.shared_weights))
                return
            self._check_bf16(key)
            self._warm_up(key)
            release_freed_memory()
            logger.info(
                "%s: %s compiled for bf16 on its first call, in %.1f s",
                self.artifact_dir,
                key,
                time.perf_counter() - started,
            )

    def _session(
        self,
        graph: GraphInfo,
        providers: list[tuple[str, dict[str, str]]],
        shared: SharedInitializers,
        compile_now: bool = True,
    ) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.intra_op_threads
        options.inter_op_num_threads = self.settings.inter_op_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(STOP_SPINNING, "1")
        path = self.artifact_dir / graph.file
        if graph.details.get("runtime") == OPENVINO:
            try:
                return OpenVinoSession(path, self.settings.intra_op_threads, compile_now)
            except Exception as exc:  # OpenVINO's own RuntimeError subclasses
                raise ArtifactError(f"{path} could not be compiled by OpenVINO: {exc}") from exc
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
        names = tuple(node.name for node in session.get_inputs())
        if names != graph.inputs:
            raise ArtifactError(
                f"{path} has inputs {names}; the manifest says {graph.inputs}: re-export"
            )
        declared = session.get_outputs()[0].shape[-1]
        if isinstance(declared, int) and declared != self.manifest.num_labels:
            raise ArtifactError(
                f"{path} outputs {declared} logits but the manifest lists "
                f"{self.manifest.num_labels} labels: the artifact is inconsistent, re-export"
            )
        return session

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    def has_graph(self, key: str) -> bool:
        return key in self.graphs

    def logit_margin(self, key: str) -> float | None:
        """How far graph ``key``'s logits may be from fp32's (runtime/execution/bf16_check.py), for
        the per-text probability check of a bf16 graph on OpenVINO; None where not known (a bf16
        graph exported without the figure). 0 (no per-text check) for graphs on ONNX Runtime:
        fp32, and fp16, whose logits the export held to its tolerance
        (export/half_precision.py)."""
        if self.graphs[key].details.get("runtime") != OPENVINO:
            return 0.0
        return self._logit_margins.get(key)

    def runs_in_fp32(self, key: str) -> bool:
        """Whether graph ``key`` is the artifact's fp32 graph (not a reduced precision's)."""
        return self.graphs[key] == self.manifest.graphs.get(key)

    def probabilities_hold(self, key: str, logits: np.ndarray) -> bool:
        """Whether probabilities from graph ``key``'s ``logits [L]`` are within
        ``PROBABILITY_GATE`` of the fp32 forward's, by the graph's margin."""
        margin = self.logit_margin(key)
        if margin is None:
            return False
        bound = probability_error_bound(logits, margin, self.manifest.multi_label)
        return float(bound) <= PROBABILITY_GATE

    @property
    def has_all_labels_graph(self) -> bool:
        return self.has_graph(ATTRIBUTION)

    def extra_inputs(self, key: str) -> tuple[str, ...]:
        """The inputs of graph ``key`` beyond the model's (one row per text each)."""
        return self.graphs[key].inputs[len(self.manifest.model_inputs) :]

    def input_shape(self, key: str, name: str) -> list[int | str]:
        """The declared shape of graph ``key``'s input ``name`` (a symbolic axis: its name)."""
        return next(node.shape for node in self._session_for(key).get_inputs() if node.name == name)

    def stack_extras(
        self, key: str, rows: Sequence[Mapping[str, np.ndarray]], width: int
    ) -> dict[str, np.ndarray]:
        """Rows' extra inputs for graph ``key`` as one batch; a per-token input (its axis 1 the
        sequence, like the path graph's ``keep`` and ``noise``) is right-padded with zeros to
        ``width``; rows of several vectors (the labels graph's ``cotangent``, [K, L]) with zero
        vectors to the largest K."""
        stacked = {}
        per_token_inputs = self._per_token_inputs_of(key)
        for name in self.extra_inputs(key):
            values = [np.asarray(row[name], dtype=np.float32) for row in rows]
            per_token = name in per_token_inputs
            if per_token or len({value.shape for value in values}) > 1:
                length = width if per_token else max(len(value) for value in values)
                batch = np.zeros((len(values), length, *values[0].shape[1:]), dtype=np.float32)
                for index, value in enumerate(values):
                    batch[index, : len(value)] = value
                stacked[name] = batch
            else:
                stacked[name] = np.stack(values)
        return stacked

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

    def run(
        self, key: str, batch: Batch, extras: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Graph ``key``'s outputs by name, for ``batch`` and the graph's extra inputs."""
        feed = dict(batch.feed)
        for name in self.extra_inputs(key):
            feed[name] = np.ascontiguousarray((extras or {})[name], dtype=np.float32)
        outputs = self.graphs[key].outputs
        return dict(zip(outputs, self._run(key, list(outputs), feed), strict=True))

    def _run(self, key: str, outputs: list[str], feed: dict[str, np.ndarray]) -> list[Any]:
        """One ONNX Runtime call. With IOBinding the inputs go to the device once, the outputs
        are bound on the device and copied back once, after the call (one sync per batch)."""
        session = self._session_for(key)
        if isinstance(session, OpenVinoSession) and not session.compiled:
            self._bring_up(key)
            session = self._sessions[key]
        if key != FORWARD:
            # OpenVINO keeps each compiled graph's buffers at its largest shape so far: before
            # another attribution graph runs (in bf16 or fp32), the bf16 graphs hand theirs
            # back, so the process holds one attribution graph's buffers, not their sum (the
            # forward's are small, and it runs beside the all-labels graph on every request)
            released = [
                other.release_buffers()
                for other in self._sessions.values()
                if other is not session and isinstance(other, OpenVinoSession)
            ]
            if any(released):
                release_freed_memory()
        if not self.io_binding or isinstance(session, OpenVinoSession):
            return session.run(outputs, feed)
        binding = session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        for name in outputs:
            binding.bind_output(name, self._device)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def per_row(self, key: str, outputs: Mapping[str, np.ndarray], batch: Batch) -> list[dict]:
        """Each row's outputs; a per-token output (its last axis the sequence) cut to the row's
        own length."""
        per_token = self._per_token[key]
        return [
            {
                name: value[i, ..., :length] if name in per_token else value[i]
                for name, value in outputs.items()
            }
            for i, length in enumerate(batch.lengths)
        ]

    def forward(self, batch: Batch) -> np.ndarray:
        """Logits ``[B, L]``."""
        return self.run(FORWARD, batch)["logits"]

    def attribute_all(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``[B, L]`` and raw scores ``[B, L, S]`` for every label (small L only)."""
        outputs = self.run(ATTRIBUTION, batch)
        return outputs["logits"], outputs["scores"]

    def attribute_mix(self, batch: Batch, cotangent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits ``[B, L]`` and raw scores ``[B, S]`` of ``sum_c cotangent[b, c] * logit_c``."""
        outputs = self.run(ATTRIBUTION_COTANGENT, batch, {"cotangent": cotangent})
        return outputs["logits"], outputs["scores"]

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Sigmoid for multi-label models, softmax otherwise (float64 for stable differences)."""
        return probabilities(logits, self.manifest.multi_label)

    def warm_up(self) -> None:
        """Run every graph loaded at startup once on short and long inputs, so the first request
        is not slow (a bf16 graph not compiled yet is warmed up when it is, by ``_bring_up``; an
        fp32 graph loaded by its first call, ``_session_for``, is not: that call is its first)."""
        for key, session in self._sessions.items():
            if not isinstance(session, OpenVinoSession) or session.compiled:
                self._warm_up(key)

    def _warm_up(self, key: str) -> None:
        for length in (8, min(self.max_length, 128)):
            rows = self.encode(["warm up " * length], length) * 2
            batch = self.batch(rows)
            self.run(key, batch, self._ones_for_extras(key, batch))

    def _ones_for_extras(self, key: str, batch: Batch) -> dict[str, np.ndarray]:
        """Ones of each extra input's declared shape (the batch's own size on its axes)."""
        rows, width = batch.feed["input_ids"].shape
        per_token = self._per_token_inputs_of(key)
        shapes = {
            name: [
                rows,
                *(
                    d if isinstance(d, int) else width if (i == 0 and name in per_token) else 1
                    for i, d in enumerate(self.input_shape(key, name)[1:])
                ),
            ]
            for name in self.extra_inputs(key)
        }
        return {name: np.ones(shape, dtype=np.float32) for name, shape in shapes.items()}


def _per_token_inputs(session: ort.InferenceSession) -> frozenset[str]:
    """The extra inputs whose axis 1 is the model input's sequence axis (the same symbol)."""
    nodes = session.get_inputs()
    sequence = nodes[0].shape[1]
    return frozenset(
        node.name
        for node in nodes[1:]
        if isinstance(sequence, str) and len(node.shape) > 1 and node.shape[1] == sequence
    )


def _per_token_outputs(session: ort.InferenceSession) -> frozenset[str]:
    """The outputs whose last axis is the input's sequence axis (the same symbolic size)."""
    sequence = session.get_inputs()[0].shape[1]
    return frozenset(
        node.name
        for node in session.get_outputs()
        if isinstance(sequence, str) and len(node.shape) > 1 and node.shape[-1] == sequence
    )
