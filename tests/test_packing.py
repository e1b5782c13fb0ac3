"""The batcher's call planner: exact minimum of the modelled cost, within the limits."""

from __future__ import annotations

from itertools import combinations, pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from gradlight.runtime.execution.packing import plan_calls


def _cost(units, calls, call_cost):
    return sum(call_cost + sum(rows for rows, _ in units[a:b]) * units[b - 1][1] for a, b in calls)


def _fits(units, calls, max_rows, max_tokens):
    for a, b in calls:
        rows = sum(r for r, _ in units[a:b])
        if b - a > 1 and (rows > max_rows or rows * units[b - 1][1] > max_tokens):
            return False
    return True


def _all_plans(count):
    for cuts in range(count):
        for inner in combinations(range(1, count), cuts):
            edges = [0, *inner, count]
            yield list(pairwise(edges))


def test_a_cheap_call_cuts_where_lengths_jump_and_a_dear_one_batches_everything():
    units = [(1, 5), (1, 6), (1, 50), (1, 52)]
    assert plan_calls(units, 32, 8192, call_cost_tokens=16) == [(0, 2), (2, 4)]
    assert plan_calls(units, 32, 8192, call_cost_tokens=4096) == [(0, 4)]
    assert plan_calls(units, 32, 8192, call_cost_tokens=0) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_limits_hold_and_a_unit_over_them_runs_alone():
    units = [(1, 10), (1, 10), (1, 10), (40, 300)]
    calls = plan_calls(units, max_rows=2, max_tokens=8192, call_cost_tokens=4096)
    assert calls == [(0, 1), (1, 3), (3, 4)] or calls == [(0, 2), (2, 3), (3, 4)]
    assert plan_calls([], 32, 8192, 16) == []


@settings(max_examples=200, deadline=None)
@given(
    widths=st.lists(st.integers(1, 300), min_size=1, max_size=7),
    rows=st.lists(st.integers(1, 6), min_size=7, max_size=7),
    call_cost=st.integers(0, 2000),
    max_rows=st.integers(1, 12),
    max_tokens=st.integers(1, 3000),
)
def test_the_plan_is_the_cheapest_that_fits(widths, rows, call_cost, max_rows, max_tokens):
    units = [(r, w) for r, w in zip(rows, sorted(widths), strict=False)]
    calls = plan_calls(units, max_rows, max_tokens, call_cost)
    assert [a for a, _ in calls] == [0] + [b for _, b in calls[:-1]]  # consecutive, complete
    assert calls[-1][1] == len(units)
    assert _fits(units, calls, max_rows, max_tokens)
    best = min(
        _cost(units, plan, call_cost)
        for plan in _all_plans(len(units))
        if _fits(units, plan, max_rows, max_tokens)
    )
    assert _cost(units, calls, call_cost) == best
