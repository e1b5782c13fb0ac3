"""The integrated gradients bench's plan (bench/integrated.py's docstring says what is
measured): its options, its cells, and per way the job: the cells it measures and what each
asks of it (steps, rule, rows per call, tolerance), or why a way skips a cell."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gradlight.bench import corpus
from gradlight.bench.anchors import bf16_problem
from gradlight.bench.integrated_cells import (
    CAPTUM,
    EAGER,
    EAGER_BF16,
    FAITHFUL,
    FIXED,
    GIVEN,
    GRADLIGHT,
    MIX,
    REFERENCE,
    TIMED,
    length_texts,
    make_cell,
    rows_per_call,
    title,
)
from gradlight.bench.machine import cores_available
from gradlight.runtime.execution.tokenization import TextEncoder
from gradlight.runtime.explanation.methods import resolve_method
from gradlight.wire.methods import GAUSS_LEGENDRE, INTEGRATED_GRADIENTS, TOLERANCE_STEPS

MAX_LENGTH = 128  # the bench's realistic mix is truncated there (workload.MIX_MAX_LENGTH)
# gradlight's batch settings (gradlight serve --max-batch-size, --max-tokens-per-batch): the best
# of 32, 64, 96, 128 and 512 rows per call on MiniLM-L6, L = 2, 8 texts of ~30 tokens, bf16
# (docs/benchmarks.md, "Integrated gradients")
ROWS_PER_CALL = 64
TOKENS_PER_CALL = 2048


@dataclass(frozen=True)
class IGOptions:
    """What is measured (see the module's docstring)."""

    steps: int = 32
    integration: str = GAUSS_LEGENDRE
    label_counts: tuple[int, ...] = (2, 3, 10)
    batches: tuple[int, ...] = (1, 8)
    lengths: tuple[int, ...] = (30, 128, 512)
    texts: int = 8  # per fixed-steps cell
    faithful: bool = True
    faithful_texts: int = 16  # notes of the realistic mix per faithful cell
    faithful_batch: int = 8
    tolerance: float = 0.01
    max_steps: int = 64  # gradlight's most steps per text with the tolerance
    faithful_eager_steps: int = 32
    captum_steps: int = 50
    reference_steps: int = 64
    max_length: int = MAX_LENGTH  # the mix's (faithful cells), and given texts'
    rows_per_call: int = ROWS_PER_CALL  # gradlight's max_batch_size
    tokens_per_call: int = TOKENS_PER_CALL  # gradlight's max_tokens_per_batch (0: rows x longest)
    precision: str = "auto"  # gradlight's, as gradlight serve --precision takes it
    eager_rows_per_call: int = 0  # 0: every point of a batch (within the cap)
    captum_internal_batch_size: int = 0  # 0: every point of a batch (within the cap)
    eager_max_tokens_per_call: int = 32768  # rows x padded tokens; 0: no cap
    captum_max_tokens: int = 0  # 0: Captum on every cell
    attention: str = "auto"  # eager-best's and eager-bf16's: auto, sdpa or eager
    bf16: bool = True  # eager-bf16 where the CPU has native bf16
    min_repeats: int = 1
    max_repeats: int = 3
    budget_s: float = 20.0  # per way and cell
    threads: int = field(default_factory=cores_available)

    @classmethod
    def quick(cls, **changes: Any) -> IGOptions:
        """A few minutes on a small model: one small cell of each kind."""
        small = {"label_counts": (2,), "batches": (8,), "lengths": (128,), "faithful_texts": 8}
        return cls(**{**small, "min_repeats": 1, "max_repeats": 2, **changes})

    def __post_init__(self) -> None:
        resolve_method(INTEGRATED_GRADIENTS, self.steps, self.integration)  # as gradlight checks
        if self.max_steps not in TOLERANCE_STEPS:
            raise ValueError(f"max_steps must be one of {TOLERANCE_STEPS}, got {self.max_steps}")
        for name in ("label_counts", "batches", "lengths"):
            values = getattr(self, name)
            if not values or min(values) < 1:
                raise ValueError(f"{name} must be one or more positive numbers, got {values}")
        if self.attention not in ("auto", "sdpa", "eager"):
            raise ValueError(f"attention must be auto, sdpa or eager, got {self.attention!r}")


def build_cells(
    options: IGOptions, encoder: TextEncoder, model_max: int, texts: Sequence[str] | None
) -> list[dict[str, Any]]:
    """The fixed-steps cells, then the faithful ones (``texts``: every cell's, where given)."""
    cells = []
    for labels in options.label_counts:
        for batch in options.batches:
            for length in options.lengths if texts is None else (GIVEN,):
                if texts is None:
                    tokens = min(int(length), model_max)
                    chosen, max_length = length_texts(encoder, tokens, options.texts), tokens
                else:
                    chosen, max_length = list(texts), min(options.max_length, model_max)
                cells.append(make_cell(FIXED, labels, batch, length, chosen, max_length, encoder))
    if options.faithful:
        notes = list(texts) if texts is not None else corpus.notes(options.faithful_texts)
        max_length = min(options.max_length, model_max)
        for labels in options.label_counts:
            length = MIX if texts is None else GIVEN
            cell = make_cell(
                FAITHFUL, labels, options.faithful_batch, length, notes, max_length, encoder
            )
            cells.append(cell)
    return cells


def plan_ways(cell: dict[str, Any], options: IGOptions, bf16: bool) -> None:
    """Which ways measure ``cell`` and what each asks (steps, rule, rows per call, tolerance);
    the ways it skips, with why."""
    width = max(n for batch in cell["tokens"] for n in batch)
    batch = cell["batch"]
    faithful = cell["group"] == FAITHFUL
    cap = options.eager_max_tokens_per_call

    def eager(steps: int, fixed: int) -> dict[str, Any]:
        rows = rows_per_call(steps * batch, batch, width, fixed, cap)
        return {
            "steps": steps,
            "integration": GAUSS_LEGENDRE if faithful else options.integration,
            "rows_per_call": rows,
        }

    eager_steps = options.faithful_eager_steps if faithful else options.steps
    asks = {
        CAPTUM: eager(
            options.captum_steps if faithful else options.steps, options.captum_internal_batch_size
        ),
        EAGER: eager(eager_steps, options.eager_rows_per_call),
        EAGER_BF16: eager(eager_steps, options.eager_rows_per_call),
        GRADLIGHT: {
            "steps": options.max_steps if faithful else options.steps,
            "integration": "" if faithful else options.integration,
            "rows_per_call": options.rows_per_call,
            "tolerance": options.tolerance if faithful else 0.0,
        },
    }
    if faithful:
        asks[REFERENCE] = eager(options.reference_steps, options.eager_rows_per_call)
    skipped = {}
    if options.captum_max_tokens and width > options.captum_max_tokens:
        skipped[CAPTUM] = (
            f"texts of up to {width} tokens, above --captum-max-tokens {options.captum_max_tokens}"
        )
    if not options.bf16:
        skipped[EAGER_BF16] = "not asked (bf16 off)"
    elif not bf16:
        skipped[EAGER_BF16] = bf16_problem("cpu") or "no native bf16"
    cell.update(
        title=title(cell),
        asks=asks,
        methods=[m for m in TIMED if m not in skipped],
        not_measured=skipped,
    )


def jobs_for(
    cells: list[dict[str, Any]], base: dict[str, Any], methods: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """A job per way, with the cells it measures and what each asks of it."""
    jobs = {}
    for method in methods:
        mine = [
            {
                **{k: c[k] for k in ("name", "title", "labels", "max_length", "batches")},
                **c["asks"][method],
            }
            for c in cells
            if method in c["methods"] or (method == REFERENCE and method in c["asks"])
        ]
        if mine:
            jobs[method] = {**base, "method": method, "cells": mine}
    return jobs
