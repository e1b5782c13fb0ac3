"""The precisions an artifact's graphs come in, one entry each: the one list that the engine's
settings, the choice of what to serve, the exporter and the command line read.

``auto`` is every side's default: bf16 where the artifact, the CPU and OpenVINO allow it
(runtime/execution/precision_choice.py says why not at startup), else fp32."""

from __future__ import annotations

from dataclasses import dataclass

FP32, FP16, BF16 = "fp32", "fp16", "bf16"
AUTO = "auto"


@dataclass(frozen=True)
class Precision:
    """``device``: where it runs (``cpu``, ``cuda`` or ``any``); ``export_flag``: the flag of
    ``gradlight export`` that writes its graphs (None: the export always does)."""

    name: str
    device: str
    export_flag: str | None
    describe: str


PRECISIONS: dict[str, Precision] = {
    FP32: Precision(FP32, "any", None, "the exported graphs as traced (CUDA without TF32)"),
    FP16: Precision(
        FP16, "cuda", "--fp16", "fp16 copies validated against fp32 (inputs, outputs fp32)"
    ),
    BF16: Precision(
        BF16,
        "cpu",
        "--bf16",
        "the graphs that passed the bf16 gates at export, run by OpenVINO on CPUs with native "
        "bf16 matrix products; the others in fp32",
    ),
}
REDUCED = tuple(name for name in PRECISIONS if name != FP32)
"""The precisions an export may add to fp32."""
CHOICES = (*PRECISIONS, AUTO)
"""What ``gradlight serve --precision`` and the engine's settings take."""
DEFAULT = AUTO
