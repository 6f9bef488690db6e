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


def test_vouched_assumptions_keep_the_rule_severity_others_stay_capped() -> None:
    sink = FindingSink(assumed=frozenset({"no-capture-loss"}))
    ctx = Context(sink)
    ctx.report("DSS-002", "vouched", [3], assumes=("no-capture-loss",))
    ctx.report("DSS-002", "partly vouched", [4], assumes=("no-capture-loss", "subflows-from-syn"))
    vouched, partly = sink.findings
    assert vouched.severity == Severity.ERROR and partly.severity == Severity.WARNING


def test_check_assume_fails_on_a_vouched_warning_and_rejects_unknown_names(tmp_path: Path) -> None:
    """A CI run that knows its capture is complete says so; the warning then fails the check as an error."""
    import json

    from test_rules_dss import send_mapped
    from typer.testing import CliRunner

    from analyzer.cli import app
    from analyzer.endpoint.builder import ConnectionBuilder

    sc = ConnectionBuilder()  # DSS-007: the first mapping seen is 104 bytes late, the capture lost 4 (the H-LOSS case)
    sf = sc.initial()
    start = sc.side("c").dsn
    sf.send("c", b"lost")
    sc.packets.pop()
    send_mapped(sc, sf, b"captured", dsn=start + 104)
    trace = sc.write(tmp_path)
    runner = CliRunner()
    plain = runner.invoke(app, ["check", str(trace), "--no-expect", "--json"])
    vouched = runner.invoke(app, ["check", str(trace), "--no-expect", "--json", "--assume", "no-capture-loss"])
    doc = json.loads(vouched.stdout)
    assert plain.exit_code == 0, plain.stdout
    assert vouched.exit_code == 1, vouched.stdout
    assert '"assumed": [' in vouched.stdout and "no-capture-loss" in json.dumps(doc)
    bad = runner.invoke(app, ["check", str(trace), "--assume", "everything-is-fine"])
    assert bad.exit_code == 2 and "unknown assumption" in bad.stderr
