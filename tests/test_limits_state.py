"""What summarising half-open flows must leave behind: nothing that grows with the flood, in any stage,
and a --json document written piece by piece that is byte for byte the one built in memory."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

import analyzer.checker as checker_mod
from analyzer.endpoint.builder import ConnectionBuilder
from analyzer.limits import Limits
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.report import json_out
from tests.test_limits import _flood

ROOT = Path(__file__).resolve().parents[1]


def _state_entries(checker: checker_mod.Checker) -> int:
    """Entries in every dict and set the rule families keep (the checker's whole per-flow state)."""
    total = 0
    for holder in checker_mod._state_holders(checker.ctx, checker.families):
        for value in checker_mod._attributes(holder):
            if isinstance(value, dict | set | list):
                total += len(value)
    return total


def test_no_stage_keeps_state_for_summarised_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[checker_mod.Checker] = []
    original = checker_mod.Checker.__init__

    def spy(self: checker_mod.Checker, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        made.append(self)

    monkeypatch.setattr(checker_mod.Checker, "__init__", spy)
    sizes = []
    for count in (300, 1500):
        sc = ConnectionBuilder()
        sf = sc.initial()
        _flood(sc, count)
        sf.send("c", b"data" * 50)
        sf.ack("s")
        analysis = analyze(sc.write(tmp_path, f"flood-{count}.pcap"), AnalysisOptions(limits=Limits(max_half_open=10)))
        assert len(analysis.connections) == 11  # the real one and the 10 newest half-open ones
        sizes.append(_state_entries(made[-1]))
    assert sizes[0] == sizes[1], sizes  # five times the flood, the same state


@pytest.mark.parametrize(
    "trace", [*sorted((ROOT / "samples").glob("*.pcap")), ROOT / "tests/fuzz_corpus/fallback-head.pcap"],
    ids=lambda p: p.stem,
)  # fmt: skip
def test_the_streamed_json_document_is_the_one_built_in_memory(trace: Path) -> None:
    analysis = analyze(str(trace))
    out = io.StringIO()
    json_out.dump(analysis, out)
    assert out.getvalue() == json_out.dumps(analysis)


def test_the_streamed_json_of_empty_lists(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sc.initial(handshake=False)
    analysis = analyze(sc.write(tmp_path))
    assert not analysis.connections and not analysis.tcp_flows and not analysis.findings
    out = io.StringIO()
    json_out.dump(analysis, out)
    assert out.getvalue() == json_out.dumps(analysis)


def test_findings_of_a_summarised_connection_never_name_a_listed_one(tmp_path: Path) -> None:
    """A malformed SYN option gives a finding; when its connection is summarised the finding names no other."""
    from analyzer.endpoint.builder import SYN
    from analyzer.mptcp.options import MpCapable
    from tests.helpers.pcapgen import ipv4_tcp

    sc = ConnectionBuilder()
    bad = MpCapable(1, 0x01, None).build()[:3] + b"\x00"  # crypto bits cleared: a finding on the SYN
    sc.packets.append((sc.time, ipv4_tcp("10.9.9.9", "10.210.255.1", 999, 443, 1, 0, SYN, bad)))
    _flood(sc, 50)
    analysis = analyze(sc.write(tmp_path), AnalysisOptions(limits=Limits(max_half_open=5)))
    listed = {conn.id for conn in analysis.connections}
    assert len(listed) == 5
    for finding in analysis.findings:
        assert finding.connection is None or finding.connection in listed
        if finding.connection is not None:
            conn = next(c for c in analysis.connections if c.id == finding.connection)
            assert set(finding.frames) & set(range(conn.first_frame, conn.subflows[0].last_frame + 1))
