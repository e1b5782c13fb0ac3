"""The integrated gradients bench's cells (bench/integrated.py measures them) and the texts
they read, and how close two ways' answers are.

A fixed-steps cell is one (label count ``L``, texts per call ``batch``, text length class) of
the grid; every way runs ``steps`` Gauss-Legendre steps over the labels ``0 .. L-1``. A
faithful cell (one per ``L``) reads notes of the bench's realistic mix: gradlight chooses the
steps per text (``completeness_tolerance``), the eager ways run fixed steps (eager-best 32,
Captum 50), and an untimed 64-step eager fp32 reference scores every way's answers.

The texts of a length class ``N`` are notes of bench/corpus.py joined in order (text ``i``
starts at note ``i``) until they pass ``N`` tokens, then cut at the last word boundary that
keeps them at ``N`` tokens or fewer (special tokens included) with the artifact's tokenizer:
the same texts on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gradlight.bench import corpus
from gradlight.runtime.execution.tokenization import TextEncoder

FIXED, FAITHFUL = "fixed", "faithful"
MIX = "mix"  # the length class of the faithful cells: notes of the realistic mix
GIVEN = "given"  # the length class of texts given to measure()
CAPTUM, EAGER, EAGER_BF16, GRADLIGHT, REFERENCE = (
    "captum",
    "eager-best",
    "eager-bf16",
    "gradlight",
    "reference",
)
TIMED = (CAPTUM, EAGER, EAGER_BF16, GRADLIGHT)
EAGER_WAYS = (EAGER, EAGER_BF16)  # the candidates for a cell's best eager (when kept)
TOP = 3


def length_texts(encoder: TextEncoder, tokens: int, count: int) -> list[str]:
    """``count`` texts of about ``tokens`` tokens each (at most, special tokens included, and
    within a few tokens of it), made from the corpus's notes (the module's docstring)."""
    notes = corpus.notes(count + 64)
    texts = []
    for first in range(count):
        joined, index = notes[first], first + 1
        while len(encoder.encode([joined], 1 << 20)[0]) <= tokens:
            joined += " " + notes[index % len(notes)]
            index += 1
        texts.append(_cut(encoder, joined, tokens))
    return texts


def _cut(encoder: TextEncoder, text: str, tokens: int) -> str:
    """``text`` up to the last word boundary at which it has ``tokens`` tokens or fewer."""
    (encoded,) = encoder.encode([text], tokens)  # truncated: the first ``tokens`` tokens
    pairs = zip(encoded.offsets, encoded.special, strict=True)
    end = max(stop for (_, stop), special in pairs if not special)
    while end > 0:
        if end < len(text) and not text[end].isspace():
            end = text.rfind(" ", 0, end)  # the word goes on past the cut: drop it
            continue
        cut = text[:end].rstrip()
        if len(encoder.encode([cut], 1 << 20)[0]) <= tokens:
            return cut
        end = cut.rfind(" ")
    raise ValueError(f"no word boundary keeps {text[:40]!r}... within {tokens} tokens")


def cell_name(group: str, labels: int, batch: int, length: int | str) -> str:
    """A cell's key (no ``|``: the saved scores' keys are ``CELL|BATCH|TEXT``)."""
    return f"{group}-L{labels}-b{batch}-{length}"


def title(cell: dict[str, Any]) -> str:
    """A cell as the report names it: "L=2, batch 8, ~128 tokens"."""
    length = cell["length"]
    if length == MIX:
        texts = "notes of the mix"
    else:
        texts = "given texts" if length == GIVEN else f"~{length} tokens"
    return f"L={cell['L']}, batch {cell['batch']}, {texts}"


def make_cell(
    group: str,
    labels: int,
    batch: int,
    length: int | str,
    texts: Sequence[str],
    max_length: int,
    encoder: TextEncoder,
) -> dict[str, Any]:
    """A cell of ``texts`` read by every way at ``max_length``, ``batch`` texts per call."""
    batches = [list(texts[i : i + batch]) for i in range(0, len(texts), batch)]
    return {
        "name": cell_name(group, labels, batch, length),
        "group": group,
        "L": labels,
        "labels": list(range(labels)),
        "batch": batch,
        "length": length,
        "max_length": max_length,
        "batches": batches,
        "tokens": [[len(row) for row in encoder.encode(b, max_length)] for b in batches],
    }


def rows_per_call(points: int, batch: int, width: int, fixed: int, max_tokens: int) -> int:
    """Rows per eager model call: ``fixed`` where given (> 0), else every point of a batch
    (``points``: steps x texts) unless ``max_tokens`` (> 0) caps rows x ``width`` (whole
    steps of the batch, at least one)."""
    if fixed > 0:
        return fixed
    if max_tokens > 0 and points * width > max_tokens:
        return max(batch, (max_tokens // width) // batch * batch)
    return points


def top3_agreement(reference: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> float:
    """Per text and label, the share of the reference's ``TOP`` tokens (largest absolute raw
    scores; fewer where the text has fewer) that ``other`` has among its own ``TOP``;
    averaged over texts and labels. Keys: texts, values ``[K, S]``."""
    if set(reference) != set(other):
        raise ValueError("the methods scored different texts")
    shares = []
    for key, ref in reference.items():
        if ref.shape != other[key].shape:
            raise ValueError(f"text {key}: token counts differ ({ref.shape} vs {other[key].shape})")
        top = min(TOP, ref.shape[-1])
        for a, b in zip(ref, other[key], strict=True):
            first = set(np.argsort(-np.abs(a), kind="stable")[:top].tolist())
            second = set(np.argsort(-np.abs(b), kind="stable")[:top].tolist())
            shares.append(len(first & second) / top)
    return round(float(np.mean(shares)), 4) if shares else float("nan")


def relative_gaps(scores: dict[str, np.ndarray], deltas: dict[str, np.ndarray]) -> np.ndarray:
    """Per text and label, ``|sum of scores - (f(x) - f(b))| / |f(x) - f(b)|`` (``deltas``:
    f(x) - f(b) per text, ``[K]``), flat."""
    gaps = [
        np.abs(scores[key].astype(np.float64).sum(-1) - delta) / np.maximum(np.abs(delta), 1e-12)
        for key, delta in deltas.items()
    ]
    return np.concatenate(gaps) if gaps else np.zeros(0)


def max_relative_difference(
    reference: dict[str, np.ndarray], other: dict[str, np.ndarray]
) -> float:
    """Max over texts and labels of max |other - reference| / max |reference|."""
    if set(reference) != set(other):
        raise ValueError("the methods scored different texts")
    worst = 0.0
    for key, ref in reference.items():
        if ref.shape != other[key].shape:
            raise ValueError(f"text {key}: token counts differ ({ref.shape} vs {other[key].shape})")
        scale = np.maximum(np.abs(ref).max(axis=-1), 1e-12)
        worst = max(worst, float((np.abs(other[key] - ref).max(axis=-1) / scale).max()))
    return worst
