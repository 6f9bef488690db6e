"""Encapsulations between the link layer and the TCP segment: what captures from real networks carry.

Why: a capture taken on a router, a hypervisor or a mirror port holds MPTCP inside MPLS, PPPoE, GRE
(also ERSPAN mirror copies), IP-in-IP, 6in4, VXLAN or Geneve. Each helper here finds the next header
and says what it is: ``(offset, 4 | 6)`` for an IP header, ``(offset, ETHERNET)`` for an inner Ethernet
frame, or a :class:`~analyzer.ingest.decode.Skip` reason. Bounded: label stacks and nesting have caps,
every read is length-checked, nothing raises.
"""

from __future__ import annotations

import struct

ETHERNET = 0  # "an Ethernet frame starts here" (not an IP version)
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
ETH_MPLS = frozenset({0x8847, 0x8848})
ETH_PPPOE_SESSION = 0x8864
ETH_TRANSPARENT_BRIDGING = 0x6558  # GRE / Geneve payload: an Ethernet frame
ETH_ERSPAN_II, ETH_ERSPAN_III = 0x88BE, 0x22EB
VLAN_TAGS = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})
MAX_VLAN_TAGS = 4
MAX_MPLS_LABELS = 8
MAX_ENCAPSULATION = 8  # tunnels inside tunnels deeper than this are not followed
PPP_IPV4, PPP_IPV6 = 0x0021, 0x0057
IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE, IPPROTO_UDP = 4, 41, 47, 17
UDP_VXLAN, UDP_GENEVE = 4789, 6081
TUNNEL_PROTOCOLS = frozenset({IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE, IPPROTO_UDP})

# Outcomes, as small ints so that decode.py maps them onto its Skip reasons without an import cycle.
TRUNCATED, NOT_IP, NOT_TUNNEL = -1, -2, -3

_u16 = struct.Struct("!H").unpack_from

Next = tuple[int, int]  # (offset, 4 | 6 | ETHERNET), or (outcome, 0) with outcome < 0


def ethernet(data: bytes, start: int) -> Next:
    """The payload of an Ethernet frame starting at ``start`` (802.1Q/QinQ tags skipped)."""
    offset = start + 12
    for _ in range(MAX_VLAN_TAGS + 1):
        if len(data) < offset + 2:
            return TRUNCATED, 0
        ethertype = _u16(data, offset)[0]
        if ethertype in VLAN_TAGS:
            offset += 4
            continue
        return by_ethertype(data, ethertype, offset + 2)
    return NOT_IP, 0


def by_ethertype(data: bytes, ethertype: int, offset: int) -> Next:
    """What an EtherType (or GRE protocol type) announces at ``offset``."""
    if ethertype == ETH_IPV4:
        return offset, 4
    if ethertype == ETH_IPV6:
        return offset, 6
    if ethertype in ETH_MPLS:
        return mpls(data, offset)
    if ethertype == ETH_PPPOE_SESSION:
        return pppoe(data, offset)
    if ethertype == ETH_TRANSPARENT_BRIDGING:
        return offset, ETHERNET
    return NOT_IP, 0


def mpls(data: bytes, offset: int) -> Next:
    """Past an MPLS label stack: IPv4 or IPv6 by the first nibble (pseudowires are not followed)."""
    for _ in range(MAX_MPLS_LABELS):
        if len(data) < offset + 4:
            return TRUNCATED, 0
        bottom = data[offset + 2] & 0x01
        offset += 4
        if bottom:
            if len(data) < offset + 1:
                return TRUNCATED, 0
            version = data[offset] >> 4
            return (offset, version) if version in (4, 6) else (NOT_IP, 0)
    return NOT_IP, 0


def pppoe(data: bytes, offset: int) -> Next:
    """PPPoE session header (6 bytes), then the PPP protocol field."""
    if len(data) < offset + 8:
        return TRUNCATED, 0
    return ppp_protocol(_u16(data, offset + 6)[0], offset + 8)


def ppp(data: bytes, offset: int) -> Next:
    """A PPP frame (LINKTYPE_PPP, PPP_HDLC): optional FF 03, then a 1- or 2-byte protocol field."""
    if len(data) >= offset + 2 and data[offset] == 0xFF and data[offset + 1] == 0x03:
        offset += 2
    if len(data) < offset + 1:
        return TRUNCATED, 0
    if data[offset] & 0x01:  # protocol field compression: one byte
        return ppp_protocol(data[offset], offset + 1)
    if len(data) < offset + 2:
        return TRUNCATED, 0
    return ppp_protocol(_u16(data, offset)[0], offset + 2)


def ppp_protocol(protocol: int, offset: int) -> Next:
    if protocol == PPP_IPV4:
        return offset, 4
    if protocol == PPP_IPV6:
        return offset, 6
    return NOT_IP, 0


def inside_ip(data: bytes, protocol: int, offset: int, end: int) -> Next:
    """The header a tunnel carries in an IP packet whose payload (``protocol``) starts at ``offset``."""
    if protocol == IPPROTO_IPIP:
        return offset, 4
    if protocol == IPPROTO_IPV6:
        return offset, 6
    if protocol == IPPROTO_GRE:
        return gre(data, offset)
    if protocol == IPPROTO_UDP:
        return udp(data, offset, end)
    return NOT_TUNNEL, 0


def gre(data: bytes, offset: int) -> Next:
    """GRE (RFC 2784/2890), version 0; ERSPAN type II and III mirror copies inside it."""
    if len(data) < offset + 4:
        return TRUNCATED, 0
    flags, protocol = _u16(data, offset)[0], _u16(data, offset + 2)[0]
    if flags & 0x0007 or flags & 0x4000:  # version 1 (PPTP) or source routing: not followed
        return NOT_TUNNEL, 0
    offset += 4 + 4 * bool(flags & 0x8000) + 4 * bool(flags & 0x2000) + 4 * bool(flags & 0x1000)
    if protocol == ETH_ERSPAN_II:
        return offset + 8, ETHERNET
    if protocol == ETH_ERSPAN_III:
        if len(data) < offset + 12:
            return TRUNCATED, 0
        subheader = 8 if data[offset + 11] & 0x01 else 0  # O flag: platform-specific subheader follows
        return offset + 12 + subheader, ETHERNET
    return by_ethertype(data, protocol, offset)


def udp(data: bytes, offset: int, end: int) -> Next:
    """VXLAN (RFC 7348) and Geneve (RFC 8926) by their well-known ports; other UDP is not a tunnel."""
    if len(data) < offset + 8:
        return TRUNCATED, 0
    dport = _u16(data, offset + 2)[0]
    if dport == UDP_VXLAN:
        return offset + 16, ETHERNET
    if dport == UDP_GENEVE:
        if len(data) < offset + 16:
            return TRUNCATED, 0
        options = (data[offset + 8] & 0x3F) * 4
        return by_ethertype(data, _u16(data, offset + 10)[0], offset + 16 + options)
    return NOT_TUNNEL, 0
