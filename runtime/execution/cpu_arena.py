"""One ONNX Runtime CPU memory arena for every CPU session of the process. No torch.

Each call of an attribution graph allocates its intermediate tensors (hundreds of MB for a
batch of long texts). The three ways to give them memory (the page faults, peak RSS and
all-labels graph times of each: docs/engine-settings.md, "Memory"):

- **No arena**: every tensor from ``malloc``. The large ones are mapped afresh on each call and
  their pages faulted in again on every call, which costs time.
- **An arena per session**: no faults, but each graph's session keeps its own arena at the
  largest call it has run, so the peak is every graph's largest call together. With memory
  patterns (ONNX Runtime's default) a session also keeps one planned block per input shape, so
  it grows with every new shape.
- **One arena shared by all sessions, without memory patterns** (this module): tensors come from
  one best-fit arena that every graph of every engine in the process reuses, so nothing is
  faulted in twice and it holds one call's worth of tensors: about the peak of no arena, with
  the speed of an arena.

The arena keeps what it has reserved until the process ends (the largest call's tensors), as
any arena does; an idle server therefore holds one large call's worth of memory.
"""

from __future__ import annotations

import logging
import threading

import onnxruntime as ort

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_registered = False
_USE_ENV_ALLOCATORS = "session.use_env_allocators"


def _register_once() -> None:
    """Register the process's shared CPU arena with ONNX Runtime's environment (once)."""
    global _registered
    with _lock:
        if _registered:
            return
        _registered = True
        memory = ort.OrtMemoryInfo(
            "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
        )
        # 0 and -1: ONNX Runtime's defaults (no limit, its growth strategy and chunk sizes)
        config = ort.OrtArenaCfg(0, -1, -1, -1)
        try:
            ort.create_and_register_allocator(memory, config)
        except Exception as exc:  # ONNX Runtime's own error types
            logger.warning("no CPU arena shared by all sessions (%s): each keeps its own", exc)


def use_shared_cpu_arena(options: ort.SessionOptions) -> None:
    """Make a CPU-only session allocate from the process's shared arena, without memory
    patterns (see the module's docstring for why)."""
    _register_once()
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = False
    options.add_session_config_entry(_USE_ENV_ALLOCATORS, "1")
