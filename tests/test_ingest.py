"""The ingest layer: capture formats (pcap, pcapng, gzip, stdin), link layers, IP and TCP decoding.

Every capture here is crafted with ``tests/helpers/pcapgen.py``; MPTCP options come from the real
codec. Most tests go through :func:`analyzer.pipeline.analyze` so they check what a user sees
(``trace.packets``, ``trace.skipped``, ``trace.errors``, connections); the decoder tests call
:func:`decode_segment` directly where the exact field values matter.
"""

from __future__ import annotations

import gc
import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import pytest
from helpers import pcapgen as g
from helpers.pcapgen import ACK, PSH, SYN, Framed, Iface, Packet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.endpoint.builder import ConnectionBuilder, SubflowBuilder
from analyzer.findings import Severity
from analyzer.ingest import capture as capture_mod
from analyzer.ingest.capture import CaptureError, open_capture, read_records
from analyzer.ingest.decode import SUPPORTED_LINK_TYPES, Skip, decode_segment
from analyzer.ingest.record import Record
from analyzer.ingest.segment import Segment
from analyzer.mptcp import Dss, MpCapable, crypto
from analyzer.pipeline import analyze

CLIENT_KEY = 0x0123456789ABCDEF
SERVER_KEY = 0xFEDCBA9876543210
V4 = (("10.0.0.1", 40000), ("10.0.0.2", 443))
V6 = (("2001:db8::1", 40000), ("2001:db8::2", 443))

SKIP_FRAGMENT = "IP fragments"
SKIP_NOT_IP = "not IPv4/IPv6"
SKIP_NOT_TCP = "not TCP"
SKIP_TRUNCATED = "headers cut short by the capture"
SKIP_BAD_TCP = "malformed TCP header"


def connection(
    client: tuple[str, int] = V4[0], server: tuple[str, int] = V4[1]
) -> tuple[ConnectionBuilder, SubflowBuilder]:
    """A v1 connection with the MP_CAPABLE handshake sent (MSS 1460 in SYN and SYN-ACK)."""
    conn = ConnectionBuilder(client_ip=client[0], server_ip=server[0], client_key=CLIENT_KEY, server_key=SERVER_KEY,
                             server_port=server[1])  # fmt: skip
    return conn, conn.initial(client_port=client[1], syn_options=[g.opt_mss()])


def mptcp_capture(
    linktype: int = g.LINKTYPE_ETHERNET, *, v6: bool = False, encap=None, payload: bytes = b"hello, mptcp"
) -> tuple[Framed, ConnectionBuilder]:
    """v1 handshake + one DSS data segment each way: 5 packets, all MPTCP."""
    conn, sf = connection(*(V6 if v6 else V4))
    sf.send("c", payload)
    sf.send("s", b"reply")
    return Framed(conn, linktype, encap=encap), conn


def records(path: Path) -> tuple[list[Record], capture_mod.CaptureInfo]:
    stream, info = open_capture(str(path))
    try:
        return list(read_records(stream, info)), info
    finally:
        stream.close()


def assert_one_connection(analysis, packets: int) -> None:
    assert analysis.trace.packets == packets
    assert analysis.trace.tcp_packets == packets
    assert analysis.trace.skipped == {}
    assert len(analysis.connections) == 1
    conn = analysis.connections[0]
    assert conn.sides[0].key == CLIENT_KEY
    assert conn.sides[1].key == SERVER_KEY


# ============================================================================================ pcap


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
def test_pcap_byte_order_and_resolution_exact_timestamps(tmp_path, big_endian, nano):
    cap, _ = mptcp_capture()
    frac = [123456789, 999999999, 0, 1, 500000000] if nano else [123456, 999999, 0, 1, 500000]
    packets = [Packet(p.data, ts=(1_700_000_000 + i, frac[i])) for i, p in enumerate(cap.packets)]
    path = g.write_pcap(tmp_path / "t.pcap", packets, g.LINKTYPE_ETHERNET, nano=nano, big_endian=big_endian)
    magic = path.read_bytes()[:4]
    assert magic == struct.pack(">I" if big_endian else "<I", 0xA1B23C4D if nano else 0xA1B2C3D4)

    recs, info = records(path)
    divisor = 1e9 if nano else 1e6
    assert [r.ts for r in recs] == [1_700_000_000 + i + frac[i] / divisor for i in range(5)]
    assert [r.data for r in recs] == [p.data for p in packets]
    assert all(r.link_type == g.LINKTYPE_ETHERNET and r.origlen == len(r.data) for r in recs)
    assert info.errors == []
    # A nanosecond fraction read as microseconds would be ~123 s off: check the magnitude too.
    assert abs(recs[0].ts - (1_700_000_000 + frac[0] / divisor)) < 1e-6

    analysis = analyze(str(path))
    assert analysis.trace.file_format == "pcap"
    assert analysis.trace.first_time == recs[0].ts
    assert analysis.trace.last_time == recs[-1].ts
    assert_one_connection(analysis, 5)


