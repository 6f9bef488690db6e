"""Encapsulations between the link layer and the TCP segment: what captures from real networks carry.

Why: a capture taken on a router, a hypervisor or a mirror port holds MPTCP inside MPLS, PPPoE, GRE
(also ERSPAN mirror copies), IP-in-IP, 6in4, VXLAN or Geneve. Each helper here finds the next header
and says what it is: ``(offset, 4 | 6)`` for an IP header, ``(offset, ETHERNET)`` for an inner Ethernet
frame, or a :class:`~analyzer.ingest.decode.Skip` reason. Bounded: label stacks and nesting have caps,
every read is length-checked, nothing raises.

Given a ``trace`` list, the same helpers also describe each header they pass as a :class:`Layer`
(what it is, its bytes, its fields), so a viewer shows the encapsulation the decoder followed
without parsing it a second time. The hot path passes no list and pays one ``is None`` test.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

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

Field = tuple[str, int, int]  # (label, first byte, end) within the captured frame


@dataclass(frozen=True, slots=True)
class Layer:
    """One header between the frame's start and the TCP segment, as the decoder walked it."""

    name: str  # protocol: "Ethernet", "MPLS", "PPPoE", "PPP", "GRE", "ERSPAN", "UDP", "VXLAN", "Geneve", "IPv4", ...
    start: int
    end: int
    summary: str = ""
    fields: tuple[Field, ...] = ()


Trace = list[Layer] | None

PPP_PROTOCOL_NAMES = {PPP_IPV4: "IPv4", PPP_IPV6: "IPv6"}


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _ethernet_layer(data: bytes, start: int, type_at: int) -> Layer:
    dst, src = _mac(data[start : start + 6]), _mac(data[start + 6 : start + 12])
    fields: list[Field] = [(f"Destination: {dst}", start, start + 6), (f"Source: {src}", start + 6, start + 12)]
    for pos in range(start + 12, type_at, 4):
        tci = _u16(data, pos + 2)[0]
        fields.append((f"802.1Q tag: VLAN {tci & 0x0FFF}, priority {tci >> 13}", pos, pos + 4))
    fields.append((f"Type: {_u16(data, type_at)[0]:#06x}", type_at, type_at + 2))
    return Layer("Ethernet", start, type_at + 2, f"Ethernet II, {src} → {dst}", tuple(fields))


def _mpls_layer(value: int, offset: int) -> Layer:
    label, tc, bottom, ttl = value >> 12, (value >> 9) & 0x7, value >> 8 & 0x1, value & 0xFF
    summary = f"MPLS label {label}, TC {tc}, TTL {ttl}" + (", bottom of stack" if bottom else "")
    fields = (
        (f"Label: {label}", offset, offset + 3),
        (f"Traffic class: {tc}", offset + 2, offset + 3),
        (f"Bottom of stack: {bool(bottom)}", offset + 2, offset + 3),
        (f"TTL: {ttl}", offset + 3, offset + 4),
    )
    return Layer("MPLS", offset, offset + 4, summary, fields)


def _ppp_layer(protocol: int, start: int, at: int, end: int) -> Layer:
    name = PPP_PROTOCOL_NAMES.get(protocol, "not followed")
    fields: tuple[Field, ...] = ((f"Protocol: {protocol:#06x} ({name})", at, end),)
    if at > start:
        fields = (("Address: 0xff, control: 0x03", start, at), *fields)
    return Layer("PPP", start, end, f"Point-to-Point Protocol, protocol {protocol:#06x} ({name})", fields)


def ethernet(data: bytes, start: int, trace: Trace = None) -> Next:
    """The payload of an Ethernet frame starting at ``start`` (802.1Q/QinQ tags skipped)."""
    offset = start + 12
    for _ in range(MAX_VLAN_TAGS + 1):
        if len(data) < offset + 2:
            return TRUNCATED, 0
        ethertype = _u16(data, offset)[0]
        if ethertype in VLAN_TAGS:
            offset += 4
            continue
        if trace is not None:
            trace.append(_ethernet_layer(data, start, offset))
        return by_ethertype(data, ethertype, offset + 2, trace)
    return NOT_IP, 0


