"""Craft packets and capture files for tests, byte by byte.

Three layers, each usable on its own:

* **packets** — :func:`ipv4_tcp`, :func:`ipv6_tcp` (with extension headers), :func:`ipv4`,
  :func:`ipv6`, :func:`udp`, :func:`icmp_echo`, :func:`tcp_header` and the TCP option builders
  (:func:`opt_mss` …). Headers and checksums are written by the one encoder the endpoint uses too
  (:mod:`analyzer.mptcp.packet`). MPTCP options come from the real codec: pass ``Dss(...).build()`` or
  ``MpCapable(...).build()`` as ``options``; they are padded to a multiple of 4 with NOPs.
* **link layers** — :func:`ethernet` (any number of VLAN tags), :func:`sll`, :func:`sll2`,
  :func:`null_loopback`, :func:`loop`, :func:`arp`, and :func:`encapsulate` to wrap an IP packet
  for any link type.
* **files** — :func:`write_pcap` (dpkt's writer, or ``struct`` for big-endian files, exact
  timestamps and snaplen-cut records), :func:`write_pcapng` (dpkt's pcapng writer with several
  interfaces, or ``struct``), :func:`pcapng_section` and the block builders to assemble odd files
  (several sections, simple packet blocks, cut blocks), :func:`gzip_file`.

Traffic comes from the package's trace builder (:mod:`analyzer.endpoint.builder`); :class:`Framed`
wraps its packets for a link type::

    conn = ConnectionBuilder(client_ip="10.0.0.1", server_ip="10.0.0.2")
    sf = conn.initial(client_port=40000, syn_options=[opt_mss()])
    sf.send("c", b"hello")                       # DSS with Data ACK + mapping
    sf.send("s", b"world")
    path = Framed(conn, LINKTYPE_ETHERNET).write_pcap(tmp_path / "t.pcap")

Timestamps: a :class:`Packet`'s ``ts`` is either a float (seconds) or an exact
``(seconds, fraction)`` pair whose fraction is in the file's (or pcapng interface's) resolution.
"""

from __future__ import annotations

import gzip
import ipaddress
import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import dpkt
from dpkt import pcapng as dpkt_pcapng

from analyzer.endpoint.builder import ConnectionBuilder
from analyzer.mptcp.crypto import internet_checksum
from analyzer.mptcp.packet import ipv4_header, ipv6_header, tcp_header, with_tcp_checksum

# ----------------------------------------------------------------------------------------- constants

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_USER0 = 147
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
TPID_8021Q, TPID_8021AD = 0x8100, 0x88A8

AF_INET = 2
AF_INET6_LINUX, AF_INET6_NETBSD, AF_INET6_FREEBSD, AF_INET6_DARWIN = 10, 24, 28, 30

IPPROTO_HOPOPTS, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP = 0, 1, 6, 17
IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_AH, IPPROTO_ICMPV6 = 43, 44, 51, 58
IPPROTO_NONE, IPPROTO_DSTOPTS = 59, 60

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80

# if_tsresol option values
TSRESOL_US, TSRESOL_NS = 6, 9

DEFAULT_START = 1_700_000_000.0
DEFAULT_STEP = 0.001
DEFAULT_SNAPLEN = 262144

_LITTLE_HOST = sys.byteorder == "little"


# ----------------------------------------------------------------------------------------- helpers


def ip_bytes(addr: str | bytes) -> bytes:
    """``"10.0.0.1"`` / ``"2001:db8::1"`` → packed bytes (bytes pass through)."""
    if isinstance(addr, bytes):
        return addr
    return ipaddress.ip_address(addr).packed


# ----------------------------------------------------------------------------------------- TCP options


def opt_mss(mss: int = 1460) -> bytes:
    return struct.pack("!BBH", 2, 4, mss)


def opt_wscale(shift: int = 7) -> bytes:
    return struct.pack("!BBBB", 1, 3, 3, shift)  # NOP + window scale


def opt_sack_permitted() -> bytes:
    return b"\x04\x02"


def opt_timestamp(tsval: int, tsecr: int = 0) -> bytes:
    return struct.pack("!BBBBII", 1, 1, 8, 10, tsval, tsecr)  # NOP NOP + timestamps


