"""Hot-path decoding of link, IP and TCP headers straight from the captured bytes.

Every packet of a multi-million-packet trace passes through :func:`decode_segment`, so it uses
``struct`` on the raw buffer, never raises for bad input (a short or odd packet returns a
:class:`Skip` reason that the caller counts), and only walks TCP options when they can hold
something we need (any SYN, or a byte that could be an MPTCP option kind).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from analyzer.ingest import tunnels
from analyzer.ingest.segment import TH_SYN, Segment
from analyzer.mptcp.packet import IPPROTO_TCP
from analyzer.mptcp.packet import SKIP_LABELS as SKIP_LABELS  # re-exported: the decoder's outcomes
from analyzer.mptcp.packet import Skip as Skip
from analyzer.mptcp.packet import ip_layer as _ip_layer  # the one IP-header walk (the endpoint reads it too)
from analyzer.tcp_options import TcpOptions, walk_tcp_options

# Link types (LINKTYPE_* values as stored in pcap/pcapng files).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_12 = 12  # DLT_RAW on some BSDs
LINKTYPE_RAW_14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_PPP = 9
LINKTYPE_PPP_HDLC = 50
LINKTYPE_PPP_ETHER = 51  # PPPoE session frames
LINKTYPE_C_HDLC = 104  # Cisco HDLC
LINKTYPE_PFLOG = 117  # OpenBSD pflog: a pf log header, then the IP packet
LINKTYPE_IPNET = 226  # Solaris ipnet: a fixed 24-byte header, then the IP packet
LINKTYPE_NFLOG = 239  # Linux NFLOG (tcpdump -i nflog): a 4-byte header, then TLVs, one of which is the packet

LINK_TYPE_NAMES = {
    LINKTYPE_NULL: "NULL",
    LINKTYPE_ETHERNET: "ETHERNET",
    LINKTYPE_RAW_12: "RAW",
    LINKTYPE_RAW_14: "RAW",
    LINKTYPE_RAW: "RAW",
    LINKTYPE_LOOP: "LOOP",
    LINKTYPE_LINUX_SLL: "LINUX_SLL",
    LINKTYPE_IPV4: "IPV4",
    LINKTYPE_IPV6: "IPV6",
    LINKTYPE_LINUX_SLL2: "LINUX_SLL2",
    LINKTYPE_PPP: "PPP",
    LINKTYPE_PPP_HDLC: "PPP_HDLC",
    LINKTYPE_PPP_ETHER: "PPP_ETHER",
    LINKTYPE_C_HDLC: "C_HDLC",
    LINKTYPE_PFLOG: "PFLOG",
    LINKTYPE_IPNET: "IPNET",
    LINKTYPE_NFLOG: "NFLOG",
}
SUPPORTED_LINK_TYPES = frozenset(LINK_TYPE_NAMES)

# BSD loopback address families for IPv6 differ by OS (Linux 10, BSDs 24/28/30).
AF_INET = 2
AF_INET6_ALL = frozenset({10, 24, 28, 30})

MPTCP_KIND = b"\x1e"


_u16 = struct.Struct("!H").unpack_from
_tcp_head = struct.Struct("!HHIIBBH").unpack_from  # ports, seq, ack, offset, flags, window


def network_offset(link_type: int, data: bytes, trace: tunnels.Trace = None) -> tuple[int, int] | Skip:
    """Return ``(offset of the first IP header, IP version)`` for a link-layer frame (MPLS, PPPoE followed).

    ``trace``: when given, each header passed is appended to it (see :func:`describe_layers`).
    """
    n = len(data)
    if link_type == LINKTYPE_ETHERNET:
        return _resolved(data, tunnels.ethernet(data, 0, trace), trace)
    if link_type == LINKTYPE_LINUX_SLL2:
        if n < 20:
            return Skip.TRUNCATED_HEADER
        if trace is not None:
            trace.append(tunnels.Layer("Linux SLL2", 0, 20, "Linux cooked capture v2"))
        return _resolved(data, tunnels.by_ethertype(data, _u16(data, 0)[0], 20, trace), trace)
    if link_type == LINKTYPE_LINUX_SLL:
        if n < 16:
            return Skip.TRUNCATED_HEADER
        if trace is not None:
            trace.append(tunnels.Layer("Linux SLL", 0, 16, "Linux cooked capture"))
        return _resolved(data, tunnels.by_ethertype(data, _u16(data, 14)[0], 16, trace), trace)
    if link_type in (LINKTYPE_RAW, LINKTYPE_RAW_12, LINKTYPE_RAW_14, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if n < 1:
            return Skip.TRUNCATED_HEADER
        version = data[0] >> 4
        return (0, version) if version in (4, 6) else Skip.NOT_IP
    if link_type in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if n < 4:
            return Skip.TRUNCATED_HEADER
        family = struct.unpack_from("!I" if link_type == LINKTYPE_LOOP else "=I", data, 0)[0]
        if link_type == LINKTYPE_NULL and family > 0xFFFF:  # written on a host of the other byte order
            family = struct.unpack_from("<I" if struct.pack("=I", 1) == b"\0\0\0\1" else ">I", data, 0)[0]
        if trace is not None:
            trace.append(tunnels.Layer("Loopback", 0, 4, f"Loopback (address family {family})"))
        if family == AF_INET:
            return 4, 4
        if family in AF_INET6_ALL:
            return 4, 6
        return Skip.NOT_IP
    if link_type in (LINKTYPE_PPP, LINKTYPE_PPP_HDLC):
        return _resolved(data, tunnels.ppp(data, 0, trace), trace)
    if link_type == LINKTYPE_PPP_ETHER:
        return _resolved(data, tunnels.pppoe(data, 0, trace), trace)
    if link_type == LINKTYPE_C_HDLC:
        if n < 4:
            return Skip.TRUNCATED_HEADER
        protocol = _u16(data, 2)[0]
        if trace is not None:
            fields = ((f"Address: {data[0]:#04x}", 0, 1), (f"Control: {data[1]:#04x}", 1, 2),
                      (f"Protocol: {protocol:#06x}", 2, 4))  # fmt: skip
            trace.append(tunnels.Layer("Cisco HDLC", 0, 4, f"Cisco HDLC, protocol {protocol:#06x}", fields))
        return _resolved(data, tunnels.by_ethertype(data, protocol, 4, trace), trace)
    if link_type == LINKTYPE_PFLOG:
        return _pflog(data, trace)
    if link_type == LINKTYPE_IPNET:
        return _ipnet(data, trace)
    if link_type == LINKTYPE_NFLOG:
        return _nflog(data, trace)
    return Skip.UNSUPPORTED_LINK


PFLOG_MIN_HEADER = 28  # length, af, action, reason, ifname[16], ruleset start: anything shorter is damage
IPNET_HEADER = 24  # version, family, htype, pktlen, ifindex, grifindex, zsrc, zdst
NFLOG_HEADER = 4  # family, version, resource id
NFULA_PAYLOAD = 9  # the TLV that carries the packet
MAX_NFLOG_TLVS = 64  # bounded walk over a hostile TLV list


def _ip_at(data: bytes, offset: int) -> tuple[int, int] | Skip:
    """An IP header at ``offset``: its version decides (the headers' address families vary by OS)."""
    if len(data) <= offset:
        return Skip.TRUNCATED_HEADER
    version = data[offset] >> 4
    return (offset, version) if version in (4, 6) else Skip.NOT_IP


def _pflog(data: bytes, trace: tunnels.Trace) -> tuple[int, int] | Skip:
    """pflog's first byte is its header length; the packet starts at that length rounded up to 4 (BPF_WORDALIGN)."""
    if len(data) < 2:
        return Skip.TRUNCATED_HEADER
    length = data[0]
    if length < PFLOG_MIN_HEADER:
        return Skip.NOT_IP
    offset = (length + 3) & ~3
    if trace is not None:
        ifname = data[4:20].split(b"\0", 1)[0].decode("ascii", "replace")
        fields = ((f"Header length: {length}", 0, 1), (f"Address family: {data[1]}", 1, 2),
                  (f"Action: {data[2]}", 2, 3), (f"Interface: {ifname}", 4, 20))  # fmt: skip
        trace.append(tunnels.Layer("pflog", 0, min(offset, len(data)), f"OpenBSD pflog, {ifname}", fields))
    return _ip_at(data, offset)


def _ipnet(data: bytes, trace: tunnels.Trace) -> tuple[int, int] | Skip:
    if len(data) < IPNET_HEADER:
        return Skip.TRUNCATED_HEADER
    if trace is not None:
        fields = ((f"Version: {data[0]}", 0, 1), (f"Family: {data[1]}", 1, 2))
        trace.append(tunnels.Layer("IPNET", 0, IPNET_HEADER, f"Solaris ipnet, family {data[1]}", fields))
    return _ip_at(data, IPNET_HEADER)


def _nflog(data: bytes, trace: tunnels.Trace) -> tuple[int, int] | Skip:
    """Walk NFLOG's TLVs (length includes the 4-byte TLV header, padded to 4) to NFULA_PAYLOAD.

    The TLV length and type are in the capturing host's byte order (libpcap's LINKTYPE_NFLOG), so a length
    that does not fit the frame in one order is read in the other.
    """
    n = len(data)
    if n < NFLOG_HEADER:
        return Skip.TRUNCATED_HEADER
    offset = NFLOG_HEADER
    for _ in range(MAX_NFLOG_TLVS):
        if n < offset + 4:
            return Skip.TRUNCATED_HEADER
        length, kind = struct.unpack_from("<HH", data, offset)
        if length < 4 or offset + length > n or kind & 0x7FFF > 0xFF:
            length, kind = struct.unpack_from(">HH", data, offset)
        if length < 4:
            return Skip.NOT_IP
        if kind & 0x7FFF == NFULA_PAYLOAD:
            if trace is not None:
                fields = ((f"Family: {data[0]}", 0, 1), (f"Resource id: {_u16(data, 2)[0]}", 2, 4))
                trace.append(tunnels.Layer("NFLOG", 0, offset + 4, f"Linux NFLOG, group {_u16(data, 2)[0]}", fields))
            return _ip_at(data, offset + 4)
        offset += (length + 3) & ~3
    return Skip.NOT_IP


_OUTCOME_SKIP = {
    tunnels.TRUNCATED: Skip.TRUNCATED_HEADER, tunnels.NOT_IP: Skip.NOT_IP, tunnels.NOT_TUNNEL: Skip.NOT_TCP,
}  # fmt: skip


def _resolved(data: bytes, nxt: tuple[int, int], trace: tunnels.Trace = None) -> tuple[int, int] | Skip:
    """Follow inner Ethernet frames (bridged GRE, VXLAN, Geneve, ERSPAN) to an IP header, boundedly."""
    for _ in range(tunnels.MAX_ENCAPSULATION):
        offset, kind = nxt
        if offset < 0:
            return _OUTCOME_SKIP[offset]
        if kind != tunnels.ETHERNET:
            return nxt
        nxt = tunnels.ethernet(data, offset, trace)
    return Skip.TOO_DEEP


# IP headers are read by the protocol core (analyzer.mptcp.packet.ip_layer, imported as _ip_layer), the
# endpoint's decoder reads them there too: fragments and IPv6 extension headers are treated alike.


def decode_segment_pure(
    frame: int, ts: float, link_type: int, data: bytes, trace: tunnels.Trace = None
) -> Segment | Skip:
    """Decode one captured frame into a :class:`Segment`, or say why it is not one (the reference).

    ``trace``: when given, every header passed on the way is appended to it (:func:`describe_layers`).
    """
    net = network_offset(link_type, data, trace)
    if isinstance(net, Skip):
        return net
    n = len(data)
    for _ in range(tunnels.MAX_ENCAPSULATION + 1):
        version = net[1]
        if trace is not None and n >= net[0] + (20 if version == 4 else 40):
            trace.append(tunnels.Layer(f"IPv{version}", net[0], net[0] + (20 if version == 4 else 40)))
        layer = _ip_layer(data, net[0], version)
        if isinstance(layer, Skip):
            return layer
        protocol, src, dst, tcp, ip_end = layer
        if protocol == IPPROTO_TCP:
            break
        net = _resolved(data, tunnels.inside_ip(data, protocol, tcp, ip_end, trace), trace)  # a tunnel, or not TCP
        if isinstance(net, Skip):
            return net
    else:
        return Skip.TOO_DEEP
    if n < tcp + 20:
        return Skip.TRUNCATED_HEADER
    sport, dport, seq, ack, offset_byte, flags, window = _tcp_head(data, tcp)
    hdr_len = (offset_byte >> 4) * 4
    if hdr_len < 20 or tcp + hdr_len > ip_end:
        return Skip.BAD_TCP_HEADER
    payload_offset = tcp + hdr_len
    payload_len = ip_end - payload_offset
    options: TcpOptions | None = None
    if hdr_len > 20:
        opt_start = tcp + 20
        # Walk when the options may hold MPTCP, and when the capture cut them (so "truncated" is known).
        if flags & TH_SYN or n < payload_offset or data.find(MPTCP_KIND, opt_start, payload_offset) >= 0:
            options = walk_tcp_options(data, opt_start, payload_offset, min(n, payload_offset))
    if trace is not None:
        trace.append(tunnels.Layer("TCP", tcp, payload_offset))
    return Segment(
        frame, ts, version, src, dst, sport, dport, seq, ack, flags, window,
        payload_len, payload_offset, data, options,
    )  # fmt: skip


def describe_layers(link_type: int, data: bytes) -> tuple[list[tunnels.Layer], Segment | Skip]:
    """Every header the reference decoder passes on the way to the TCP segment, and its verdict.

    Why here: a viewer (the TUI's detail tree) shows the encapsulation exactly as the decoder
    followed it, the last ``IPv4``/``IPv6`` layer being the segment's own, without parsing twice.
    """
    trace: list[tunnels.Layer] = []
    return trace, decode_segment_pure(0, 0.0, link_type, data, trace)


# The compiled twin (analyzer/ingest/_fastdecode.pyx) when it is built and not switched off; it
# returns exactly what the reference returns (tests/test_speedups.py).
decode_segment: Callable[[int, float, int, bytes], Segment | Skip] = decode_segment_pure
COMPILED = False


def _select() -> None:
    global decode_segment, COMPILED
    from analyzer.ingest import speedups

    fast = speedups.load()
    if fast is not None and hasattr(fast, "decode_segment"):  # absent while it is being imported itself
        decode_segment = fast.decode_segment
        COMPILED = True


_select()
