"""Captures from routers, hypervisors and mirror ports: MPTCP inside MPLS, PPPoE, PPP, Cisco HDLC, GRE,
ERSPAN, IP-in-IP, 6in4, VXLAN and Geneve decodes as if it had been captured bare.

Why: the analysis is judged on captures we did not make. Each test wraps every IP packet of a real kernel
trace (samples/two-subflows.pcap) in one encapsulation, writes a capture with the matching link type, and
requires the same connections, streams and findings as the original. The compiled decoder hands these to
the reference and must agree with it packet by packet; nesting is bounded.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from pathlib import Path

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.ingest import decode, tunnels
from analyzer.ingest.decode import Skip, decode_segment_pure
from analyzer.pipeline import analyze
from analyzer.report.json_out import analysis_to_json

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "samples" / "two-subflows.pcap"
SLL2_HEADER = 20
MAC = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"
LINK_ETHERNET, LINK_PPP, LINK_PPP_ETHER, LINK_C_HDLC = 1, 9, 51, 104
LINK_PFLOG, LINK_IPNET, LINK_NFLOG = 117, 226, 239


def _ethertype(ip: bytes) -> int:
    return 0x0800 if ip[0] >> 4 == 4 else 0x86DD


def ethernet(ip: bytes, vlans: int = 0) -> bytes:
    tags = b"".join(struct.pack("!HH", 0x8100, 100 + i) for i in range(vlans))
    return MAC + tags + struct.pack("!H", _ethertype(ip)) + ip


def ethernet_of(ethertype: int, payload: bytes) -> bytes:
    return MAC + struct.pack("!H", ethertype) + payload


def ipv4(protocol: int, payload: bytes) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, protocol, 0,
                       bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2]))  # fmt: skip
    return head + payload


def ipv6(next_header: int, payload: bytes) -> bytes:
    src, dst = bytes(15) + b"\x01", bytes(15) + b"\x02"
    return struct.pack("!IHBB", 6 << 28, len(payload), next_header, 64) + src + dst + payload


def gre(protocol: int, payload: bytes, key: bool = True, sequence: bool = False) -> bytes:
    flags = (0x2000 if key else 0) | (0x1000 if sequence else 0)
    head = struct.pack("!HH", flags, protocol) + (b"\0\0\0\7" if key else b"") + (b"\0\0\0\1" if sequence else b"")
    return head + payload


def mpls(ip: bytes, labels: int = 2) -> bytes:
    stack = b"".join(struct.pack("!I", (1000 + i) << 12 | (1 if i == labels - 1 else 0) << 8 | 64)
                     for i in range(labels))  # fmt: skip
    return stack + ip


def pflog(ip: bytes) -> bytes:
    """OpenBSD's pfloghdr: length 61 (PFLOG_HDRLEN), the packet at BPF_WORDALIGN(61) = 64."""
    family = 2 if ip[0] >> 4 == 4 else 24  # AF_INET, OpenBSD's AF_INET6
    head = struct.pack("!BBBB16s16sII", 61, family, 0, 0, b"em0", b"", 7, 0xFFFFFFFF)
    return head.ljust(64, b"\0") + ip


def ipnet(ip: bytes) -> bytes:
    family = 2 if ip[0] >> 4 == 4 else 26  # Solaris AF_INET, AF_INET6
    return struct.pack("!BBHIIIII", 2, family, 0, len(ip), 3, 0, 0, 0) + ip


def nflog(ip: bytes, order: str = "<") -> bytes:
    """Header, a prefix TLV (type 10, odd length: padded), a timestamp TLV, then NFULA_PAYLOAD (type 9)."""

    def tlv(kind: int, value: bytes) -> bytes:
        raw = struct.pack(order + "HH", 4 + len(value), kind) + value
        return raw.ljust((len(raw) + 3) & ~3, b"\0")

    family = 2 if ip[0] >> 4 == 4 else 10
    return struct.pack("!BBH", family, 0, 5) + tlv(10, b"ma-log\0") + tlv(3, bytes(16)) + tlv(9, ip)


