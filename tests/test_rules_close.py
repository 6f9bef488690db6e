"""CLOSE family: DATA_FIN and connection close (RFC 8684 §3.3.3).

A DATA_FIN occupies the data sequence number after a host's last data byte. It rides on the last data
mapping (data-level length = payload + 1) or, without payload, on a mapping of its own with relative
subflow sequence 0 and data-level length 1. The peer acknowledges it with DATA_FIN + 1; once both
DATA_FINs are acknowledged the connection is closed at the data level. Each rule has a crafted trace
that breaks it and a legal twin that comes as close as possible.
"""

from __future__ import annotations

from pathlib import Path

from analyzer.endpoint.builder import ACK, FIN, ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DATA_FIN, DSS_DSN64, DSS_MAPPING, Dss
from analyzer.pipeline import analyze

MASK64 = (1 << 64) - 1
MAP64 = DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64


def findings(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def one(analysis: Analysis, rule: str) -> Finding:
    (finding,) = findings(analysis, rule)
    return finding


def data_fin(sc: ConnectionBuilder, sf: SubflowBuilder, side: str, flags: int = ACK) -> int:
    """A DATA_FIN-only mapping (SSN 0, length 1, DSN = the DATA_FIN's) at the side's next DSN."""
    return sf.raw(side, flags, [sc.auto_dss(side, 0, b"", data_fin=True)])


def fins(sc: ConnectionBuilder) -> list[int]:
    """FIN both ways on every subflow, with the final ACK; returns the FIN frames."""
    frames = []
    for sf in sc.subflows:
        frames += [sf.fin("c"), sf.fin("s")]
        sf.raw("c", ACK, [sc.ack_only_dss("c")])
    return frames


def established() -> tuple[ConnectionBuilder, SubflowBuilder]:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"request")
    sf.ack("s")
    sf.send("s", b"response")
    sf.ack("c")
    return sc, sf


# CLOSE-001 ---------------------------------------------------------------------------------------


def test_close_001_data_fin_flag_without_a_mapping(tmp_path: Path) -> None:
    """§3.3.3: the DATA_FIN's position comes from its mapping; F without M has none."""
    sc, sf = established()
    frame = sf.send("c", options=[Dss(DSS_ACK | DSS_ACK64 | DSS_DATA_FIN, data_ack=sc.side("c").acked)], flags=ACK)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CLOSE-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_close_001_data_fin_flag_with_its_mapping(tmp_path: Path) -> None:
    sc, sf = established()
    data_fin(sc, sf, "c")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-001") == []


# CLOSE-002 ---------------------------------------------------------------------------------------


def test_close_002_data_fin_without_payload_maps_a_subflow_sequence(tmp_path: Path) -> None:
    """§3.3.3: a DATA_FIN not attached to data uses relative SSN 0 and data-level length 1."""
    sc, sf = established()
    c = sc.side("c")
    frame = sf.send("c", options=[Dss(MAP64 | DSS_DATA_FIN, data_ack=c.acked, dsn=c.dsn, ssn=sf.rel("c"),
                                      data_len=1)], flags=ACK)  # fmt: skip
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CLOSE-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_close_002_data_fin_without_payload_with_length_3(tmp_path: Path) -> None:
    sc, sf = established()
    c = sc.side("c")
    frame = sf.send("c", options=[Dss(MAP64 | DSS_DATA_FIN, data_ack=c.acked, dsn=c.dsn, ssn=0, data_len=3)],
                    flags=ACK)  # fmt: skip
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CLOSE-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])
    assert findings(analysis, "DSS-008") == []  # one finding for one mistake


def test_close_002_data_fin_alone_on_the_subflow_fin(tmp_path: Path) -> None:
    sc, sf = established()
    data_fin(sc, sf, "c", flags=FIN | ACK)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-002") == []


def test_close_002_data_fin_on_the_last_data_mapping(tmp_path: Path) -> None:
    """§3.3.3: with payload the DATA_FIN rides on an ordinary mapping whose length counts it (5 + 1)."""
    sc, sf = established()
    sf.send("c", b"bye!!", dss=sc.auto_dss("c", sf.rel("c"), b"bye!!", data_fin=True))
    sf.ack("s")
    data_fin(sc, sf, "s")
    sf.ack("c")
    fins(sc)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-002") == []
    assert one(analysis, "CLOSE-007").severity == Severity.INFO
    assert [f for f in analysis.findings if f.severity >= Severity.WARNING] == []


# CLOSE-003 (reported by the reassembler) ---------------------------------------------------------


def test_close_003_data_fin_moves(tmp_path: Path) -> None:
    """§3.3.3: a retransmitted DATA_FIN keeps its data sequence number."""
    sc, sf = established()
    c = sc.side("c")
    dsn = c.dsn
    data_fin(sc, sf, "c")
    sf.send("c", options=[Dss(MAP64 | DSS_DATA_FIN, data_ack=c.acked, dsn=dsn + 7, ssn=0, data_len=1)], flags=ACK)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CLOSE-003")
    assert finding.severity == Severity.ERROR
    assert len(finding.frames) == 2 and finding.frames[-1] == analysis.trace.packets  # both DATA_FINs, clickable
    assert "stream offset" in finding.message


def test_close_003_data_fin_retransmitted_at_the_same_dsn(tmp_path: Path) -> None:
    sc, sf = established()
    c = sc.side("c")
    dsn = c.dsn
    data_fin(sc, sf, "c")
    sf.send("c", options=[Dss(MAP64 | DSS_DATA_FIN, data_ack=c.acked, dsn=dsn, ssn=0, data_len=1)], flags=ACK)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-003") == []


# CLOSE-004 ---------------------------------------------------------------------------------------


