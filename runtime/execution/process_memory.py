"""Give the memory freed while loading an artifact back to the operating system.

glibc's ``malloc`` keeps freed heap memory for reuse. Loading an artifact frees a lot of it
(ONNX Runtime's copies of the weights while it optimizes a graph, the fp32 sessions of the bf16
startup probe), which a serving process would otherwise hold while idle. It lowers RSS after
loading, not peak RSS (docs/engine-settings.md, "Memory"). Elsewhere than glibc (no
``malloc_trim``) this does nothing.
"""

from __future__ import annotations

import ctypes


def release_freed_memory() -> bool:
    """``malloc_trim(0)``: True when the C library has it and gave memory back."""
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return bool(trim(0))
