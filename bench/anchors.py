"""The eager ways the bench times gradlight against, by name (no torch here; bench/eager.py
runs them): the reference, and the eager anchors: the best eager PyTorch in fp32 with eager
attention or SDPA, and under bf16 autocast with either."""

from __future__ import annotations

from dataclasses import dataclass

from gradlight.runtime.execution.cpu_features import BF16_FLAGS, native_bf16


@dataclass(frozen=True)
class Way:
    """One eager way: its attention implementation, whether it runs under bf16 autocast, and
    whether it is the reference (pad to 128, weight gradients, one backward per label)."""

    attention: str = "eager"
    bf16: bool = False
    reference: bool = False


REFERENCE = "reference"
ANCHORS = {
    "eager-best": Way(),
    "eager-best-sdpa": Way(attention="sdpa"),
    "eager-bf16": Way(bf16=True),
    "eager-bf16-sdpa": Way(attention="sdpa", bf16=True),
}
WAYS = {REFERENCE: Way(reference=True), **ANCHORS}


class AnchorUnavailable(RuntimeError):
    """This eager way cannot run here (the message says why); the bench reports it skipped."""


def bf16_problem(device: str = "cpu") -> str | None:
    """Why the bf16 anchors cannot run here, or None."""
    if device != "cpu":
        return f"the bf16 anchors run under CPU autocast; this bench runs eager on {device}"
    if not native_bf16():
        return (
            f"this CPU has none of {', '.join(BF16_FLAGS)} (no native bf16: autocast would "
            "emulate bf16, slower than fp32)"
        )
    return None


def unavailable_here(name: str, device: str = "cpu") -> str | None:
    """Why the way ``name`` cannot run on this machine before a model is loaded, or None (a
    model without SDPA is found out when it loads)."""
    return bf16_problem(device) if WAYS[name].bf16 else None