@pytest.mark.parametrize("nano", [False, True], ids=["usec", "nsec"])
def test_pcap_written_by_dpkt(tmp_path, nano):
    cap, _ = mptcp_capture()
    path = cap.write_pcap(tmp_path / "t.pcap", nano=nano, writer="dpkt")
    recs, _ = records(path)
    expected = [p.ts for p in cap.packets]
    assert [r.ts for r in recs] == pytest.approx(expected, abs=1e-9 if nano else 1e-6)
    assert_one_connection(analyze(str(path)), 5)


def test_pcap_snaplen_truncates_payload_but_options_are_parsed(tmp_path):
    conn, sf = connection()
    sf.send("c", b"A" * 1000)
    sf.send("s", b"B" * 600)
    cap = Framed(conn)
    # Ethernet 14 + IP 20 + TCP 20 + DSS (A+a+M+m: 28 bytes) = 82: keep the options, cut the payload.
    snaplen = 14 + 20 + 20 + 28 + 10
    path = cap.write_pcap(tmp_path / "cut.pcap", snaplen=snaplen)
    recs, _ = records(path)
    assert [len(r.data) for r in recs[3:]] == [snaplen, snaplen]
    assert [r.origlen for r in recs[3:]] == [len(p.data) for p in cap.packets[3:]]

    analysis = analyze(str(path))
    assert analysis.trace.truncated_packets == 2
    assert analysis.trace.snaplen == snaplen
    assert analysis.trace.mptcp_packets == 5  # the DSS of both cut packets was decoded
    assert_one_connection(analysis, 5)
    sf = analysis.connections[0].subflows[0]
    assert sf.halves[0].payload_bytes == 1000 and sf.halves[0].captured_bytes == 10
    assert sf.halves[1].payload_bytes == 600 and sf.halves[1].captured_bytes == 10
    assert sf.halves[0].dss_packets == 1 and sf.halves[1].dss_packets == 1


def test_pcap_truncated_last_record(tmp_path):
    cap, _ = mptcp_capture()
    whole = g.pcap_bytes(cap.packets, g.LINKTYPE_ETHERNET)
    path = tmp_path / "cut.pcap"
    path.write_bytes(whole[: len(whole) - 7])  # cut 7 bytes before the end of the last packet

    analysis = analyze(str(path))
    assert analysis.trace.packets == 4
    assert analysis.trace.tcp_packets == 4
    assert len(analysis.connections) == 1
    assert len(analysis.trace.errors) == 1
    message = analysis.trace.errors[0]
    assert "truncated" in message and "file cut short" in message
    capture_findings = [f for f in analysis.findings if f.rule == "CAPTURE-001"]
    assert [f.message for f in capture_findings] == [message]
    assert capture_findings[0].severity == Severity.WARNING


def test_pcap_truncated_last_record_header(tmp_path):
    cap, _ = mptcp_capture()
    path = tmp_path / "cut.pcap"
    path.write_bytes(g.pcap_bytes(cap.packets, g.LINKTYPE_ETHERNET) + b"\x00" * 9)  # 9 of 16 header bytes
    analysis = analyze(str(path))
    assert analysis.trace.packets == 5
    assert len(analysis.trace.errors) == 1 and "truncated record header" in analysis.trace.errors[0]


def test_pcap_corrupt_record_header_mid_file(tmp_path):
    cap, _ = mptcp_capture()
    pkts = cap.packets
    head = g.pcap_file_header(g.LINKTYPE_ETHERNET)
    body = b"".join(g.pcap_record(p) for p in pkts[:3])
    body += g.pcap_record(pkts[3], caplen=0x7FFF_FFF0)  # the header lies: ~2 GB
    body += g.pcap_record(pkts[4])
    path = tmp_path / "corrupt.pcap"
    path.write_bytes(head + body)

    analysis = analyze(str(path))
    assert analysis.trace.packets == 3
    assert len(analysis.trace.errors) == 1
    assert "corrupt record header" in analysis.trace.errors[0]
    offset = 24 + sum(16 + len(p.data) for p in pkts[:3])
    assert f"offset {offset}" in analysis.trace.errors[0]
    assert len(analysis.connections) == 1  # the handshake before the damage is analysed


@pytest.mark.parametrize(
    "garbage",
    [
        b"this is definitely not a pcap record -- trailing junk\n" * 3,
        b"\xff" * 40,
        b"\x00\x01\x02",
    ],
    ids=["text", "ff", "short"],
)
def test_pcap_garbage_after_valid_records(tmp_path, garbage):
    cap, _ = mptcp_capture()
    path = tmp_path / "junk.pcap"
    path.write_bytes(g.pcap_bytes(cap.packets, g.LINKTYPE_ETHERNET) + garbage)
    analysis = analyze(str(path))
    assert analysis.trace.packets == 5
    assert analysis.trace.tcp_packets == 5
    assert len(analysis.connections) == 1
    assert len(analysis.trace.errors) == 1


def test_pcap_link_type_word_with_fcs_bits(tmp_path):
    """The upper bits of the link-type word carry the FCS length (libpcap LT_FCS_LENGTH_PRESENT)."""
    cap, _ = mptcp_capture()
    data = bytearray(g.pcap_bytes(cap.packets, g.LINKTYPE_ETHERNET))
    struct.pack_into("<I", data, 20, g.LINKTYPE_ETHERNET | 0x04000000 | (4 << 28))
    path = tmp_path / "fcs.pcap"
    path.write_bytes(bytes(data))
    analysis = analyze(str(path))
    assert analysis.trace.link_types == ["ETHERNET"]
    assert_one_connection(analysis, 5)


