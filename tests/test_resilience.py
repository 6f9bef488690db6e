"""A bug in one analysis stage or rule family is reported, and the rest of the analysis goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.checker.rst import TcpRstRules
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.stats import StatsCollector

SAMPLE = str(Path(__file__).resolve().parent.parent / "samples" / "two-subflows.pcap")


def test_a_failing_rule_family_becomes_a_finding_and_the_other_rules_still_run(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, seg: object, sf: object, direction: int) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(TcpRstRules, "WANTS", None)
    monkeypatch.setattr(TcpRstRules, "on_segment", broken)
    analysis = analyze(SAMPLE)
    (finding,) = [f for f in analysis.findings if f.rule == "CHECKER-001"]
    assert "TcpRstRules" in finding.message and "boom" in finding.message
    assert analysis.streams[analysis.connections[0].id][0].complete  # reassembly unaffected


def test_a_failing_stage_is_a_trace_error_and_the_others_still_report(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object, seg: object, sf: object, direction: int) -> None:
        raise ValueError("stage bug")

    monkeypatch.setattr(StatsCollector, "on_segment", broken)
    analysis = analyze(SAMPLE, AnalysisOptions())
    assert any("StatsCollector" in error and "stage bug" in error for error in analysis.trace.errors)
    (conn,) = analysis.connections
    assert analysis.streams[conn.id][0].complete and len(conn.subflows) == 2
