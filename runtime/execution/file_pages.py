"""Drop a file's pages from this process's resident memory, where nothing can be lost by it.

OpenVINO maps an artifact's ``weights.bin`` into memory and, on a graph's first run, makes the
bf16 (and re-laid) copies of the weights its kernels use; after that it hardly reads the file's
pages again, yet they stay mapped and resident, and count in the process's RSS: most of what a
compiled graph adds (runtime/execution/openvino_session.py; docs/engine-settings.md, "Memory").
``madvise(MADV_DONTNEED)`` on a mapping that holds no changes of its own (read-only, and no
anonymous pages: no copies made by writes to a private mapping) only unmaps the pages: the data
stays the file's, in the page cache, and a later read maps it again. Linux only; elsewhere
nothing is released.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

MADV_DONTNEED = 4
SMAPS = Path("/proc/self/smaps")


@dataclass(frozen=True)
class FileMapping:
    """One mapping of a file in this process, as ``/proc/self/smaps`` describes it."""

    start: int
    end: int
    writable: bool
    resident_kb: int
    anonymous_kb: int


def mappings(path: Path) -> list[FileMapping]:
    """Every mapping of ``path`` in this process (none where there is no ``smaps``)."""
    target = str(Path(path).resolve())
    found: list[FileMapping] = []
    current: dict[str, int | bool] | None = None
    try:
        lines = SMAPS.read_text().splitlines()
    except OSError:
        return []
    for line in [*lines, ""]:
        head = line.split(maxsplit=5)
        if not head or not head[0].endswith(":"):  # a mapping's header (or the end)
            if current is not None:
                found.append(FileMapping(**current))  # type: ignore[arg-type]
            current = None
            if len(head) == 6 and head[5] == target:
                start, end = (int(x, 16) for x in head[0].split("-"))
                current = {
                    "start": start,
                    "end": end,
                    "writable": "w" in head[1],
                    "resident_kb": 0,
                    "anonymous_kb": 0,
                }
        elif current is not None and head[0] in ("Rss:", "Anonymous:"):
            current["resident_kb" if head[0] == "Rss:" else "anonymous_kb"] = int(head[1])
    return found


def resident_mb(path: Path) -> float:
    """How much of ``path`` this process holds resident, over all its mappings, in MB."""
    return sum(m.resident_kb for m in mappings(path)) / 1024


def release_file_pages(path: Path) -> float:
    """Unmap the resident pages of every read-only, clean mapping of ``path``; the MB released.
    A mapping that is writable or holds anonymous pages (its own copies of changed pages) is
    left alone: dropping those pages would lose the changes."""
    releasable = [
        m for m in mappings(path) if not m.writable and not m.anonymous_kb and m.resident_kb
    ]
    if not releasable:
        return 0.0
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return 0.0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    released = 0
    for mapping in releasable:
        if madvise(mapping.start, mapping.end - mapping.start, MADV_DONTNEED) == 0:
            released += mapping.resident_kb
    return released / 1024
