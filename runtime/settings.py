"""Validated settings for the engine, the batcher and the service (frozen, checked when built)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gradlight.artifact.precisions import CHOICES as PRECISION_CHOICES
from gradlight.artifact.precisions import DEFAULT as DEFAULT_PRECISION
from gradlight.wire.errors import GradlightError

PROVIDERS = ("auto", "cpu", "cuda")


class SettingsError(GradlightError, ValueError):
    """A setting out of its range; ``setting`` names the field (``max_batch_size``) and
    ``requirement`` says what it must be (``must be between 1 and 4096, got 0``), so that the
    command line can say it in its flag's name. A ``ValueError`` too, for library callers."""

    def __init__(self, setting: str, requirement: str) -> None:
        super().__init__(f"{setting} {requirement}")
        self.setting = setting
        self.requirement = requirement


def _check_int(name: str, value: int, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(name, f"must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SettingsError(name, f"must be {bound}, got {value}")


@dataclass(frozen=True)
class EngineSettings:
    """ONNX Runtime execution provider, precision, IOBinding and thread counts.

    ``provider``: ``auto`` (CUDA when onnxruntime offers it, else CPU), ``cpu`` or ``cuda``
    (an error when CUDA is not available). ``precision``: ``fp32`` (on CUDA without TF32, so
    fp32 means fp32), ``fp16`` (the artifact's fp16 graphs, exported with ``--fp16``; inputs
    and outputs stay int64 / fp32), ``bf16`` (on the CPU, the graphs that passed the bf16
    quality gates at export, ``--bf16``, run by OpenVINO; the others in fp32) or ``auto``
    (the default: bf16 where the artifact, the CPU and OpenVINO allow it, else fp32; the same
    default as ``gradlight serve`` and ``gradlight explain``). ``io_binding``: inputs
    copied to the device once per batch and outputs bound there, copied back once (None: on
    for CUDA, off for CPU, where it saves nothing). ``intra_op_threads`` 0 lets ONNX Runtime
    choose (one per physical core).
    """

    provider: str = "auto"
    intra_op_threads: int = 0
    inter_op_threads: int = 1
    precision: str = DEFAULT_PRECISION
    io_binding: bool | None = None
    # On the CPU: one copy of the weights for all the artifact's sessions, pre-packing off
    # (runtime/execution/shared_initializers.py): less memory, more the larger the model, for a
    # few percent of speed; outputs move in the 7th digit (docs/engine-settings.md, "Memory").
    share_weights: bool = False
    # Where the engine keeps its private, verified copy of the artifact
    # (runtime/execution/artifact_snapshot.py); None: the system's temporary directory.
    snapshot_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.provider not in PROVIDERS:
            raise SettingsError(
                "provider", f"must be one of {', '.join(PROVIDERS)}, got {self.provider!r}"
            )
        if self.precision not in PRECISION_CHOICES:
            choices = ", ".join(PRECISION_CHOICES)
            raise SettingsError("precision", f"must be one of {choices}, got {self.precision!r}")
        _check_int("intra_op_threads", self.intra_op_threads, 0, 1024)
        _check_int("inter_op_threads", self.inter_op_threads, 1, 1024)


@dataclass(frozen=True)
class BatchSettings:
    """Dynamic batching: how requests arriving together are coalesced into ONNX Runtime calls.

    - ``max_batch_size``: rows (token sequences) per ONNX Runtime call.
    - ``max_wait_ms``: how long the first waiting row may wait for others to join its batch.
    - ``max_tokens_per_batch``: rows x padded length per call; larger batches are split (a single
      row longer than this still runs, alone). None: by execution provider, 1024 on CPU (as
      fast as larger calls, for a fraction of their memory) and 8192 on CUDA.
    - ``max_queue_size``: rows waiting per model (queued, or held by requests being prepared); a
      request that would exceed it is refused with RESOURCE_EXHAUSTED (a request is admitted
      whole into an empty queue whatever its size).
    - ``call_cost_tokens``: the fixed cost of one ONNX Runtime call, in padded tokens: rows are
      cut into separate calls where padding them together would cost more (None: by execution
      provider, 16 on CPU and 4096 on CUDA; large values batch everything the limits allow).
    """

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_tokens_per_batch: int | None = None
    max_queue_size: int = 2048
    call_cost_tokens: int | None = None

    def __post_init__(self) -> None:
        _check_int("max_batch_size", self.max_batch_size, 1, 4096)
        if not isinstance(self.max_wait_ms, (int, float)) or isinstance(self.max_wait_ms, bool):
            raise SettingsError("max_wait_ms", f"must be a number, got {self.max_wait_ms!r}")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise SettingsError(
                "max_wait_ms", f"must be between 0 and 10000, got {self.max_wait_ms}"
            )
        if self.max_tokens_per_batch is not None:
            _check_int("max_tokens_per_batch", self.max_tokens_per_batch, 1)
        _check_int("max_queue_size", self.max_queue_size, 1)
        if self.call_cost_tokens is not None:
            _check_int("call_cost_tokens", self.call_cost_tokens, 0, 1_000_000)


@dataclass(frozen=True)
class ServiceLimits:
    """Per-request and transport limits of the gRPC service."""

    max_texts_per_request: int = 256
    max_receive_message_bytes: int = 8 * 1024 * 1024
    max_send_message_bytes: int = 64 * 1024 * 1024
    grace_period_s: float = 10.0

    def __post_init__(self) -> None:
        _check_int("max_texts_per_request", self.max_texts_per_request, 1, 100_000)
        _check_int("max_receive_message_bytes", self.max_receive_message_bytes, 1024)
        _check_int("max_send_message_bytes", self.max_send_message_bytes, 1024)
        if not 0 <= self.grace_period_s <= 3600:
            raise SettingsError(
                "grace_period_s", f"must be between 0 and 3600, got {self.grace_period_s}"
            )


LONG_TEXTS = ("truncate", "windows")


@dataclass(frozen=True)
class DocumentSettings:
    """Texts longer than the model's window (runtime/explanation/windows.py).

    - ``long_texts``: what a request that does not say gets: ``truncate`` (the text is cut at
      the window and flagged) or ``windows`` (read whole, in overlapping windows).
    - ``window_stride``: text tokens between two windows' starts; 0: half a window.
    - ``max_document_tokens``: the most tokens a text read as windows may have.
    - ``max_windows_per_request``: the most windows a request's texts may need in all.
    """

    long_texts: str = "truncate"
    window_stride: int = 0
    max_document_tokens: int = 32_768
    max_windows_per_request: int = 1024

    def __post_init__(self) -> None:
        if self.long_texts not in LONG_TEXTS:
            raise SettingsError(
                "long_texts", f"must be one of {', '.join(LONG_TEXTS)}, got {self.long_texts!r}"
            )
        _check_int("window_stride", self.window_stride, 0, 1_000_000)
        _check_int("max_document_tokens", self.max_document_tokens, 1, 10_000_000)
        _check_int("max_windows_per_request", self.max_windows_per_request, 1, 1_000_000)
