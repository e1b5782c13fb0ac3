"""An artifact's graphs at the served precision, each with its session, loaded at startup or
by its first call.

An ONNX Runtime session holds its own pre-packed copies of the weights (the attribution graphs
two: the forward's and the backward's transposed ones), and a compiled OpenVINO graph its own
copies too, so graphs a deployment never calls (often the cotangent, labels and path graphs)
should not cost memory: the engine loads the forward graph and the graph a plain request runs,
and the others load when first needed (docs/engine-settings.md: Memory)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gradlight.artifact.manifest import FORWARD, GraphInfo, Manifest
from gradlight.runtime.execution.openvino_session import OpenVinoSession
from gradlight.runtime.execution.process_memory import release_freed_memory
from gradlight.runtime.execution.sessions import (
    Providers,
    open_session,
    per_token_inputs,
    per_token_outputs,
    runs_on_openvino,
)
from gradlight.runtime.execution.shared_initializers import SharedInitializers
from gradlight.runtime.settings import EngineSettings

logger = logging.getLogger(__name__)


class GraphSet:
    """Graphs ``manifest.graphs_at(precision)``; ``load_now`` are loaded at once, bf16 graphs
    too (OpenVINO reads them now and compiles ``compile_now`` now, the others by their first
    call: ``compile``)."""

    def __init__(
        self,
        files: Path,
        source: Path,
        manifest: Manifest,
        precision: str,
        settings: EngineSettings,
        providers: Providers,
        load_now: Iterable[str],
        compile_now: str | None,
    ) -> None:
        self.files = files  # where the graph files are read: the engine's snapshot
        self.source = source  # the artifact they were copied from (for the log)
        self.manifest = manifest
        self.settings = settings
        self.providers = providers
        self.graphs: dict[str, GraphInfo] = manifest.graphs_at(precision)
        self._sessions: dict[str, Any] = {}
        self._per_token_inputs: dict[str, frozenset[str]] = {}
        self._per_token_outputs: dict[str, frozenset[str]] = {}
        self.lock = threading.Lock()
        shared = SharedInitializers(settings.share_weights)
        now = set(load_now)
        for key, info in self.graphs.items():
            if key in now or runs_on_openvino(info):
                self._keep(key, self._open(info, shared, compile_now=key == compile_now))
        self.shared_weights = shared  # set after the sessions, so it is released after them
        later = [key for key in self.graphs if key not in self._sessions]
        if later:
            logger.info(
                "%s: loaded %s; %s load on their first call",
                source,
                ", ".join(self._sessions),
                ", ".join(later),
            )

    def _open(self, info: GraphInfo, shared: SharedInitializers, compile_now: bool = True) -> Any:
        return open_session(
            self.files,
            info,
            self.providers,
            shared,
            self.settings,
            self.manifest.num_labels,
            compile_now,
        )

    def _keep(self, key: str, session: Any) -> None:
        """Serve graph ``key`` with ``session`` from now on."""
        self._per_token_outputs[key] = per_token_outputs(session)
        self._per_token_inputs[key] = per_token_inputs(session)
        self._sessions[key] = session

    def close(self) -> None:
        """Free every session (its pre-packed or compiled weights: a compiled OpenVINO graph
        takes up to about 0.3 s, so not on an event loop). The graph set serves nothing after."""
        with self.lock:
            self.graphs = {}
            self._sessions.clear()

    def __contains__(self, key: str) -> bool:
        return key in self.graphs

    def loaded(self) -> list[str]:
        return list(self._sessions)

    @property
    def sessions(self) -> Mapping[str, Any]:
        """The sessions loaded so far, by graph key (read-only)."""
        return MappingProxyType(self._sessions)

    def session(self, key: str) -> Any:
        """Graph ``key``'s session, loaded now where it was not yet."""
        session = self._sessions.get(key)
        if session is not None:
            return session
        with self.lock:
            if key not in self._sessions:
                started = time.perf_counter()
                self._keep(key, self._open(self.graphs[key], self.shared_weights))
                logger.info(
                    "%s: %s loaded on its first call, in %.1f s",
                    self.source,
                    key,
                    time.perf_counter() - started,
                )
            return self._sessions[key]

    def per_token_inputs(self, key: str) -> frozenset[str]:
        """Graph ``key``'s per-token extra inputs (known once its session is loaded)."""
        self.session(key)
        return self._per_token_inputs[key]

    def per_token_outputs(self, key: str) -> frozenset[str]:
        return self._per_token_outputs[key]

    def input_shape(self, key: str, name: str) -> list[int | str]:
        """The declared shape of graph ``key``'s input ``name`` (a symbolic axis: its name)."""
        return next(node.shape for node in self.session(key).get_inputs() if node.name == name)

    def on_openvino(self, key: str) -> bool:
        return runs_on_openvino(self.graphs[key])

    def awaiting_compile(self, key: str) -> bool:
        """Whether graph ``key`` is a bf16 graph OpenVINO has not compiled yet."""
        session = self._sessions.get(key)
        return isinstance(session, OpenVinoSession) and not session.compiled

    def open_fp32(self, key: str) -> Any:
        """A new session of graph ``key``'s fp32 graph (a bf16 graph's reference)."""
        return self._open(self.manifest.graphs[key], self.shared_weights)

    def serve_in_fp32(self, key: str, session: Any | None = None) -> None:
        """Serve graph ``key`` from its fp32 graph (``session``, or a new one) from now on."""
        self._keep(key, session if session is not None else self.open_fp32(key))
        self.graphs = {**self.graphs, key: self.manifest.graphs[key]}

    def compile(self, key: str) -> None:
        """Compile bf16 graph ``key`` (OpenVINO's errors propagate)."""
        self._sessions[key].compile()

    def call(self, key: str, outputs: list[str], feed: dict[str, Any], device: str | None) -> Any:
        """One call of graph ``key``. With a ``device`` (IOBinding) the inputs go to it once, the
        outputs are bound on it and copied back once, after the call (one sync per batch)."""
        session = self.session(key)
        if key != FORWARD:
            self._release_other_buffers(session)
        if device is None or isinstance(session, OpenVinoSession):
            return session.run(outputs, feed)
        binding = session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        for name in outputs:
            binding.bind_output(name, device)
        session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()

    def _release_other_buffers(self, session: Any) -> None:
        """OpenVINO keeps each compiled graph's buffers at its largest shape so far: before
        another attribution graph runs (in bf16 or fp32), the bf16 graphs hand theirs back, so
        the process holds one attribution graph's buffers, not their sum (the forward's are
        small, and it runs beside the all-labels graph on every request)."""
        released = [
            other.release_buffers()
            for other in self._sessions.values()
            if other is not session and isinstance(other, OpenVinoSession)
        ]
        if any(released):
            release_freed_memory()
