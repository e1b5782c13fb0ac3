"""Normalization of raw input x gradient scores, and probabilities from logits (shared by the
runtime and export validation)."""

from __future__ import annotations

import numpy as np


def normalize_scores(raw: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Scale raw scores to [-1, 1] per text and per label.

    ``raw`` is ``[..., S]`` (for example ``[B, L, S]`` or ``[B, S]``); ``attention_mask`` is
    ``[B, S]`` and broadcasts over the middle axes. Each score is divided by the largest
    absolute score over the text's non-padding tokens; padding scores are 0, and so is every
    score of a text whose largest absolute score is 0.
    """
    raw = np.asarray(raw, dtype=np.float64)
    mask = np.asarray(attention_mask).astype(bool)
    while mask.ndim < raw.ndim:
        mask = np.expand_dims(mask, axis=1)
    masked = np.where(mask, raw, 0.0)
    peak = np.max(np.abs(masked), axis=-1, keepdims=True)
    safe = np.where(peak > 0, peak, 1.0)
    return np.where(peak > 0, masked / safe, 0.0).astype(np.float32)


def probabilities(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Sigmoid for multi-label models, softmax otherwise (float64 for stable differences)."""
    logits = np.asarray(logits, dtype=np.float64)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def probability_error_bound(logits: np.ndarray, margin: float, multi_label: bool) -> np.ndarray:
    """``[...]``: the most any probability of a row ``logits [..., L]`` can move when each of
    its logits moves by at most ``margin`` (either way).

    Exact, not a first-order estimate: a sigmoid is monotone in its logit; a softmax
    probability grows with its own logit and falls with every other, so its extremes lie at
    the corners that move its own logit one way and all others the other way."""
    logits = np.asarray(logits, dtype=np.float64)
    central = probabilities(logits, multi_label)
    if multi_label:
        high, low = probabilities(logits + margin, True), probabilities(logits - margin, True)
        return np.maximum(high - central, central - low).max(axis=-1)
    own = np.eye(logits.shape[-1], dtype=bool)  # [L, L]: row i moves logit i
    corner = np.where(own, margin, -margin)  # own logit up, the others down
    high = np.diagonal(probabilities(logits[..., None, :] + corner, False), axis1=-2, axis2=-1)
    low = np.diagonal(probabilities(logits[..., None, :] - corner, False), axis1=-2, axis2=-1)
    return np.maximum(high - central, central - low).max(axis=-1)
