"""What is measured: cells of batches of texts, planned from the corpus.

A cell is a JSON-ready dict: ``name``, ``group`` (``mix``, ``mix-sentences``, ``length``,
``subset``, ``sentences``), ``kind`` (``attribute`` or ``sentences``), ``batches`` (lists of
texts), ``max_length`` (truncation, the same for every method), optional ``labels`` (a label
subset), ``sentences`` (an attribute cell that asks for sentence attributions too), ``forward``
(also time the forward-only pass), ``keep`` (save scores for the agreement check),
``roles`` (which kinds of method run it: ``reference``, ``eager`` anchors, ``engine``) and, once
the run's methods are known (``with_methods``), ``methods`` (their names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gradlight.bench import corpus

MIX_MAX_LENGTH = 128  # the reference's max_length: every method truncates the mix there
REFERENCE, EAGER, ENGINE = "reference", "eager", "engine"
ALL_ROLES = [REFERENCE, EAGER, ENGINE]


@dataclass(frozen=True)
class Plan:
    """How much to measure. ``quick`` is a smoke-sized run that finishes in a few minutes."""

    texts: int = 48
    mix_batch_sizes: tuple[int, ...] = (1, 8, 32)
    lengths: tuple[int, ...] = (16, 64, 128, 256)
    length_batch_size: int = 8
    sentence_texts: int = 8
    sentences_per_text: int = 5
    subset_texts: int = 4
    subset_size: int = 3
    clients: tuple[int, ...] = (1, 8, 32, 64)
    sentence_clients: int = 32  # the served level asking for token and sentence attributions
    min_repeats: int = 2
    max_repeats: int = 5
    cell_budget_s: float = 15.0

    @staticmethod
    def quick() -> Plan:
        return Plan(
            texts=16,
            mix_batch_sizes=(1, 8),
            lengths=(16, 128),
            sentence_texts=4,
            subset_texts=2,
            clients=(1, 8),
            sentence_clients=8,
            min_repeats=1,
            max_repeats=3,
            cell_budget_s=2.0,
        )


def _batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def mix_cells(plan: Plan, first: bool) -> list[dict[str, Any]]:
    """The realistic mix in batches; batch sizes other than 8 only at the first label count,
    and none larger than the mix itself."""
    texts = corpus.notes(plan.texts)
    sizes = [size for size in (plan.mix_batch_sizes if first else (8,)) if size <= len(texts)]
    return [
        {
            "name": f"mix, batch {size}",
            "group": "mix",
            "kind": "attribute",
            "batch_size": size,
            "batches": _batches(texts, size),
            "max_length": MIX_MAX_LENGTH,
            "forward": size == 8,
            "keep": size == 8,
            "roles": ALL_ROLES,
        }
        for size in sizes
    ]


def mix_sentences_cell(plan: Plan) -> dict[str, Any]:
    """The realistic mix one text at a time, token AND sentence attributions for every label:
    what the reference's users ask of it per text (its request with both), and what the served
    target is judged against. Only the reference and the engine run it."""
    return {
        "name": "mix with sentences, batch 1",
        "group": "mix-sentences",
        "kind": "attribute",
        "sentences": True,
        "batch_size": 1,
        "batches": _batches(corpus.notes(plan.texts), 1),
        "max_length": MIX_MAX_LENGTH,
        "forward": False,
        "keep": True,
        "roles": [REFERENCE, ENGINE],
    }


def length_cells(plan: Plan) -> list[dict[str, Any]]:
    """Texts of about 300 tokens or more, truncated to exactly ``length`` by every method: no
    padding within a batch (the summary checks the token counts)."""
    source = corpus.long_texts(plan.length_batch_size)
    return [
        {
            "name": f"length {length}",
            "group": "length",
            "kind": "attribute",
            "batch_size": plan.length_batch_size,
            "length": length,
            "batches": [source],
            "max_length": length,
            "forward": True,
            "keep": False,
            "roles": ALL_ROLES,
        }
        for length in plan.lengths
    ]


def subset_cell(plan: Plan, labels: int) -> dict[str, Any]:
    return {
        "name": f"{plan.subset_size} of {labels} labels",
        "group": "subset",
        "kind": "attribute",
        "batch_size": plan.subset_texts,
        "batches": [corpus.notes(plan.subset_texts)],
        "max_length": MIX_MAX_LENGTH,
        "labels": list(range(plan.subset_size)),
        "forward": False,
        "keep": True,
        "roles": ALL_ROLES,
    }


def sentence_cell(plan: Plan) -> dict[str, Any]:
    texts = corpus.notes_of(plan.sentences_per_text, plan.sentence_texts)
    return {
        "name": f"sentences, {plan.sentences_per_text} per text",
        "group": "sentences",
        "kind": "sentences",
        "batch_size": 1,
        "batches": _batches(texts, 1),
        "max_length": MIX_MAX_LENGTH,
        "keep": True,
        "roles": [REFERENCE, ENGINE],
    }


def engine_name(precision: str) -> str:
    """The method name of gradlight at ``precision``: ``engine`` (fp32), ``engine-int8``."""
    return ENGINE if precision == "fp32" else f"{ENGINE}-{precision}"


def with_methods(cells: list[dict[str, Any]], roles: dict[str, str]) -> list[dict[str, Any]]:
    """Each cell with ``methods``: the names, of ``roles`` (name -> role, in run order), whose
    role runs the cell."""
    return [
        {**cell, "methods": [name for name, role in roles.items() if role in cell["roles"]]}
        for cell in cells
    ]


def fit(cells: list[dict[str, Any]], model_max_length: int) -> list[dict[str, Any]]:
    """The cells a model with ``model_max_length`` positions can run: longer fixed lengths
    dropped, other truncation lengths capped (tiny test models have few positions)."""
    fitted = []
    for cell in cells:
        if cell.get("length", 0) > model_max_length:
            continue
        fitted.append({**cell, "max_length": min(cell["max_length"], model_max_length)})
    return fitted