# ----------------------------------------------------------------------------------------- L4


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo(ident: int = 1, seq: int = 1, payload: bytes = b"ping", v6: bool = False) -> bytes:
    head = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq) + payload
    return head[:2] + struct.pack("!H", internet_checksum(head)) + head[4:]


# ----------------------------------------------------------------------------------------- IPv4


def ipv4(
    src: str | bytes,
    dst: str | bytes,
    proto: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    dont_fragment: bool = True,
    more_fragments: bool = False,
    frag_offset: int = 0,
    options: bytes = b"",
    total_length: int | None = None,
    ihl: int | None = None,
    version: int = 4,
) -> bytes:
    """An IPv4 packet. ``frag_offset`` is in 8-byte units; ``total_length``/``ihl`` override the
    computed fields (0 = TSO super-segment; a smaller value leaves trailing padding)."""
    frag = (0x4000 if dont_fragment else 0) | (0x2000 if more_fragments else 0) | (frag_offset & 0x1FFF)
    head = ipv4_header(
        ip_bytes(src), ip_bytes(dst), proto, len(payload), ttl=ttl, ident=ident, frag=frag, options=options,
        total_length=total_length, ihl=ihl, version=version,
    )  # fmt: skip
    return head + payload


def ipv4_tcp(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    options: bytes = b"",
    payload: bytes = b"",
    *,
    window: int = 65535,
    data_offset: int | None = None,
    ip_options: bytes = b"",
    **ip_kwargs: object,
) -> bytes:
    """An IPv4 packet carrying one TCP segment (TCP checksum filled in)."""
    seg = tcp_header(sport, dport, seq, ack, flags, options, window=window, data_offset=data_offset) + payload
    tcp = with_tcp_checksum(seg, ip_bytes(src), ip_bytes(dst))
    return ipv4(src, dst, IPPROTO_TCP, tcp, options=ip_options, **ip_kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- IPv6


@dataclass(frozen=True)
class ExtHeader:
    """One IPv6 extension header: its protocol number and the bytes after next-header/length.

    ``length_byte`` None computes the usual (8-octet units - 1) value; AH uses 4-octet units - 2.
    """

    kind: int
    body: bytes
    length_byte: int | None = None

    def build(self, next_header: int) -> bytes:
        total = 2 + len(self.body)
        if self.length_byte is not None:
            length = self.length_byte
        elif self.kind == IPPROTO_AH:
            length = total // 4 - 2
        elif self.kind == IPPROTO_FRAGMENT:
            length = 0  # reserved byte
        else:
            length = total // 8 - 1
        return bytes((next_header, length & 0xFF)) + self.body


def _padded_tlv_body(size: int) -> bytes:
    """Options-header body of ``size`` bytes (size % 8 == 6): one PadN option filling it."""
    if size % 8 != 6:
        raise ValueError("an options header body is 6 + 8k bytes")
    return bytes((1, size - 2)) + b"\0" * (size - 2)


def hop_by_hop(size: int = 6) -> ExtHeader:
    return ExtHeader(IPPROTO_HOPOPTS, _padded_tlv_body(size))


def destination_options(size: int = 6) -> ExtHeader:
    return ExtHeader(IPPROTO_DSTOPTS, _padded_tlv_body(size))


def routing(addresses: Sequence[str] = ("2001:db8::99",), routing_type: int = 0) -> ExtHeader:
    """Routing header: type, segments left, 4 reserved bytes, then the addresses."""
    body = bytes((routing_type, len(addresses))) + b"\0" * 4 + b"".join(ip_bytes(a) for a in addresses)
    return ExtHeader(IPPROTO_ROUTING, body)


def fragment(offset: int = 0, more: bool = True, ident: int = 0x1234) -> ExtHeader:
    """Fragment header; ``offset`` in 8-byte units."""
    return ExtHeader(IPPROTO_FRAGMENT, struct.pack("!HI", (offset << 3) | int(more), ident))


def auth_header(icv: bytes = b"\0" * 12, spi: int = 1, seq: int = 1) -> ExtHeader:
    return ExtHeader(IPPROTO_AH, b"\0\0" + struct.pack("!II", spi, seq) + icv)


def ipv6(
    src: str | bytes,
    dst: str | bytes,
    next_header: int,
    payload: bytes,
    *,
    ext_headers: Sequence[ExtHeader] = (),
    hop_limit: int = 64,
    payload_length: int | None = None,
    flow_label: int = 0,
) -> bytes:
    chain = b""
    nxt = next_header
    for ext in reversed(ext_headers):
        chain = ext.build(nxt) + chain
        nxt = ext.kind
    body = chain + payload
    plen = len(body) if payload_length is None else payload_length
    head = ipv6_header(ip_bytes(src), ip_bytes(dst), nxt, plen, hop_limit=hop_limit, flow_label=flow_label)
    return head + body


def ipv6_tcp(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    options: bytes = b"",
    payload: bytes = b"",
    *,
    window: int = 65535,
    data_offset: int | None = None,
    ext_headers: Sequence[ExtHeader] = (),
    **ip_kwargs: object,
) -> bytes:
    """An IPv6 packet (optionally with extension headers) carrying one TCP segment."""
    seg = tcp_header(sport, dport, seq, ack, flags, options, window=window, data_offset=data_offset) + payload
    tcp = with_tcp_checksum(seg, ip_bytes(src), ip_bytes(dst))
    return ipv6(src, dst, IPPROTO_TCP, tcp, ext_headers=ext_headers, **ip_kwargs)  # type: ignore[arg-type]


def ip_tcp(src: str | bytes, dst: str | bytes, *args: object, **kwargs: object) -> bytes:
    """:func:`ipv4_tcp` or :func:`ipv6_tcp`, by the address family of ``src``."""
    v6 = len(ip_bytes(src)) == 16
    return (ipv6_tcp if v6 else ipv4_tcp)(src, dst, *args, **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- link layers

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")


def _ethertype_of(packet: bytes) -> int:
    return ETH_IPV6 if packet and packet[0] >> 4 == 6 else ETH_IPV4


def ethernet(
    frame: bytes,
    vlan_tags: Sequence[int | tuple[int, int]] = (),
    *,
    ethertype: int | None = None,
    src_mac: bytes = MAC_A,
    dst_mac: bytes = MAC_B,
) -> bytes:
    """Ethernet II around ``frame``. ``vlan_tags`` outermost first: a VLAN id (TPID 0x8100) or a
    ``(tpid, vid)`` pair, e.g. QinQ ``[(0x88a8, 100), (0x8100, 200)]``."""
    out = dst_mac + src_mac
    for tag in vlan_tags:
        tpid, vid = tag if isinstance(tag, tuple) else (TPID_8021Q, tag)
        out += struct.pack("!HH", tpid, vid & 0x0FFF)
    return out + struct.pack("!H", _ethertype_of(frame) if ethertype is None else ethertype) + frame


def arp(sender_ip: str = "10.0.0.1", target_ip: str = "10.0.0.2") -> bytes:
    """An Ethernet frame carrying an ARP request."""
    body = struct.pack(
        "!HHBBH6s4s6s4s", 1, ETH_IPV4, 6, 4, 1, MAC_A, ip_bytes(sender_ip), b"\0" * 6, ip_bytes(target_ip)
    )
    return ethernet(body, ethertype=ETH_ARP, dst_mac=b"\xff" * 6)


def sll(frame: bytes, *, protocol: int | None = None, packet_type: int = 0, arphrd: int = 1,
        address: bytes = MAC_A) -> bytes:  # fmt: skip
    """Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 16-byte header)."""
    proto = _ethertype_of(frame) if protocol is None else protocol
    return struct.pack("!HHH8sH", packet_type, arphrd, len(address), address.ljust(8, b"\0"), proto) + frame


def sll2(frame: bytes, *, protocol: int | None = None, ifindex: int = 2, packet_type: int = 0,
         arphrd: int = 1, address: bytes = MAC_A) -> bytes:  # fmt: skip
    """Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 20-byte header)."""
    proto = _ethertype_of(frame) if protocol is None else protocol
    return (
        struct.pack("!HHIHBB8s", proto, 0, ifindex, arphrd, packet_type, len(address), address.ljust(8, b"\0")) + frame
    )


def null_loopback(frame: bytes, family: int | None = None, byte_order: str = "little") -> bytes:
    """BSD loopback (LINKTYPE_NULL): a 4-byte address family in the *writer's* byte order."""
    if family is None:
        family = AF_INET6_DARWIN if frame and frame[0] >> 4 == 6 else AF_INET
    fmt = {"little": "<I", "big": ">I", "<": "<I", ">": ">I"}[byte_order]
    return struct.pack(fmt, family) + frame


def loop(frame: bytes, family: int | None = None) -> bytes:
    """OpenBSD loopback (LINKTYPE_LOOP): the address family in network byte order."""
    return null_loopback(frame, family, "big")


def encapsulate(linktype: int, ip_packet: bytes) -> bytes:
    """Wrap an IP packet in a default header of ``linktype``."""
    if linktype == LINKTYPE_ETHERNET:
        return ethernet(ip_packet)
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6, 12, 14):
        return ip_packet
    if linktype == LINKTYPE_LINUX_SLL:
        return sll(ip_packet)
    if linktype == LINKTYPE_LINUX_SLL2:
        return sll2(ip_packet)
    if linktype == LINKTYPE_NULL:
        return null_loopback(ip_packet, byte_order=sys.byteorder)
    if linktype == LINKTYPE_LOOP:
        return loop(ip_packet)
    v4 = bool(ip_packet) and ip_packet[0] >> 4 == 4
    if linktype in (9, 50):  # PPP, PPP in HDLC framing: address/control, protocol
        return b"\xff\x03" + struct.pack("!H", 0x0021 if v4 else 0x0057) + ip_packet
    if linktype == 51:  # PPPoE session
        return struct.pack("!BBHHH", 0x11, 0, 1, 2 + len(ip_packet), 0x0021 if v4 else 0x0057) + ip_packet
    if linktype == 104:  # Cisco HDLC: address, control, EtherType
        return b"\x0f\x00" + struct.pack("!H", 0x0800 if v4 else 0x86DD) + ip_packet
    if linktype == 117:  # OpenBSD pflog: header length 61, packet at BPF_WORDALIGN(61) = 64
        return struct.pack("!BB", 61, 2 if v4 else 24).ljust(64, b"\0") + ip_packet
    if linktype == 226:  # Solaris IPNET: 24-byte header
        return struct.pack("!BBHIIIII", 2, 2 if v4 else 26, 0, len(ip_packet), 1, 0, 0, 0) + ip_packet
    if linktype == 239:  # Linux NFLOG: header, then NFULA_PAYLOAD (type 9) in host byte order
        return struct.pack("!BBH", 2 if v4 else 10, 0, 1) + struct.pack("=HH", 4 + len(ip_packet), 9) + ip_packet
    raise ValueError(f"no default encapsulation for link type {linktype}")


# ----------------------------------------------------------------------------------------- records


@dataclass
class Packet:
    """One captured frame. ``orig_len`` (wire length) defaults to ``len(data)``; the writer's
    snaplen cuts ``data`` but keeps ``orig_len``. ``interface`` is the pcapng interface id."""

    data: bytes
    ts: float | tuple[int, int] = DEFAULT_START
    orig_len: int | None = None
    interface: int = 0

    @property
    def wire_len(self) -> int:
        return len(self.data) if self.orig_len is None else self.orig_len


PacketLike = Packet | bytes | tuple[float | tuple[int, int], bytes]


def as_packets(packets: Iterable[PacketLike], start: float = DEFAULT_START, step: float = DEFAULT_STEP) -> list[Packet]:
    """Normalise bytes / ``(ts, bytes)`` / :class:`Packet` items; bare bytes get increasing times."""
    out = []
    for i, item in enumerate(packets):
        if isinstance(item, Packet):
            out.append(item)
        elif isinstance(item, bytes | bytearray):
            out.append(Packet(bytes(item), ts=round(start + i * step, 6)))
        else:
            ts, data = item
            out.append(Packet(bytes(data), ts=ts))
    return out


def ts_units(ts: float | tuple[int, int], resolution: int) -> tuple[int, int]:
    """(seconds, fraction in 1/resolution units) for a float or an exact pair."""
    if isinstance(ts, tuple):
        return ts
    sec = int(ts)
    frac = round((ts - sec) * resolution)
    if frac >= resolution:
        sec, frac = sec + 1, frac - resolution
    return sec, frac


# ----------------------------------------------------------------------------------------- pcap

PCAP_MAGIC_US, PCAP_MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D


def pcap_file_header(linktype: int, *, nano: bool = False, big_endian: bool = False,
                     snaplen: int = DEFAULT_SNAPLEN) -> bytes:  # fmt: skip
    order = ">" if big_endian else "<"
    magic = PCAP_MAGIC_NS if nano else PCAP_MAGIC_US
    return struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(packet: Packet, *, nano: bool = False, big_endian: bool = False,
                snaplen: int = DEFAULT_SNAPLEN, caplen: int | None = None) -> bytes:  # fmt: skip
    """One record: 16-byte header + captured bytes. ``caplen`` overrides the header field only
    (to fake corrupt headers); the data written is always ``data[:snaplen]``."""
    order = ">" if big_endian else "<"
    data = packet.data[:snaplen]
    sec, frac = ts_units(packet.ts, 10**9 if nano else 10**6)
    head = struct.pack(order + "IIII", sec, frac, len(data) if caplen is None else caplen, packet.wire_len)
    return head + data


def pcap_bytes(packets: Iterable[PacketLike], linktype: int = LINKTYPE_ETHERNET, *, nano: bool = False,
               big_endian: bool = False, snaplen: int = DEFAULT_SNAPLEN) -> bytes:  # fmt: skip
    """A whole pcap file, written with ``struct`` (any byte order, exact timestamps, snaplen)."""
    kw = {"nano": nano, "big_endian": big_endian, "snaplen": snaplen}
    head = pcap_file_header(linktype, **kw)  # type: ignore[arg-type]
    return head + b"".join(pcap_record(p, **kw) for p in as_packets(packets))  # type: ignore[arg-type]


def write_pcap(
    path: str | Path,
    packets: Iterable[PacketLike],
    linktype: int = LINKTYPE_ETHERNET,
    *,
    nano: bool = False,
    big_endian: bool = False,
    snaplen: int = DEFAULT_SNAPLEN,
    writer: str = "auto",
) -> Path:
    """Write a pcap file. ``writer``: ``"dpkt"`` (dpkt.pcap.Writer: host byte order, whole packets,
    float timestamps), ``"struct"``, or ``"auto"`` (dpkt whenever it can represent the file)."""
    path = Path(path)
    pkts = as_packets(packets)
    dpkt_ok = (
        not big_endian
        and _LITTLE_HOST
        and all(isinstance(p.ts, float | int) and p.orig_len is None and len(p.data) <= snaplen for p in pkts)
    )
    if writer == "dpkt" and not dpkt_ok:
        raise ValueError("dpkt.pcap.Writer cannot write this file (byte order, exact ts or snaplen)")
    if writer == "dpkt" or (writer == "auto" and dpkt_ok):
        with path.open("wb") as fh:
            w = dpkt.pcap.Writer(fh, snaplen=snaplen, linktype=linktype, nano=nano)
            for p in pkts:
                w.writepkt(p.data, ts=float(p.ts))  # type: ignore[arg-type]
    else:
        path.write_bytes(pcap_bytes(pkts, linktype, nano=nano, big_endian=big_endian, snaplen=snaplen))
    return path


# ----------------------------------------------------------------------------------------- pcapng


@dataclass
class Iface:
    """A pcapng interface. ``tsresol`` is the raw if_tsresol byte (None = option absent, µs)."""

    linktype: int
    snaplen: int = DEFAULT_SNAPLEN
    tsresol: int | None = None
    name: str | None = None
    tsoffset: int | None = None

    @property
    def resolution(self) -> int:
        if self.tsresol is None:
            return 10**6
        base = 2 if self.tsresol & 0x80 else 10
        return int(base ** (self.tsresol & 0x7F))

    def options(self) -> list[tuple[int, bytes]]:
        opts: list[tuple[int, bytes]] = []
        if self.name is not None:
            opts.append((dpkt_pcapng.PCAPNG_OPT_IF_NAME, self.name.encode()))
        if self.tsresol is not None:
            opts.append((dpkt_pcapng.PCAPNG_OPT_IF_TSRESOL, bytes((self.tsresol,))))
        return opts


def _iface(spec: Iface | int) -> Iface:
    return spec if isinstance(spec, Iface) else Iface(spec)


def _block(btype: int, body: bytes, big_endian: bool) -> bytes:
    order = ">" if big_endian else "<"
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(order + "II", btype, length) + body + struct.pack(order + "I", length)


def _options(opts: Sequence[tuple[int, bytes]], big_endian: bool) -> bytes:
    if not opts:
        return b""
    order = ">" if big_endian else "<"
    out = b"".join(struct.pack(order + "HH", code, len(v)) + v + b"\0" * (-len(v) % 4) for code, v in opts)
    return out + b"\0\0\0\0"  # opt_endofopt


def pcapng_shb(*, big_endian: bool = False) -> bytes:
    order = ">" if big_endian else "<"
    return _block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), big_endian)


