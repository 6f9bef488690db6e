"""The pieces the endpoint and the analyzer now share from the protocol core (issue 16).

* ``analyzer.mptcp.packet``: the one IPv4/IPv6 + TCP encoder (endpoint, middlebox, test builders),
  checked against dpkt's independent encoder and against the ingest decoder.
* ``analyzer.mptcp.mapindex``: the one mapping index (endpoint receive side, analyzer mapper),
  including the overlap the mapper's old in-order shortcut missed.
* ``analyzer.mptcp.reorder``: the waiting room of pieces ahead of a gap (the endpoint's receiver).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest
from helpers import pcapgen as g

from analyzer.endpoint.builder import ACK, PSH, ConnectionBuilder
from analyzer.endpoint.datalevel import DataReceiver
from analyzer.endpoint.errors import RemoteProtocolError
from analyzer.endpoint.mapping import MappingTable, RecvMapping
from analyzer.endpoint.segment import ACK as EP_ACK
from analyzer.endpoint.segment import DecodeError, Segment, decode_packet, encode_packet
from analyzer.ingest.decode import LINKTYPE_RAW, decode_segment_pure
from analyzer.mptcp.crypto import internet_checksum
from analyzer.mptcp.mapindex import MappingIndex
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DSN64, DSS_MAPPING, Dss
from analyzer.mptcp.packet import ip_tcp_packet, refresh_checksums, tcp_pseudo_header
from analyzer.mptcp.reorder import ReorderQueue
from analyzer.pipeline import analyze

MAP64 = DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64
V4 = (ipaddress.IPv4Address("10.210.0.1").packed, ipaddress.IPv4Address("10.210.1.1").packed)
V6 = (ipaddress.IPv6Address("fd00:210::1").packed, ipaddress.IPv6Address("fd00:210:1::1").packed)


def _tcp_checksum_ok(packet: bytes) -> bool:
    tcp = (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else 40
    src, dst = (packet[12:16], packet[16:20]) if tcp == 20 else (packet[8:24], packet[24:40])
    return internet_checksum(tcp_pseudo_header(src, dst, len(packet) - tcp) + packet[tcp:]) == 0


# ---------------------------------------------------------------------------------------------- encoder


@pytest.mark.parametrize("v6", [False, True])
def test_the_encoder_writes_what_dpkt_writes(v6: bool) -> None:
    """dpkt computes both checksums its own way: the bytes must agree to the last one."""
    src, dst = V6 if v6 else V4
    options = Dss(MAP64, data_ack=7, dsn=1 << 40, ssn=1, data_len=5).build()
    ours = ip_tcp_packet(src, dst, 40000, 80, 0xFFFFFFF0, 12345, ACK | PSH, options, b"hello", window=501, ident=9)
    padded = options + b"\x01" * (-len(options) % 4)
    tcp = dpkt.tcp.TCP(sport=40000, dport=80, seq=0xFFFFFFF0, ack=12345, flags=ACK | PSH, win=501, opts=padded,
                       off=(20 + len(padded)) // 4, data=b"hello")  # fmt: skip
    if v6:
        ip: dpkt.Packet = dpkt.ip6.IP6(src=src, dst=dst, nxt=6, hlim=64, plen=len(bytes(tcp)), data=tcp)
        ip.p = 6  # dpkt's IP6 computes the TCP checksum only when it knows the upper protocol
    else:
        ip = dpkt.ip.IP(src=src, dst=dst, p=6, ttl=64, id=9, df=1, data=tcp)
    assert ours == bytes(ip)
    assert _tcp_checksum_ok(ours)


def test_the_ingest_decoder_and_the_endpoint_decoder_read_the_encoders_packets() -> None:
    dss = Dss(MAP64, data_ack=1, dsn=2, ssn=1, data_len=4)
    client, server = ipaddress.IPv4Address("10.210.0.1"), ipaddress.IPv4Address("10.210.1.1")
    seg = Segment(client, 40000, server, 80, 100, 200, EP_ACK, 1000, b"data", mptcp=(dss,))
    raw = encode_packet(seg, ip_id=3)
    assert decode_packet(raw) == seg
    seen = decode_segment_pure(1, 0.0, LINKTYPE_RAW, raw)
    assert not isinstance(seen, int)
    assert (seen.seq, seen.ack, seen.payload, seen.mptcp) == (100, 200, b"data", list(seg.mptcp))


def test_the_endpoint_reads_ip_headers_as_the_capture_decoder_does() -> None:
    """One IP-header walk: IPv6 extension headers are skipped, an IPv4 fragment is refused (both were not)."""
    options = Dss(MAP64, data_ack=1, dsn=2, ssn=1, data_len=3).build()
    v6 = g.ipv6_tcp("fd00:210::1", "fd00:210:1::1", 1, 2, 3, 4, ACK, options, b"abc", ext_headers=[g.hop_by_hop()])
    seg = decode_packet(v6)
    assert (seg.payload, seg.mptcp) == (b"abc", (Dss(MAP64, data_ack=1, dsn=2, ssn=1, data_len=3),))
    fragment = g.ipv4_tcp("10.210.0.1", "10.210.1.1", 1, 2, 3, 4, ACK, b"", b"abc", more_fragments=True)
    with pytest.raises(DecodeError, match="fragment"):
        decode_packet(fragment)


@pytest.mark.parametrize("v6", [False, True])
def test_refresh_checksums_after_an_edit_equals_a_fresh_encoding(v6: bool) -> None:
    src, dst = V6 if v6 else V4
    packet = bytearray(ip_tcp_packet(src, dst, 1, 2, 10, 20, ACK, b"", b"payload", ident=4))
    tcp = 40 if v6 else 20
    struct.pack_into("!I", packet, tcp + 4, 11)  # a middlebox rewrote the sequence number
    assert not _tcp_checksum_ok(bytes(packet))
    assert refresh_checksums(packet) == ip_tcp_packet(src, dst, 1, 2, 11, 20, ACK, b"", b"payload", ident=4)


# ---------------------------------------------------------------------------------------------- mapping index


@dataclass
class _Map:
    start: int
    end: int
    dsn: int


def test_index_finds_the_earliest_covering_mapping_and_stays_bounded() -> None:
    index: MappingIndex[_Map] = MappingIndex(cap=3)
    a, b, c = _Map(1, 1001, 5000), _Map(50, 60, 5049), _Map(2000, 2010, 7000)
    for m in (a, b, c):
        assert index.add(m) == (m, None)
    assert index.covering(55) is a  # the earlier, longer mapping covers it too
    assert index.covering(1500) is None and index.covering(2009) is c and index.covering(2010) is None
    assert index.add(_Map(50, 60, 5049)) == (b, None)  # an identical copy: the kept one
    d = _Map(3000, 3010, 8000)
    assert index.add(d) == (d, a)  # past the cap, the oldest goes
    index.remove(b)
    assert list(index) == [c, d] and index.starts == [2000, 3000]


def test_index_sees_a_conflict_behind_a_shorter_newest_mapping() -> None:
    """The in-order shortcut must not skip an earlier mapping that reaches past the newest one's end."""
    index: MappingIndex[_Map] = MappingIndex(cap=10)
    long, short = _Map(1, 1001, 5000), _Map(50, 60, 5049)  # same delta: consistent
    index.add(long)
    index.add(short)
    conflicts: list[_Map] = []
    index.add(_Map(60, 70, 9000), conflicts.append)
    assert conflicts == [long]


