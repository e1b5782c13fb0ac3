"""Memory freed while loading, and a weights file's pages no graph reads any more, go back to
the operating system (runtime/execution/process_memory.py, runtime/execution/file_pages.py)."""

from __future__ import annotations

import ctypes
import mmap
import platform
from pathlib import Path

import numpy as np

from gradlight.runtime.execution.file_pages import mappings, release_file_pages, resident_mb
from gradlight.runtime.execution.process_memory import release_freed_memory


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


def test_a_files_clean_pages_leave_the_process_and_read_back_the_same(tmp_path):
    """runtime/execution/file_pages.py: a read-only mapping's resident pages are unmapped (the data
    stays the file's), a mapping with changes of its own is left alone."""
    path = tmp_path / "weights.bin"
    data = np.random.default_rng(0).integers(0, 255, 8 << 20, dtype=np.uint8)
    path.write_bytes(data.tobytes())
    if not Path("/proc/self/smaps").exists():  # no smaps: nothing found, nothing released
        assert mappings(path) == [] and release_file_pages(path) == 0.0
        return
    with path.open("rb") as file, path.open("r+b") as changed_file:
        shared = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        private = mmap.mmap(changed_file.fileno(), 0, access=mmap.ACCESS_COPY)
        private[0] = (int(data[0]) + 1) % 256  # a change of this process's own, not the file's
        assert bytes(shared[:: 1 << 12])  # every page read once
        read_only = next(m for m in mappings(path) if not m.writable)
        assert read_only.resident_kb >= 8 << 10
        released = release_file_pages(path)
        assert released >= 8 and resident_mb(path) < 1  # only the changed page is held (its copy)
        assert np.array_equal(np.frombuffer(shared, dtype=np.uint8), data)  # read back the same
        assert private[0] == (int(data[0]) + 1) % 256 and resident_mb(path) >= 8  # read again
        del shared, private  # (mmap objects close with their last reference)