def pcapng_idb(iface: Iface | int, *, big_endian: bool = False) -> bytes:
    iface = _iface(iface)
    order = ">" if big_endian else "<"
    opts = list(iface.options())
    if iface.tsoffset is not None:
        opts.append((dpkt_pcapng.PCAPNG_OPT_IF_TSOFFSET, struct.pack(order + "q", iface.tsoffset)))
    body = struct.pack(order + "HHI", iface.linktype, 0, iface.snaplen) + _options(opts, big_endian)
    return _block(1, body, big_endian)


def pcapng_epb(packet: Packet, iface: Iface | int, *, big_endian: bool = False,
               caplen: int | None = None) -> bytes:  # fmt: skip
    """Enhanced packet block for ``packet`` on ``iface`` (its snaplen and time resolution)."""
    iface = _iface(iface)
    order = ">" if big_endian else "<"
    data = packet.data[: iface.snaplen] if iface.snaplen else packet.data
    sec, frac = ts_units(packet.ts, iface.resolution)
    units = sec * iface.resolution + frac
    head = struct.pack(
        order + "IIIII", packet.interface, units >> 32, units & 0xFFFFFFFF,
        len(data) if caplen is None else caplen, packet.wire_len,
    )  # fmt: skip
    return _block(6, head + data, big_endian)


