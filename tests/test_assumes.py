"""A finding that rests on what the capture lacks says so (``assumes``), and is never an error.

Why: CI users gate on errors. An error must be proven by the captured bytes; a verdict that needs the
capture to be complete, to start before the connection or to order subflows must be a warning that
names its assumption, in a field a policy can read (JSON ``assumes``), not only in the message text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.checker.base import Context
from analyzer.findings import ASSUMPTIONS, FindingSink, Severity
from analyzer.pipeline import AnalysisOptions, analyze
from tests.helpers.captures import truncate_capture

REPO = Path(__file__).resolve().parent.parent
TRACES = sorted((REPO / "samples").glob("*.pcap")) + sorted((REPO / "tests" / "data" / "tcpdump").glob("*.pcap"))


def test_a_finding_that_assumes_something_is_capped_at_warning() -> None:
    sink = FindingSink()
    ctx = Context(sink)
    ctx.report("DSS-002", "crafted", [3], assumes=("no-capture-loss",))
    ctx.report("DSS-002", "crafted", [4])
    assumed, proven = sink.findings
    assert (assumed.severity, assumed.assumes) == (Severity.WARNING, ("no-capture-loss",))
    assert (proven.severity, proven.assumes) == (Severity.ERROR, ())
    assert assumed.to_json()["assumes"] == ["no-capture-loss"] and proven.to_json()["assumes"] == []


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_assumptions_are_known_and_never_errors(trace: Path) -> None:
    for finding in analyze(str(trace), AnalysisOptions()).findings:
        assert set(finding.assumes) <= set(ASSUMPTIONS), finding
        if finding.assumes:
            assert finding.severity <= Severity.WARNING, finding


def test_truncated_payloads_do_not_turn_assumptions_into_errors(tmp_path: Path) -> None:
    target = tmp_path / "cut.pcap"
    truncate_capture(REPO / "samples" / "lossy.pcap", target, 96)
    for finding in analyze(str(target), AnalysisOptions()).findings:
        if finding.assumes:
            assert finding.severity <= Severity.WARNING
