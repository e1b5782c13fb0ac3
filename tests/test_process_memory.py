"""Memory freed while loading goes back to the operating system (runtime/process_memory.py)."""

from __future__ import annotations

import ctypes
import platform

from gradlight.runtime.process_memory import release_freed_memory


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_freed_heap_memory_leaves_the_process():
    if platform.libc_ver()[0] != "glibc":  # no malloc_trim: nothing to give back, said so
        assert release_freed_memory() is False
        return
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    # 8 KB blocks stay in malloc's heap (under its mmap threshold), as a session's do
    blocks = [libc.malloc(8192) for _ in range(40_000)]  # ~320 MB
    pin = libc.malloc(8192)  # above them: free() alone cannot shrink the heap past it
    for block in blocks:
        ctypes.memset(block, 1, 8192)
    held = _rss_mb()
    for block in blocks:
        libc.free(block)
    kept = _rss_mb()
    assert release_freed_memory()
    released = _rss_mb()
    libc.free(pin)
    assert kept - released > 200, (held, kept, released)