def pcapng_spb(packet: Packet, iface: Iface | int = 0, *, big_endian: bool = False) -> bytes:
    """Simple packet block (no timestamp, no interface id; the data is cut to the snaplen)."""
    iface = _iface(iface)
    order = ">" if big_endian else "<"
    data = packet.data[: iface.snaplen] if iface.snaplen else packet.data
    return _block(3, struct.pack(order + "I", packet.wire_len) + data, big_endian)


def pcapng_section(interfaces: Sequence[Iface | int], packets: Iterable[PacketLike], *,
                   big_endian: bool = False, simple: bool = False) -> bytes:  # fmt: skip
    """SHB + IDBs + one EPB per packet (or SPBs with ``simple``), written with ``struct``."""
    ifaces = [_iface(i) for i in interfaces]
    out = pcapng_shb(big_endian=big_endian) + b"".join(pcapng_idb(i, big_endian=big_endian) for i in ifaces)
    for p in as_packets(packets):
        iface = ifaces[p.interface] if p.interface < len(ifaces) else Iface(LINKTYPE_ETHERNET)
        if simple:
            out += pcapng_spb(p, iface, big_endian=big_endian)
        else:
            out += pcapng_epb(p, iface, big_endian=big_endian)
    return out


def write_pcapng(
    path: str | Path,
    interfaces: Sequence[Iface | int],
    packets: Iterable[PacketLike],
    *,
    big_endian: bool = False,
    writer: str = "auto",
) -> Path:
    """Write a one-section pcapng file; ``packets[i].interface`` picks the interface.

    ``writer="dpkt"`` uses dpkt.pcapng.Writer (host byte order) with one IDB per interface and
    dpkt's EPB class; records cut by a snaplen or with an ``orig_len`` are written with ``struct``
    (dpkt's EPB forces orig_len == caplen). ``"struct"`` writes every block with ``struct``.
    """
    path = Path(path)
    ifaces = [_iface(i) for i in interfaces]
    pkts = as_packets(packets)
    use_dpkt = writer == "dpkt" or (writer == "auto" and big_endian != _LITTLE_HOST)
    use_dpkt = use_dpkt and (big_endian != _LITTLE_HOST) and all(i.tsoffset is None for i in ifaces)
    if writer == "dpkt" and not use_dpkt:
        raise ValueError("dpkt.pcapng.Writer writes host byte order only (and no if_tsoffset here)")
    if not use_dpkt:
        path.write_bytes(pcapng_section(ifaces, pkts, big_endian=big_endian))
        return path
    opt_cls = dpkt_pcapng.PcapngOptionLE if _LITTLE_HOST else dpkt_pcapng.PcapngOption
    idb_cls = dpkt_pcapng.InterfaceDescriptionBlockLE if _LITTLE_HOST else dpkt_pcapng.InterfaceDescriptionBlock
    epb_cls = dpkt_pcapng.EnhancedPacketBlockLE if _LITTLE_HOST else dpkt_pcapng.EnhancedPacketBlock
    idbs = []
    for iface in ifaces:
        opts = [opt_cls(code=code, data=value) for code, value in iface.options()]
        idb = idb_cls(linktype=iface.linktype, snaplen=iface.snaplen)
        if opts:
            idb.opts = [*opts, opt_cls(code=dpkt_pcapng.PCAPNG_OPT_ENDOFOPT)]
        idbs.append(idb)
    with path.open("wb") as fh:
        dpkt_pcapng.Writer(fh, idb=idbs)
        for p in pkts:
            iface = ifaces[p.interface]
            if p.orig_len is not None or (iface.snaplen and len(p.data) > iface.snaplen):
                fh.write(pcapng_epb(p, iface, big_endian=big_endian))
                continue
            sec, frac = ts_units(p.ts, iface.resolution)
            units = sec * iface.resolution + frac
            epb = epb_cls(iface_id=p.interface, ts_high=units >> 32, ts_low=units & 0xFFFFFFFF, pkt_data=p.data)
            fh.write(bytes(epb))
    return path


