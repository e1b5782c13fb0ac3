"""Cutting a batcher's rows into ONNX Runtime calls: as little padding as the cost of a call allows.

Rows come in *units* that must share one call (a text's leave-one-sentence-out variants) or
single rows. A call pads every row to its longest row, so a call's cost is modelled as
``call_cost_tokens + rows x width`` padded tokens: ``call_cost_tokens`` is the fixed cost of one
call (launch and per-call work) expressed in tokens. On a CPU a call costs little next to the
tokens it computes (one long row in a batch of short ones makes every row pay for it), so calls
are cut where lengths jump; on a GPU a call is dear next to a token, so rows are batched
together. Units sorted by width are cut into consecutive calls by dynamic programming (exact
minimum of the modelled cost), within ``max_rows`` and ``max_tokens`` per call; a unit over
those limits on its own runs alone.
"""

from __future__ import annotations

from collections.abc import Sequence

# The fixed cost of one call in tokens, by ONNX Runtime execution provider. CPU: estimated from
# ``gradlight bench`` (MiniLM-L6, 2 cores: one-text calls against the length sweep put a call's
# fixed cost near 15 tokens of attribution work). CUDA: a GPU computes thousands of tokens in
# the time of one launch-bound call; 4096 is a guess until it is measured on a GPU.
DEFAULT_CALL_COST_TOKENS = {"CPUExecutionProvider": 16, "CUDAExecutionProvider": 4096}

# The most padded tokens (rows x width) per call, by execution provider, where the settings do
# not say. CPU: calls of about 1024 tokens are as fast as larger ones or faster, and hold a
# fraction of their buffers; much smaller calls are slower (the timings:
# docs/engine-settings.md, "Call sizes, threads and graphs"). CUDA: a GPU wants its calls
# large; not measured.
DEFAULT_TOKENS_PER_CALL = {"CPUExecutionProvider": 1024, "CUDAExecutionProvider": 8192}


def plan_calls(
    units: Sequence[tuple[int, int]], max_rows: int, max_tokens: int, call_cost_tokens: int
) -> list[tuple[int, int]]:
    """``units``: ``(rows, width)`` sorted by width. Return ``[start, stop)`` ranges of units,
    one per call, minimizing ``sum(call_cost_tokens + rows x width)`` over the calls."""
    count = len(units)
    best = [0.0] + [float("inf")] * count
    cut = [0] * (count + 1)
    for stop in range(1, count + 1):
        width = units[stop - 1][1]  # sorted: the call's widest unit is its last
        rows = 0
        for start in range(stop - 1, -1, -1):
            rows += units[start][0]
            alone = start == stop - 1
            if not alone and (rows > max_rows or rows * width > max_tokens):
                break
            cost = best[start] + call_cost_tokens + rows * width
            if cost < best[stop]:
                best[stop], cut[stop] = cost, start
    calls = []
    stop = count
    while stop > 0:
        calls.append((cut[stop], stop))
        stop = cut[stop]
    return calls[::-1]
