"""IPv4/IPv6 + TCP on the wire: the one encoder (headers, NOP padding, Internet checksums) and the one
IP-header walk.

The reference endpoint, the simulator's middlebox and the tests' packet builders all write packets
through here, so a checksum or a pseudo-header is computed one way only; the capture decoder and the
endpoint read IP headers through :func:`ip_layer`, so both treat fragments and IPv6 extension headers
alike. Addresses are packed bytes (4 or 16 long: the length picks the IP version). Overrides
(``data_offset``, ``ihl``, ``total_length``, ``version``) exist so tests can write malformed headers on
purpose; left at their defaults the fields are computed.
"""

from __future__ import annotations

import enum
import struct
from typing import Final

from analyzer.mptcp.crypto import internet_checksum

__all__ = [
    "IPPROTO_TCP",
    "MAX_TCP_OPTION_SPACE",
    "SKIP_LABELS",
    "Skip",
    "ip_layer",
    "ip_tcp_packet",
    "ipv4_header",
    "ipv6_header",
    "pad_options",
    "refresh_checksums",
    "tcp_header",
    "tcp_pseudo_header",
    "with_tcp_checksum",
]

IPPROTO_TCP: Final = 6
# TCP header flag bits, defined once: the decoder's segments, the endpoint and the builders read these.
TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK, TH_URG, TH_ECE, TH_CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
MAX_TCP_OPTION_SPACE: Final = 40  # RFC 9293: the data offset is 4 bits of 32-bit words
IPV4_DONT_FRAGMENT: Final = 0x4000
_NOP: Final = b"\x01"
_TCP_HEAD = struct.Struct("!HHIIBBHHH")  # ports, seq, ack, offset, flags, window, checksum, urgent
_IPV4_HEAD = struct.Struct("!BBHHHBBH4s4s")
_IPV6_HEAD = struct.Struct("!IHBB16s16s")
_IPV4_FIELDS = struct.Struct("!BxHxxHxB").unpack_from  # ver/ihl, total length, flags/frag, protocol
_U16 = struct.Struct("!H").unpack_from
# hop-by-hop, routing, destination options, mobility, HIP, shim6
IPV6_EXTENSION_HEADERS: Final = frozenset({0, 43, 60, 135, 139, 140})
IPV6_FRAGMENT: Final = 44
IPV6_AH: Final = 51
MAX_IPV6_HEADERS: Final = 12


def pad_options(options: bytes) -> bytes:
    """Pad a TCP (or IPv4) option list to a multiple of 4 bytes with NOPs."""
    return options + _NOP * (-len(options) % 4)


def tcp_header(
    sport: int, dport: int, seq: int, ack: int, flags: int, options: bytes = b"", *,
    window: int = 65535, urgent: int = 0, data_offset: int | None = None, checksum: int = 0,
) -> bytes:  # fmt: skip
    """A TCP header with its options NOP-padded; ``data_offset`` (32-bit words) overrides the computed one."""
    options = pad_options(options)
    if data_offset is None:
        data_offset = (20 + len(options)) // 4
    if data_offset > 15:
        raise ValueError(f"TCP options too long ({len(options)} bytes)")
    head = _TCP_HEAD.pack(
        sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, (data_offset & 0x0F) << 4, flags & 0xFF, window,
        checksum, urgent,
    )  # fmt: skip
    return head + options


def tcp_pseudo_header(src: bytes, dst: bytes, length: int) -> bytes:
    """The pseudo-header the TCP checksum covers (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for IPv6)."""
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, IPPROTO_TCP, length)
    return src + dst + struct.pack("!IxxxB", length, IPPROTO_TCP)


def with_tcp_checksum(segment: bytes, src: bytes, dst: bytes) -> bytes:
    """``segment`` (TCP header + payload) with its checksum field computed; a stub too short for one is kept."""
    if len(segment) < 18:
        return segment
    checksum = internet_checksum(tcp_pseudo_header(src, dst, len(segment)) + segment[:16] + b"\0\0" + segment[18:])
    return segment[:16] + struct.pack("!H", checksum) + segment[18:]


def ipv4_header(
    src: bytes, dst: bytes, proto: int, payload_len: int, *, ttl: int = 64, ident: int = 0,
    frag: int = IPV4_DONT_FRAGMENT, options: bytes = b"", total_length: int | None = None, ihl: int | None = None,
    version: int = 4,
) -> bytes:  # fmt: skip
    """An IPv4 header with its checksum; ``options`` are zero-padded (EOL), ``frag`` is flags + offset."""
    options = options + b"\0" * (-len(options) % 4)
    hlen = 20 + len(options)
    if ihl is None:
        ihl = hlen // 4
    length = hlen + payload_len if total_length is None else total_length
    head = _IPV4_HEAD.pack(
        (version << 4) | (ihl & 0x0F), 0, length & 0xFFFF, ident & 0xFFFF, frag, ttl, proto, 0, src, dst,
    ) + options  # fmt: skip
    return head[:10] + struct.pack("!H", internet_checksum(head)) + head[12:]


