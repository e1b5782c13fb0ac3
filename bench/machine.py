"""What a measurement ran on, and what a process holds: read from Linux's /proc (no torch)."""

from __future__ import annotations

import os
import platform

# The CPU features that decide how fast fp32 and low-precision matrix products can be.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC ..."), or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """Which of ``CPU_FLAGS`` this CPU has (/proc/cpuinfo; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            line = next(line for line in handle if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    present = set(line.split(":", 1)[1].split())
    return [flag for flag in CPU_FLAGS if flag in present]


def cores_available() -> int:
    return len(os.sched_getaffinity(0))


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` now (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")
