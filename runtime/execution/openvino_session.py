"""An artifact's ONNX graph run by OpenVINO with bf16 matrix products, behind the few methods of
``onnxruntime.InferenceSession`` the engine calls (``run``, ``get_inputs``, ``get_outputs``,
``get_providers``). No torch.

OpenVINO reads the same ONNX file (its weights from the artifact's ``weights.bin``) and, with
``INFERENCE_PRECISION_HINT=bf16`` on a CPU with native bf16 (AVX512-BF16, AMX), runs the
matrix products of the forward and of the backward passes in bf16 with fp32 accumulation; its
CPU plugin keeps normalizations, softmax statistics and the score reductions in fp32. Whether
that is close enough to fp32 is decided per graph at export (export/bf16.py) against the quality
gates; the engine only runs graphs that passed.

Input and output metadata (names, symbolic axes) are read from the ONNX file itself, since
OpenVINO does not keep the axes' names, and the engine tells per-token inputs by them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gradlight.runtime.execution.file_pages import release_file_pages

logger = logging.getLogger(__name__)

OPENVINO = "openvino"
"""``GraphInfo.details["runtime"]`` of a graph this module runs."""
PROVIDER = "OpenVINO CPU (bf16)"
PRECISION_HINT = "bf16"


_core: Any = None
_core_lock = threading.Lock()


def _shared_core() -> Any:
    """The process's one ``openvino.Core`` (one per application, as OpenVINO recommends: each
    Core creates its own plugins), made on first use and kept until exit; every graph is
    compiled by it. With a Core of its own per graph, compiling graphs after others were freed
    in a worker thread (a reload's retire) crashed the process with SIGSEGV, in every run tried
    (tests/test_bf16.py reloads a real server three times)."""
    global _core
    with _core_lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


def openvino_available() -> str | None:
    """None when OpenVINO and onnx can be imported, else why not."""
    try:
        import onnx  # noqa: F401
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install 'gradlight[openvino]')"
    return None


@dataclass(frozen=True)
class NodeInfo:
    """What ``onnxruntime.NodeArg`` says of an input or output: name and shape, a symbolic
    axis as its name."""

    name: str
    shape: list[int | str]


def _value_infos(values: Any) -> list[NodeInfo]:
    infos = []
    for value in values:
        dims = value.type.tensor_type.shape.dim
        infos.append(
            NodeInfo(value.name, [d.dim_param if d.dim_param else int(d.dim_value) for d in dims])
        )
    return infos


class OpenVinoSession:
    """One graph, compiled when constructed or, with ``compile_now=False``, by ``compile()``
    or its first ``run`` (its inputs and outputs are known before); ``run`` is safe from
    several threads (one infer request each)."""

    def __init__(self, path: Path, threads: int, compile_now: bool = True) -> None:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        initializers = {tensor.name for tensor in graph.initializer}
        self._inputs = _value_infos(v for v in graph.input if v.name not in initializers)
        self._outputs = _value_infos(graph.output)
        self._path = path
        self._weight_files = sorted(
            {
                path.parent / entry.value
                for tensor in graph.initializer
                for entry in tensor.external_data
                if entry.key == "location"
            }
        )
        self._weight_pages_held = True
        self._config = {
            "INFERENCE_PRECISION_HINT": PRECISION_HINT,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": "1",
        }
        if threads > 0:
            self._config["INFERENCE_NUM_THREADS"] = str(threads)
        self._compiled: Any = None
        self._ports: dict[str, Any] = {}
        self._idle: list[Any] = []
        self._in_flight = 0
        self._holds_buffers = False
        self._lock = threading.Lock()
        if compile_now:
            self.compile()

    @property
    def compiled(self) -> bool:
        return self._compiled is not None

    def compile(self) -> None:
        """Compile the graph for this CPU (once; OpenVINO's errors propagate). Each compiled
        graph holds its own weights (its bf16 copies, made by its first run, and until then the
        fp32 pages of the file it mapped; sizes: docs/engine-settings.md, "Memory"), which is
        why an engine compiles a graph only when it is first needed
        (runtime/execution/engine.py)."""
        with self._lock:
            if self._compiled is not None:
                return
            core = _shared_core()
            compiled = core.compile_model(core.read_model(str(self._path)), "CPU", self._config)
            self._ports = {port.get_any_name(): port for port in compiled.outputs}
            self._compiled = compiled

    def get_inputs(self) -> list[NodeInfo]:
        return self._inputs

    def get_outputs(self) -> list[NodeInfo]:
        return self._outputs

    def get_providers(self) -> list[str]:
        return [PROVIDER]

    def run(self, outputs: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        if self._compiled is None:
            self.compile()
        with self._lock:
            request = self._idle.pop() if self._idle else self._compiled.create_infer_request()
            self._in_flight += 1
            self._holds_buffers = True
        try:
            results = request.infer(feed)
            names = outputs or [info.name for info in self._outputs]
            # copies: the request's output tensors are reused by its next call
            answer = [np.array(results[self._ports[name]], dtype=np.float32) for name in names]
        finally:
            with self._lock:
                self._idle.append(request)
                self._in_flight -= 1
        if self._weight_pages_held:  # only after the first run that succeeded
            self._release_weight_pages()
        return answer

    def _release_weight_pages(self) -> None:
        """After the first run, unmap the pages OpenVINO read from the weights file: by then its
        kernels hold their own (bf16, re-laid) copies, and the fp32 pages it mapped would stay
        resident for nothing, while later runs read few of them again (docs/engine-settings.md,
        "Memory"). Dropped pages stay the file's (runtime/execution/file_pages.py): one read
        again is mapped again."""
        with self._lock:
            if not self._weight_pages_held:  # another thread's first run got here first
                return
            self._weight_pages_held = False
        for file in self._weight_files:
            released = release_file_pages(file)
            if released:
                logger.info(
                    "%s: %.0f MB of %s unmapped after its first run",
                    self._path,
                    released,
                    file.name,
                )

    def release_buffers(self) -> bool:
        """Hand the intermediate buffers back (OpenVINO keeps them, per compiled graph, at the
        largest shape run so far) unless a run is in flight; the next run allocates anew.
        Whether anything was released."""
        with self._lock:
            if self._compiled is None or self._in_flight or not self._holds_buffers:
                return False
            self._compiled.release_memory()
            self._holds_buffers = False
            return True
