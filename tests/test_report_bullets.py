"""Issue 11 bullets that had no test of their own: the stripped-options sentence, the check status line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from analyzer import cli
from analyzer.endpoint.builder import ACK, PSH, ConnectionBuilder
from analyzer.pipeline import analyze

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_options_stripped_on_the_path(tmp_path: Path) -> None:
    """MP_CAPABLE handshake, then data both ways without any DSS: the options were stripped on the path."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    first = sf.raw("c", ACK | PSH, [], b"hello over plain TCP")
    sf.raw("s", ACK | PSH, [], b"and back")
    analysis = analyze(sc.write(tmp_path))
    diagnosis = analysis.diagnoses[1]
    (event,) = [e for e in diagnosis.events if e.kind == "fallback"]
    assert "options stripped on the path, data arrived without DSS after the MP_CAPABLE handshake" in event.text
    assert event.frames and event.frames[0] <= first
    assert diagnosis.verdict.startswith("fell back to TCP (options stripped on the path)")


def test_check_status_line_wraps_instead_of_being_cut() -> None:
    traces = [str(SAMPLES / "single-subflow.pcap"), str(SAMPLES / "two-subflows.pcap")]
    result = CliRunner().invoke(cli.app, ["check", "--no-expect", *traces], env={"COLUMNS": "40"})
    joined = " ".join(result.stdout.split())
    assert "2 traces: 2 passed, 0 failed, 0 could not be checked (fail-on: error)" in joined
    assert all(len(line) <= 40 for line in result.stdout.splitlines())