# ============================================================================================ pcapng


def test_pcapng_single_interface(tmp_path):
    cap, _ = mptcp_capture()
    path = g.write_pcapng(tmp_path / "t.pcapng", [Iface(g.LINKTYPE_ETHERNET, name="eth0")], cap.packets,
                          writer="dpkt")  # fmt: skip
    recs, info = records(path)
    assert info.file_format == "pcapng"
    assert [i.link_type for i in info.interfaces] == [g.LINKTYPE_ETHERNET]
    assert info.interfaces[0].name == "eth0"
    assert [r.ts for r in recs] == [p.ts for p in cap.packets]
    analysis = analyze(str(path))
    assert analysis.trace.file_format == "pcapng"
    assert analysis.trace.link_types == ["ETHERNET"]
    assert_one_connection(analysis, 5)


@pytest.mark.parametrize("writer", ["dpkt", "struct"])
def test_pcapng_two_interfaces_link_types_and_resolutions(tmp_path, writer):
    cap, _ = mptcp_capture(g.LINKTYPE_RAW)
    ifaces = [Iface(g.LINKTYPE_ETHERNET), Iface(g.LINKTYPE_RAW, tsresol=g.TSRESOL_NS)]
    packets = []
    for i, p in enumerate(cap.packets):  # alternate: even frames on Ethernet (µs), odd on raw IP (ns)
        if i % 2 == 0:
            packets.append(Packet(g.ethernet(p.data), ts=(1_700_000_000, 100_000 + i), interface=0))
        else:
            packets.append(Packet(p.data, ts=(1_700_000_000, 100_000_000 + i), interface=1))
    path = g.write_pcapng(tmp_path / "two.pcapng", ifaces, packets, writer=writer)

    recs, info = records(path)
    assert [(i.link_type, i.ts_divisor) for i in info.interfaces] == [(1, 1e6), (101, 1e9)]
    assert [r.link_type for r in recs] == [1, 101, 1, 101, 1]
    expected = [
        1_700_000_000 + (100_000 + i) / 1e6 if i % 2 == 0 else 1_700_000_000 + (100_000_000 + i) / 1e9 for i in range(5)
    ]
    assert [r.ts for r in recs] == expected

    analysis = analyze(str(path))
    assert analysis.trace.link_types == ["ETHERNET", "RAW"]
    assert_one_connection(analysis, 5)


def test_pcapng_binary_time_resolution_and_offset(tmp_path):
    cap, _ = mptcp_capture()
    iface = Iface(g.LINKTYPE_ETHERNET, tsresol=0x80 | 20, tsoffset=1_000_000)  # 2^-20 s units, +1e6 s
    packets = [Packet(p.data, ts=(1000 + i, 1 << 19)) for i, p in enumerate(cap.packets)]
    path = tmp_path / "bin.pcapng"
    path.write_bytes(g.pcapng_section([iface], packets))
    recs, _ = records(path)
    assert [r.ts for r in recs] == [1_000_000 + 1000 + i + 0.5 for i in range(5)]


def test_pcapng_second_section_header_block(tmp_path):
    cap4, _ = mptcp_capture()
    cap6, _ = mptcp_capture(g.LINKTYPE_RAW, v6=True)
    # Section 1: little-endian, Ethernet. Section 2: big-endian, raw IP, ns; its interface 0 is raw IP.
    section1 = g.pcapng_section([Iface(g.LINKTYPE_ETHERNET)], cap4.packets)
    section2 = g.pcapng_section(
        [Iface(g.LINKTYPE_RAW, tsresol=g.TSRESOL_NS)],
        [Packet(p.data, ts=(1_800_000_000, 7 + i)) for i, p in enumerate(cap6.packets)],
        big_endian=True,
    )
    path = tmp_path / "sections.pcapng"
    path.write_bytes(section1 + section2)

    recs, info = records(path)
    assert info.errors == []
    assert [r.link_type for r in recs] == [1] * 5 + [101] * 5
    assert [r.ts for r in recs[5:]] == [1_800_000_000 + (7 + i) / 1e9 for i in range(5)]
    analysis = analyze(str(path))
    assert analysis.trace.packets == 10 and analysis.trace.tcp_packets == 10
    assert analysis.trace.link_types == ["ETHERNET", "RAW"]
    assert len(analysis.connections) == 2
    assert {c.subflows[0].client for c in analysis.connections} == {"10.0.0.1:40000", "[2001:db8::1]:40000"}


def test_pcapng_truncated_final_block(tmp_path):
    cap, _ = mptcp_capture()
    whole = g.pcapng_section([Iface(g.LINKTYPE_ETHERNET)], cap.packets)
    path = tmp_path / "cut.pcapng"
    path.write_bytes(whole[:-10])
    analysis = analyze(str(path))
    assert analysis.trace.packets == 4
    assert len(analysis.connections) == 1
    assert len(analysis.trace.errors) == 1
    assert "truncated" in analysis.trace.errors[0]