def test_close_004_data_fin_never_acknowledged(tmp_path: Path) -> None:
    """§3.3.3: every subflow closed with FIN, but the server never acknowledged the client's DATA_FIN."""
    sc, sf = established()
    fin = data_fin(sc, sf, "c")
    sc.side("s").acked -= 1  # the server's Data ACKs stop at the DATA_FIN's own DSN
    data_fin(sc, sf, "s")
    sf.ack("c")
    subflow_fins = fins(sc)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CLOSE-004")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [fin, subflow_fins[0]])
    assert "stops at the DATA_FIN's own DSN" in finding.message


def test_close_004_subflows_closed_without_any_data_fin(tmp_path: Path) -> None:
    """§3.3.3: the client FINs its only subflow but never sends a DATA_FIN."""
    sc, sf = established()
    data_fin(sc, sf, "s")
    sf.ack("c")
    subflow_fins = fins(sc)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CLOSE-004")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [subflow_fins[0]])
    assert "without ever sending a DATA_FIN" in finding.message


def test_close_004_clean_close(tmp_path: Path) -> None:
    sc, _ = established()
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-004") == []


def test_close_004_connection_ended_by_reset(tmp_path: Path) -> None:
    sc, sf = established()
    sf.rst("c")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-004") == []


# CLOSE-005 ---------------------------------------------------------------------------------------


def test_close_005_last_subflow_closed_before_the_data_was_acknowledged(tmp_path: Path) -> None:
    """§3.3.3: a host must not close all its subflows while its data is not data-acknowledged."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"unacknowledged")
    fin = sf.fin("c", options=[Dss(DSS_ACK | DSS_ACK64, data_ack=sc.side("c").acked)])
    sc.wait(1)
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CLOSE-005")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [fin])


def test_close_005_one_subflow_closed_while_another_remains(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    sf.send("c", b"unacknowledged")
    sf.fin("c")
    sc.wait(1)
    join.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-005") == []


def test_close_005_only_the_data_fin_outstanding(tmp_path: Path) -> None:
    """§3.3.3: closing is safe once only the DATA_FIN is unacknowledged."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"acknowledged")
    sf.ack("s")
    data_fin(sc, sf, "c", flags=FIN | ACK)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-005") == []


def test_close_005_data_ack_captured_a_moment_after_the_fin(tmp_path: Path) -> None:
    """H-REORD: the Data ACK that made the close safe shows up 1 ms after the FIN in the capture."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    join.send("c", b"data")
    join.fin("c")
    sf.fin("c")
    join.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-005") == []


# CLOSE-006 ---------------------------------------------------------------------------------------


def hole_before_data_fin(lost_by_the_capture: int = 0) -> tuple[ConnectionBuilder, int, int]:
    """The client maps 5 bytes, 10 later bytes are never mapped (or partly lost by the capture), then its
    DATA_FIN; the server acknowledges the DATA_FIN."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    c = sc.side("c")
    sf.send("c", b"12345")
    if lost_by_the_capture:
        sf.send("c", b"x" * lost_by_the_capture)
        sc.packets.pop()
    c.dsn += 10 - lost_by_the_capture
    fin = data_fin(sc, sf, "c")
    ack = sf.ack("s")
    return sc, fin, ack


def test_close_006_data_fin_acknowledged_across_a_hole(tmp_path: Path) -> None:
    """§3.3.3: DATA_FIN + 1 acknowledges every byte before it; DSN +5..+14 was never mapped."""
    sc, fin, ack = hole_before_data_fin()
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CLOSE-006")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [fin, ack])


def test_close_006_hole_lost_by_the_capture(tmp_path: Path) -> None:
    """H-LOSS: the client's sequence numbers jump by 10: the capture lost the bytes, they were sent."""
    sc, _, _ = hole_before_data_fin(lost_by_the_capture=10)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-006") == []


def test_close_006_is_a_warning_when_the_capture_lost_part_of_the_hole(tmp_path: Path) -> None:
    sc, fin, ack = hole_before_data_fin(lost_by_the_capture=4)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CLOSE-006")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [fin, ack])
    assert finding.assumes == ("no-capture-loss",)


def test_close_006_data_fin_acknowledged_after_all_data(tmp_path: Path) -> None:
    sc, _ = established()
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-006") == []


# CLOSE-007 ---------------------------------------------------------------------------------------


def test_close_007_both_data_fins_acknowledged(tmp_path: Path) -> None:
    """§3.3.3: the connection is closed at the data level once both DATA_FINs are data-acked."""
    sc, sf = established()
    client_fin = data_fin(sc, sf, "c")
    client_ack = sf.ack("s")
    server_fin = data_fin(sc, sf, "s")
    server_ack = sf.ack("c")
    fins(sc)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CLOSE-007")
    assert (finding.severity, finding.frames) == (Severity.INFO, [client_fin, client_ack, server_fin, server_ack])
    assert "client's DATA_FIN (subflow 1" in finding.message


def test_close_007_one_data_fin_unacknowledged(tmp_path: Path) -> None:
    sc, sf = established()
    data_fin(sc, sf, "c")
    sf.ack("s")
    data_fin(sc, sf, "s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CLOSE-007") == []


def test_data_fin_on_another_subflow_than_the_data(tmp_path: Path) -> None:
    """§3.3.3: the DATA_FIN and its Data ACK may use any subflow."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    join.send("c", b"on the join")
    sf.ack("s")
    data_fin(sc, sf, "c")
    join.ack("s")
    data_fin(sc, join, "s")
    sf.ack("c")
    fins(sc)
    analysis = analyze(sc.write(tmp_path))
    assert one(analysis, "CLOSE-007").frames[0] > 0
    assert [f for f in analysis.findings if f.severity >= Severity.WARNING] == []