def gzip_file(path: str | Path, dest: str | Path | None = None) -> Path:
    """Gzip ``path`` to ``dest`` (default ``path + ".gz"``)."""
    path = Path(path)
    dest = Path(dest) if dest is not None else path.with_name(path.name + ".gz")
    dest.write_bytes(gzip.compress(path.read_bytes()))
    return dest


# ----------------------------------------------------------------------------------------- traces


class Framed:
    """A crafted trace's raw IP packets (:class:`~analyzer.endpoint.builder.ConnectionBuilder`) wrapped
    for one link type, ready for the file writers above: the traffic comes from the package's one
    trace builder, the link layer and the file format from here."""

    def __init__(
        self, source: ConnectionBuilder, linktype: int = LINKTYPE_ETHERNET, *,
        encap: Callable[[bytes], bytes] | None = None,
    ) -> None:  # fmt: skip
        """``encap`` wraps each IP packet (default: :func:`encapsulate` for ``linktype``), e.g.
        ``lambda ip: ethernet(ip, vlan_tags=[7])``."""
        self.source = source
        self.linktype = linktype
        self.encap = encap or (lambda ip: encapsulate(linktype, ip))

    @property
    def packets(self) -> list[Packet]:
        return [Packet(self.encap(ip), ts=round(ts, 6)) for ts, ip in self.source.packets]

    def write_pcap(self, path: str | Path, **kwargs: object) -> Path:
        return write_pcap(path, self.packets, self.linktype, **kwargs)  # type: ignore[arg-type]

    def write_pcapng(self, path: str | Path, **kwargs: object) -> Path:
        return write_pcapng(path, [Iface(self.linktype)], self.packets, **kwargs)  # type: ignore[arg-type]
