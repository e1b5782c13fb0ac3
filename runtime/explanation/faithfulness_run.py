"""ERASER faithfulness of units' token scores, measured through the batcher: every variant of
every unit (runtime/explanation/faithfulness.py) in one work; a document's variants cut into
windows, their logits aggregated as the document's."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from gradlight.artifact.manifest import FORWARD
from gradlight.runtime.execution.admission import Admission
from gradlight.runtime.execution.batcher import DynamicBatcher
from gradlight.runtime.execution.engine import Engine
from gradlight.runtime.execution.feeds import Row, RowOutput
from gradlight.runtime.execution.tokenization import EncodedText
from gradlight.runtime.explanation.faithfulness import (
    REMOVALS,
    FaithfulnessPlan,
    FaithfulnessResult,
    plan_variants,
)
from gradlight.runtime.explanation.faithfulness import score as faithfulness_score
from gradlight.runtime.explanation.methods import text_seed
from gradlight.runtime.explanation.request_plan import ResolvedRequest, TokenScores
from gradlight.runtime.explanation.windows import Windowing, aggregate


async def measure_faithfulness(
    engine: Engine,
    batcher: DynamicBatcher,
    request: ResolvedRequest,
    encoded: Sequence[EncodedText],
    unit_scores: Sequence[TokenScores | None],
    full_logits: Sequence[np.ndarray],
    admission: Admission,
    windows: Callable[[int, EncodedText], list[EncodedText]] | None = None,
) -> list[FaithfulnessResult | None]:
    """ERASER comprehensiveness and sufficiency of each unit's token scores: all variants
    of all units through the forward graph in one work (runtime/explanation/faithfulness.py).
    ``windows``: a unit's variant cut into windows, whose logits are aggregated by the
    request's rule (None: each variant is one row)."""
    mask_id = engine.encoder.mask_token_id
    if mask_id is None:
        mask_id = engine.manifest.pad_token_id
    plans: list[FaithfulnessPlan] = []
    rows: list[Row] = []
    parts: list[int] = []  # rows per variant
    options, seed = request.options, request.seed or 0
    for index, (text, _) in enumerate(request.units):
        scores = unit_scores[index]
        assert scores is not None
        planned = plan_variants(
            text,
            encoded[index],
            scores.raw,
            removal=options.removal or REMOVALS[0],
            mask_id=mask_id,
            seed=text_seed(seed, encoded[index].ids),
        )
        plans.append(planned)
        for variant in planned.variants:
            cut = windows(index, variant) if windows is not None else [variant]
            parts.append(len(cut))
            rows.extend(Row(part, unit=index) for part in cut)
    admission.resize(len(rows))
    outputs = await batcher.submit(FORWARD, rows, admission)
    logits = _variant_logits(outputs, parts, request.windowing)
    results: list[FaithfulnessResult | None] = []
    picked, position = list(request.label_indices), 0
    for index, planned in enumerate(plans):
        count = len(planned.variants)
        p_full = engine.probabilities(full_logits[index])[picked]
        p_variants = (
            engine.probabilities(logits[position : position + count])[:, picked]
            if count
            else np.zeros((0, len(picked)))
        )
        results.append(faithfulness_score(planned, p_full, p_variants))
        position += count
    return results


def _variant_logits(
    outputs: Sequence[RowOutput], parts: Sequence[int], windowing: Windowing | None
) -> np.ndarray:
    """``[V, L]``: each variant's logits from its ``parts`` rows' (windows aggregated)."""
    if windowing is None or all(part == 1 for part in parts):
        return np.stack([output.logits for output in outputs]) if outputs else np.zeros((0, 0))
    logits, start = [], 0
    for part in parts:
        stacked = np.stack([output.logits for output in outputs[start : start + part]])
        logits.append(aggregate(stacked, windowing.aggregation))
        start += part
    return np.stack(logits)