def by_ethertype(data: bytes, ethertype: int, offset: int, trace: Trace = None) -> Next:
    """What an EtherType (or GRE protocol type) announces at ``offset``."""
    if ethertype == ETH_IPV4:
        return offset, 4
    if ethertype == ETH_IPV6:
        return offset, 6
    if ethertype in ETH_MPLS:
        return mpls(data, offset, trace)
    if ethertype == ETH_PPPOE_SESSION:
        return pppoe(data, offset, trace)
    if ethertype == ETH_TRANSPARENT_BRIDGING:
        return offset, ETHERNET
    return NOT_IP, 0


def mpls(data: bytes, offset: int, trace: Trace = None) -> Next:
    """Past an MPLS label stack: IPv4 or IPv6 by the first nibble (pseudowires are not followed)."""
    for _ in range(MAX_MPLS_LABELS):
        if len(data) < offset + 4:
            return TRUNCATED, 0
        if trace is not None:
            trace.append(_mpls_layer(struct.unpack_from("!I", data, offset)[0], offset))
        bottom = data[offset + 2] & 0x01
        offset += 4
        if bottom:
            if len(data) < offset + 1:
                return TRUNCATED, 0
            version = data[offset] >> 4
            return (offset, version) if version in (4, 6) else (NOT_IP, 0)
    return NOT_IP, 0


def pppoe(data: bytes, offset: int, trace: Trace = None) -> Next:
    """PPPoE session header (6 bytes), then the PPP protocol field."""
    if len(data) < offset + 8:
        return TRUNCATED, 0
    protocol = _u16(data, offset + 6)[0]
    if trace is not None:
        session, length = _u16(data, offset + 2)[0], _u16(data, offset + 4)[0]
        fields = ((f"Version: {data[offset] >> 4}, type: {data[offset] & 0x0F}", offset, offset + 1),
                  (f"Code: {data[offset + 1]:#04x}", offset + 1, offset + 2),
                  (f"Session ID: {session:#06x}", offset + 2, offset + 4),
                  (f"Payload length: {length}", offset + 4, offset + 6))  # fmt: skip
        trace.append(Layer("PPPoE", offset, offset + 6, f"PPP-over-Ethernet session {session:#06x}", fields))
        trace.append(_ppp_layer(protocol, offset + 6, offset + 6, offset + 8))
    return ppp_protocol(protocol, offset + 8)


def ppp(data: bytes, offset: int, trace: Trace = None) -> Next:
    """A PPP frame (LINKTYPE_PPP, PPP_HDLC): optional FF 03, then a 1- or 2-byte protocol field."""
    start = offset
    if len(data) >= offset + 2 and data[offset] == 0xFF and data[offset + 1] == 0x03:
        offset += 2
    if len(data) < offset + 1:
        return TRUNCATED, 0
    if data[offset] & 0x01:  # protocol field compression: one byte
        protocol, end = data[offset], offset + 1
    elif len(data) < offset + 2:
        return TRUNCATED, 0
    else:
        protocol, end = _u16(data, offset)[0], offset + 2
    if trace is not None:
        trace.append(_ppp_layer(protocol, start, offset, end))
    return ppp_protocol(protocol, end)


def ppp_protocol(protocol: int, offset: int) -> Next:
    if protocol == PPP_IPV4:
        return offset, 4
    if protocol == PPP_IPV6:
        return offset, 6
    return NOT_IP, 0


def inside_ip(data: bytes, protocol: int, offset: int, end: int, trace: Trace = None) -> Next:
    """The header a tunnel carries in an IP packet whose payload (``protocol``) starts at ``offset``."""
    if protocol == IPPROTO_IPIP:
        return offset, 4
    if protocol == IPPROTO_IPV6:
        return offset, 6
    if protocol == IPPROTO_GRE:
        return gre(data, offset, trace)
    if protocol == IPPROTO_UDP:
        return udp(data, offset, end, trace)
    return NOT_TUNNEL, 0


def gre(data: bytes, offset: int, trace: Trace = None) -> Next:
    """GRE (RFC 2784/2890), version 0; ERSPAN type II and III mirror copies inside it."""
    if len(data) < offset + 4:
        return TRUNCATED, 0
    flags, protocol = _u16(data, offset)[0], _u16(data, offset + 2)[0]
    if flags & 0x0007 or flags & 0x4000:  # version 1 (PPTP) or source routing: not followed
        return NOT_TUNNEL, 0
    start = offset
    offset += 4 + 4 * bool(flags & 0x8000) + 4 * bool(flags & 0x2000) + 4 * bool(flags & 0x1000)
    if trace is not None:
        trace.append(_gre_layer(data, start, offset, flags, protocol))
    if protocol == ETH_ERSPAN_II:
        if trace is not None:
            trace.append(_erspan_layer(data, "II", offset, offset + 8))
        return offset + 8, ETHERNET
    if protocol == ETH_ERSPAN_III:
        if len(data) < offset + 12:
            return TRUNCATED, 0
        subheader = 8 if data[offset + 11] & 0x01 else 0  # O flag: platform-specific subheader follows
        if trace is not None:
            trace.append(_erspan_layer(data, "III", offset, offset + 12 + subheader))
        return offset + 12 + subheader, ETHERNET
    return by_ethertype(data, protocol, offset, trace)


