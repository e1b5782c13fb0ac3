"""Raw timings of one cell -> latency, throughput, pairwise ratios, cost against the forward."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradlight.bench.stats import latency, paired_ratio, per_batch_medians
from gradlight.runtime.tokenization import TextEncoder

PAIRS = (("reference", "engine"), ("eager-best", "engine"), ("reference", "eager-best"))


def _throughput(times: list[list[float]], texts: list[int], tokens: list[int]) -> dict[str, Any]:
    medians = per_batch_medians(times)
    return {
        "latency": latency([t for batch in times for t in batch]),
        "texts_per_second": round(sum(texts) / float(medians.sum()), 2),
        "tokens_per_second": round(sum(tokens) / float(medians.sum()), 1),
        "ms_per_text": round(1000 * float(medians.sum()) / sum(texts), 2),
    }


def _token_counts(cell: dict[str, Any], encoder: TextEncoder) -> list[int]:
    counts = [
        sum(len(row) for row in encoder.encode(batch, cell["max_length"]))
        for batch in cell["batches"]
    ]
    if cell["group"] == "length":
        expected = cell["length"] * cell["batch_size"]
        if counts != [expected] * len(counts):
            raise ValueError(f"{cell['name']}: texts did not all reach {cell['length']} tokens")
    return counts


def summarize_cell(
    cell: dict[str, Any],
    results: dict[str, dict[str, Any]],
    encoder: TextEncoder,
    labels: int,
    agreement: dict[str, Any] | None,
) -> dict[str, Any]:
    by_method = {
        method: next(c for c in result["cells"] if c["cell"] == cell["name"])
        for method, result in results.items()
        if method in cell["methods"]
    }
    texts = [len(batch) for batch in cell["batches"]]
    tokens = _token_counts(cell, encoder)
    summary: dict[str, Any] = {
        key: cell[key]
        for key in ("name", "group", "kind", "batch_size", "max_length", "length", "labels")
        if key in cell
    }
    summary.update(labels_total=labels, texts=sum(texts), tokens=sum(tokens), methods={})
    summary["agreement_with_reference"] = agreement
    if cell["kind"] == "sentences":
        return _summarize_sentences(summary, by_method, texts, tokens)
    for method, measured in by_method.items():
        entry = _throughput(measured["attribute"], texts, tokens)
        if "forward" in measured:
            attribute = per_batch_medians(measured["attribute"])
            forward = per_batch_medians(measured["forward"])
            entry["forward"] = _throughput(measured["forward"], texts, tokens)
            entry["attribution_over_forward"] = round(float(np.median(attribute / forward)), 3)
        summary["methods"][method] = entry
    summary["speedup"] = {
        f"{engine} vs {slower}": paired_ratio(
            by_method[slower]["attribute"], by_method[engine]["attribute"]
        )
        for slower, engine in PAIRS
        if slower in by_method and engine in by_method
    }
    return summary


def _summarize_sentences(
    summary: dict[str, Any],
    by_method: dict[str, dict[str, Any]],
    texts: list[int],
    tokens: list[int],
) -> dict[str, Any]:
    engine, reference = by_method["engine"], by_method["reference"]
    summary["methods"] = {
        "engine, one padded call": _throughput(engine["one_call"], texts, tokens),
        "engine, one call per variant": _throughput(engine["per_variant"], texts, tokens),
        "reference, one call per variant": _throughput(reference["per_variant"], texts, tokens),
    }
    summary["speedup"] = {
        "one call vs one call per variant (engine)": paired_ratio(
            engine["per_variant"], engine["one_call"]
        ),
        "engine one call vs reference per variant": paired_ratio(
            reference["per_variant"], engine["one_call"]
        ),
    }
    return summary
