"""DSS family: data sequence mappings (RFC 8684 §3.3, §3.3.1).

Each rule has a crafted trace that breaks it and a legal twin that comes as close as possible.
Unless a test says otherwise the client ("c") sends, 64-bit DSNs are used and every subflow is
captured from its SYN. DSN wraparound is covered at 2^32 (32-bit DSNs expanded across the wrap, with
a key whose IDSN lies just below a multiple of 2^32) and at 2^64.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.endpoint.builder import ACK, FIN, PSH, RST, ConnectionBuilder, SubflowBuilder, ip_tcp
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp import crypto
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DATA_FIN, DSS_DSN64, DSS_MAPPING, Dss, MpCapable
from analyzer.pipeline import analyze

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
MAP64 = DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64
MAP32 = DSS_ACK | DSS_MAPPING  # 32-bit Data ACK and 32-bit DSN
# Found by searching keys with crypto.idsn_from_key: the client's data starts 447 bytes below 2^32.
KEY_NEAR_2_32 = 0x5EED00000003795A


def findings(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def one(analysis: Analysis, rule: str) -> Finding:
    (finding,) = findings(analysis, rule)
    return finding


def errors(analysis: Analysis) -> list[Finding]:
    return [f for f in analysis.findings if f.severity >= Severity.ERROR]


def send_mapped(
    sc: ConnectionBuilder, sf: SubflowBuilder, payload: bytes, *, dsn: int | None = None, ssn: int | None = None,
    data_len: int | None = None, flags: int = MAP64, side: str = "c", advance: bool = True,
) -> int:  # fmt: skip
    """``payload`` with an explicit mapping (defaults: the next DSN, this segment's SSN, its length)."""
    me, peer = sc.side(side), sc.side("s" if side == "c" else "c")
    dsn = me.dsn if dsn is None else dsn
    data_len = len(payload) if data_len is None else data_len
    ack = me.acked if flags & DSS_ACK64 else me.acked & MASK32
    dss = Dss(flags, data_ack=ack if flags & DSS_ACK else None, dsn=dsn if flags & DSS_DSN64 else dsn & MASK32,
              ssn=sf.rel(side) if ssn is None else ssn, data_len=data_len)  # fmt: skip
    frame = sf.send(side, payload, dss=dss)
    if advance:
        me.dsn = peer.acked = max(me.dsn, (dsn + data_len) & MASK64)
    return frame


def drop_last(sc: ConnectionBuilder) -> None:
    """The capture misses the packet just sent (H-LOSS); later frame numbers stay right."""
    sc.packets.pop()


def window_ack(sc: ConnectionBuilder, sf: SubflowBuilder, side: str, window: int) -> int:
    """A pure ACK with a Data ACK and an explicit TCP window (the scenario sends 65535)."""
    me = sc.side(side)
    src, dst = (sf.client, sf.server) if side == "c" else (sf.server, sf.client)
    other = "s" if side == "c" else "c"
    options = Dss(DSS_ACK | DSS_ACK64, data_ack=me.acked).build()
    packet = ip_tcp(src[0], dst[0], src[1], dst[1], sf.nxt[side], sf.nxt[other], ACK, options, window=window)
    return sc.emit(packet)


# DSS-001 (reported by the tracker while parsing) -------------------------------------------------


def test_dss_001_length_disagrees_with_the_flags(tmp_path: Path) -> None:
    """§3.3: a Data ACK-only DSS (A, 4-byte ack) is 8 bytes; here it claims 10."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = sf.send("s", options=[bytes((30, 10, 0x20, DSS_ACK, 0, 0, 0, 1, 0, 0))], flags=ACK)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_dss_001_length_that_matches_the_flags(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("s", options=[bytes((30, 8, 0x20, DSS_ACK, 0, 0, 0, 1))], flags=ACK)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-001") == []


# DSS-002 (reported by the reassembler) -----------------------------------------------------------


def test_dss_002_the_same_subflow_bytes_mapped_to_two_dsns(tmp_path: Path) -> None:
    """§3.3.1: a subflow byte has one DSN; a retransmission may only repeat the mapping."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    dsn, seq = sc.side("c").dsn, sf.nxt["c"]
    first = sf.send("c", b"abcdef")
    second = sf.raw("c", ACK | PSH, [Dss(MAP64, data_ack=sc.side("c").acked, dsn=dsn + 100, ssn=1, data_len=6)],
                    b"abcdef", seq=seq)  # fmt: skip
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [first, second])