def _gre_layer(data: bytes, start: int, end: int, flags: int, protocol: int) -> Layer:
    fields: list[Field] = [(f"Flags and version: {flags:#06x}", start, start + 2),
                           (f"Protocol type: {protocol:#06x}", start + 2, start + 4)]  # fmt: skip
    pos, summary = start + 4, f"Generic Routing Encapsulation, protocol {protocol:#06x}"
    for bit, name in ((0x8000, "Checksum"), (0x2000, "Key"), (0x1000, "Sequence number")):
        if flags & bit:
            if len(data) >= pos + 4:
                value = struct.unpack_from("!I", data, pos)[0]
                fields.append((f"{name}: {value:#x}" if bit == 0x8000 else f"{name}: {value}", pos, pos + 4))
                if bit == 0x2000:
                    summary += f", key {value}"
            pos += 4
    return Layer("GRE", start, end, summary, tuple(fields))


def _erspan_layer(data: bytes, kind: str, start: int, end: int) -> Layer:
    if len(data) < start + 4:
        return Layer("ERSPAN", start, end, f"ERSPAN type {kind}")
    vlan, session = _u16(data, start)[0] & 0x0FFF, _u16(data, start + 2)[0] & 0x03FF
    fields = ((f"Version: {data[start] >> 4}, VLAN: {vlan}", start, start + 2),
              (f"Session ID: {session}", start + 2, start + 4))  # fmt: skip
    return Layer("ERSPAN", start, end, f"ERSPAN type {kind}, session {session}", fields)


def udp(data: bytes, offset: int, end: int, trace: Trace = None) -> Next:
    """VXLAN (RFC 7348) and Geneve (RFC 8926) by their well-known ports; other UDP is not a tunnel."""
    if len(data) < offset + 8:
        return TRUNCATED, 0
    dport = _u16(data, offset + 2)[0]
    if dport == UDP_VXLAN:
        if trace is not None:
            trace.append(_udp_layer(data, offset, dport))
            vni = _vni(data, offset + 12)
            trace.append(Layer("VXLAN", offset + 8, offset + 16, f"Virtual eXtensible LAN, VNI {vni}",
                               ((f"VNI: {vni}", offset + 12, offset + 15),)))  # fmt: skip
        return offset + 16, ETHERNET
    if dport == UDP_GENEVE:
        if len(data) < offset + 16:
            return TRUNCATED, 0
        options = (data[offset + 8] & 0x3F) * 4
        protocol = _u16(data, offset + 10)[0]
        if trace is not None:
            trace.append(_udp_layer(data, offset, dport))
            vni = _vni(data, offset + 12)
            fields = ((f"Options length: {options} bytes", offset + 8, offset + 9),
                      (f"Protocol type: {protocol:#06x}", offset + 10, offset + 12),
                      (f"VNI: {vni}", offset + 12, offset + 15))  # fmt: skip
            trace.append(Layer("Geneve", offset + 8, offset + 16 + options,
                               f"Generic Network Virtualization Encapsulation, VNI {vni}", fields))  # fmt: skip
        return by_ethertype(data, protocol, offset + 16 + options, trace)
    return NOT_TUNNEL, 0


def _vni(data: bytes, at: int) -> int | str:
    """A 24-bit VXLAN / Geneve network identifier, or "?" where the capture cut it."""
    return int.from_bytes(data[at : at + 3], "big") if len(data) >= at + 3 else "?"


def _udp_layer(data: bytes, offset: int, dport: int) -> Layer:
    sport = _u16(data, offset)[0]
    fields = ((f"Source port: {sport}", offset, offset + 2), (f"Destination port: {dport}", offset + 2, offset + 4),
              (f"Length: {_u16(data, offset + 4)[0]}", offset + 4, offset + 6))  # fmt: skip
    return Layer("UDP", offset, offset + 8, f"User Datagram Protocol, {sport} → {dport}", fields)
