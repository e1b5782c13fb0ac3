"""The precisions an artifact's graphs come in, one entry each: the one list that the engine's
settings, the choice of what to serve, the exporter and the command line read.

``auto`` is every side's default: bf16 where the artifact, the CPU and OpenVINO allow it
(runtime/execution/precision_choice.py says why not at startup), else fp32."""

from __future__ import annotations

FP32, FP16, BF16 = "fp32", "fp16", "bf16"
AUTO = "auto"

PRECISIONS: dict[str, str] = {
    FP32: "the graphs as exported (on CUDA without TF32, so fp32 means fp32)",
    FP16: "the artifact's fp16 graphs (gradlight export --fp16; inputs and outputs stay int64 / "
    "fp32), for GPUs",
    BF16: "the graphs that passed the bf16 gates at export (gradlight export --bf16), run by "
    "OpenVINO on a CPU with native bf16 matrix products; the others in fp32",
}
"""Each precision with what serving it means."""
REDUCED = tuple(name for name in PRECISIONS if name != FP32)
"""The precisions an export may add to fp32."""
CHOICES = (*PRECISIONS, AUTO)
"""What ``gradlight serve --precision`` and the engine's settings take."""
DEFAULT = AUTO
AUTO_MEANS = (
    "bf16 where the artifact was exported with --bf16, the CPU has native bf16 and OpenVINO is "
    "installed, else fp32 (the log says why)"
)


def help_text() -> str:
    """Every choice and what it means, for the command line."""
    return "; ".join(f"{name}: {means}" for name, means in {AUTO: AUTO_MEANS, **PRECISIONS}.items())