def test_dss_002_an_identical_retransmitted_mapping(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    dsn, seq = sc.side("c").dsn, sf.nxt["c"]
    sf.send("c", b"abcdef")
    sf.raw("c", ACK | PSH, [Dss(MAP64, data_ack=sc.side("c").acked, dsn=dsn, ssn=1, data_len=6)], b"abcdef", seq=seq)
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-002") == []
    assert errors(analysis) == []


# DSS-003 (reported by the reassembler) -----------------------------------------------------------


def test_dss_003_a_reinjection_with_different_bytes(tmp_path: Path) -> None:
    """§3.3.1: a DSN carries one byte, whichever subflow carries it."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    dsn = sc.side("c").dsn
    sf.send("c", b"original")
    second = send_mapped(sc, join, b"0riginal", dsn=dsn)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-003")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [second])


def test_dss_003_a_reinjection_with_the_same_bytes_is_dss_012(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    dsn = sc.side("c").dsn
    sf.send("c", b"original")
    send_mapped(sc, join, b"original", dsn=dsn)
    join.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-003") == []
    assert one(analysis, "DSS-012").severity == Severity.INFO
    assert errors(analysis) == []


# DSS-004 (reported by the reassembler) -----------------------------------------------------------


def test_dss_004_payload_with_no_mapping(tmp_path: Path) -> None:
    """§3.3.1: every payload byte of an MPTCP subflow is covered by a mapping."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"mapped")
    frame = sf.send("c", b"unmapped", dss=sc.ack_only_dss("c"))
    sc.close()  # the subflow's end is captured: no mapping can come later (else a warning, test_trust_v0_mappings)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-004")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_dss_004_a_mapping_that_spans_two_segments(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    send_mapped(sc, sf, b"first half ", data_len=22)
    sf.send("c", b"second half", dss=sc.ack_only_dss("c"))
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-004") == []


# DSS-005 -----------------------------------------------------------------------------------------


def test_dss_005_mapping_arrives_after_the_bytes_it_maps(tmp_path: Path) -> None:
    """§3.3.1: RFC 8684 lets a receiver wait for a late mapping; Linux drops such data (portability)."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    ssn = sf.rel("c")
    early = sf.send("c", b"early", dss=sc.ack_only_dss("c"))
    late = send_mapped(sc, sf, b"-late", ssn=ssn, data_len=10)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-005")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [early, late])


def test_dss_005_mapping_sent_before_the_bytes_it_maps(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    send_mapped(sc, sf, b"early", data_len=10)
    sf.send("c", b"-late", dss=sc.ack_only_dss("c"))
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-005") == []


# DSS-006 -----------------------------------------------------------------------------------------


def reset_join_with_unsent_mapped_bytes(reinject: bool) -> tuple[ConnectionBuilder, int]:
    """The join maps 8 bytes but sends 4, then is reset; the initial subflow carries on."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    dsn = sc.side("c").dsn
    send_mapped(sc, join, b"abcd", data_len=8)
    sc.side("s").acked = dsn + 4
    join.ack("s")
    rst = join.rst("c")
    if reinject:
        send_mapped(sc, sf, b"efgh", dsn=dsn + 4)
    sc.wait(2)
    sf.ack("s")
    return sc, rst


def test_dss_006_mapped_bytes_never_sent_before_the_reset(tmp_path: Path) -> None:
    """§3.3.1: bytes 5-8 of the mapping were never sent and never delivered on another subflow."""
    sc, rst = reset_join_with_unsent_mapped_bytes(reinject=False)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-006")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [rst])


def test_dss_006_unsent_bytes_reinjected_on_the_other_subflow(tmp_path: Path) -> None:
    sc, _ = reset_join_with_unsent_mapped_bytes(reinject=True)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-006") == []


# DSS-007 -----------------------------------------------------------------------------------------


def test_dss_007_first_mapping_above_idsn_plus_1(tmp_path: Path) -> None:
    """§3.1, §3.3.1: a host's data starts at IDSN + 1, derived from its key."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = send_mapped(sc, sf, b"late start", dsn=sc.side("c").dsn + 100)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-007")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_dss_007_first_mapping_below_idsn_plus_1(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = send_mapped(sc, sf, b"early start", dsn=sc.side("c").dsn - 1)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-007")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_dss_007_first_mapping_at_idsn_plus_1(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"right start")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-007") == []


def test_dss_007_first_data_lost_by_the_capture(tmp_path: Path) -> None:
    """H-LOSS: the first data segment is missing from the capture (the next one's sequence number jumps by as
    many bytes as the first mapping is late): the loss explains it, nothing is reported."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"lost by the capture")
    drop_last(sc)
    sf.send("c", b"captured")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-007") == []


def test_dss_007_is_a_warning_when_the_capture_lost_less_than_the_offset(tmp_path: Path) -> None:
    """H-LOSS: 4 bytes were lost by the capture, but the first mapping seen is 104 bytes late."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    start = sc.side("c").dsn
    sf.send("c", b"lost")
    drop_last(sc)
    frame = send_mapped(sc, sf, b"captured", dsn=start + 104)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-007")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])
    assert finding.assumes == ("no-capture-loss",)


# DSS-008 -----------------------------------------------------------------------------------------


def test_dss_008_data_mapped_at_relative_sequence_0(tmp_path: Path) -> None:
    """§3.3.1: relative subflow sequence 0 is the SYN; data starts at 1."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = send_mapped(sc, sf, b"zero", ssn=0)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-008")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_dss_008_a_data_fin_only_mapping_uses_relative_sequence_0(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"data")
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-008") == []
    assert errors(analysis) == []


