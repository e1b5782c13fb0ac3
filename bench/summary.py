"""Raw timings of one cell -> latency, throughput, pairwise ratios, cost against the forward.

Per attribution cell, the fastest eager anchor (every eager method but the reference) is the
cell's ``best_eager`` and the fastest engine precision its ``best_engine`` (fastest: the least
sum over batches of each batch's median time); every method gets its ratio against the
reference (``M vs reference``) and against the best eager (``M vs best eager``), each taken
batch by batch on the same batches (``stats.paired_ratio``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from gradlight.bench.stats import latency, paired_ratio, per_batch_medians
from gradlight.bench.workload import EAGER, ENGINE, REFERENCE
from gradlight.runtime.execution.tokenization import TextEncoder

SENTENCE_MODES = (("one_call", "one padded call"), ("per_variant", "one call per variant"))


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
    roles: dict[str, str],
) -> dict[str, Any]:
    """``results``: each method's worker result; ``roles``: each method's role."""
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
    machines = {method: results[method].get("machine") for method in by_method}
    if cell["kind"] == "sentences":
        return _summarize_sentences(summary, by_method, texts, tokens, roles, machines)
    for method, measured in by_method.items():
        entry = _throughput(measured["attribute"], texts, tokens)
        if "forward" in measured:
            attribute = per_batch_medians(measured["attribute"])
            forward = per_batch_medians(measured["forward"])
            entry["forward"] = _throughput(measured["forward"], texts, tokens)
            entry["attribution_over_forward"] = round(float(np.median(attribute / forward)), 3)
        summary["methods"][method] = {**entry, "machine": machines[method]}
    times = {method: measured["attribute"] for method, measured in by_method.items()}
    best_eager = _fastest(times, [m for m in times if roles[m] == EAGER])
    best_engine = _fastest(times, [m for m in times if roles[m] == ENGINE])
    summary.update(best_eager=best_eager, best_engine=best_engine)
    speedup: dict[str, float] = {}
    for method in times:
        if REFERENCE in times and method != REFERENCE:
            speedup[f"{method} vs reference"] = paired_ratio(times[REFERENCE], times[method])
        if best_eager is not None:
            speedup[f"{method} vs best eager"] = paired_ratio(times[best_eager], times[method])
    if best_engine is not None:
        for other, name in ((REFERENCE, "reference"), (best_eager, "best eager")):
            if other is not None and other in times:
                speedup[f"best engine vs {name}"] = paired_ratio(times[other], times[best_engine])
    summary["speedup"] = speedup
    return summary


def _fastest(times: dict[str, list[list[float]]], candidates: list[str]) -> str | None:
    """Of ``candidates``, the method with the least sum of per-batch median times."""
    if not candidates:
        return None
    return min(candidates, key=lambda method: float(per_batch_medians(times[method]).sum()))


def _summarize_sentences(
    summary: dict[str, Any],
    by_method: dict[str, dict[str, Any]],
    texts: list[int],
    tokens: list[int],
    roles: dict[str, str],
    machines: dict[str, Any],
) -> dict[str, Any]:
    reference = by_method[REFERENCE]
    summary["methods"], summary["speedup"] = {}, {}
    for engine in (m for m in by_method if roles[m] == ENGINE):
        measured = by_method[engine]
        for mode, label in SENTENCE_MODES:
            entry = _throughput(measured[mode], texts, tokens)
            summary["methods"][f"{engine}, {label}"] = {**entry, "machine": machines[engine]}
        summary["speedup"].update(
            {
                f"one call vs one call per variant ({engine})": paired_ratio(
                    measured["per_variant"], measured["one_call"]
                ),
                f"{engine} one call vs reference per variant": paired_ratio(
                    reference["per_variant"], measured["one_call"]
                ),
            }
        )
    summary["methods"]["reference, one call per variant"] = {
        **_throughput(reference["per_variant"], texts, tokens),
        "machine": machines[REFERENCE],
    }
    return summary
