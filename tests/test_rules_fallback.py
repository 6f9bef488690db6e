"""FALLBACK family: falling back to regular TCP and the infinite mapping (RFC 8684 §3.7, §3.1).

Each rule has a crafted trace that breaks it and a legal twin that comes as close as possible.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.endpoint.builder import ACK, PSH, SYN, ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DSN64, DSS_MAPPING, Dss, MpCapable
from analyzer.pipeline import analyze

MAPPING_FLAGS = DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64
MASK64 = (1 << 64) - 1


def findings(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def one(analysis: Analysis, rule: str) -> Finding:
    (finding,) = findings(analysis, rule)
    return finding


def mapping(sc: ConnectionBuilder, sf: SubflowBuilder, side: str, data_len: int, dsn_shift: int = 0) -> Dss:
    """A DSS mapping of the next ``data_len`` bytes of ``side`` (0 = an infinite mapping), advancing the builder."""
    me = sc.side(side)
    return Dss(MAPPING_FLAGS, data_ack=me.acked, dsn=(me.dsn + dsn_shift) & MASK64, ssn=sf.rel(side),
               data_len=data_len)  # fmt: skip


def send_infinite(sc: ConnectionBuilder, sf: SubflowBuilder, side: str, payload: bytes, dsn_shift: int = 0) -> int:
    """Fall back: the next data goes out with an infinite mapping (data-level length 0)."""
    frame = sf.send(side, payload, dss=mapping(sc, sf, side, 0, dsn_shift))
    advance(sc, side, len(payload))
    return frame


def advance(sc: ConnectionBuilder, side: str, length: int) -> None:
    me = sc.side(side)
    me.dsn = (me.dsn + length) & MASK64
    sc.side("s" if side == "c" else "c").acked = me.dsn


def fallback_handshake(sc: ConnectionBuilder) -> tuple[SubflowBuilder, int]:
    """SYN with MP_CAPABLE, SYN/ACK without: the connection is plain TCP (returns the SYN/ACK frame)."""
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN, [MpCapable(1, 0x01)])
    synack = sf.raw("s", SYN | ACK, [])
    sf.raw("c", ACK, [])
    return sf, synack


def established(data: bytes = b"hello") -> tuple[ConnectionBuilder, SubflowBuilder]:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", data)
    sf.ack("s")
    return sc, sf


# FALLBACK-001 (emitted by the tracker) --------------------------------------------------------


def test_fallback_001_syn_ack_without_mp_capable(tmp_path: Path) -> None:
    """§3.1: a responder that does not answer MP_CAPABLE makes the connection plain TCP."""
    sc = ConnectionBuilder()
    sf, synack = fallback_handshake(sc)
    sf.send("c", b"plain tcp", options=[])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-001")
    assert (finding.severity, finding.frames) == (Severity.INFO, [synack])
    assert analysis.connections[0].fallback


def test_fallback_001_syn_ack_with_mp_capable_is_mptcp(tmp_path: Path) -> None:
    sc, _ = established()
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-001") == []


# FALLBACK-002 ---------------------------------------------------------------------------------


def test_fallback_002_client_sends_dss_after_a_syn_ack_without_mp_capable(tmp_path: Path) -> None:
    """§3.7: once the handshake fell back, the client sends no MPTCP options."""
    sc = ConnectionBuilder()
    sf, synack = fallback_handshake(sc)
    data = sf.send("c", b"hello")  # with a DSS mapping
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [synack, data])
    assert "client" in finding.message and "DSS" in finding.message


def test_fallback_002_plain_data_after_a_fallen_back_handshake_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf, _ = fallback_handshake(sc)
    sf.send("c", b"hello", options=[])
    sf.send("s", b"world", options=[])
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-002") == []


def test_fallback_002_server_options_after_its_plain_syn_ack_are_only_a_warning(tmp_path: Path) -> None:
    """H-MBOX: a middlebox may have stripped MP_CAPABLE from the SYN/ACK after the server sent it."""
    sc = ConnectionBuilder()
    sf, synack = fallback_handshake(sc)
    sf.send("c", b"hello", options=[])
    reply = sf.send("s", b"world")  # with a DSS mapping
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-002")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [synack, reply])


def test_fallback_002_mapping_after_sending_an_infinite_mapping(tmp_path: Path) -> None:
    """§3.7: the infinite mapping ends data-level signalling; data then flows as plain TCP."""
    sc, sf = established()
    infinite = send_infinite(sc, sf, "s", b"fallback")
    sf.ack("c")  # a bare Data ACK is not judged
    later = sf.send("s", b"mapped again")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [infinite, later])
    assert "server" in finding.message


def test_fallback_002_plain_data_after_an_infinite_mapping_is_fine(tmp_path: Path) -> None:
    sc, sf = established()
    send_infinite(sc, sf, "s", b"fallback")
    sf.ack("c")
    sf.send("s", b"plain again", options=[])
    sf.send("c", b"plain reply", options=[])
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-002") == []


def test_fallback_002_receiver_mapping_in_flight_is_not_reported_but_after_the_ack_it_is(tmp_path: Path) -> None:
    """H-REORD: the receiver fell back only once it had the infinite mapping, shown by its TCP ACK of it."""
    sc, sf = established()
    old_ack = sf.nxt["s"]
    infinite = send_infinite(sc, sf, "s", b"fallback")
    sf.raw("c", ACK | PSH, [sc.auto_dss("c", sf.rel("c"), b"crossing")], b"crossing", ack=old_ack)
    late = sf.send("c", b"too late")  # acknowledges the infinite mapping's segment
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-002")
    assert finding.frames == [infinite, late]
    assert "client" in finding.message


def test_fallback_002_infinite_mapping_without_payload_gives_the_receiver_a_round_trip(tmp_path: Path) -> None:
    """H-REORD: without payload to acknowledge, two handshake round trips stand in for the receiver's ACK."""
    sc, sf = established()
    infinite = send_infinite(sc, sf, "s", b"")
    sf.send("c", b"crossing")  # 1 ms later, well within the allowance
    sc.wait(0.5)
    late = sf.send("c", b"too late")
    analysis = analyze(sc.write(tmp_path))
    assert one(analysis, "FALLBACK-002").frames == [infinite, late]