# DSS-009 / DSS-010 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "fields"),
    [
        (DSS_ACK64 | DSS_MAPPING | DSS_DSN64, {"dsn": 1, "ssn": 1, "data_len": 1}),  # 'a' without 'A'
        (DSS_ACK | DSS_ACK64 | DSS_DSN64, {"data_ack": 1}),  # 'm' without 'M'
    ],
    ids=["a-without-A", "m-without-M"],
)
def test_dss_009_width_flag_without_its_field(tmp_path: Path, flags: int, fields: dict[str, int]) -> None:
    """§3.3: 'a' sizes the Data ACK, 'm' the DSN; neither means anything without the field."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = sf.send("s", options=[Dss(flags, **fields)], flags=ACK)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-009")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_dss_009_width_flags_with_their_fields(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"sixty-four bits")
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-009") == []


def test_dss_010_dss_with_neither_data_ack_nor_mapping(tmp_path: Path) -> None:
    """§3.3: a DSS without A and M carries nothing."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = sf.send("s", options=[Dss(0)], flags=ACK)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-010")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_dss_010_data_ack_only(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-010") == []


# DSS-011 -----------------------------------------------------------------------------------------


def test_dss_011_segment_starts_before_its_mapping(tmp_path: Path) -> None:
    """§3.3.1: the first 3 bytes of the segment are covered by no mapping, this or an earlier one."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"mapped")
    frame = send_mapped(sc, sf, b"XYZabc", ssn=sf.rel("c") + 3, data_len=3)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-011")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_dss_011_segment_starts_inside_an_earlier_mapping(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    send_mapped(sc, sf, b"mapped", data_len=9)  # also covers the next segment's first 3 bytes
    send_mapped(sc, sf, b"XYZabc", ssn=sf.rel("c") + 3, data_len=3)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-011") == []


def test_dss_011_is_a_warning_after_a_capture_loss(tmp_path: Path) -> None:
    """H-LOSS: a lost segment before this one may have carried a mapping reaching into it."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"mapped")
    sf.send("c", b"lost")
    drop_last(sc)
    frame = send_mapped(sc, sf, b"XYZabc", ssn=sf.rel("c") + 3, data_len=3)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-011")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_dss_011_mapping_beyond_the_subflow_fin(tmp_path: Path) -> None:
    """§3.3.1: a mapping covers 6 subflow bytes, but the subflow's FIN comes after 3."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    send_mapped(sc, sf, b"abc", data_len=6)
    fin = sf.fin("c")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-011")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [fin])


def test_dss_011_mapping_up_to_the_subflow_fin(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    send_mapped(sc, sf, b"abc")
    sf.fin("c")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-011") == []


# DSS-012 (reported by the reassembler) -----------------------------------------------------------


def test_dss_012_reinjection_on_another_subflow(tmp_path: Path) -> None:
    """§3.3.1: sending a DSN range again on another subflow is legal and worth knowing."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    dsn = sc.side("c").dsn
    sf.send("c", b"reinjected")
    send_mapped(sc, join, b"reinjected", dsn=dsn)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-012")
    assert (finding.severity, finding.subflow) == (Severity.INFO, 2)
    assert finding.frames == [analysis.trace.packets]  # the join's segment that carried the data again


def test_dss_012_every_dsn_sent_once(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    sf.send("c", b"first")
    join.send("c", b"second")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-012") == []


# DSS-013 -----------------------------------------------------------------------------------------


def test_dss_013_32_bit_dsn_half_the_space_away(tmp_path: Path) -> None:
    """§3.3: a 4-byte DSN 2^31 - 10 away from where the data stands cannot be expanded reliably."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"anchor")
    far = (sc.side("c").dsn + (1 << 31) - 10) & MASK64
    frame = send_mapped(sc, sf, b"far", dsn=far, flags=MAP32, advance=False)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-013")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_dss_013_32_bit_data_ack_half_the_space_away(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"anchor")
    far = (sc.side("s").acked + (1 << 30) + 5) & MASK32
    frame = sf.send("s", options=[Dss(DSS_ACK, data_ack=far)], flags=ACK)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-013")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_dss_013_32_bit_dsns_on_a_connection_that_moves_2_31_bytes_within_the_msl(tmp_path: Path) -> None:
    """§3.3.1: when 2^31 bytes pass within the 2-minute MSL, 4-byte DSNs repeat: 8 bytes are required."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    base = sc.side("c").dsn
    frames = [send_mapped(sc, sf, b"x", dsn=base + step * (1 << 29), flags=MAP32) for step in range(5)]
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-013")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frames[-1]])


def test_dss_013_64_bit_dsns_on_the_same_fast_connection(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    base = sc.side("c").dsn
    for step in range(5):
        send_mapped(sc, sf, b"x", dsn=base + step * (1 << 29))
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-013") == []


def test_32_bit_dsns_expand_across_the_2_32_wrap(tmp_path: Path) -> None:
    """§3.3.1: the client's IDSN + 1 lies 447 bytes below a multiple of 2^32 (a searched key); its 4-byte
    DSNs and the server's 4-byte Data ACKs wrap to small values and expand to the next 2^32 block."""
    assert (1 << 32) - ((crypto.idsn_from_key(KEY_NEAR_2_32) + 1) & MASK32) == 447
    sc = ConnectionBuilder(client_key=KEY_NEAR_2_32)
    sf = sc.initial()
    data = bytes(range(256)) * 4
    for start in range(0, len(data), 200):
        send_mapped(sc, sf, data[start : start + 200], flags=MAP32)
        sf.send("s", options=[Dss(DSS_ACK, data_ack=sc.side("s").acked & MASK32)], flags=ACK)
    assert sc.side("c").dsn & MASK32 < 1000  # the DSN wrapped
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    c2s, _ = analysis.streams[analysis.connections[0].id]
    assert (c2s.bytes, c2s.complete) == (len(data), True)
    assert [f for f in analysis.findings if f.severity >= Severity.WARNING] == []
    assert findings(analysis, "DSS-015") == []  # 2^32 is no wrap of the 64-bit space


# DSS-014 -----------------------------------------------------------------------------------------


def test_dss_014_data_mapped_beyond_the_receive_window(tmp_path: Path) -> None:
    """§3.3.4: the server's window is 100 bytes from its Data ACK; the client maps 200."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    window_ack(sc, sf, "s", 100)
    frame = sf.send("c", b"w" * 200)
    sc.wait(1)
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-014")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_dss_014_data_up_to_the_window_edge_and_a_1_byte_probe(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    window_ack(sc, sf, "s", 100)
    sf.send("c", b"w" * 100)
    sc.wait(1)
    window_ack(sc, sf, "s", 0)
    sf.send("c", b"p")  # zero-window probe
    sc.wait(1)
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-014") == []


def test_dss_014_a_window_update_captured_just_after_the_data(tmp_path: Path) -> None:
    """H-REORD: the update that opened the window travelled on another path and was captured 1 ms late."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    window_ack(sc, sf, "s", 100)
    sf.send("c", b"w" * 200)
    window_ack(sc, join, "s", 1000)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-014") == []


# DSS-015 and the 2^64 wrap -------------------------------------------------------------------------


def pin_idsn(monkeypatch: pytest.MonkeyPatch, idsn: int) -> None:
    """Every key gets this IDSN. (No key with an IDSN within reach of 2^64 can be searched: for a 100-byte
    stream that needs about 2^57 SHA-256 hashes.)"""
    monkeypatch.setattr(crypto, "idsn_from_key", lambda key, version=1: idsn)


def test_dss_015_data_stream_crosses_2_64(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """§3.3.1: IDSN = 2^64 - 30: the client's second mapping crosses 2^64; data and DATA_FIN continue from 0."""
    pin_idsn(monkeypatch, (1 << 64) - 30)
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"x" * 25)
    frame = sf.send("c", b"y" * 25)
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-015")
    assert (finding.severity, finding.frames) == (Severity.INFO, [frame])
    assert [f for f in analysis.findings if f.severity >= Severity.WARNING] == []
    assert one(analysis, "CLOSE-007").severity == Severity.INFO  # the DATA_FIN after the wrap was acked


def test_dss_015_stream_ending_right_at_2_64(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pin_idsn(monkeypatch, (1 << 64) - 30)
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"x" * 29)  # DSN 2^64 - 29 ... 2^64 - 1
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-015") == []


def test_capture_started_at_the_third_ack_judges_no_first_mapping(tmp_path: Path) -> None:
    """H-MID: without the SYN the capture may have missed data, so DSS-007 is not judged at all, and the
    coverage rules (which need the ISN) stay quiet."""
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    sf.nxt = {"c": 1001, "s": 5001}
    c, s = sc.side("c"), sc.side("s")
    sf.raw("c", ACK, [MpCapable(1, 0x01, c.key, s.key)])
    send_mapped(sc, sf, b"later data", dsn=c.dsn + 5000, ssn=5001)
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert analysis.connections[0].grouping.value == "keys"
    assert findings(analysis, "DSS-007") == []
    assert errors(analysis) == []


# DSS-016 -----------------------------------------------------------------------------------------


def data_fin(sc: ConnectionBuilder, sf: SubflowBuilder, side: str = "c") -> int:
    """A DATA_FIN-only mapping (SSN 0, length 1) at the next DSN."""
    return sf.raw(side, ACK, [sc.auto_dss(side, 0, b"", data_fin=True)])


def test_dss_016_data_mapped_after_the_data_fin(tmp_path: Path) -> None:
    """§3.3.3: the DATA_FIN is the last unit of the host's data sequence space."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"before")
    fin = data_fin(sc, sf)
    frame = sf.send("c", b"after")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-016")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [fin, frame])


def test_dss_016_data_fin_below_data_already_mapped(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    dsn = sc.side("c").dsn
    sf.send("c", b"0123456789")
    frame = sf.raw("c", ACK, [Dss(MAP64 | DSS_DATA_FIN, data_ack=sc.side("c").acked, dsn=dsn + 5, ssn=0,
                                  data_len=1)])  # fmt: skip
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "DSS-016")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_dss_016_retransmission_below_the_data_fin(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    dsn, seq = sc.side("c").dsn, sf.nxt["c"]
    sf.send("c", b"before")
    data_fin(sc, sf)
    sf.raw("c", ACK | PSH, [Dss(MAP64, data_ack=sc.side("c").acked, dsn=dsn, ssn=1, data_len=6)], b"before", seq=seq)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "DSS-016") == []


# Infinite mapping --------------------------------------------------------------------------------


def test_after_an_infinite_mapping_unmapped_data_and_its_data_acks_are_fine(tmp_path: Path) -> None:
    """§3.7: an infinite mapping maps the rest of the subflow one to one; no mapping rule applies after it."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    c = sc.side("c")
    sf.send("c", b"mapped.")
    sf.ack("s")
    infinite = Dss(MAP64, data_ack=c.acked, dsn=c.dsn, ssn=sf.rel("c"), data_len=0)
    sf.send("c", b"plain tcp", dss=infinite)
    sf.raw("c", ACK | PSH, [], b" after")
    c.dsn += len(b"plain tcp after")
    sc.side("s").acked = c.dsn
    sf.ack("s")  # a Data ACK beyond every mapping: the infinite mapping covered it
    sf.raw("c", FIN | ACK, [])
    analysis = analyze(sc.write(tmp_path))
    assert analysis.connections[0].fallback
    assert [f.rule for f in analysis.findings if f.severity >= Severity.WARNING] == []


def test_a_subflow_reset_is_not_a_mapping_problem(tmp_path: Path) -> None:
    """A RST ends the subflow; everything it mapped was sent and acknowledged."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    join.send("c", b"on the join")
    join.ack("s")
    join.raw("c", RST | ACK, [])
    sf.send("c", b"on the first")
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    assert [f for f in analysis.findings if f.severity >= Severity.WARNING] == []
