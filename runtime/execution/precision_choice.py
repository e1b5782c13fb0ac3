"""Which precision an engine serves: the one asked for, or for ``auto`` the fastest the
artifact, the CPU and the installed runtimes allow, with the reason (logged at startup).

bf16 is the CPU's reduced precision: the artifact's graphs that passed the bf16 quality gates at
export (``gradlight export --bf16``, export/bf16.py), run by OpenVINO, on a CPU with native bf16
matrix products. Everything else runs in fp32.
"""

from __future__ import annotations

from collections.abc import Sequence

from gradlight.artifact.errors import ArtifactError
from gradlight.artifact.manifest import Manifest
from gradlight.artifact.precisions import AUTO, BF16, FP32
from gradlight.runtime.execution.cpu_features import BF16_FLAGS, native_bf16
from gradlight.runtime.execution.openvino_session import openvino_available

CPU_PROVIDER = "CPUExecutionProvider"


def bf16_unavailable_here() -> str | None:
    """Why this machine cannot run bf16 graphs (no native bf16 matrix products, no OpenVINO),
    or None: what both the export's bf16 gates and the engine's choice ask."""
    if not native_bf16():
        return f"this CPU has none of {', '.join(BF16_FLAGS)} (native bf16 matrix products)"
    return openvino_available()


def _bf16_unavailable(manifest: Manifest, providers: Sequence[str]) -> str | None:
    """Why bf16 cannot be served here, or None."""
    if providers[0] != CPU_PROVIDER:
        return f"bf16 is the CPU path and the engine runs on {providers[0]}"
    if BF16 not in manifest.precisions:
        return "the artifact has no graph validated in bf16 (export it with --bf16)"
    return bf16_unavailable_here()


def choose_precision(
    manifest: Manifest, requested: str, providers: Sequence[str]
) -> tuple[str, str]:
    """``(precision, reason)``; asking for bf16 where it cannot run is an error."""
    if requested not in (AUTO, BF16):
        return requested, "asked for"
    why_not = _bf16_unavailable(manifest, providers)
    if why_not is None:
        graphs = sorted(manifest.precisions[BF16])
        fp32 = sorted(set(manifest.graphs) - set(graphs))
        reason = f"graphs {', '.join(graphs)} passed the bf16 gates at export"
        if fp32:
            reason += f"; {', '.join(fp32)} stay fp32 (see the manifest's validation.bf16)"
        return BF16, reason
    if requested == BF16:
        raise ArtifactError(f"precision bf16 was asked but {why_not}; serve with --precision fp32")
    return FP32, f"fp32, not bf16: {why_not}"