def test_fallback_002_receiver_of_first_data_without_mptcp_keeps_using_dss(tmp_path: Path) -> None:
    """§3.7: the first data of the initial subflow without any MPTCP option makes its receiver fall back."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    data = sf.send("c", b"hello", options=[])
    ack = sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [data, ack])


def test_fallback_002_first_data_with_a_mapping_keeps_mptcp(tmp_path: Path) -> None:
    sc, sf = established()
    sf.send("s", b"reply")
    sf.ack("c")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-002") == []


# FALLBACK-003 ---------------------------------------------------------------------------------


def two_subflows() -> tuple[ConnectionBuilder, SubflowBuilder, SubflowBuilder]:
    sc, sf = established()
    join = sc.join()
    join.send("c", b"more")
    join.ack("s")
    return sc, sf, join


def close_subflow(sc: ConnectionBuilder, sf: SubflowBuilder) -> None:
    sf.fin("c")
    sf.fin("s")
    sf.raw("c", ACK, [sc.ack_only_dss("c")])


def test_fallback_003_infinite_mapping_while_a_join_is_established(tmp_path: Path) -> None:
    """§3.7: with several subflows the failing one is reset; an infinite mapping needs a single subflow."""
    sc, sf, _ = two_subflows()
    infinite = send_infinite(sc, sf, "s", b"fallback")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-003")
    join_syn = analysis.connections[0].subflows[1].first_frame
    assert (finding.severity, finding.frames) == (Severity.ERROR, [join_syn, infinite])


def test_fallback_003_infinite_mapping_after_the_join_closed_is_fine(tmp_path: Path) -> None:
    sc, sf, join = two_subflows()
    close_subflow(sc, join)
    send_infinite(sc, sf, "s", b"fallback")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-003") == []
    assert findings(analysis, "FALLBACK-004") == []


# FALLBACK-004 ---------------------------------------------------------------------------------


def test_fallback_004_infinite_mapping_on_a_join_subflow(tmp_path: Path) -> None:
    """§3.7: only the initial subflow can fall back; a join subflow must be reset."""
    sc, sf, join = two_subflows()
    close_subflow(sc, sf)
    infinite = send_infinite(sc, join, "s", b"fallback")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-004")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [infinite])
    assert findings(analysis, "FALLBACK-003") == []


def test_fallback_004_infinite_mapping_on_the_initial_subflow_is_allowed(tmp_path: Path) -> None:
    sc, sf, join = two_subflows()
    close_subflow(sc, join)
    send_infinite(sc, sf, "c", b"fallback")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-004") == []


# FALLBACK-005 ---------------------------------------------------------------------------------


def test_fallback_005_options_vanish_from_a_data_direction(tmp_path: Path) -> None:
    """§3.7, §6: data past every mapping and without any MPTCP option suggests options stripped on the path."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    mapped = sf.send("c", b"hello")
    sf.ack("s")
    stripped = sf.send("c", b"world", options=[])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-005")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [mapped, stripped])