def test_pcapng_simple_packet_blocks(tmp_path):
    cap, _ = mptcp_capture(payload=b"x" * 500)
    snaplen = 120
    path = tmp_path / "spb.pcapng"
    path.write_bytes(g.pcapng_section([Iface(g.LINKTYPE_ETHERNET, snaplen=snaplen)], cap.packets, simple=True))
    recs, info = records(path)
    assert info.errors == []
    assert len(recs) == 5
    assert [r.origlen for r in recs] == [len(p.data) for p in cap.packets]  # original lengths kept
    assert [r.data for r in recs] == [p.data[:snaplen] for p in cap.packets]
    analysis = analyze(str(path))
    assert analysis.trace.truncated_packets == 1  # the 500-byte data segment
    assert_one_connection(analysis, 5)


def test_pcapng_simple_packet_block_without_interface(tmp_path):
    cap, _ = mptcp_capture()
    path = tmp_path / "spb.pcapng"
    path.write_bytes(g.pcapng_shb() + g.pcapng_spb(cap.packets[0]) + g.pcapng_section([1], cap.packets))
    analysis = analyze(str(path))
    assert analysis.trace.packets == 5
    assert len(analysis.trace.errors) == 1 and "before any interface" in analysis.trace.errors[0]


def test_pcapng_unreadable_interface_block_keeps_interface_ids(tmp_path):
    """dpkt rejects an IDB whose two length fields differ; the next interface must stay id 1."""
    cap, _ = mptcp_capture(g.LINKTYPE_RAW)
    bad_idb = bytearray(g.pcapng_idb(Iface(g.LINKTYPE_ETHERNET, name="eth0")))
    bad_idb[-4:] = struct.pack("<I", len(bad_idb) + 4)
    packets = [Packet(p.data, ts=p.ts, interface=1) for p in cap.packets]
    data = g.pcapng_shb() + bytes(bad_idb) + g.pcapng_idb(g.LINKTYPE_RAW)
    data += b"".join(g.pcapng_epb(p, g.LINKTYPE_RAW) for p in packets)
    path = tmp_path / "badidb.pcapng"
    path.write_bytes(data)
    analysis = analyze(str(path))
    assert analysis.trace.link_types == ["RAW"]
    assert_one_connection(analysis, 5)
    assert len(analysis.trace.errors) == 1 and "interface block" in analysis.trace.errors[0]


def test_pcapng_errors_per_packet_are_capped(tmp_path):
    """300 packet blocks naming a missing interface: the error list stays small."""
    cap, _ = mptcp_capture()
    pkt = Packet(cap.packets[3].data, interface=7)
    path = tmp_path / "noiface.pcapng"
    path.write_bytes(g.pcapng_section([1], cap.packets) + g.pcapng_epb(pkt, 1) * 300)
    analysis = analyze(str(path))
    assert analysis.trace.packets == 5
    errors = analysis.trace.errors
    assert len(errors) == capture_mod.MAX_ERRORS + 1
    assert "unknown interface 7" in errors[0]
    assert "not listed" in errors[-1]


# ============================================================================================ gzip, stdin


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_gzip_compressed(tmp_path, fmt):
    cap, _ = mptcp_capture()
    plain = cap.write_pcap(tmp_path / "t.pcap") if fmt == "pcap" else cap.write_pcapng(tmp_path / "t.pcapng")
    gz = g.gzip_file(plain)
    assert gz.read_bytes()[:2] == b"\x1f\x8b"
    analysis = analyze(str(gz))
    assert analysis.trace.compressed is True
    assert analysis.trace.file_format == fmt
    assert_one_connection(analysis, 5)
    assert analysis.trace.first_time == analyze(str(plain)).trace.first_time


def test_gzip_closes_the_underlying_file(tmp_path):
    cap, _ = mptcp_capture()
    gz = g.gzip_file(cap.write_pcap(tmp_path / "t.pcap"))
    gc.collect()  # finalise whatever earlier tests left behind before watching for warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        analyze(str(gz))
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning) and str(gz) in str(w.message)]
    assert not leaks


def _stored_deflate_gzip(payload: bytes, tail: bytes) -> bytes:
    """A gzip member whose deflate data is ``payload`` in stored blocks followed by ``tail``."""
    out = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    for i in range(0, len(payload), 0xFFFF):
        chunk = payload[i : i + 0xFFFF]
        out += b"\x00" + struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF) + chunk
    return out + tail


def test_gzip_corrupt_deflate_data_mid_file(tmp_path):
    """zlib.error (invalid block type) after ~200 kB: earlier packets count, one error, no exception."""
    conn, sf = connection()
    for _ in range(200):
        sf.send("c", b"z" * 1000)
    cap = Framed(conn)
    path = tmp_path / "bad.pcap.gz"
    path.write_bytes(_stored_deflate_gzip(g.pcap_bytes(cap.packets, 1), b"\x07" + b"\x00" * 64))
    analysis = analyze(str(path))
    assert 0 < analysis.trace.packets <= len(cap.packets)
    assert len(analysis.trace.errors) == 1 and "read error" in analysis.trace.errors[0]


