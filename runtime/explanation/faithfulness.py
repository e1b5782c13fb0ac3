"""ERASER faithfulness of attributions (DeYoung et al. 2020): does removing the words an
attribution ranks first change the model's answer, and do those words alone keep it?

For a text and a label k, the text's words are ranked by their attribution for k, highest
first. At each fraction f of ``FRACTIONS``, with the top ``ceil(f * n)`` of the n words:

- comprehensiveness(f) = p_k(text) - p_k(text without them): higher is more faithful;
- sufficiency(f) = p_k(text) - p_k(only them): lower is more faithful;

each averaged over the fractions (AOPC). A seeded random ranking of the words, one for every
label, gives the same two metrics as the floor a useful attribution should beat.

Choices:

- A word is runtime/execution/words.py's (the visualizer's word view, the bulk evidence), its score
  the sum of its tokens' raw scores; a token belongs to the word ``token_words`` gives it. Only the
  words the model reads are ranked: a truncated text's tail, or characters the tokenizer drops, own
  no token and cannot be removed. Ties are ranked in text order.
- ``ceil`` so that every fraction removes at least one word (1% of a 10-word text is one
  word); never more than n.
- Special tokens (entity markers too) always stay, as do whitespace tokens of no word.
- "delete" (ERASER's removal) drops the words' tokens: the model reads a shorter text, with
  position ids and type ids of what is left. "mask" puts the mask token in each removed token's
  place: the length and positions stay, at the cost of an input seen only in pretraining.
- Variants are planned, not run: the caller runs ``plan.variants`` through the forward graph
  (one padded call per text) and hands the probabilities to ``score``. A variant that removes
  nothing is the text itself and gets no row (the full text's probabilities stand for it);
  variants with the same removed words share one row, so a text has at most
  ``2 * len(FRACTIONS) * (K + 1)`` rows.
- A text with no word the model reads (only special or whitespace tokens) has no variants and
  scores 0 on every metric, with ``words == 0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.execution.words import token_words, words
from gradlight.wire.methods import DELETE, MASK, REMOVALS  # the request's removal names

FRACTIONS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.50)
FULL_TEXT = -1  # row index standing for the full text: a variant that removes no word

__all__ = [
    "DELETE",
    "FRACTIONS",
    "FULL_TEXT",
    "MASK",
    "REMOVALS",
    "FaithfulnessPlan",
    "FaithfulnessResult",
    "plan_variants",
    "score",
]


@dataclass(frozen=True)
class FaithfulnessPlan:
    """One text's variant rows, and which row holds each variant. Row indices point into
    ``variants``; ``FULL_TEXT`` (-1) means the text itself (nothing removed)."""

    variants: tuple[EncodedText, ...]  # rows for the forward graph, in order of first use
    labels: int  # K
    fractions: tuple[float, ...]
    counts: tuple[int, ...]  # words removed (kept) at each fraction
    spans: tuple[tuple[int, int], ...]  # the ranked words, in text order
    order: np.ndarray  # int64 [K, n]: indices into ``spans``, highest score first, per label
    random_order: np.ndarray  # int64 [n]: the random ranking, the same for every label
    comprehensiveness_rows: np.ndarray  # int64 [K, F]: the text without the top words
    sufficiency_rows: np.ndarray  # int64 [K, F]: the top words alone
    random_comprehensiveness_rows: np.ndarray  # int64 [F]
    random_sufficiency_rows: np.ndarray  # int64 [F]

    @property
    def words(self) -> int:
        """The number of words ranked."""
        return len(self.spans)


@dataclass(frozen=True)
class FaithfulnessResult:
    """AOPC per label, in the order of the plan's raw scores."""

    fractions: tuple[float, ...]
    comprehensiveness: np.ndarray  # [K]
    sufficiency: np.ndarray  # [K]
    random_comprehensiveness: np.ndarray  # [K]
    random_sufficiency: np.ndarray  # [K]
    words: int  # the number of words ranked


def max_variants(labels: int) -> int:
    """The most forward rows ``plan_variants`` asks for one text and ``labels`` labels."""
    return 2 * len(FRACTIONS) * (labels + 1)


def _check_removal(removal: str, mask_id: int | None) -> None:
    if removal not in REMOVALS:
        raise ValueError(f"removal {removal!r} is unknown; use one of: {', '.join(REMOVALS)}")
    if removal == MASK and (
        isinstance(mask_id, bool) or not isinstance(mask_id, int | np.integer) or mask_id < 0
    ):
        raise ValueError(f"removal 'mask' needs the tokenizer's mask token id (mask_id={mask_id})")


