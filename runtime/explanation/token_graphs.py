"""The graphs that give input x gradient token scores, one entry each: when it serves a
request, the rows it runs for the request's texts, and how a text's scores are read from them
(the path graph's rows belong to the path methods: runtime/explanation/methods.py).

- The all-labels graph: one row per text, every label's scores from one forward and backward.
- The labels graph: one row per text holding the asked labels' one-hot cotangents (one forward,
  one backward per label), for two labels or more; more rows of equal shares where the labels
  outweigh one call.
- The cotangent graph: one row per (text, label); for one label it is the same work as the
  labels graph's row without the vmapped backward's overhead (docs/export-internals.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from gradlight.artifact.manifest import ATTRIBUTION, ATTRIBUTION_COTANGENT, ATTRIBUTION_LABELS
from gradlight.runtime.execution.feeds import Row, RowOutput
from gradlight.runtime.execution.tokenization import EncodedText


@dataclass(frozen=True)
class LabelRows:
    """How a request's labels are spread over each text's rows: ``shares[r]`` are the label
    indices of a text's row r (one share per row; every text has the same)."""

    labels: int  # the model's label count
    shares: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class TokenGraph:
    """``serves(subset, asked)``: whether the graph serves a request for ``asked`` labels
    (``subset``: the request named them); ``shares(asked, max_rows)``: each row's labels;
    ``rows(encoded, shares)`` one text's rows; ``scores(rows, shares)`` the text's raw scores
    ``[K, S]`` and the output whose logits come with them."""

    key: str
    serves: Callable[[bool, Sequence[int]], bool]
    shares: Callable[[Sequence[int], int], tuple[tuple[int, ...], ...]]
    rows: Callable[[EncodedText, LabelRows], list[Row]]
    scores: Callable[[Sequence[RowOutput], LabelRows], tuple[np.ndarray, RowOutput]]


def _one_share(asked: Sequence[int], max_rows: int) -> tuple[tuple[int, ...], ...]:
    return (tuple(asked),)


def _per_label(asked: Sequence[int], max_rows: int) -> tuple[tuple[int, ...], ...]:
    return tuple((k,) for k in asked)


def _equal_shares(asked: Sequence[int], max_rows: int) -> tuple[tuple[int, ...], ...]:
    """As few rows as ``max_rows`` labels per row allow, of equal shares."""
    rows = -(-len(asked) // max_rows)
    share = -(-len(asked) // rows)
    return tuple(tuple(asked[start : start + share]) for start in range(0, len(asked), share))


def _cotangent_rows(encoded: EncodedText, spread: LabelRows) -> list[Row]:
    """One row per label, its one-hot cotangent ``[L]``."""
    one_hot = np.eye(spread.labels, dtype=np.float32)
    return [Row(encoded, {"cotangent": one_hot[k]}) for (k,) in spread.shares]


def _label_rows(encoded: EncodedText, spread: LabelRows) -> list[Row]:
    """One row per share, its labels' one-hot cotangents ``[K, L]``, counting as K rows."""
    one_hot = np.eye(spread.labels, dtype=np.float32)
    return [
        Row(encoded, {"cotangent": one_hot[list(share)]}, weight=len(share))
        for share in spread.shares
    ]


def _all_labels_scores(
    rows: Sequence[RowOutput], spread: LabelRows
) -> tuple[np.ndarray, RowOutput]:
    return rows[0].scores, rows[0]


def _label_rows_scores(
    rows: Sequence[RowOutput], spread: LabelRows
) -> tuple[np.ndarray, RowOutput]:
    # A row that shared its call with rows of more labels was padded with zero vectors.
    parts = [row.scores[: len(share)] for row, share in zip(rows, spread.shares, strict=True)]
    return np.concatenate(parts), rows[0]


def _cotangent_scores(rows: Sequence[RowOutput], spread: LabelRows) -> tuple[np.ndarray, RowOutput]:
    return np.stack([row.scores for row in rows]), rows[0]


TOKEN_GRAPHS: tuple[TokenGraph, ...] = (
    TokenGraph(
        ATTRIBUTION,
        serves=lambda subset, asked: not subset,
        shares=_one_share,
        rows=lambda encoded, spread: [Row(encoded)],
        scores=_all_labels_scores,
    ),
    TokenGraph(
        ATTRIBUTION_LABELS,
        serves=lambda subset, asked: len(asked) > 1,
        shares=_equal_shares,
        rows=_label_rows,
        scores=_label_rows_scores,
    ),
    TokenGraph(
        ATTRIBUTION_COTANGENT,
        serves=lambda subset, asked: True,
        shares=_per_label,
        rows=_cotangent_rows,
        scores=_cotangent_scores,
    ),
)
"""Best first: a request runs the first entry the artifact has that serves it."""


def token_graph(has: Callable[[str], bool], subset: bool, asked: Sequence[int]) -> TokenGraph:
    """The graph that gives input x gradient scores for labels ``asked``."""
    return next(g for g in TOKEN_GRAPHS if has(g.key) and g.serves(subset, asked))


def text_weight(graph: TokenGraph, asked: Sequence[int]) -> int:
    """The rows (by weight) one text's input x gradient rows count as: one all-labels row,
    else one per asked label (cotangent rows, or label rows weighing their labels)."""
    return 1 if graph.key == ATTRIBUTION else len(asked)