def test_gzip_truncated_mid_file(tmp_path):
    cap, _ = mptcp_capture(payload=random.Random(7).randbytes(1200))
    raw = gzip.compress(g.pcap_bytes(cap.packets * 50, 1))
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(raw[: len(raw) * 3 // 4])
    analysis = analyze(str(path))
    assert 0 < analysis.trace.packets < 250
    assert len(analysis.trace.errors) == 1


def _cli() -> list[str]:
    exe = shutil.which("mptcp-analyze", path=os.path.dirname(sys.executable)) or shutil.which("mptcp-analyze")
    if exe:
        return [exe]
    return [sys.executable, "-c", "import sys; from analyzer.cli import main; sys.argv[0] = 'mptcp-analyze'; main()"]


@pytest.mark.parametrize("compressed", [False, True], ids=["pcap", "gzip"])
def test_stdin(tmp_path, compressed):
    cap, _ = mptcp_capture()
    path = cap.write_pcap(tmp_path / "t.pcap")
    if compressed:
        path = g.gzip_file(path)
    with path.open("rb") as stdin:
        proc = subprocess.run([*_cli(), "-", "--json"], stdin=stdin, capture_output=True, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr.decode()
    doc = json.loads(proc.stdout)
    assert doc["trace"]["path"] == "-"
    assert doc["trace"]["packets"] == 5
    assert doc["trace"]["compressed"] is compressed
    assert doc["trace"]["errors"] == []
    assert len(doc["connections"]) == 1
    assert doc["connections"][0]["client"]["key"] == f"{CLIENT_KEY:016x}"


# ============================================================================================ link types

_v4 = {"v6": False}
_v6 = {"v6": True}
LINK_CASES = {
    "ethernet": (g.LINKTYPE_ETHERNET, g.ethernet, _v4, "ETHERNET"),
    "ethernet-v6": (g.LINKTYPE_ETHERNET, g.ethernet, _v6, "ETHERNET"),
    "8021q": (g.LINKTYPE_ETHERNET, lambda ip: g.ethernet(ip, vlan_tags=[42]), _v4, "ETHERNET"),
    "qinq": (g.LINKTYPE_ETHERNET, lambda ip: g.ethernet(ip, vlan_tags=[(0x88A8, 100), (0x8100, 200)]), _v6, "ETHERNET"),
    "sll": (g.LINKTYPE_LINUX_SLL, g.sll, _v4, "LINUX_SLL"),
    "sll-v6": (g.LINKTYPE_LINUX_SLL, g.sll, _v6, "LINUX_SLL"),
    "sll2": (g.LINKTYPE_LINUX_SLL2, g.sll2, _v4, "LINUX_SLL2"),
    "sll2-v6": (g.LINKTYPE_LINUX_SLL2, g.sll2, _v6, "LINUX_SLL2"),
    "raw-v4": (g.LINKTYPE_RAW, lambda ip: ip, _v4, "RAW"),
    "raw-v6": (g.LINKTYPE_RAW, lambda ip: ip, _v6, "RAW"),
    "ipv4-228": (g.LINKTYPE_IPV4, lambda ip: ip, _v4, "IPV4"),
    "ipv6-229": (g.LINKTYPE_IPV6, lambda ip: ip, _v6, "IPV6"),
    "loop-v4": (g.LINKTYPE_LOOP, lambda ip: g.loop(ip, g.AF_INET), _v4, "LOOP"),
    "loop-v6": (g.LINKTYPE_LOOP, lambda ip: g.loop(ip, 24), _v6, "LOOP"),
}
for _order in ("little", "big"):
    LINK_CASES[f"null-{_order}-af2"] = (
        g.LINKTYPE_NULL, lambda ip, o=_order: g.null_loopback(ip, g.AF_INET, o), _v4, "NULL",
    )  # fmt: skip
    for _af in (10, 24, 28, 30):
        LINK_CASES[f"null-{_order}-af{_af}"] = (
            g.LINKTYPE_NULL, lambda ip, o=_order, af=_af: g.null_loopback(ip, af, o), _v6, "NULL",
        )  # fmt: skip


@pytest.mark.parametrize("case", list(LINK_CASES))
def test_link_types(tmp_path, case):
    linktype, encap, kw, name = LINK_CASES[case]
    cap, _ = mptcp_capture(linktype, encap=encap, **kw)
    path = cap.write_pcap(tmp_path / "t.pcap")
    analysis = analyze(str(path))
    assert analysis.trace.link_types == [name]
    assert_one_connection(analysis, 5)
    assert analysis.trace.mptcp_packets == 5
    conn = analysis.connections[0]
    assert conn.client_address == (V6 if kw["v6"] else V4)[0][0]


def test_null_loopback_unknown_family_is_not_ip():
    ip = g.ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2, 0, 0, SYN)
    assert decode_segment(1, 0.0, g.LINKTYPE_NULL, g.null_loopback(ip, 7)) is Skip.NOT_IP
    assert decode_segment(1, 0.0, g.LINKTYPE_LOOP, g.loop(ip, 7)) is Skip.NOT_IP


def test_vlan_tag_limit_and_short_frames():
    ip = g.ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2, 0, 0, SYN)
    assert isinstance(decode_segment(1, 0.0, 1, g.ethernet(ip, vlan_tags=[1, 2, 3, 4])), Segment)
    assert decode_segment(1, 0.0, 1, g.ethernet(ip, vlan_tags=[1, 2, 3, 4, 5])) is Skip.NOT_IP
    for linktype, frame in [(1, g.ethernet(ip)), (113, g.sll(ip)), (276, g.sll2(ip)), (0, g.null_loopback(ip))]:
        assert decode_segment(1, 0.0, linktype, frame[:3]) is Skip.TRUNCATED_HEADER
    assert decode_segment(1, 0.0, 101, b"") is Skip.TRUNCATED_HEADER
    assert decode_segment(1, 0.0, 147, g.ethernet(ip)) is Skip.UNSUPPORTED_LINK


# ============================================================================================ IP / TCP

DSS = Dss(0x05, data_ack=7, dsn=1000, ssn=1, data_len=5)  # A + M, 32-bit


def test_ipv4_options():
    record_route = bytes((7, 11, 4)) + b"\0" * 8  # 11 bytes, padded to 12: ihl = 8
    ip = g.ipv4_tcp("10.1.1.1", "10.2.2.2", 1234, 80, 111, 222, ACK | PSH, DSS.build(), b"hello",
                    ip_options=record_route)  # fmt: skip
    assert ip[0] == 0x48
    seg = decode_segment(3, 1.5, g.LINKTYPE_ETHERNET, g.ethernet(ip))
    assert isinstance(seg, Segment)
    assert (seg.src, seg.dst) == (bytes([10, 1, 1, 1]), bytes([10, 2, 2, 2]))
    assert (seg.sport, seg.dport, seg.seq, seg.ack) == (1234, 80, 111, 222)
    assert seg.payload == b"hello" and seg.payload_len == 5
    assert seg.mptcp == [DSS]
    assert (seg.frame, seg.ts, seg.ip_version) == (3, 1.5, 4)


def test_ipv4_trailing_ethernet_padding_is_not_payload():
    ip = g.ipv4_tcp("10.1.1.1", "10.2.2.2", 1, 2, 0, 0, ACK)
    seg = decode_segment(1, 0.0, 1, g.ethernet(ip) + b"\0" * 6)  # 54-byte frame padded to 60
    assert isinstance(seg, Segment) and seg.payload_len == 0 and seg.payload == b""


def test_ipv6_extension_headers_before_tcp():
    exts = [g.hop_by_hop(), g.destination_options(14), g.routing(["2001:db8::77", "2001:db8::78"]),
            g.auth_header()]  # fmt: skip
    ip = g.ipv6_tcp("2001:db8::1", "2001:db8::2", 5000, 443, 9, 10, ACK, DSS.build(), b"hello", ext_headers=exts)
    assert ip[6] == 0  # next header: hop-by-hop
    seg = decode_segment(1, 0.0, g.LINKTYPE_RAW, ip)
    assert isinstance(seg, Segment)
    assert seg.ip_version == 6 and (seg.sport, seg.dport, seg.seq, seg.ack) == (5000, 443, 9, 10)
    assert seg.payload == b"hello"
    assert seg.mptcp == [DSS]


def test_ipv6_no_next_header_and_udp_after_extension_headers():
    ip = g.ipv6("2001:db8::1", "2001:db8::2", g.IPPROTO_NONE, b"", ext_headers=[g.hop_by_hop()])
    assert decode_segment(1, 0.0, 101, ip) is Skip.NOT_TCP
    ip = g.ipv6("2001:db8::1", "2001:db8::2", g.IPPROTO_UDP, g.udp(1, 2, b"x"), ext_headers=[g.routing()])
    assert decode_segment(1, 0.0, 101, ip) is Skip.NOT_TCP


def test_fragments_are_counted_not_decoded(tmp_path):
    seg = g.tcp_header(1, 2, 0, 0, ACK) + b"x" * 40
    packets = [
        g.ipv4("10.0.0.1", "10.0.0.2", 6, seg, more_fragments=True, dont_fragment=False),  # first fragment
        g.ipv4("10.0.0.1", "10.0.0.2", 6, b"y" * 16, frag_offset=8, dont_fragment=False),  # last fragment
        g.ipv6("2001:db8::1", "2001:db8::2", 6, seg, ext_headers=[g.fragment(0, more=True)]),
        g.ipv6("2001:db8::1", "2001:db8::2", 6, b"y" * 16, ext_headers=[g.hop_by_hop(), g.fragment(8, more=False)]),
    ]
    path = g.write_pcap(tmp_path / "frag.pcap", packets, g.LINKTYPE_RAW)
    analysis = analyze(str(path))
    assert analysis.trace.packets == 4
    assert analysis.trace.tcp_packets == 0
    assert analysis.trace.skipped == {SKIP_FRAGMENT: 4}


def test_non_ip_and_non_tcp(tmp_path):
    frames = [
        g.arp(),
        g.ethernet(g.ipv4("10.0.0.1", "10.0.0.2", g.IPPROTO_UDP, g.udp(53, 53, b"dns"))),
        g.ethernet(g.ipv4("10.0.0.1", "10.0.0.2", g.IPPROTO_ICMP, g.icmp_echo())),
        g.ethernet(g.ipv6("2001:db8::1", "2001:db8::2", g.IPPROTO_ICMPV6, g.icmp_echo(v6=True))),
        g.ethernet(b"\x00" * 46, ethertype=0x88CC),  # LLDP
        g.ethernet(g.ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2, 0, 0, SYN)),
    ]
    path = g.write_pcap(tmp_path / "mix.pcap", frames, g.LINKTYPE_ETHERNET)
    analysis = analyze(str(path))
    assert analysis.trace.packets == 6
    assert analysis.trace.tcp_packets == 1
    assert analysis.trace.skipped == {SKIP_NOT_IP: 2, SKIP_NOT_TCP: 3}


