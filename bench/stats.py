"""Summaries of timings: latency percentiles, and ratios taken pair by pair."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def latency(seconds: Sequence[float]) -> dict[str, float]:
    """Median, p90 and p99 in milliseconds, and how many calls they summarize."""
    values = np.asarray(seconds, dtype=np.float64) * 1000
    return {
        "median_ms": round(float(np.median(values)), 2),
        "p90_ms": round(float(np.percentile(values, 90)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "calls": len(values),
    }


def per_batch_medians(times: list[list[float]]) -> np.ndarray:
    """Each batch's median time over its repeats."""
    return np.asarray([np.median(batch) for batch in times], dtype=np.float64)


def paired_ratio(slower: list[list[float]], faster: list[list[float]]) -> float:
    """Median over batches of (time of ``slower`` / time of ``faster``) on the SAME batch."""
    ratios = per_batch_medians(slower) / per_batch_medians(faster)
    return round(float(np.median(ratios)), 3)
