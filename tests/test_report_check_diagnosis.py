"""``check`` sees the same diagnosis as the report (issue 11): its analysis runs the statistics stage.

Before, ``check`` analysed without statistics unless ``--json`` was given, so the diagnosis of the same
trace had no stalls (and no reinjection "during its stall"), and ``check -v`` could not say what happened.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from analyzer import cli
from analyzer.ci.check import TraceJob, check_trace
from analyzer.ci.expect import Expectations
from analyzer.findings import Severity
from analyzer.pipeline import analyze

TRACE = Path(__file__).resolve().parents[1] / "samples" / "path-failure.pcap"


def test_check_diagnosis_equals_the_reports() -> None:
    result = check_trace(TraceJob(str(TRACE), Expectations(), Severity.ERROR))
    report = analyze(str(TRACE))
    assert result.diagnoses == [(cid, d.verdict) for cid, d in sorted(report.diagnoses.items())]
    assert "subflow 2 recovered from a stall" in result.diagnoses[0][1]


def test_check_verbose_prints_each_connections_verdict() -> None:
    out = CliRunner().invoke(cli.app, ["check", "-v", "--no-expect", str(TRACE)], env={"COLUMNS": "200"}).stdout
    assert "connection 1: subflow 2 recovered from a stall" in out