def test_tcp_data_offset_below_five(tmp_path):
    bad = [
        g.ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2, 0, 0, ACK, data_offset=4),
        g.ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2, 0, 0, ACK, data_offset=0),
        g.ipv6_tcp("2001:db8::1", "2001:db8::2", 1, 2, 0, 0, ACK, payload=b"x" * 8, data_offset=3),
        # data offset beyond the IP packet: 60-byte header in a 40-byte IP packet
        g.ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2, 0, 0, ACK, data_offset=15),
    ]
    for ip in bad:
        assert decode_segment(1, 0.0, g.LINKTYPE_RAW, ip) is Skip.BAD_TCP_HEADER
    analysis = analyze(str(g.write_pcap(tmp_path / "bad.pcap", bad, g.LINKTYPE_RAW)))
    assert analysis.trace.packets == 4
    assert analysis.trace.skipped == {SKIP_BAD_TCP: 4}


def test_bad_ip_headers():
    tcp = g.ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2, 0, 0, ACK)
    assert decode_segment(1, 0.0, 101, g.ipv4("10.0.0.1", "10.0.0.2", 6, tcp[20:], ihl=4)) is Skip.BAD_IP_HEADER
    # Ethernet says IPv4 but the packet is IPv6, and the other way round
    v6 = g.ipv6_tcp("2001:db8::1", "2001:db8::2", 1, 2, 0, 0, ACK)
    assert decode_segment(1, 0.0, 1, g.ethernet(v6, ethertype=0x0800)) is Skip.BAD_IP_HEADER
    assert decode_segment(1, 0.0, 1, g.ethernet(tcp + b"\0" * 20, ethertype=0x86DD)) is Skip.BAD_IP_HEADER
    assert decode_segment(1, 0.0, 101, b"\x50" + b"\0" * 40) is Skip.NOT_IP


