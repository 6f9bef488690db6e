"""The endpoint's view of one TCP segment, and its IPv4/IPv6 + TCP wire encoding.

A :class:`Segment` carries header fields, the TCP options the endpoint uses (MSS, window scale)
and MPTCP options as values of :mod:`analyzer.mptcp.options`; building the option bytes goes
through each option's ``build()`` and parsing through :func:`analyzer.tcp_options.walk_tcp_options`,
so the endpoint and the analyzer share one codec. A :class:`RawOption` carries exact bytes (used to
inject malformed options on purpose).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from analyzer.mptcp.options import Dss, MpPrio, MptcpOption
from analyzer.mptcp.packet import (
    IPPROTO_TCP,
    MAX_TCP_OPTION_SPACE,
    SKIP_LABELS,
    Skip,
    ip_layer,
    ip_tcp_packet,
    pad_options,
)
from analyzer.mptcp.packet import TH_ACK as ACK  # the endpoint's short names for the one definition
from analyzer.mptcp.packet import TH_FIN as FIN
from analyzer.mptcp.packet import TH_PSH as PSH
from analyzer.mptcp.packet import TH_RST as RST
from analyzer.mptcp.packet import TH_SYN as SYN
from analyzer.tcp_options import walk_tcp_options

__all__ = [
    "ACK",
    "FIN",
    "PSH",
    "RST",
    "SYN",
    "Address",
    "DecodeError",
    "OutOption",
    "RawOption",
    "Segment",
    "decode_packet",
    "encode_packet",
]


Address: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_NOP: Final = b"\x01"
_KIND_MSS: Final = 2
_KIND_WSCALE: Final = 3
_KIND_TIMESTAMP: Final = 8
_TCP_HEAD = struct.Struct("!HHIIBBHHH")  # ports, seq, ack, offset, flags, window, checksum, urgent


class DecodeError(ValueError):
    """Bytes that are not an IPv4/IPv6 TCP packet this endpoint can read."""


@dataclass(frozen=True, slots=True)
class RawOption:
    """Exact option bytes, written as given (kind and length included); for fault injection."""

    raw: bytes

    @property
    def length(self) -> int:
        return len(self.raw)

    def build(self) -> bytes:
        return self.raw


OutOption: TypeAlias = MptcpOption | RawOption
"""What a segment may carry as MPTCP options: a codec value, or raw bytes."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment between two endpoints (addresses, ports, header, options, payload)."""

    src: Address
    sport: int
    dst: Address
    dport: int
    seq: int  # 32-bit sequence number as on the wire
    ack: int  # 32-bit acknowledgment number (meaningful when ACK is set)
    flags: int  # FIN SYN RST PSH ACK bits
    window: int  # 16-bit window field as on the wire (unscaled)
    payload: bytes = b""
    mptcp: tuple[OutOption, ...] = ()  # MPTCP options in header order
    mss: int | None = None  # MSS option (SYN / SYN-ACK)
    wscale: int | None = None  # window-scale option (SYN / SYN-ACK)
    timestamp: tuple[int, int] | None = None  # RFC 7323 (TSval, TSecr)
    malformed: str | None = field(default=None, compare=False)  # set by decode when the option list was broken

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & ACK)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    @property
    def seq_space(self) -> int:
        """Sequence numbers the segment occupies: payload plus one each for SYN and FIN."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    def options_bytes(self) -> bytes:
        """The TCP option list, padded with NOPs to a multiple of 4 (Linux-style NOPs after DSS/MP_PRIO)."""
        out = bytearray()
        if self.mss is not None:
            out += struct.pack("!BBH", _KIND_MSS, 4, self.mss)
        if self.timestamp is not None:
            out += _NOP + _NOP + struct.pack("!BBII", _KIND_TIMESTAMP, 10, *self.timestamp)
        if self.wscale is not None:
            out += _NOP + bytes((_KIND_WSCALE, 3, self.wscale))
        for opt in self.mptcp:
            # Linux pads DSS (without checksum) and MP_PRIO to keep 4-byte alignment (shared rules §1.1).
            out += pad_options(opt.build()) if isinstance(opt, Dss | MpPrio) else opt.build()
        options = pad_options(bytes(out))
        if len(options) > MAX_TCP_OPTION_SPACE:
            raise ValueError(f"TCP options need {len(options)} bytes, more than the {MAX_TCP_OPTION_SPACE} available")
        return options


def encode_packet(seg: Segment, ip_id: int = 0, ttl: int = 64) -> bytes:
    """IPv4 or IPv6 packet (by the address family) carrying the segment, with correct checksums."""
    return ip_tcp_packet(
        seg.src.packed, seg.dst.packed, seg.sport, seg.dport, seg.seq, seg.ack, seg.flags, seg.options_bytes(),
        seg.payload, window=seg.window, ident=ip_id, ttl=ttl,
    )  # fmt: skip


def decode_packet(data: bytes) -> Segment:
    """Parse an IPv4/IPv6 TCP packet: IP headers through the capture decoder's walk, options through its walker."""
    if not data:
        raise DecodeError("empty packet")
    version = data[0] >> 4
    if version not in (4, 6):
        raise DecodeError(f"IP version {version}")
    layer = ip_layer(data, 0, version)
    if isinstance(layer, Skip):
        raise DecodeError(SKIP_LABELS[layer])
    protocol, src_bytes, dst_bytes, tcp_start, ip_end = layer
    if protocol != IPPROTO_TCP:
        raise DecodeError(f"IP protocol {protocol} is not TCP")
    family = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    src: Address = family(src_bytes)
    dst: Address = family(dst_bytes)
    end = min(ip_end, len(data))
    if end < tcp_start + 20:
        raise DecodeError("TCP header cut short")
    sport, dport, seq, ack, off, flags, window, _csum, _urg = _TCP_HEAD.unpack_from(data, tcp_start)
    hdr_end = tcp_start + (off >> 4) * 4
    if hdr_end > end or (off >> 4) < 5:
        raise DecodeError("bad TCP data offset")
    opts = walk_tcp_options(data, tcp_start + 20, hdr_end)
    return Segment(
        src=src, sport=sport, dst=dst, dport=dport, seq=seq, ack=ack, flags=flags & 0x3F, window=window,
        payload=bytes(data[hdr_end:end]), mptcp=tuple(opts.mptcp), mss=opts.mss, wscale=opts.wscale,
        timestamp=opts.timestamp, malformed=opts.malformed,
    )  # fmt: skip
