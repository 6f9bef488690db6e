"""Checker.forget drops every rule family's state for a summarised half-open subflow, per-direction keys too.

Why: families key some state by ``id(sf) * 2 + direction``; once the subflow object is freed, a new one may get
the same address, and a stale entry would then be read as the new subflow's (a wrong verdict), besides the memory.
"""

from __future__ import annotations

from analyzer.checker import Checker
from analyzer.checker.fallback import FallbackRules
from analyzer.checker.observations import HalfLog, observations
from analyzer.findings import FindingSink
from analyzer.model import Subflow


def _subflow(number: int) -> Subflow:
    return Subflow(number, b"\x0a\x00\x00\x01", 40000 + number, b"\x0a\x00\x00\x02", 80, 1, 0.0)


def test_forget_drops_per_direction_state() -> None:
    checker = Checker(FindingSink(100))
    fallback = next(f for f in checker.families if isinstance(f, FallbackRules))
    obs = observations(checker.ctx)
    gone, kept = _subflow(1), _subflow(2)
    for sf in (gone, kept):
        for direction in (0, 1):
            fallback._first_data[id(sf) * 2 + direction] = sf
            obs.halves[id(sf) * 2 + direction] = HalfLog()
        obs.syn_time[id(sf)] = 0.0
    checker.forget(gone)
    assert set(fallback._first_data) == {id(kept) * 2, id(kept) * 2 + 1}
    assert set(obs.halves) == {id(kept) * 2, id(kept) * 2 + 1}
    assert set(obs.syn_time) == {id(kept)}
