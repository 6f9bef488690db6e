"""The crafted-trace builder produces legal MPTCP that the analyzer accepts without findings."""

from __future__ import annotations

from pathlib import Path

from analyzer.endpoint.builder import ConnectionBuilder
from analyzer.findings import Severity
from analyzer.pipeline import analyze


def test_a_clean_two_subflow_scenario_has_no_warnings_and_rebuilds_both_streams(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"hello ")
    sf.ack("s")
    join = sc.join()
    join.send("c", b"world")
    join.ack("s")
    sf.send("s", b"reply")
    sf.ack("c")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    (conn,) = analysis.connections
    assert [s.kind for s in conn.subflows] == ["initial", "join"]
    assert conn.subflows[1].join_synack_hmac_ok and conn.subflows[1].join_ack_hmac_ok
    c2s, s2c = analysis.streams[conn.id]
    assert c2s.complete and s2c.complete
    assert c2s.bytes == 11 and s2c.bytes == 5
    assert [f for f in analysis.findings if f.severity >= Severity.WARNING] == []


def test_v0_with_checksums(tmp_path: Path) -> None:
    sc = ConnectionBuilder(version=0, checksum=True)
    sf = sc.initial()
    sf.send("c", b"abc")
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    (conn,) = analysis.connections
    assert conn.version == 0 and conn.checksum
    assert (
        sum(h.checksums[0] for s in conn.subflows for h in s.halves) == 3
    )  # the data mapping and both DATA_FIN-only mappings
    assert [f for f in analysis.findings if f.severity >= Severity.WARNING] == []