def _ranking(scores: np.ndarray, owners: np.ndarray, words: int) -> np.ndarray:
    """``[K, words]``: per label, the words by their tokens' summed score, descending, ties in
    text order (``owners``: each token's word, -1 for none)."""
    word_scores = np.zeros((words, scores.shape[0]), dtype=np.float64)
    owned = owners >= 0
    np.add.at(word_scores, owners[owned], scores[:, owned].T)
    return np.argsort(-word_scores.T, axis=1, kind="stable").astype(np.int64)


class _Variants:
    """The variants a plan runs, each once: removing a set of words (indices into the text's
    words; each token belongs to ``owners[token]``, -1 for none) gives one row."""

    def __init__(
        self, encoded: EncodedText, owners: np.ndarray, removal: str, mask_id: int | None
    ) -> None:
        self.encoded, self.owners, self.removal, self.mask_id = encoded, owners, removal, mask_id
        self.rows: list[EncodedText] = []
        self._seen: dict[tuple[int, ...], int] = {}

    def row(self, removed: np.ndarray) -> int:
        """The row of the variant without the words ``removed``."""
        if removed.size == 0:
            return FULL_TEXT
        key = tuple(sorted(removed.tolist()))
        if key not in self._seen:
            self._seen[key] = len(self.rows)
            dropped = np.isin(self.owners, removed)
            self.rows.append(_variant(self.encoded, dropped, self.removal, self.mask_id))
        return self._seen[key]

    def rows_of(self, ranking: np.ndarray, counts: Sequence[int]) -> tuple[list[int], list[int]]:
        """Per count, the rows without the ``count`` first words of ``ranking``
        (comprehensiveness) and without all the others (sufficiency)."""
        pairs = [(self.row(ranking[:count]), self.row(ranking[count:])) for count in counts]
        return [c for c, _ in pairs], [s for _, s in pairs]


def plan_variants(
    text: str,
    encoded: EncodedText,
    raw_scores: np.ndarray,
    *,
    removal: str = DELETE,
    mask_id: int | None = None,
    seed: int | Sequence[int] = 0,
) -> FaithfulnessPlan:
    """The variants of ``text`` (encoded as ``encoded``) that the metrics need.

    ``raw_scores``: [K, S] signed per-token scores (S = ``len(encoded)``) of the K labels
    asked. Words are ranked per label by their tokens' summed score, descending, ties in text
    order; the random ranking is ``np.random.default_rng(seed).permutation(n)`` (the server
    passes the text's seed, runtime/explanation/methods.py: ``text_seed``). ``removal``
    "delete" drops the removed words' tokens, "mask" replaces each by ``mask_id``.
    Comprehensiveness variants remove the top words, sufficiency variants remove every other
    word (keep only the top words); special tokens always stay."""
    scores = _checked_scores(text, encoded, raw_scores)
    _check_removal(removal, mask_id)
    labels = scores.shape[0]
    owners, spans = _word_owners(text, encoded)
    n = len(spans)
    counts = tuple(_count(fraction, n) for fraction in FRACTIONS)
    order = _ranking(scores, owners, n)
    random_order = np.random.default_rng(seed).permutation(n).astype(np.int64)

    variants = _Variants(encoded, owners, removal, mask_id)
    comprehensiveness, sufficiency = [], []
    for k in range(labels):
        c, s = variants.rows_of(order[k], counts)
        comprehensiveness.append(c)
        sufficiency.append(s)
    random_c, random_s = variants.rows_of(random_order, counts)
    shape = (labels, len(FRACTIONS))
    return FaithfulnessPlan(
        variants=tuple(variants.rows),
        labels=labels,
        fractions=FRACTIONS,
        counts=counts,
        spans=spans,
        order=order,
        random_order=random_order,
        comprehensiveness_rows=np.asarray(comprehensiveness, dtype=np.int64).reshape(shape),
        sufficiency_rows=np.asarray(sufficiency, dtype=np.int64).reshape(shape),
        random_comprehensiveness_rows=np.asarray(random_c, dtype=np.int64),
        random_sufficiency_rows=np.asarray(random_s, dtype=np.int64),
    )


