"""DSNs in finding messages (issue 11): structured, so the text report shows them relative to the IDSN.

A finding's message (the JSON's text) keeps the absolute 64-bit values; the sink records where each DSN or
Data ACK sits in it (``Finding.dsns``) and the text report rewrites exactly those spans relative to their
side's IDSN (first data byte 1), or leaves them raw with ``--absolute``. Nothing parses a message.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzer import cli
from analyzer.endpoint.builder import ACK, ConnectionBuilder
from analyzer.findings import MASK64, FindingSink, dsn_ref
from analyzer.pipeline import analyze

ROOT = Path(__file__).resolve().parents[1]
TRACES = sorted(ROOT.glob("samples/*.pcap")) + sorted(Path("/work/shared/captures/tcpdump").glob("*.pcap*"))
runner = CliRunner()


def dss_016(tmp_path: Path) -> str:
    """Data mapped after the client's DATA_FIN (DSS-016, an error): 6 bytes, the DATA_FIN, 5 more bytes."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"before")
    sf.raw("c", ACK, [sc.auto_dss("c", 0, b"", data_fin=True)])
    sf.send("c", b"after")
    return sc.write(tmp_path)


def report(*args: str) -> str:
    result = runner.invoke(cli.app, ["report", "-v", *args], env={"COLUMNS": "200", "NO_COLOR": "1"})
    return result.stdout


def test_text_report_relative_json_absolute(tmp_path: Path) -> None:
    path = dss_016(tmp_path)
    analysis = analyze(path)
    idsn = analysis.connections[0].sides[0].idsn
    assert idsn is not None
    (finding,) = [f for f in analysis.findings if f.rule == "DSS-016"]
    values = [span.value for span in finding.dsns]
    assert [(v - idsn) & MASK64 for v in values] == [8, 12, 7]  # data 8–12 after the DATA_FIN at 7
    relative = report(path)
    assert "maps data DSN 8–12 after its DATA_FIN at DSN 7 (frame" in relative
    assert "DSNs relative to the IDSN (--absolute for raw)" in relative
    raw = report("--absolute", path)
    assert f"maps data DSN {values[0]}–{values[1]} after its DATA_FIN at DSN {values[2]} (frame" in raw
    doc = json.loads(runner.invoke(cli.app, ["report", "--json", path]).stdout)
    (message,) = [f["message"] for f in doc["findings"] if f["rule"] == "DSS-016"]
    assert message == finding.message and f"DATA_FIN at DSN {values[2]} (frame" in message
    assert "dsns" not in doc["findings"][0]  # the contract's fields are unchanged


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_spans_name_the_absolute_values_of_the_message(trace: Path) -> None:
    analysis = analyze(str(trace))
    for finding in analysis.findings:
        assert "\x1d" not in finding.message and "\x1f" not in finding.message
        for span in finding.dsns:
            assert finding.message[span.start : span.end] == str(span.value)


def test_sink_records_spans_and_unknown_idsns_stay_absolute() -> None:
    sink = FindingSink()
    sink.add("DSS-016", f"a {dsn_ref(1005, 0)}–{dsn_ref(2**64 + 3, 1)} b {dsn_ref(None, 0)}")
    (finding,) = sink.findings
    assert finding.message == "a 1005–3 b None"
    assert finding.text((1000, 10)) == "a 5–-7 b None"  # below the IDSN: a negative offset, not 2^64 - 7
    assert finding.text((1000, None)) == "a 5–3 b None"
    assert finding.text(None) == finding.message


# The values a family prints after these words are data sequence numbers (or Data ACKs) of one side.
DSN_WORDS = ("DSN ", "Data ACK ", "DSN up to ", "acknowledged up to ", "IDSN + 1 = ", "IDSN + 1 is ", "at most ")
# Printed raw on purpose: a 32-bit wire value, and DSS-002's two mappings (the fact names no direction).
RAW = {"value", "fact.first_dsn", "fact.second_dsn"}


def test_every_dsn_a_family_prints_is_structured() -> None:
    unmarked = []
    for path in sorted((ROOT / "analyzer" / "checker").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.JoinedStr):
                continue
            for before, value in zip(node.values, node.values[1:], strict=False):
                if not (isinstance(before, ast.Constant) and isinstance(value, ast.FormattedValue)):
                    continue
                if not str(before.value).endswith(DSN_WORDS):
                    continue
                call = value.value
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "dsn_ref":
                    continue
                if ast.unparse(call) in RAW or "dsn_ref" in ast.unparse(call):
                    continue
                unmarked.append(f"{path.name}:{node.lineno}: {before.value!r}{{{ast.unparse(call)}}}")
    assert not unmarked, "\n".join(unmarked)
