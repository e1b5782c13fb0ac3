"""What this CPU offers for reduced-precision matrix products, read from /proc/cpuinfo (no torch).

The serving engine picks bf16 only on a CPU with native bf16 matrix products; the bench names
the instruction sets on every figure row.
"""

from __future__ import annotations

# The CPU features that decide how fast fp32 and low-precision matrix products can be.
CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")
# Either gives the CPU native bf16 matrix products; without them bf16 is emulated, slower than
# fp32 (PyTorch's autocast and OpenVINO alike).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> list[str]:
    """Which of ``CPU_FLAGS`` this CPU has (/proc/cpuinfo; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            line = next(line for line in handle if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    present = set(line.split(":", 1)[1].split())
    return [flag for flag in CPU_FLAGS if flag in present]


def native_bf16() -> bool:
    """Whether this CPU has native bf16 matrix products (``BF16_FLAGS``)."""
    return any(flag in BF16_FLAGS for flag in cpu_flags())