def ipv6_header(src: bytes, dst: bytes, next_header: int, payload_len: int, *, hop_limit: int = 64,
                flow_label: int = 0) -> bytes:  # fmt: skip
    """A fixed IPv6 header (extension headers, if any, are part of the payload)."""
    return _IPV6_HEAD.pack((6 << 28) | flow_label, payload_len & 0xFFFF, next_header, hop_limit, src, dst)


def ip_tcp_packet(
    src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int, options: bytes = b"",
    payload: bytes = b"", *, window: int = 65535, ident: int = 0, ttl: int = 64,
) -> bytes:  # fmt: skip
    """An IPv4 or IPv6 packet (by the address length) carrying one TCP segment, both checksums right."""
    tcp = with_tcp_checksum(tcp_header(sport, dport, seq, ack, flags, options, window=window) + payload, src, dst)
    if len(src) == 4:
        return ipv4_header(src, dst, IPPROTO_TCP, len(tcp), ttl=ttl, ident=ident) + tcp
    return ipv6_header(src, dst, IPPROTO_TCP, len(tcp), hop_limit=ttl) + tcp


def refresh_checksums(packet: bytes | bytearray) -> bytes:
    """Recompute the IPv4 header checksum and the TCP checksum of an edited packet (no IPv6 extension headers)."""
    out = bytearray(packet)
    if out[0] >> 4 == 4:
        tcp = (out[0] & 0x0F) * 4
        out[10:12] = b"\0\0"
        out[10:12] = struct.pack("!H", internet_checksum(bytes(out[:tcp])))
        src, dst = bytes(out[12:16]), bytes(out[16:20])
    else:
        tcp = 40
        src, dst = bytes(out[8:24]), bytes(out[24:40])
    return bytes(out[:tcp]) + with_tcp_checksum(bytes(out[tcp:]), src, dst)


# ------------------------------------------------------------------ reading


class Skip(enum.IntEnum):
    """Why a packet is not a TCP segment we can analyse (counted per reason in the trace summary)."""

    UNSUPPORTED_LINK = 1
    NOT_IP = 2
    NOT_TCP = 3
    FRAGMENT = 4
    TRUNCATED_HEADER = 5
    BAD_IP_HEADER = 6
    BAD_TCP_HEADER = 7
    TOO_DEEP = 8  # tunnels nested deeper than tunnels.MAX_ENCAPSULATION


SKIP_LABELS = {
    Skip.UNSUPPORTED_LINK: "unsupported link type",
    Skip.NOT_IP: "not IPv4/IPv6",
    Skip.NOT_TCP: "not TCP",
    Skip.FRAGMENT: "IP fragments",
    Skip.TRUNCATED_HEADER: "headers cut short by the capture",
    Skip.BAD_IP_HEADER: "malformed IP header",
    Skip.BAD_TCP_HEADER: "malformed TCP header",
    Skip.TOO_DEEP: "tunnels nested too deep",
}


def ip_layer(data: bytes, off: int, version: int) -> tuple[int, bytes, bytes, int, int] | Skip:
    """One IP header at ``off``: (upper-layer protocol, src, dst, its offset, end of the IP packet), or why not.

    IPv6 extension headers are walked (boundedly); fragments are refused, since a fragment's TCP
    header cannot be read alone. Never raises: the capture decoder's hot path calls it on any bytes.
    """
    n = len(data)
    if version == 4:
        if n < off + 20:
            return Skip.TRUNCATED_HEADER
        ver_ihl, total_len, frag, proto = _IPV4_FIELDS(data, off)
        if ver_ihl >> 4 != 4:
            return Skip.BAD_IP_HEADER
        ihl = (ver_ihl & 0x0F) * 4
        if ihl < 20:
            return Skip.BAD_IP_HEADER
        if frag & 0x3FFF:  # more-fragments flag or a fragment offset
            return Skip.FRAGMENT
        # TSO/GSO super-segments captured on the sending host carry total length 0.
        ip_end = off + total_len if total_len >= ihl else n
        return proto, data[off + 12 : off + 16], data[off + 16 : off + 20], off + ihl, ip_end
    if n < off + 40:
        return Skip.TRUNCATED_HEADER
    if data[off] >> 4 != 6:
        return Skip.BAD_IP_HEADER
    plen = _U16(data, off + 4)[0]
    nxt = data[off + 6]
    upper = off + 40
    ip_end = upper + plen if plen else n  # jumbogram / TSO: trust the captured bytes
    for _ in range(MAX_IPV6_HEADERS):
        if nxt in IPV6_EXTENSION_HEADERS:
            if n < upper + 2:
                return Skip.TRUNCATED_HEADER
            nxt, hlen = data[upper], (data[upper + 1] + 1) * 8
        elif nxt == IPV6_FRAGMENT:
            return Skip.FRAGMENT
        elif nxt == IPV6_AH:
            if n < upper + 2:
                return Skip.TRUNCATED_HEADER
            nxt, hlen = data[upper], (data[upper + 1] + 2) * 4
        else:
            return nxt, data[off + 8 : off + 24], data[off + 24 : off + 40], upper, ip_end
        upper += hlen
    return Skip.BAD_IP_HEADER
