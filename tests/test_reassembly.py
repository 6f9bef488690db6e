"""Data-stream reassembly (RFC 8684 §3.3): DSS mappings → per-direction byte streams, byte-exact."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.endpoint.builder import ACK, PSH, ConnectionBuilder
from analyzer.findings import Severity
from analyzer.model import Analysis
from analyzer.mptcp import crypto
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DATA_FIN, DSS_DSN64, DSS_MAPPING, Dss, MpCapable
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.reassembly.stream import DataStream

MAP64 = DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64


def _errors(analysis: Analysis) -> list[str]:
    return [f.rule for f in analysis.findings if f.severity >= Severity.ERROR]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- DataStream unit
class Collect:
    def __init__(self) -> None:
        self.data = bytearray()
        self.holes: list[tuple[int, int]] = []

    def write(self, offset: int, time: float, data: bytes) -> None:
        assert offset == len(self.data) + sum(n for _, n in self.holes)
        self.data += data

    def hole(self, offset: int, length: int) -> None:
        self.holes.append((offset, length))


def test_in_order_pieces_are_hashed_as_they_arrive() -> None:
    stream = DataStream(base=100, base_known=True)
    stream.add(0, b"abc", 1.0, 1, 1)
    stream.add(3, b"def", 1.1, 2, 1)
    stream.set_fin(6)
    assert stream.delivered == 6 and stream.complete and stream.sha256 == _sha(b"abcdef")


def test_out_of_order_pieces_wait_for_the_gap_and_count_head_of_line_time() -> None:
    stream = DataStream(base=0, base_known=True)
    stream.add(3, b"def", 1.0, 1, 2)
    assert stream.delivered == 0 and stream.out_of_order == 1
    stream.add(0, b"abc", 1.5, 2, 1)
    assert stream.delivered == 6 and stream.hol_wait_total == pytest.approx(0.5)
    assert stream.sha256 == _sha(b"abcdef")


def test_identical_copies_are_duplicates_not_conflicts_and_credit_the_first_carrier() -> None:
    stream = DataStream(base=0, base_known=True)
    stream.add(0, b"hello", 1.0, 1, 1)
    assert stream.add(0, b"hello", 1.1, 2, 2) == 5
    assert stream.conflict_count == 0 and stream.duplicate_bytes == 5
    assert stream.reinjections == {(1, 2): 5}


def test_different_bytes_for_the_same_offset_are_a_conflict() -> None:
    stream = DataStream(base=0, base_known=True)
    stream.add(0, b"hello", 1.0, 1, 1)
    stream.add(1, b"EL", 1.1, 7, 2)
    (conflict,) = stream.conflicts
    assert (conflict.offset, conflict.frame, conflict.subflow) == (1, 7, 2)


def test_bytes_missing_from_the_capture_become_a_hole_never_invented_bytes() -> None:
    out = Collect()
    stream = DataStream(base=0, base_known=True, writer=out)
    stream.add(0, b"ab", 1.0, 1, 1)
    stream.add_missing(2, 3, 1.0, 1, 1)
    stream.add(5, b"f", 1.1, 2, 1)
    stream.set_fin(6)
    assert bytes(out.data) == b"abf" and out.holes == [(2, 3)]
    assert not stream.complete and stream.hole_bytes == 3


def test_the_buffer_cap_turns_an_endless_gap_into_a_hole() -> None:
    stream = DataStream(base=0, base_known=True, buffer_cap=10)
    stream.add(100, b"x" * 8, 1.0, 1, 1)
    stream.add(108, b"y" * 8, 1.0, 2, 1)  # 16 bytes waiting > cap: the gap 0..100 is given up
    assert stream.hole_count == 1 and stream.holes[0] == (0, 100)
    assert stream.delivered == 16


def test_data_before_a_late_capture_stream_start_is_ignored() -> None:
    stream = DataStream(base=1000, base_known=False)
    stream.add(stream.offset_of(990), b"0123456789", 1.0, 1, 1)
    assert stream.delivered == 0


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=400), st.lists(st.integers(1, 50), min_size=1, max_size=20), st.randoms())
def test_any_arrival_order_with_duplicates_rebuilds_the_same_bytes(data: bytes, cuts: list[int], rnd) -> None:  # type: ignore[no-untyped-def]
    pieces, offset = [], 0
    for cut in cuts:
        if offset >= len(data):
            break
        pieces.append((offset, data[offset : offset + cut]))
        offset += cut
    if offset < len(data):
        pieces.append((offset, data[offset:]))
    arrivals = pieces + rnd.sample(pieces, k=len(pieces) // 2)
    rnd.shuffle(arrivals)
    stream = DataStream(base=0, base_known=True)
    for index, (off, piece) in enumerate(arrivals):
        stream.add(off, piece, float(index), index + 1, 1)
    stream.finish()
    assert stream.sha256 == _sha(data) and stream.conflict_count == 0 and stream.hole_count == 0


# ---------------------------------------------------------------------------- crafted traces
def test_a_mapping_spanning_segments_with_odd_lengths_verifies_its_checksum(tmp_path: Path) -> None:
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    c = sc.side("c")
    payload = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"  # 27 bytes in two odd segments
    dss = Dss(MAP64, data_ack=c.acked, dsn=c.dsn, ssn=1, data_len=27,
              checksum=crypto.dss_checksum(c.dsn, 1, 27, payload))  # fmt: skip
    sf.send("c", payload[:13], dss=dss)
    sf.send("c", payload[13:], dss=sc.ack_only_dss("c"))
    c.dsn += 27
    sc.side("s").acked = c.dsn
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    (conn,) = analysis.connections
    c2s, _ = analysis.streams[conn.id]
    assert (c2s.bytes, c2s.sha256, c2s.complete) == (27, _sha(payload), True)
    assert conn.subflows[0].halves[0].checksums[0] >= 1 and conn.subflows[0].halves[0].checksums[1] == 0
    assert _errors(analysis) == []


def test_a_corrupted_payload_fails_the_checksum(tmp_path: Path) -> None:
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    c = sc.side("c")
    dss = Dss(
        MAP64, data_ack=c.acked, dsn=c.dsn, ssn=1, data_len=5, checksum=crypto.dss_checksum(c.dsn, 1, 5, b"hello")
    )
    frame = sf.send("c", b"jello", dss=dss)
    analysis = analyze(sc.write(tmp_path))
    (finding,) = [f for f in analysis.findings if f.rule == "CSUM-001"]
    assert finding.frames == [frame]


def test_mp_capable_with_data_carries_the_first_mapping(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    c, s = sc.side("c"), sc.side("s")
    sf.send("c", b"early", options=[MpCapable(1, 0x01, c.key, s.key, data_len=5)])
    c.dsn += 5
    s.acked = c.dsn
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    c2s, _ = analysis.streams[analysis.connections[0].id]
    assert (c2s.bytes, c2s.sha256, c2s.complete) == (5, _sha(b"early"), True)


def test_reinjection_on_a_join_is_counted_and_attributed(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    c = sc.side("c")
    dsn = c.dsn
    sf.send("c", b"0123456789")
    join.send("c", b"0123456789", dss=Dss(MAP64, data_ack=c.acked, dsn=dsn, ssn=join.rel("c"), data_len=10))
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    (conn,) = analysis.connections
    c2s, _ = analysis.streams[conn.id]
    assert c2s.complete and c2s.bytes == 10
    assert c2s.reinjections == {(conn.subflows[0].id, conn.subflows[1].id): 10}
    assert conn.subflows[1].halves[0].reinjected_bytes == 10
    assert _errors(analysis) == []


def test_a_reinjection_with_different_bytes_is_reported(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    c = sc.side("c")
    dsn = c.dsn
    sf.send("c", b"0123456789")
    frame = join.send("c", b"01234X6789", dss=Dss(MAP64, data_ack=c.acked, dsn=dsn, ssn=join.rel("c"), data_len=10))
    analysis = analyze(sc.write(tmp_path))
    (finding,) = [f for f in analysis.findings if f.rule == "DSS-003"]
    assert frame in finding.frames


def test_tcp_retransmission_is_not_a_reinjection(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    c = sc.side("c")
    dsn, seq = c.dsn, sf.nxt["c"]
    sf.send("c", b"abcdef")
    sf.raw("c", ACK | PSH, [Dss(MAP64, data_ack=c.acked, dsn=dsn, ssn=1, data_len=6)], b"abcdef", seq=seq)
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    half = analysis.connections[0].subflows[0].halves[0]
    assert half.retransmitted_bytes == 6 and half.reinjected_bytes == 0


def _pin_idsn(monkeypatch: pytest.MonkeyPatch, idsn: int) -> None:
    """Give every key the same IDSN, so a test can start a data stream right before a wrap."""
    monkeypatch.setattr(crypto, "idsn_from_key", lambda key, version=1: idsn)


def test_32_bit_dsns_are_expanded_across_a_2_32_wrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pin_idsn(monkeypatch, (7 << 32) + 0xFFFFFFFF - 20)
    sc = ConnectionBuilder()
    sf = sc.initial()
    c = sc.side("c")
    data = bytes(range(40))
    for start in range(0, 40, 10):
        dsn = (c.dsn + start) & 0xFFFFFFFF
        dss = Dss(DSS_ACK | DSS_MAPPING, data_ack=c.acked & 0xFFFFFFFF, dsn=dsn, ssn=1 + start, data_len=10)
        sf.send("c", data[start : start + 10], dss=dss)
    c.dsn += 40
    sc.side("s").acked = c.dsn
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    c2s, _ = analysis.streams[analysis.connections[0].id]
    assert (c2s.bytes, c2s.sha256, c2s.complete) == (40, _sha(data), True)
    assert _errors(analysis) == []


def test_64_bit_dsn_space_wraps_at_2_64(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _pin_idsn(monkeypatch, (1 << 64) - 30)
    sc = ConnectionBuilder()
    sf = sc.initial()
    data = b"x" * 25 + b"y" * 25
    sf.send("c", data[:25])
    sf.send("c", data[25:])
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    c2s, _ = analysis.streams[analysis.connections[0].id]
    assert (c2s.bytes, c2s.sha256, c2s.complete) == (50, _sha(data), True)
    assert _errors(analysis) == []


def test_data_fin_on_the_last_data_mapping_completes_the_stream(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"last words", dss=sc.auto_dss("c", 1, b"last words", data_fin=True))
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    c2s, _ = analysis.streams[analysis.connections[0].id]
    assert (c2s.bytes, c2s.complete) == (10, True)


def test_after_an_infinite_mapping_the_stream_continues_by_tcp_sequence(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    c = sc.side("c")
    sf.send("c", b"mapped.")
    sf.ack("s")
    infinite = Dss(MAP64, data_ack=c.acked, dsn=c.dsn, ssn=sf.rel("c"), data_len=0)
    sf.send("c", b"plain tcp", dss=infinite)
    sf.raw("c", ACK | PSH, [], b" after")
    sf.fin("c", options=[])
    analysis = analyze(sc.write(tmp_path))
    (conn,) = analysis.connections
    assert conn.fallback
    c2s, _ = analysis.streams[conn.id]
    assert (c2s.bytes, c2s.sha256, c2s.complete) == (22, _sha(b"mapped.plain tcp after"), True)


def test_a_connection_that_fell_back_in_the_handshake_is_rebuilt_by_tcp_sequence(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    c, s = sc.side("c"), sc.side("s")
    sf.raw("c", 0x02, [MpCapable(1, 0x01)])
    sf.raw("s", 0x12, [])
    sf.raw("c", ACK, [])
    sf.raw("c", ACK | PSH, [], b"hello")
    sf.raw("s", ACK | PSH, [], b"hi")
    sf.fin("c", options=[])
    sf.fin("s", options=[])
    del c, s
    analysis = analyze(sc.write(tmp_path))
    (conn,) = analysis.connections
    assert conn.fallback
    c2s, s2c = analysis.streams[conn.id]
    assert (c2s.sha256, c2s.complete, s2c.sha256, s2c.complete) == (_sha(b"hello"), True, _sha(b"hi"), True)


def test_payload_cut_by_the_snaplen_leaves_the_stream_incomplete_and_checksums_unverifiable(tmp_path: Path) -> None:
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    sf.send("c", b"z" * 500)
    sf.ack("s")
    sc.close()
    sc.packets = [(ts, pkt[:120]) for ts, pkt in sc.packets]  # what `tcpdump -s 120` keeps
    analysis = analyze(sc.write(tmp_path))
    (conn,) = analysis.connections
    c2s, _ = analysis.streams[conn.id]
    assert not c2s.complete and c2s.sha256 is None and c2s.hole_bytes > 0
    assert conn.subflows[0].halves[0].checksums[1] == 0  # never "bad", only not verifiable
    assert "CSUM-001" not in _errors(analysis)


def test_follow_writer_sees_every_byte_in_order(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    join = sc.join()
    sf.send("c", b"one ")
    join.send("c", b"two ")
    sf.send("c", b"three")
    sf.ack("s")
    sc.close()
    out = Collect()
    analyze(sc.write(tmp_path), AnalysisOptions(stream_writer=lambda conn, side, sf: out if side == 0 else None))
    assert bytes(out.data) == b"one two three"


def test_flag_constant_for_data_fin_is_what_the_builder_uses() -> None:
    assert DSS_DATA_FIN == 0x10


def test_a_retransmission_far_behind_the_newest_mapping_keeps_its_own_mapping(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    c = sc.side("c")
    first_dsn, first_seq = c.dsn, sf.nxt["c"]
    for index in range(300):  # more mappings than the reassembler keeps per subflow
        sf.send("c", bytes([index % 256]) * 10)
    sf.raw("c", ACK | PSH, [Dss(MAP64, data_ack=c.acked, dsn=first_dsn, ssn=1, data_len=10)], b"\x00" * 10,
           seq=first_seq)  # fmt: skip
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    assert "DSS-004" not in [f.rule for f in analysis.findings]
    c2s, _ = analysis.streams[analysis.connections[0].id]
    assert c2s.complete and c2s.bytes == 3000