def test_tcp_header_cut_by_snaplen(tmp_path):
    syn = g.ipv4_tcp("10.0.0.1", "10.0.0.2", 40000, 80, 1, 0, SYN, MpCapable(1, 0x01).build())
    frame = g.ethernet(syn)
    # 14 + 20 + 12 bytes of TCP: the fixed header itself is cut
    assert decode_segment(1, 0.0, 1, frame[:46]) is Skip.TRUNCATED_HEADER
    assert decode_segment(1, 0.0, 1, frame[:30]) is Skip.TRUNCATED_HEADER  # inside the IP header
    v6 = g.ethernet(g.ipv6_tcp("2001:db8::1", "2001:db8::2", 1, 2, 0, 0, SYN, ext_headers=[g.hop_by_hop()]))
    assert decode_segment(1, 0.0, 1, v6[: 14 + 41]) is Skip.TRUNCATED_HEADER  # inside the extension header
    # The fixed header is complete but the options are cut: a segment whose option walk says so.
    seg = decode_segment(1, 0.0, 1, frame[: 14 + 20 + 20 + 2])
    assert isinstance(seg, Segment)
    assert seg.options is not None and seg.options.truncated and seg.options.malformed is None

    path = g.write_pcap(tmp_path / "cut.pcap", [frame], g.LINKTYPE_ETHERNET, snaplen=46)
    analysis = analyze(str(path))
    assert analysis.trace.packets == 1
    assert analysis.trace.skipped == {SKIP_TRUNCATED: 1}


def test_tso_super_segment_with_zero_ip_length():
    ip = bytearray(g.ipv4_tcp("10.0.0.1", "10.0.0.2", 1, 2, 0, 0, ACK, payload=b"p" * 3000))
    ip[2:4] = b"\0\0"
    seg = decode_segment(1, 0.0, 101, bytes(ip))
    assert isinstance(seg, Segment) and seg.payload_len == 3000


