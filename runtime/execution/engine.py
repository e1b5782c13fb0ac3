"""The engine: one artifact's graphs (runtime/execution/graph_set.py), tokenizer and label
semantics, run on padded batches (runtime/execution/feeds.py). No torch."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import (
    FORWARD,
    GraphInfo,
    Manifest,
    plain_request_graph,
)
from gradlight.artifact.precisions import BF16
from gradlight.runtime.execution import feeds
from gradlight.runtime.execution.artifact_snapshot import TOKENIZER_FILE, ArtifactSnapshot
from gradlight.runtime.execution.bf16_check import (
    LOGITS_DIFF,
    PROBABILITY_GATE,
    PROBE_TEXT,
    logit_margin,
    probe,
)
from gradlight.runtime.execution.feeds import Batch
from gradlight.runtime.execution.graph_set import GraphSet
from gradlight.runtime.execution.precision_choice import choose_precision
from gradlight.runtime.execution.process_memory import release_freed_memory
from gradlight.runtime.execution.scores import probabilities, probability_error_bound
from gradlight.runtime.execution.sessions import (
    CUDA,
    provider_options,
    resolve_providers,
    runs_on_openvino,
)
from gradlight.runtime.execution.tokenization import EncodedText, TextEncoder
from gradlight.runtime.settings import EngineSettings

logger = logging.getLogger(__name__)

PATH_ZEROS = ("keep", "noise")
"""The path graph's inputs the bf16 startup probe sets to zero (``_check_bf16``)."""