def score(plan: FaithfulnessPlan, p_full: np.ndarray, p_variants: np.ndarray) -> FaithfulnessResult:
    """AOPCs from ``p_full`` ([K]: the K labels' probabilities for the full text) and
    ``p_variants`` ([len(plan.variants), K]: theirs for each row of ``plan.variants``, in
    order). A plan with no word scores 0 everywhere."""
    labels = plan.labels
    full = np.asarray(p_full, dtype=np.float64)
    if full.shape != (labels,):
        raise ValueError(
            f"p_full has shape {full.shape}; the plan has {labels} labels: ({labels},)"
        )
    variants = np.asarray(p_variants, dtype=np.float64)
    expected = (len(plan.variants), labels)
    if variants.shape != expected:
        raise ValueError(
            f"p_variants has shape {variants.shape}; the plan has {expected[0]} variant rows of "
            f"{labels} labels: {expected}"
        )
    if plan.words == 0:
        zeros = np.zeros(labels, dtype=np.float64)
        return FaithfulnessResult(
            plan.fractions, zeros, zeros.copy(), zeros.copy(), zeros.copy(), 0
        )
    table = np.concatenate([variants, full[None, :]])  # FULL_TEXT (-1): the last row
    columns = np.arange(labels)[:, None]

    def aopc(rows: np.ndarray) -> np.ndarray:
        rows = np.broadcast_to(rows, (labels, len(plan.fractions)))
        return (full[:, None] - table[rows, columns]).mean(axis=1)

    return FaithfulnessResult(
        fractions=plan.fractions,
        comprehensiveness=aopc(plan.comprehensiveness_rows),
        sufficiency=aopc(plan.sufficiency_rows),
        random_comprehensiveness=aopc(plan.random_comprehensiveness_rows),
        random_sufficiency=aopc(plan.random_sufficiency_rows),
        words=plan.words,
    )


def _checked_scores(text: str, encoded: EncodedText, raw_scores: np.ndarray) -> np.ndarray:
    length = len(encoded)
    parallel = {
        "type_ids": len(encoded.type_ids),
        "tokens": len(encoded.tokens),
        "offsets": len(encoded.offsets),
        "special": len(encoded.special),
    }
    if encoded.markers:
        parallel["markers"] = len(encoded.markers)
    uneven = {name: size for name, size in parallel.items() if size != length}
    if encoded.ids.ndim != 1 or uneven:
        raise ValueError(f"encoded is inconsistent: {length} ids, but {uneven}")
    if any(end > len(text) for _, end in encoded.offsets):
        raise ValueError(
            f"encoded has offsets past the text's end ({len(text)} code points): "
            "is it this text's encoding?"
        )
    scores = np.asarray(raw_scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != length or scores.shape[0] == 0:
        raise ValueError(
            f"raw_scores has shape {scores.shape}; expected [K, {length}]: one row per label "
            f"(at least one), one column per token of encoded"
        )
    if not np.isfinite(scores).all():
        raise ValueError("raw_scores has values that are not finite (nan or inf)")
    return scores


def _word_owners(text: str, encoded: EncodedText) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """Per token, the index of its word among the words that own a token (-1: none, as for
    special tokens), and those words' spans, in text order."""
    spans = words(text)
    positions = [i for i in range(len(encoded)) if not (encoded.special[i] or encoded.is_marker(i))]
    owners_in_text = token_words(spans, [encoded.offsets[i][0] for i in positions])
    ranked = sorted({w for w in owners_in_text if w is not None})
    index = {w: j for j, w in enumerate(ranked)}
    owners = np.full(len(encoded), -1, dtype=np.int64)
    for position, w in zip(positions, owners_in_text, strict=True):
        if w is not None:
            owners[position] = index[w]
    return owners, tuple(spans[w] for w in ranked)


def _count(fraction: float, n: int) -> int:
    """``ceil(fraction * n)``, at least 1 and at most ``n`` (0 when there is no word); rounded
    first so that float error (0.07 * 100 = 7.000000000000001) adds no word."""
    if n == 0:
        return 0
    return min(n, max(1, math.ceil(round(fraction * n, 9))))


def _variant(
    encoded: EncodedText, removed: np.ndarray, removal: str, mask_id: int | None
) -> EncodedText:
    """``encoded`` without the tokens flagged in ``removed`` (a bool [S])."""
    if removal == MASK:
        ids = encoded.ids.copy()
        ids[removed] = mask_id
        # Tokens, offsets and flags stay: they say what each position stood for.
        return replace(encoded, ids=ids, type_ids=encoded.type_ids.copy())
    kept = np.flatnonzero(~removed).tolist()
    return EncodedText(
        ids=encoded.ids[kept],
        type_ids=encoded.type_ids[kept],
        tokens=tuple(encoded.tokens[i] for i in kept),
        offsets=tuple(encoded.offsets[i] for i in kept),
        special=tuple(encoded.special[i] for i in kept),
        truncated=encoded.truncated,
        markers=tuple(encoded.markers[i] for i in kept) if encoded.markers else (),
    )
