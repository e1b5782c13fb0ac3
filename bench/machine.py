"""What a measurement ran on, and what a process holds: read from Linux's /proc (no torch)."""

from __future__ import annotations

import os
import platform
from typing import Any

from gradlight.runtime.execution.cpu_features import cpu_flags

# The instruction sets every figure row of ``gradlight bench`` names (those present).
ROW_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC ..."), or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(threads: int) -> dict[str, Any]:
    """What a figure row ran on: the CPU's model, which of ``ROW_FLAGS`` it has, the threads."""
    present = cpu_flags()
    return {
        "cpu": cpu_name(),
        "isa": [flag for flag in ROW_FLAGS if flag in present],
        "threads": threads,
    }


def describe(on: dict[str, Any]) -> str:
    """``machine``'s dict in one line: "Intel Xeon, avx2 avx512f, 2 threads"."""
    isa = " ".join(on["isa"]) or f"none of {' '.join(ROW_FLAGS)}"
    threads = on["threads"]
    return f"{on['cpu']}, {isa}, {threads} thread{'' if threads == 1 else 's'}"


def cores_available() -> int:
    return len(os.sched_getaffinity(0))


def peak_rss_mb() -> float:
    """This process's high-water RSS in MB (VmHWM: unlike ru_maxrss, not inherited from the
    parent that forked it)."""
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` now (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")