class Engine:
    """Runs an artifact's graphs on padded batches: ``run(key, batch, extras)`` for any graph
    the manifest lists (its inputs beyond the model's come as ``extras``, one row per text)."""

    def __init__(self, artifact_dir: Path | str, settings: EngineSettings | None = None) -> None:
        self.artifact_dir = Path(artifact_dir)
        self.settings = settings or EngineSettings()
        self.snapshot = ArtifactSnapshot(self.artifact_dir, self.settings.snapshot_dir)
        try:
            self._load()
        except BaseException:
            self.snapshot.close()
            raise

    def _load(self) -> None:
        """Copy what the served precision reads into the snapshot, then load it from there."""
        self.manifest: Manifest = self.snapshot.manifest
        providers = resolve_providers(self.settings.provider)
        self.precision, reason = choose_precision(self.manifest, self.settings.precision, providers)
        logger.info("%s: serving %s (%s)", self.artifact_dir, self.precision, reason)
        at_precision = self.manifest.graphs_at(self.precision)
        self.snapshot.add_graphs(
            [*at_precision.values()]
            + [self.manifest.graphs[k] for k, g in at_precision.items() if runs_on_openvino(g)]
        )
        files = self.snapshot.directory
        self.encoder = TextEncoder(
            files / self.manifest.tokenizer_dir / TOKENIZER_FILE, self.manifest.pre_tokenization
        )
        plain = plain_request_graph(self.manifest.graphs)
        startup = plain if runs_on_openvino(at_precision[plain]) else None
        self.graph_set = GraphSet(
            files,
            self.artifact_dir,
            self.manifest,
            self.precision,
            self.settings,
            provider_options(providers, self.precision),
            load_now={FORWARD, plain},
            compile_now=startup,
        )
        self.execution_provider = self.graph_set.session(FORWARD).get_providers()[0]
        if self.settings.provider == "cuda" and self.execution_provider != CUDA:
            raise ArtifactError(
                "provider 'cuda' was asked but ONNX Runtime fell back to "
                f"{self.execution_provider} (CUDA or cuDNN libraries not found?); check "
                "LD_LIBRARY_PATH, or use --provider cpu"
            )
        # bf16 graphs' logit margins: from the export's figure until the probe adds its own
        self._logit_margins = {
            key: logit_margin(info.details.get(LOGITS_DIFF), 0.0)
            for key, info in self.graphs.items()
            if self.graph_set.on_openvino(key)
        }
        if self.precision == BF16 and startup is not None:
            self._check_bf16(startup)
        on_cuda = self.execution_provider == CUDA
        binds = on_cuda if self.settings.io_binding is None else self.settings.io_binding
        # where IOBinding binds the outputs (None: no IOBinding)
        self._device = ("cuda" if on_cuda else "cpu") if binds else None

    def close(self) -> None:
        """Free the engine's sessions and remove its snapshot of its artifact
        (runtime/execution/artifact_snapshot.py): it serves nothing after."""
        self.graph_set.close()
        self.snapshot.close()

    @property
    def graphs(self) -> Mapping[str, GraphInfo]:
        """The served graphs by key (each a ``GraphInfo`` at the served precision)."""
        return self.graph_set.graphs

    @property
    def io_binding(self) -> bool:
        return self._device is not None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    def has_graph(self, key: str) -> bool:
        return key in self.graph_set

    def _check_bf16(self, key: str) -> None:
        """Graph ``key`` in bf16 against its fp32 graph on a probe batch
        (runtime/execution/bf16_check.py); if it disagrees on this machine it is served in
        fp32."""
        batch = self.batch(self.encode([PROBE_TEXT, PROBE_TEXT[:60]], self.max_length))
        full = self.graph_set.open_fp32(key)
        # ones for the extra inputs (cotangents, alpha, fill); the path graph at its end
        # point against the pad baseline, without noise (keep and noise zero)
        extras = self._ones_for_extras(key, batch)
        extras.update({n: np.zeros_like(v) for n, v in extras.items() if n in PATH_ZEROS})
        found = probe(
            self.graph_set.session(key), full, {**batch.feed, **extras}, self.probabilities
        )
        if found.problem is not None:
            logger.warning(
                "%s: %s served in fp32: in bf16 %s", self.artifact_dir, key, found.problem
            )
            self._logit_margins.pop(key, None)
            self.graph_set.serve_in_fp32(key, full)
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

    def _bring_up(self, key: str) -> None:
        """Compile bf16 graph ``key`` on its first call, probe it, and warm it up; a graph
        OpenVINO cannot compile here is served in fp32, with a warning."""
        with self.graph_set.lock:
            if not self.graph_set.awaiting_compile(key):
                return
            started = time.perf_counter()
            try:
                self.graph_set.compile(key)
            except Exception as exc:  # OpenVINO's own RuntimeError subclasses
                logger.warning(
                    "%s: %s served in fp32: OpenVINO could not compile it: %s",
                    self.artifact_dir,
                    key,
                    exc,
                )
                self._logit_margins.pop(key, None)
                self.graph_set.serve_in_fp32(key)
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

    def logit_margin(self, key: str) -> float | None:
        """How far graph ``key``'s logits may be from fp32's (runtime/execution/bf16_check.py),
        for the per-text probability check of a bf16 graph on OpenVINO; None where not known (a
        bf16 graph exported without the figure). 0 (no per-text check) for graphs on ONNX
        Runtime: fp32, and fp16, whose logits the export held to its tolerance
        (export/half_precision.py)."""
        if not self.graph_set.on_openvino(key):
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

    def extra_inputs(self, key: str) -> tuple[str, ...]:
        """The inputs of graph ``key`` beyond the model's (one row per text each)."""
        return self.graphs[key].inputs[len(self.manifest.model_inputs) :]

    def input_shape(self, key: str, name: str) -> list[int | str]:
        """The declared shape of graph ``key``'s input ``name`` (a symbolic axis: its name)."""
        return self.graph_set.input_shape(key, name)

    def stack_extras(
        self, key: str, rows: Sequence[Mapping[str, np.ndarray]], width: int
    ) -> dict[str, np.ndarray]:
        """Rows' extra inputs for graph ``key`` as one batch (runtime/execution/feeds.py)."""
        per_token = self.graph_set.per_token_inputs(key)
        return feeds.stack_extras(self.extra_inputs(key), per_token, rows, width)

    def encode(self, texts: Sequence[str], max_length: int) -> list[EncodedText]:
        return self.encoder.encode(texts, max_length)

    def batch(self, rows: Sequence[EncodedText]) -> Batch:
        return feeds.pad(rows, self.manifest.pad_token_id, self.manifest.uses_token_type_ids)

    def run(
        self, key: str, batch: Batch, extras: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Graph ``key``'s outputs by name, for ``batch`` and the graph's extra inputs."""
        feed = dict(batch.feed)
        for name in self.extra_inputs(key):
            feed[name] = np.ascontiguousarray((extras or {})[name], dtype=np.float32)
        if self.graph_set.awaiting_compile(key):
            self._bring_up(key)
        outputs = self.graphs[key].outputs
        found = self.graph_set.call(key, list(outputs), feed, self._device)
        return dict(zip(outputs, found, strict=True))

    def per_row(self, key: str, outputs: Mapping[str, np.ndarray], batch: Batch) -> list[dict]:
        """Each row's outputs; a per-token output cut to the row's own length."""
        return feeds.per_row(outputs, self.graph_set.per_token_outputs(key), batch)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Sigmoid for multi-label models, softmax otherwise (float64 for stable differences)."""
        return probabilities(logits, self.manifest.multi_label)

    def warm_up(self) -> None:
        """Run every graph loaded at startup once on short and long inputs, so the first request
        is not slow (a bf16 graph not compiled yet is warmed up when it is, by ``_bring_up``; an
        fp32 graph loaded by its first call is not: that call is its first)."""
        for key in self.graph_set.loaded():
            if not self.graph_set.awaiting_compile(key):
                self._warm_up(key)

    def _warm_up(self, key: str) -> None:
        for length in (8, min(self.max_length, 128)):
            rows = self.encode(["warm up " * length], length) * 2
            batch = self.batch(rows)
            self.run(key, batch, self._ones_for_extras(key, batch))

    def _ones_for_extras(self, key: str, batch: Batch) -> dict[str, np.ndarray]:
        """Ones of each extra input's declared shape (the batch's own size on its axes)."""
        shapes = {name: self.input_shape(key, name) for name in self.extra_inputs(key)}
        return feeds.ones_for(shapes, self.graph_set.per_token_inputs(key), batch)
