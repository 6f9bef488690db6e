"""Issue 13: a half-open SYN costs well under 1 kB while the capture is read (the tracker holds a bare SYN
as its captured bytes, see tracker.HeldSyn), and holding changes nothing in the analysis."""

from __future__ import annotations

import gc
import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

import analyzer.pipeline as pipeline
import analyzer.tracker as tracker_mod
from analyzer.endpoint.builder import ConnectionBuilder
from analyzer.limits import Limits
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.report import json_out
from tests.test_limits import _flood

ROOT = Path(__file__).resolve().parents[1]


def _bytes_per_half_open(path: str, count: int, monkeypatch: pytest.MonkeyPatch) -> float:
    """tracemalloc bytes the analysis holds per SYN-only flow once the last record was read.

    Measured when the record loop ends, before anything is modelled for the report: what a SYN costs while
    the rest of the capture is read, i.e. what a flood of them keeps.
    """
    read_records = pipeline.read_records
    at_end: list[int] = []

    def records_then_measure(*args: object) -> Iterator[tuple[float, int, bytes, int]]:
        yield from read_records(*args)  # type: ignore[arg-type]
        at_end.append(tracemalloc.get_traced_memory()[0])

    analyze(str(ROOT / "samples/two-subflows.pcap"))  # imports every stage first
    monkeypatch.setattr(pipeline, "read_records", records_then_measure)
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        analyze(path, AnalysisOptions(limits=Limits(max_half_open=count + 1)))
    finally:
        tracemalloc.stop()
    return (at_end[0] - start) / count


def test_a_tracked_half_open_syn_costs_well_under_a_kilobyte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What each further half-open flow of a flood adds (the first HOLD_AFTER_HALF_OPEN are modelled fully)."""
    totals = {}
    for count in (1000, 3000):
        sc = ConnectionBuilder()
        _flood(sc, count)
        totals[count] = _bytes_per_half_open(sc.write(tmp_path, f"flood-{count}.pcap"), count, monkeypatch) * count
    per_flow = (totals[3000] - totals[1000]) / 2000
    assert per_flow < 600, per_flow  # was ~4.4 kB: Subflow, Connection and every observer's state


def _mixed(tmp_path: Path, name: str) -> str:
    """Real connections whose SYNs wait behind flood SYNs, a SYN retransmitted, a flow answered late."""
    sc = ConnectionBuilder()
    first = sc.initial()
    _flood(sc, 30)
    second = sc.initial(client_port=40001)
    for number in range(20):
        _flood(sc, 5, first=100 + number * 5)
        first.send("c", bytes([number]) * 50)
        second.send("s", bytes([number]) * 70)
        first.ack("s")
        second.ack("c")
    sc.close(first)
    sc.close(second)
    return sc.write(tmp_path, name)


def _json(path: str, **limits: int) -> str:
    out = io.StringIO()
    json_out.dump(analyze(path, AnalysisOptions(limits=Limits(**limits))), out)  # type: ignore[arg-type]
    return out.getvalue()


@pytest.mark.parametrize("max_half_open", [1000, 40, 3])
def test_holding_bare_syns_changes_nothing_in_the_analysis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_half_open: int
) -> None:
    monkeypatch.setattr(tracker_mod, "HOLD_AFTER_HALF_OPEN", 0)  # hold every bare SYN, not only in a flood
    path = _mixed(tmp_path, "mixed.pcap")
    held = _json(path, max_half_open=max_half_open)
    monkeypatch.setattr(tracker_mod, "_holdable", lambda seg: False)  # every SYN modelled at once, as before
    modelled = _json(path, max_half_open=max_half_open)
    assert held == modelled


def test_held_syns_past_the_limit_are_counted_and_the_newest_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tracker_mod, "HOLD_AFTER_HALF_OPEN", 0)
    sc = ConnectionBuilder()
    _flood(sc, 500)
    analysis = analyze(sc.write(tmp_path), AnalysisOptions(limits=Limits(max_half_open=50)))
    assert [c.subflows[0].id for c in analysis.connections] == list(range(451, 501))  # ids as numbered on arrival
    [message] = [f.message for f in analysis.findings if f.rule == "LIMIT-001"]
    assert "450 flows that sent only a SYN (450 of them MPTCP connections)" in message
    assert analysis.trace.mptcp_packets == 500
