"""DACK family: Data ACKs (RFC 8684 §3.3.2).

A Data ACK is cumulative: the next data sequence number the receiver expects, counting the
DATA_FIN. It may travel on any subflow. Each rule has a crafted trace that breaks it and a legal
twin that comes as close as possible; the server ("s") acknowledges the client's data unless a test
says otherwise.
"""

from __future__ import annotations

import struct
from pathlib import Path

from analyzer.endpoint.builder import ACK, SYN, ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp import crypto
from analyzer.mptcp.options import (
    DSS_ACK,
    DSS_ACK64,
    DSS_DSN64,
    DSS_MAPPING,
    Dss,
    MpCapable,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
)
from analyzer.pipeline import analyze

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1


def findings(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def one(analysis: Analysis, rule: str) -> Finding:
    (finding,) = findings(analysis, rule)
    return finding


def data_ack(sf: SubflowBuilder, side: str, value: int) -> int:
    """A pure ACK carrying exactly this 64-bit Data ACK."""
    return sf.send(side, options=[Dss(DSS_ACK | DSS_ACK64, data_ack=value & MASK64)], flags=ACK)


def client_sent(data: bytes = b"hello") -> tuple[ConnectionBuilder, SubflowBuilder, int]:
    """A connection where the client sent ``data``; returns the DSN just after it."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", data)
    return sc, sf, sc.side("c").dsn


# DACK-001 ----------------------------------------------------------------------------------------


def test_dack_001_data_ack_beyond_everything_sent(tmp_path: Path) -> None:
    """§3.3.2: the client mapped 5 bytes; the server acknowledges 105."""
    sc, sf, end = client_sent()
    frame = data_ack(sf, "s", end + 100)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DACK-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_dack_001_data_ack_of_exactly_what_was_sent(tmp_path: Path) -> None:
    sc, sf, end = client_sent()
    data_ack(sf, "s", end)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-001") == []


def test_dack_001_data_ack_captured_just_before_the_data(tmp_path: Path) -> None:
    """H-REORD: two subflows, an "any" capture puts the ACK a moment before the data it acknowledges."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    start = sc.side("c").dsn
    data_ack(sf, "s", start + 5)
    join.send("c", b"hello")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-001") == []


def test_dack_001_is_a_warning_when_the_capture_lost_the_senders_packets(tmp_path: Path) -> None:
    """H-LOSS: the client's sequence numbers jump, so data the capture never saw may exist."""
    sc, sf, _ = client_sent()
    sf.send("c", b"lost by the capture")
    sc.packets.pop()
    sf.send("c", b"seen")
    frame = data_ack(sf, "s", sc.side("c").dsn + 100)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DACK-001")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


# DACK-002 ----------------------------------------------------------------------------------------


def test_dack_002_data_ack_goes_back_on_one_subflow(tmp_path: Path) -> None:
    """§3.3.2: on one subflow, in sequence order, a cumulative Data ACK never decreases."""
    sc, sf, end = client_sent(b"0123456789")
    data_ack(sf, "s", end)
    sf.send("c", b"more")
    frame = data_ack(sf, "s", end - 4)  # acknowledges "more" at the TCP level: sent after the first
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DACK-002")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_dack_002_two_pure_acks_reordered_by_the_network(tmp_path: Path) -> None:
    """H-REORD: two pure ACKs share their sequence number and TCP ACK: their sending order is unknown."""
    sc, sf, end = client_sent(b"0123456789")
    data_ack(sf, "s", end)
    data_ack(sf, "s", end - 4)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-002") == []


def test_dack_002_an_old_segment_retransmitted_with_its_old_data_ack(tmp_path: Path) -> None:
    """H-RTX: a retransmission repeats old bytes (sequence below the highest sent) with the old Data ACK."""
    sc, sf, end = client_sent(b"0123456789")
    seq = sf.nxt["s"]
    sf.send("s", b"reply")
    data_ack(sf, "s", end)
    sf.raw("s", ACK, [Dss(DSS_ACK | DSS_ACK64, data_ack=end - 4)], b"reply", seq=seq)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-002") == []


# DACK-003 ----------------------------------------------------------------------------------------


def test_dack_003_lower_data_ack_on_another_subflow(tmp_path: Path) -> None:
    """§3.3.2: a lower value on subflow 1 after a higher one on subflow 2 is ordinary reordering (info)."""
    sc, sf, end = client_sent(b"0123456789")
    join = sc.join()
    data_ack(join, "s", end)
    frame = data_ack(sf, "s", end - 4)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DACK-003")
    assert (finding.severity, finding.frames) == (Severity.INFO, [frame])
    assert findings(analysis, "DACK-002") == []


def test_dack_003_data_acks_in_order_across_subflows(tmp_path: Path) -> None:
    sc, sf, end = client_sent(b"0123456789")
    join = sc.join()
    data_ack(join, "s", end - 4)
    data_ack(sf, "s", end)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-003") == []


# DACK-004 ----------------------------------------------------------------------------------------


def test_dack_004_data_ack_below_idsn_plus_1(tmp_path: Path) -> None:
    """§3.3.2: the client's data starts at IDSN(client) + 1; nothing below it can be acknowledged."""
    sc, sf, _ = client_sent()
    start = (crypto.idsn_from_key(sc.side("c").key) + 1) & MASK64
    frame = data_ack(sf, "s", start - 1)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DACK-004")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_dack_004_first_data_ack_is_not_idsn_plus_1(tmp_path: Path) -> None:
    """§3.3.2: before the client sent data, the server's first Data ACK must be IDSN(client) + 1; a server
    deriving the IDSN wrongly sends another value (here: the SHA-1 IDSN of a v1 key)."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    wrong = (crypto.idsn_from_key(sc.side("c").key, 0) + 1) & MASK64
    frame = data_ack(sf, "s", wrong)
    analysis = analyze(sc.write(tmp_path))
    (finding,) = findings(analysis, "DACK-004")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])
    assert findings(analysis, "DACK-001") == []


def test_dack_004_first_data_ack_is_idsn_plus_1(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.ack("s")
    sf.send("c", b"now data")
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-004") == []


# DACK-005 ----------------------------------------------------------------------------------------


def server_never_acks(with_one_ack: bool) -> ConnectionBuilder:
    """The client sends 3 kB over 2 s; the server answers with data mappings only (no 'A' flag)."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    server = sc.side("s")
    for _ in range(3):
        sf.send("c", b"d" * 1000)
        dss = Dss(DSS_MAPPING | DSS_DSN64, dsn=server.dsn, ssn=sf.rel("s"), data_len=1)
        sf.send("s", b"r", dss=dss)
        server.dsn += 1
        sc.wait(1)
    if with_one_ack:
        sf.ack("s")
    sf.ack("c")
    return sc


def test_dack_005_receiver_never_sends_a_data_ack(tmp_path: Path) -> None:
    """§3.3.2: a host that receives data for seconds acknowledges it at the data level."""
    sc = server_never_acks(with_one_ack=False)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DACK-005")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [4])  # the client's first data


def test_dack_005_receiver_sends_one_data_ack(tmp_path: Path) -> None:
    sc = server_never_acks(with_one_ack=True)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-005") == []


# DACK-006 ----------------------------------------------------------------------------------------


def client_data_fin() -> tuple[ConnectionBuilder, SubflowBuilder, int, int]:
    """The client sent data and a DATA_FIN-only mapping; returns (DATA_FIN DSN, its frame)."""
    sc, sf, fin_dsn = client_sent()
    frame = sf.raw("c", ACK, [sc.auto_dss("c", 0, b"", data_fin=True)])
    return sc, sf, fin_dsn, frame


def test_dack_006_data_ack_beyond_the_data_fin(tmp_path: Path) -> None:
    """§3.3.3: the DATA_FIN is the last unit; the Data ACK can reach DATA_FIN + 1 and no further."""
    sc, sf, fin_dsn, fin = client_data_fin()
    frame = data_ack(sf, "s", fin_dsn + 6)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DACK-006")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [fin, frame])
    assert findings(analysis, "DACK-001") == []


def test_dack_006_data_ack_of_the_data_fin(tmp_path: Path) -> None:
    sc, sf, fin_dsn, _ = client_data_fin()
    data_ack(sf, "s", fin_dsn + 1)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-006") == []


# DACK-007 ----------------------------------------------------------------------------------------


def mp_capable_handshake(server_acks_first: bool) -> tuple[ConnectionBuilder, int, int]:
    """v1: the server learns the client's key from the third ACK; returns (Data ACK frame, third ACK frame)."""
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    c, s = sc.side("c"), sc.side("s")
    sf.raw("c", SYN, [MpCapable(1, 0x01)])
    sf.raw("s", SYN | ACK, [MpCapable(1, 0x01, s.key)])
    early = sf.ack("s") if server_acks_first else 0
    third = sf.raw("c", ACK, [MpCapable(1, 0x01, c.key, s.key)])
    if not server_acks_first:
        early = sf.ack("s")
    sf.send("c", b"data")
    sf.ack("s")
    return sc, early, third


def test_dack_007_data_ack_before_the_third_ack(tmp_path: Path) -> None:
    """§3.3.2: before the third ACK the server cannot know the client's key, hence its IDSN."""
    sc, early, third = mp_capable_handshake(server_acks_first=True)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DACK-007")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [early, third])


def test_dack_007_data_ack_after_the_third_ack(tmp_path: Path) -> None:
    sc, _, _ = mp_capable_handshake(server_acks_first=False)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-007") == []


def join_handshake(sc: ConnectionBuilder, responder_acks_first: bool) -> tuple[int, int]:
    """An MP_JOIN handshake (correct HMACs); returns (the responder's Data ACK frame, third ACK frame)."""
    c, s = sc.side("c"), sc.side("s")
    sf = SubflowBuilder(sc, ("10.0.3.1", 41000), (s.ip, sc.server_port), isn={"c": 70000, "s": 90000},
                        nxt={"c": 70000, "s": 90000})  # fmt: skip
    sc.subflows.append(sf)
    nonce_c, nonce_s = 0xA1A2A3A4, 0xB1B2B3B4
    sf.raw("c", SYN, [MpJoinSyn(False, 1, crypto.token_from_key(s.key, 1), nonce_c)])
    thmac = crypto.join_synack_truncated_hmac(s.key, c.key, nonce_s, nonce_c, 1)
    sf.raw("s", SYN | ACK, [MpJoinSynAck(False, 0, thmac, nonce_s)])
    early = sf.ack("s") if responder_acks_first else 0
    third = sf.raw("c", ACK, [MpJoinAck(crypto.join_ack_hmac(c.key, s.key, nonce_c, nonce_s, 1))])
    if not responder_acks_first:
        early = sf.ack("s")
    return early, third


def test_dack_007_data_ack_on_a_join_before_its_third_ack(tmp_path: Path) -> None:
    """§3.2, §3.3.2: the join's responder authenticates the initiator only with the third ACK's HMAC."""
    sc, sf, _ = client_sent()
    sf.ack("s")
    early, third = join_handshake(sc, responder_acks_first=True)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DACK-007")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [early, third])


def test_dack_007_data_ack_on_a_join_after_its_third_ack(tmp_path: Path) -> None:
    sc, sf, _ = client_sent()
    sf.ack("s")
    join_handshake(sc, responder_acks_first=False)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-007") == []


def test_dack_007_v0_server_knows_the_key_from_the_syn(tmp_path: Path) -> None:
    """RFC 6824 sends the client's key in the SYN, so an early Data ACK is possible."""
    sc = ConnectionBuilder(version=0)
    sf = sc.initial(handshake=False)
    c, s = sc.side("c"), sc.side("s")
    sf.raw("c", SYN, [MpCapable(0, 0x01, c.key)])
    sf.raw("s", SYN | ACK, [MpCapable(0, 0x01, s.key)])
    sf.ack("s")
    sf.raw("c", ACK, [MpCapable(0, 0x01, c.key, s.key)])
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DACK-007") == []


# 32-bit Data ACKs --------------------------------------------------------------------------------


def test_32_bit_data_acks_are_expanded_before_judging(tmp_path: Path) -> None:
    """§3.3.1: Linux sends 4-byte Data ACKs until it received a 64-bit DSN; they expand near the peer's data."""
    sc, sf, end = client_sent(b"0123456789")
    sf.send("s", options=[Dss(DSS_ACK, data_ack=(end - 4) & MASK32)], flags=ACK)
    sf.send("s", options=[Dss(DSS_ACK, data_ack=end & MASK32)], flags=ACK)
    analysis = analyze(sc.write(tmp_path))
    assert [f for f in analysis.findings if f.rule.startswith("DACK") and f.severity >= Severity.WARNING] == []


def test_dack_001_mapping_cut_by_the_snaplen_is_unknown_not_missing(tmp_path: Path) -> None:
    """H-SNAP: the capture kept 10 option bytes of the client's data segment: its mapping is unknown."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    data = sf.send("c", b"hello")
    frame = data_ack(sf, "s", sc.side("c").dsn)
    path = tmp_path / "cut.pcap"
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for number, (ts, packet) in enumerate(sc.packets, start=1):
            kept = packet[: 20 + 20 + 10] if number == data else packet
            f.write(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(kept), len(packet)) + kept)
    analysis = analyze(str(path))
    assert frame == data + 1
    assert [f for f in analysis.findings if f.rule.startswith("DACK")] == []


def test_dack_001_data_on_the_syn_is_not_judged(tmp_path: Path) -> None:
    """H-TFO: TCP Fast Open data rides on the SYN before any mapping; a Data ACK may cover it."""
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    c, s = sc.side("c"), sc.side("s")
    sf.raw("c", SYN, [MpCapable(1, 0x01)], b"fast open")
    sf.raw("s", SYN | ACK, [MpCapable(1, 0x01, s.key)])
    sf.raw("c", ACK, [MpCapable(1, 0x01, c.key, s.key)])
    data_ack(sf, "s", c.dsn + len(b"fast open"))
    analysis = analyze(sc.write(tmp_path))
    assert [f.rule for f in analysis.findings if f.rule.startswith(("DACK", "DSS"))] == []
