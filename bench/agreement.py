"""How closely each method's answers match the reference's, on the cells that kept them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

TOP = 3


def _top(scores: np.ndarray) -> list[frozenset[int]]:
    """Per label, the positions of the ``TOP`` largest absolute scores."""
    return [frozenset(np.argsort(-np.abs(row), kind="stable")[:TOP].tolist()) for row in scores]


def _compare(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, Any]:
    shared = sorted(set(reference) & set(other))
    if not shared:
        return {}
    result: dict[str, Any] = {"compared": len(shared)}
    score_keys = [k for k in shared if k.endswith("|scores")]
    if score_keys:
        mismatched = [k for k in score_keys if reference[k].shape != other[k].shape]
        if mismatched:
            raise ValueError(f"token counts differ between methods for {mismatched[:3]}")
        result["max_abs_diff_scores"] = float(
            max(np.max(np.abs(reference[k] - other[k])) for k in score_keys)
        )
        agree = [
            a == b
            for k in score_keys
            for a, b in zip(_top(reference[k]), _top(other[k]), strict=True)
        ]
        result["top3_agreement"] = round(float(np.mean(agree)), 4)
    probability_keys = [k for k in shared if k.endswith("|probabilities")]
    if probability_keys:
        result["max_abs_diff_probabilities"] = float(
            max(np.max(np.abs(reference[k] - other[k])) for k in probability_keys)
        )
    # sentence cells keep "...|sentences", attribution cells asking for both "...|sentence_scores"
    sentence_keys = [k for k in shared if k.endswith(("|sentences", "|sentence_scores"))]
    if sentence_keys:
        # a truncated text's answer lists the sentences the model reads a part of: the first
        # ones (the reference's others score 0 and are not compared)
        result["max_abs_diff_sentence_scores"] = float(
            max(
                np.max(np.abs(reference[k][: len(other[k])] - other[k]), initial=0.0)
                for k in sentence_keys
            )
        )
    return result


def _by_cell(path: Path, name: str) -> dict[str, dict[str, np.ndarray]]:
    """The kept arrays of cell ``name`` by mode (``""`` for attribution cells; ``one_call`` or
    ``per_variant`` for sentence cells), keyed without the cell name and the mode."""
    result: dict[str, dict[str, np.ndarray]] = {}
    with np.load(path) as saved:
        for key in saved.files:
            parts = key.split("|")
            if parts[0] != name:
                continue
            mode = parts[1] if parts[-1] == "sentences" else ""
            rest = parts[2:] if mode else parts[1:]
            result.setdefault(mode, {})["|".join(rest)] = saved[key]
    return result


def agreement(cells: list[dict[str, Any]], saved: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Per kept cell, per method (and mode) other than the reference: differences to the
    reference's answers on the same texts."""
    result: dict[str, dict[str, Any]] = {}
    for cell in cells:
        if not cell.get("keep"):
            continue
        (reference,) = _by_cell(saved["reference"], cell["name"]).values()
        compared: dict[str, Any] = {}
        for method, path in saved.items():
            if method == "reference" or method not in cell["methods"]:
                continue
            for mode, arrays in _by_cell(path, cell["name"]).items():
                compared[f"{method} ({mode})" if mode else method] = _compare(reference, arrays)
        result[cell["name"]] = compared
    return result