def test_the_mapper_reports_that_conflict_as_dss_002(tmp_path: Path) -> None:
    """Real bytes: 1000 mapped, 10 of them again with the same mapping, the next 10 mapped elsewhere."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    dsn, seq = sc.side("c").dsn, sf.nxt["c"]
    acked = sc.side("c").acked
    payload = bytes(range(250)) * 4
    first = sf.send("c", payload)
    sf.raw("c", ACK | PSH, [Dss(MAP64, data_ack=acked, dsn=dsn + 49, ssn=50, data_len=10)], payload[49:59],
           seq=seq + 49)  # fmt: skip
    third = sf.raw("c", ACK | PSH, [Dss(MAP64, data_ack=acked, dsn=dsn + 5000, ssn=60, data_len=10)],
                   payload[59:69], seq=seq + 59)  # fmt: skip
    analysis = analyze(sc.write(tmp_path))
    found = [f for f in analysis.findings if f.rule == "DSS-002"]
    assert [f.frames for f in found] == [[first, third]]


def test_the_endpoint_table_resets_on_that_conflict_too() -> None:
    table = MappingTable(checksums=False)
    table.add(RecvMapping(1, 0, 1000, 1000, 1 << 32, False, None))
    table.add(RecvMapping(50, 49, 10, 10, (1 << 32) + 49, False, None))
    with pytest.raises(RemoteProtocolError, match="conflicts"):
        table.add(RecvMapping(60, 4999, 10, 10, (1 << 32) + 4999, False, None))


# ---------------------------------------------------------------------------------------------- waiting room


@dataclass
class _Piece:
    offset: int
    length: int


def test_reorder_queue_releases_lowest_first_and_counts_bytes() -> None:
    queue: ReorderQueue[_Piece] = ReorderQueue()
    for piece in (_Piece(300, 10), _Piece(100, 50), _Piece(200, 5)):
        queue.put(piece)
    longer = _Piece(200, 40)
    queue.put(longer)  # the caller chose the longer copy: it replaces the other at that offset
    assert (len(queue), queue.bytes, queue.first(), queue.get(200)) == (3, 100, 100, longer)
    assert [queue.pop_first().offset for _ in range(3)] == [100, 200, 300]
    assert (bool(queue), queue.bytes, queue.first()) == (False, 0, None)


def test_the_endpoint_receiver_joins_pieces_that_came_in_any_order() -> None:
    rx = DataReceiver(buffer_size=1 << 16)
    data = bytes(range(256)) * 40
    pieces = [(i, data[i : i + 100]) for i in range(0, len(data), 100)]
    out = b"".join(rx.add(offset, chunk) for offset, chunk in [*pieces[1:][::-1], pieces[0]])
    assert out == data and rx.nxt == len(data)
    assert rx.window() == 1 << 16  # nothing waits any more: the whole buffer is free