def pppoe(ip: bytes) -> bytes:
    protocol = 0x0021 if ip[0] >> 4 == 4 else 0x0057
    return struct.pack("!BBHHH", 0x11, 0, 0x1234, 2 + len(ip), protocol) + ip


def udp(dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", 49152, dport, 8 + len(payload), 0) + payload


def vxlan(ip: bytes) -> bytes:
    return udp(tunnels.UDP_VXLAN, struct.pack("!II", 0x08000000, 42 << 8) + ethernet(ip))


def geneve(ip: bytes) -> bytes:
    options = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    header = struct.pack("!BBHI", len(options) // 4, 0, tunnels.ETH_TRANSPARENT_BRIDGING, 42 << 8)
    return udp(tunnels.UDP_GENEVE, header + options + ethernet(ip))


def erspan_ii(ip: bytes) -> bytes:
    """GRE with a sequence number, then the 8-byte ERSPAN type II header and the mirrored frame."""
    return struct.pack("!HHI", 0x1000, tunnels.ETH_ERSPAN_II, 1) + b"\x10\x01\x00\x07" + bytes(4) + ethernet(ip)


def erspan_iii(ip: bytes) -> bytes:
    header = b"\x20\x01\x00\x07" + bytes(4) + bytes(3) + b"\x01"  # O flag: an 8-byte subheader follows
    return struct.pack("!HHI", 0x1000, tunnels.ETH_ERSPAN_III, 1) + header + bytes(8) + ethernet(ip)


Wrap = Callable[[bytes], bytes]
WRAPS: dict[str, tuple[int, Wrap]] = {
    "ethernet": (LINK_ETHERNET, ethernet),
    "qinq": (LINK_ETHERNET, lambda ip: ethernet(ip, vlans=2)),
    "mpls": (LINK_ETHERNET, lambda ip: ethernet_of(0x8847, mpls(ip))),
    "pppoe": (LINK_ETHERNET, lambda ip: ethernet_of(0x8864, pppoe(ip))),
    "ppp-link": (LINK_PPP, lambda ip: b"\xff\x03" + struct.pack("!H", 0x0021 if ip[0] >> 4 == 4 else 0x0057) + ip),
    "pppoe-link": (LINK_PPP_ETHER, pppoe),
    "pflog": (LINK_PFLOG, pflog),
    "ipnet": (LINK_IPNET, ipnet),
    "nflog-little-endian": (LINK_NFLOG, nflog),
    "nflog-big-endian": (LINK_NFLOG, lambda ip: nflog(ip, ">")),
    "cisco-hdlc": (LINK_C_HDLC, lambda ip: b"\x0f\x00" + struct.pack("!H", _ethertype(ip)) + ip),
    "gre": (LINK_ETHERNET, lambda ip: ethernet(ipv4(47, gre(_ethertype(ip), ip)))),
    "gre-over-ipv6": (LINK_ETHERNET, lambda ip: ethernet(ipv6(47, gre(_ethertype(ip), ip, sequence=True)))),
    "gre-bridged": (LINK_ETHERNET, lambda ip: ethernet(ipv4(47, gre(tunnels.ETH_TRANSPARENT_BRIDGING, ethernet(ip))))),
    "ipip": (LINK_ETHERNET, lambda ip: ethernet(ipv4(4 if ip[0] >> 4 == 4 else 41, ip))),
    "vxlan": (LINK_ETHERNET, lambda ip: ethernet(ipv4(17, vxlan(ip)))),
    "geneve": (LINK_ETHERNET, lambda ip: ethernet(ipv6(17, geneve(ip)))),
    "erspan-ii": (LINK_ETHERNET, lambda ip: ethernet(ipv4(47, erspan_ii(ip)))),
    "erspan-iii": (LINK_ETHERNET, lambda ip: ethernet(ipv4(47, erspan_iii(ip)))),
    "vxlan-in-gre-in-mpls": (
        LINK_ETHERNET,
        lambda ip: ethernet_of(0x8847, mpls(ipv4(47, gre(0x0800, ipv4(17, vxlan(ip)))))),
    ),
}


@functools.cache
def _ip_packets() -> list[tuple[float, bytes]]:
    with SAMPLE.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        assert reader.datalink() == 276  # LINUX_SLL2
        return [(ts, buf[SLL2_HEADER:]) for ts, buf in reader if buf[SLL2_HEADER] >> 4 in (4, 6)]


def _write(path: Path, link_type: int, frames: list[tuple[float, bytes]]) -> None:
    with path.open("wb") as out:
        writer = dpkt.pcap.Writer(out, linktype=link_type, snaplen=262144)
        for ts, frame in frames:
            writer.writepkt(frame, ts)


def _view(path: Path) -> dict[str, object]:
    doc = analysis_to_json(analyze(str(path)))
    return {"connections": list(doc["connections"]), "findings": list(doc["findings"])}


@pytest.fixture(scope="module")
def bare(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    path = tmp_path_factory.mktemp("bare") / "raw.pcap"
    _write(path, 101, _ip_packets())  # LINKTYPE_RAW: the same IP packets, no link layer
    return _view(path)


@pytest.mark.parametrize("name", list(WRAPS))
def test_encapsulated_trace_analyses_like_the_bare_one(name: str, bare: dict[str, object], tmp_path: Path) -> None:
    link_type, wrap = WRAPS[name]
    frames = [(ts, wrap(ip)) for ts, ip in _ip_packets()]
    path = tmp_path / f"{name}.pcap"
    _write(path, link_type, frames)
    assert _view(path) == bare
    for number, (ts, frame) in enumerate(frames, start=1):  # the compiled decoder agrees with the reference
        fast = decode.decode_segment(number, ts, link_type, frame)
        assert _fields(fast) == _fields(decode_segment_pure(number, ts, link_type, frame))


def _fields(seg: object) -> object:
    if isinstance(seg, Skip):
        return seg
    names = ("ip_version", "src", "dst", "sport", "dport", "seq", "ack", "flags", "payload_len", "payload_offset")
    return tuple(getattr(seg, name) for name in names)


def _tcp_over_ipv4() -> bytes:
    return next(ip for _, ip in _ip_packets() if ip[0] >> 4 == 4 and ip[9] == 6)


def test_nesting_is_bounded() -> None:
    ip = _tcp_over_ipv4()
    inner = ip
    for _ in range(tunnels.MAX_ENCAPSULATION):
        inner = ipv4(4, inner)
    assert not isinstance(decode_segment_pure(1, 0.0, 101, inner), Skip)  # 8 tunnels deep: followed
    assert decode_segment_pure(1, 0.0, 101, ipv4(4, inner)) is Skip.TOO_DEEP
    assert decode.decode_segment(1, 0.0, 101, ipv4(4, inner)) is Skip.TOO_DEEP


def test_udp_that_is_no_tunnel_and_pptp_gre_are_not_tcp() -> None:
    ip = _tcp_over_ipv4()
    assert decode_segment_pure(1, 0.0, 101, ipv4(17, udp(53, ip))) is Skip.NOT_TCP
    pptp = struct.pack("!HHHH", 0x3001, 0x880B, len(ip), 7) + ip  # GRE version 1 (PPTP): not followed
    assert decode_segment_pure(1, 0.0, 101, ipv4(47, pptp)) is Skip.NOT_TCP


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(list(WRAPS)), st.integers(min_value=0, max_value=200), st.binary(max_size=8))
def test_cut_or_damaged_encapsulations_never_raise_and_both_decoders_agree(name: str, cut: int, noise: bytes) -> None:
    link_type, wrap = WRAPS[name]
    frame = wrap(_tcp_over_ipv4())
    for damaged in (frame[:cut], noise + frame[len(noise) :], frame[:cut] + noise):
        pure = decode_segment_pure(1, 0.0, link_type, damaged)
        assert _fields(decode.decode_segment(1, 0.0, link_type, damaged)) == _fields(pure)
