"""What goes into a graph call and what comes out per row: the rows a request plans (``Row``),
their padded batch (``Batch``), the graph's extra inputs stacked for the batch, and each row's
outputs cut back to its own length (``RowOutput``). Planning builds rows from here without
importing the batcher."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from gradlight.runtime.execution.tokenization import EncodedText


@runtime_checkable
class DeferredInput(Protocol):
    """A row's extra input made only when its batch is (GradientSHAP's noise, the path graph's
    zero noise): what a request holds until then is this description, not the array, so
    nothing sized by the request's rows is allocated before they run."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def write(self, out: np.ndarray) -> None:
        """Write the input into ``out`` (float32 zeros of ``shape``, in the batch)."""


@dataclass(frozen=True)
class Row:
    encoded: EncodedText
    # The graph's inputs beyond the model's, this row's slice of each (the cotangent graph's
    # ``cotangent``: [L]), or how to make it (``DeferredInput``).
    extras: Mapping[str, np.ndarray | DeferredInput] = field(default_factory=dict)
    unit: int | None = None  # rows of one work with the same unit share one call
    # The rows this row counts as in every limit (queue room, rows and tokens per call): the
    # labels graph's row runs one backward pass per cotangent, as the cotangent graph's rows it
    # stands for would.
    weight: int = 1


def forward_only(row: Row) -> bool:
    """Whether ``row`` asks its graph for no backward pass: a ``cotangent`` of no vectors
    ([0, L] on a graph taking K per row). A call runs as many backward passes as its row with
    the most vectors (``stack_extras`` pads the others with zeros), so such rows run in calls
    of their own."""
    cotangent = row.extras.get("cotangent")
    return isinstance(cotangent, np.ndarray) and cotangent.ndim == 2 and cotangent.shape[0] == 0


def weight(rows: Sequence[Row]) -> int:
    """The rows ``rows`` count as in the batcher's limits (``Row.weight``)."""
    return sum(row.weight for row in rows)


@dataclass(frozen=True)
class RowOutput:
    """One row's outputs; a per-token output (its last axis the padded sequence) is cut to the
    row's own length."""

    outputs: Mapping[str, np.ndarray]

    @property
    def logits(self) -> np.ndarray:  # [L]
        return self.outputs["logits"]

    @property
    def scores(self) -> np.ndarray:  # [L, S] (all labels), [S] (cotangent) or [K, S] (labels)
        return self.outputs["scores"]


@dataclass(frozen=True)
class Batch:
    """Right-padded model inputs for rows of token ids, padded to the longest row only."""

    feed: dict[str, np.ndarray]
    lengths: tuple[int, ...]

    @property
    def attention_mask(self) -> np.ndarray:
        return self.feed["attention_mask"]


def pad(rows: Sequence[EncodedText], pad_token_id: int, token_type_ids: bool) -> Batch:
    """``rows`` as one batch, each right-padded to the longest (``token_type_ids``: whether the
    model takes them)."""
    width = max(len(row) for row in rows)
    input_ids = np.full((len(rows), width), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(rows), width), dtype=np.int64)
    type_ids = np.zeros((len(rows), width), dtype=np.int64)
    for index, row in enumerate(rows):
        input_ids[index, : len(row)] = row.ids
        attention_mask[index, : len(row)] = 1
        type_ids[index, : len(row)] = row.type_ids
    feed = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids:
        feed["token_type_ids"] = type_ids
    return Batch(feed=feed, lengths=tuple(len(row) for row in rows))


def stack_extras(
    names: Sequence[str],
    per_token: frozenset[str],
    rows: Sequence[Mapping[str, np.ndarray | DeferredInput]],
    width: int,
) -> dict[str, np.ndarray]:
    """Rows' extra inputs ``names`` as one batch; a ``per_token`` input (its axis 1 the
    sequence, like the path graph's ``keep`` and ``noise``) is right-padded with zeros to
    ``width``; rows of several vectors (the labels graph's ``cotangent``, [K, L]) with zero
    vectors to the largest K; a ``DeferredInput`` is made in its place in the batch."""
    stacked = {}
    for name in names:
        values = [
            value if isinstance(value, DeferredInput) else np.asarray(value, dtype=np.float32)
            for value in (row[name] for row in rows)
        ]
        shapes = [tuple(value.shape) for value in values]
        padded = name in per_token
        deferred = any(isinstance(value, DeferredInput) for value in values)
        if padded or deferred or len(set(shapes)) > 1:
            length = width if padded else max(shape[0] for shape in shapes)
            batch = np.zeros((len(values), length, *shapes[0][1:]), dtype=np.float32)
            for index, (value, shape) in enumerate(zip(values, shapes, strict=True)):
                if isinstance(value, DeferredInput):
                    value.write(batch[index, : shape[0]])
                else:
                    batch[index, : shape[0]] = value
            stacked[name] = batch
        else:
            stacked[name] = np.stack(values)  # type: ignore[arg-type]
    return stacked


def per_row(
    outputs: Mapping[str, np.ndarray], per_token: frozenset[str], batch: Batch
) -> list[dict[str, np.ndarray]]:
    """Each row's outputs; a ``per_token`` output (its last axis the sequence) cut to the row's
    own length."""
    return [
        {
            name: value[i, ..., :length] if name in per_token else value[i]
            for name, value in outputs.items()
        }
        for i, length in enumerate(batch.lengths)
    ]


def ones_for(
    shapes: Mapping[str, Sequence[int | str]], per_token: frozenset[str], batch: Batch
) -> dict[str, np.ndarray]:
    """Ones of each extra input's declared shape ``shapes`` (the batch's own size on its
    symbolic axes: rows, the sequence for a ``per_token`` input, 1 elsewhere)."""
    rows, width = batch.feed["input_ids"].shape
    return {
        name: np.ones(
            [
                rows,
                *(
                    d if isinstance(d, int) else width if (i == 0 and name in per_token) else 1
                    for i, d in enumerate(shape[1:])
                ),
            ],
            dtype=np.float32,
        )
        for name, shape in shapes.items()
    }