# ============================================================================================ MPTCP end to end


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_mptcp_v1_handshake_and_dss_through_the_pipeline(tmp_path, fmt):
    built, sf = connection(("192.0.2.1", 51000), ("198.51.100.7", 80))
    data = sf.send("c", b"GET / HTTP/1.1\r\n\r\n")
    assert (len(built.packets), data) == (4, 4)
    cap = Framed(built)
    path = cap.write_pcap(tmp_path / "t.pcap") if fmt == "pcap" else cap.write_pcapng(tmp_path / "t.pcapng")

    analysis = analyze(str(path))
    assert analysis.trace.packets == 4 and analysis.trace.mptcp_packets == 4
    assert len(analysis.connections) == 1 and analysis.tcp_flows == []
    conn = analysis.connections[0]
    assert conn.id == 1 and conn.version == 1 and conn.fallback is False
    assert conn.client_address == "192.0.2.1" and conn.server_address == "198.51.100.7"
    client, server = conn.sides
    assert (client.key, server.key) == (CLIENT_KEY, SERVER_KEY)
    assert client.token == crypto.token_from_key(CLIENT_KEY) == built.token("c")
    assert server.token == crypto.token_from_key(SERVER_KEY)
    assert client.idsn == crypto.idsn_from_key(CLIENT_KEY)
    assert server.idsn == crypto.idsn_from_key(SERVER_KEY)
    assert (server.key_frame, client.key_frame) == (2, 3)  # frames are 1-based: SYN-ACK, third ACK
    assert conn.first_frame == 1

    (sf,) = conn.subflows
    assert sf.kind == "initial" and sf.mpc_syn and sf.mpc_synack and sf.mpc_ack
    assert (sf.first_frame, sf.last_frame) == (1, 4)
    assert sf.client == "192.0.2.1:51000" and sf.server == "198.51.100.7:80"
    assert sf.halves[0].isn == 1000 and sf.halves[1].isn == 5000
    assert sf.halves[0].mss == 1460
    assert sf.halves[0].dss_packets == 1
    assert sf.halves[0].dsn_first == crypto.idsn_from_key(CLIENT_KEY) + 1
    assert not [f for f in analysis.findings if f.severity >= Severity.WARNING]


# ============================================================================================ property

_SUPPORTED = sorted(SUPPORTED_LINK_TYPES)


@st.composite
def _frames(draw, linktype: int) -> bytes:
    """Arbitrary bytes, or a valid IP/TCP frame with random options/payload, optionally mangled."""
    kind = draw(st.sampled_from(["random", "tcp", "mangled"]))
    if kind == "random":
        return draw(st.binary(max_size=200))
    v6 = draw(st.booleans())
    options = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        options = draw(st.sampled_from([MpCapable(1, 1, CLIENT_KEY, SERVER_KEY).build(), DSS.build()])) + options
    ip = g.ip_tcp(
        "2001:db8::1" if v6 else "10.0.0.1", "2001:db8::2" if v6 else "10.0.0.2",
        draw(st.integers(0, 0xFFFF)), draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 0xFF)),
        options[:40], draw(st.binary(max_size=64)),
    )  # fmt: skip
    frame = g.encapsulate(linktype, ip)
    if kind == "mangled":
        frame = bytearray(frame)
        for pos, value in draw(st.lists(st.tuples(st.integers(0, len(frame) - 1), st.integers(0, 255)), max_size=6)):
            frame[pos] = value
        frame = bytes(frame[: draw(st.integers(0, len(frame)))])
    return frame


@st.composite
def _captures(draw) -> tuple[int, list[bytes]]:
    linktype = draw(st.sampled_from(_SUPPORTED))
    return linktype, draw(st.lists(_frames(linktype), max_size=25))


# derandomize: the same examples every run, so an unrelated change never meets a new random failure;
# run with a higher max_examples and derandomize=False locally to explore further.
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_captures(), st.booleans())
def test_analyze_never_raises_and_counts_every_packet(capture, pcapng):
    linktype, frames = capture
    with tempfile.TemporaryDirectory() as tmp:
        if pcapng:
            path = g.write_pcapng(Path(tmp) / "fuzz.pcapng", [linktype], frames, writer="struct")
        else:
            path = g.write_pcap(Path(tmp) / "fuzz.pcap", frames, linktype, writer="struct")
        analysis = analyze(str(path))
    assert analysis.trace.packets == len(frames)
    assert analysis.trace.errors == []
    assert analysis.trace.tcp_packets + sum(analysis.trace.skipped.values()) == len(frames)


def test_unsupported_link_type_raises_capture_error(tmp_path):
    cap, _ = mptcp_capture()
    path = g.write_pcap(tmp_path / "user0.pcap", cap.packets, g.LINKTYPE_USER0)
    with pytest.raises(CaptureError, match="unsupported link type 147"):
        analyze(str(path))


@pytest.mark.parametrize("handshake", [True, False], ids=["syn-synack", "third-ack-only"])
def test_unknown_mptcp_version_does_not_crash(tmp_path, handshake):
    conn = ConnectionBuilder()
    sf = conn.initial(handshake=False)
    if handshake:
        sf.raw("c", SYN, [g.opt_mss(), MpCapable(2, 0x01)])
        sf.raw("s", SYN | ACK, [g.opt_mss(), MpCapable(2, 0x01, sender_key=SERVER_KEY)])
    else:
        sf.raw("c", ACK, [MpCapable(2, 0x01, sender_key=CLIENT_KEY, receiver_key=SERVER_KEY)])
    cap = Framed(conn, g.LINKTYPE_RAW)
    analysis = analyze(str(cap.write_pcap(tmp_path / "v2.pcap")))
    assert analysis.trace.packets == len(cap.packets)