def test_fallback_005_segment_covered_by_an_earlier_mapping_is_fine(tmp_path: Path) -> None:
    """H-TSO/H-GRO: one mapping may cover several segments, and the later ones need no DSS."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"hello", dss=mapping(sc, sf, "c", 10))
    advance(sc, "c", 10)
    sf.send("c", b"world", options=[])
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-005") == []
    assert findings(analysis, "DSS-004") == []


def test_fallback_005_data_after_a_capture_gap_is_not_judged(tmp_path: Path) -> None:
    """H-LOSS: the segment carrying the next mapping may be the one the capture lost."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"hello")
    sf.send("c", b"lost", dss=mapping(sc, sf, "c", 9))
    advance(sc, "c", 9)
    sc.packets.pop()  # the capture missed the segment with the mapping
    sf.send("c", b"world", options=[])
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-005") == []


# FALLBACK-006 ---------------------------------------------------------------------------------


def test_fallback_006_infinite_mapping_with_data_still_unacknowledged(tmp_path: Path) -> None:
    """§3.7: falling back is only safe when the data before the fallback point was acknowledged."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    unacked_ack = sc.side("s").acked
    sf.send("c", b"hello")
    sf.send("s", b"", dss=Dss(DSS_ACK | DSS_ACK64, data_ack=unacked_ack))  # TCP ACK, no data-level progress
    infinite = send_infinite(sc, sf, "c", b"fallback")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-006")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [infinite])
    assert "5 bytes" in finding.message


def test_fallback_006_infinite_mapping_after_everything_was_acknowledged(tmp_path: Path) -> None:
    sc, sf = established()
    send_infinite(sc, sf, "c", b"fallback")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-006") == []


# FALLBACK-007 (emitted by the tracker) --------------------------------------------------------


def test_fallback_007_infinite_mapping_records_the_fallback(tmp_path: Path) -> None:
    """§3.7: the infinite mapping turns the connection into plain TCP."""
    sc, sf = established()
    infinite = send_infinite(sc, sf, "s", b"fallback")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-007")
    assert (finding.severity, finding.frames) == (Severity.INFO, [infinite])
    assert "infinite mapping" in finding.message


def test_fallback_007_ordinary_mappings_are_no_fallback(tmp_path: Path) -> None:
    sc, sf = established()
    sf.send("s", b"reply")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-007") == []
    assert not analysis.connections[0].fallback


# FALLBACK-008 ---------------------------------------------------------------------------------


def handshake_without_third_ack(sc: ConnectionBuilder) -> SubflowBuilder:
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN, [MpCapable(1, 0x01)])
    sf.raw("s", SYN | ACK, [MpCapable(1, 0x01, sc.side("s").key)])
    return sf


def test_fallback_008_dss_after_first_data_without_mptcp_and_no_third_ack(tmp_path: Path) -> None:
    """§3.1: without the third ACK and without MP_CAPABLE on the first data, the responder lacks the key."""
    sc = ConnectionBuilder()
    sf = handshake_without_third_ack(sc)
    data = sf.send("c", b"hello", options=[])
    ack = sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-008")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [data, ack])
    assert findings(analysis, "FALLBACK-002") == []


def test_fallback_008_mp_capable_with_data_replaces_the_lost_third_ack(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = handshake_without_third_ack(sc)
    c, s = sc.side("c"), sc.side("s")
    sf.send("c", b"hello", options=[MpCapable(1, 0x01, c.key, s.key, data_len=5)])
    advance(sc, "c", 5)
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-008") == []
    assert findings(analysis, "FALLBACK-002") == []


# FALLBACK-009 ---------------------------------------------------------------------------------


def test_fallback_009_infinite_mapping_does_not_continue_the_mappings(tmp_path: Path) -> None:
    """§3.7: the infinite mapping's DSN is the data-level position of its subflow bytes."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    mapped = sf.send("c", b"hello")
    sf.ack("s")
    infinite = send_infinite(sc, sf, "c", b"fallback", dsn_shift=100)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FALLBACK-009")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [mapped, infinite])


def test_fallback_009_infinite_mapping_that_continues_the_mappings(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"hello")
    sf.ack("s")
    send_infinite(sc, sf, "c", b"fallback")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FALLBACK-009") == []


# Real kernel traces ---------------------------------------------------------------------------

TRACES = sorted((Path(__file__).resolve().parent.parent / "samples").glob("*.pcap")) + sorted(
    (Path(__file__).resolve().parent / "data" / "tcpdump").glob("*.pcap")
)


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_fallback_real_traces_raise_no_warning(trace: Path) -> None:
    """Precision: Linux kernel samples and tcpdump's captures (v0, v1, odd captures) are clean."""
    analysis = analyze(str(trace))
    found = [
        (f.rule, f.frames)
        for f in analysis.findings
        if f.rule.startswith("FALLBACK-") and f.severity >= Severity.WARNING
    ]
    assert found == []
