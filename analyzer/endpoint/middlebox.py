"""A middlebox on every simulated path: the things real networks do to MPTCP, one switch each.

It works on the wire bytes between the sender's capture and the link, so the sender's capture holds
the packet as sent and the receiver's capture the packet as the box left it: exactly what
``mptcp-analyze compare`` has to explain. Every change it makes is logged (input bytes, output
bytes) as ground truth for tests.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Final

from analyzer.endpoint.segment import FIN, PSH, Address, decode_packet, encode_packet
from analyzer.mptcp.packet import refresh_checksums

__all__ = ["Middlebox", "MiddleboxAction", "MiddleboxEffect", "MiddleboxSpec"]

KIND_MPTCP: Final = 30
KIND_NOP: Final = 1
MP_CAPABLE: Final = 0  # subtype
CHECKSUM_REQUIRED: Final = 0x80  # MP_CAPABLE flag A
NAT_BASE: Final = "198.51.100.0"  # TEST-NET-2: the client's public address on path i is .i
NAT6_BASE: Final = "2001:db8:100::"
NAT_PORT_SHIFT: Final = 20000


class MiddleboxEffect(enum.Enum):
    STRIP_MPTCP = "strip-mptcp"  # every MPTCP option overwritten with NOPs (both directions)
    REWRITE_SEQ = "rewrite-seq"  # client's sequence numbers shifted (ACKs of the server shifted back)
    NAT = "nat"  # client address and port translated
    SPLIT = "split"  # every n-th client data segment split in two (options copied, like TSO)
    CORRUPT = "corrupt"  # one byte of the n-th client data segment flipped (TCP checksum fixed up)
    ALTER_MPC = "alter-mpc"  # the checksum-required (A) flag cleared in the client's MP_CAPABLE options


@dataclass(frozen=True, slots=True)
class MiddleboxSpec:
    effects: frozenset[MiddleboxEffect]
    seq_offset: int = 0x2468ACE0
    every: int = 10  # SPLIT: every n-th client data segment; CORRUPT: the n-th one


@dataclass(frozen=True, slots=True)
class MiddleboxAction:
    effect: MiddleboxEffect
    before: bytes
    after: tuple[bytes, ...]


@dataclass(slots=True)
class Middlebox:
    spec: MiddleboxSpec
    log: list[MiddleboxAction] = field(default_factory=list)
    _data_segments: int = 0

    def process(self, packet: bytes, c2s: bool) -> list[bytes]:
        """The packets that leave the box for one that entered it."""
        out = [packet]
        effects = self.spec.effects
        data = c2s and _payload_len(packet) > 0
        if data:
            self._data_segments += 1
        for effect, apply in (
            (MiddleboxEffect.STRIP_MPTCP, MiddleboxEffect.STRIP_MPTCP in effects),
            (MiddleboxEffect.ALTER_MPC, c2s and MiddleboxEffect.ALTER_MPC in effects),
            (
                MiddleboxEffect.CORRUPT,
                data and MiddleboxEffect.CORRUPT in effects and self._data_segments == self.spec.every,
            ),
            (
                MiddleboxEffect.SPLIT,
                data and MiddleboxEffect.SPLIT in effects and self._data_segments % self.spec.every == 0,
            ),
            (MiddleboxEffect.REWRITE_SEQ, MiddleboxEffect.REWRITE_SEQ in effects),
            (MiddleboxEffect.NAT, MiddleboxEffect.NAT in effects),
        ):
            if not apply:
                continue
            changed: list[bytes] = []
            for pkt in out:
                new = self._apply(effect, pkt, c2s)
                if new != [pkt]:
                    self.log.append(MiddleboxAction(effect, pkt, tuple(new)))
                changed += new
            out = changed
        return out

    def _apply(self, effect: MiddleboxEffect, packet: bytes, c2s: bool) -> list[bytes]:
        if effect is MiddleboxEffect.STRIP_MPTCP:
            return [_edit_mptcp(packet, _to_nops)]
        if effect is MiddleboxEffect.ALTER_MPC:
            return [_edit_mptcp(packet, _clear_checksum_flag)]
        if effect is MiddleboxEffect.CORRUPT:
            return [_corrupt(packet)]
        if effect is MiddleboxEffect.SPLIT:
            return _split(packet)
        if effect is MiddleboxEffect.REWRITE_SEQ:
            return [_shift_seq(packet, self.spec.seq_offset if c2s else 0, 0 if c2s else -self.spec.seq_offset)]
        return [_nat(packet, c2s)]


def _tcp_start(packet: bytes) -> int:
    return (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else 40


def _payload_len(packet: bytes) -> int:
    tcp = _tcp_start(packet)
    return len(packet) - tcp - (packet[tcp + 12] >> 4) * 4


def _to_nops(option: bytearray) -> None:
    option[:] = bytes([KIND_NOP]) * len(option)


def _clear_checksum_flag(option: bytearray) -> None:
    if len(option) >= 4 and option[2] >> 4 == MP_CAPABLE:
        option[3] &= ~CHECKSUM_REQUIRED & 0xFF


def _edit_mptcp(packet: bytes, edit: Callable[[bytearray], None]) -> bytes:
    """Apply ``edit`` to every MPTCP option in place (same length), then fix the checksums."""
    tcp = _tcp_start(packet)
    end = tcp + (packet[tcp + 12] >> 4) * 4
    out = bytearray(packet)
    i = tcp + 20
    while i < end:
        kind = out[i]
        if kind == 0:
            break
        if kind == KIND_NOP or i + 1 >= end:
            i += 1
            continue
        length = max(out[i + 1], 2)
        if kind == KIND_MPTCP:
            option = out[i : min(i + length, end)]
            edit(option)
            out[i : i + len(option)] = option
        i += length
    return packet if out == packet else refresh_checksums(out)


def _corrupt(packet: bytes) -> bytes:
    out = bytearray(packet)
    out[-1] ^= 0xFF
    return refresh_checksums(out)


def _split(packet: bytes) -> list[bytes]:
    """Two segments for one, each with the original's options (so the DSS mapping covers both halves)."""
    seg = decode_packet(packet)
    half = len(seg.payload) // 2
    if half == 0:
        return [packet]
    ip_id = struct.unpack_from("!H", packet, 4)[0] if packet[0] >> 4 == 4 else 0
    first = replace(seg, payload=seg.payload[:half], flags=seg.flags & ~(FIN | PSH))
    second = replace(seg, seq=(seg.seq + half) & 0xFFFFFFFF, payload=seg.payload[half:])
    return [encode_packet(first, ip_id=ip_id), encode_packet(second, ip_id=ip_id)]


def _shift_seq(packet: bytes, seq_delta: int, ack_delta: int) -> bytes:
    tcp = _tcp_start(packet)
    seq, ack = struct.unpack_from("!II", packet, tcp + 4)
    out = bytearray(packet)
    struct.pack_into("!I", out, tcp + 4, (seq + seq_delta) & 0xFFFFFFFF)
    if packet[tcp + 13] & 0x10:  # ACK
        struct.pack_into("!I", out, tcp + 8, (ack + ack_delta) & 0xFFFFFFFF)
    return refresh_checksums(out)


def _public(address: Address) -> Address:
    """The client's public address: the private one's last number on the TEST-NET."""
    if address.version == 4:
        return ipaddress.IPv4Address(int(ipaddress.IPv4Address(NAT_BASE)) + (int(address) >> 8 & 0xFF))
    return ipaddress.IPv6Address(int(ipaddress.IPv6Address(NAT6_BASE)) + (int(address) >> 80 & 0xFFFF))


def _nat(packet: bytes, c2s: bool) -> bytes:
    """Client side behind a NAT: source (c2s) or destination (s2c) address and port rewritten."""
    v4 = packet[0] >> 4 == 4
    tcp = _tcp_start(packet)
    addr_at = (12 if c2s else 16) if v4 else (8 if c2s else 24)
    size = 4 if v4 else 16
    port_at = tcp if c2s else tcp + 2
    out = bytearray(packet)
    raw = bytes(packet[addr_at : addr_at + size])
    port = struct.unpack_from("!H", packet, port_at)[0]
    if c2s:
        address: Address = ipaddress.ip_address(raw)
        out[addr_at : addr_at + size] = _public(address).packed
        struct.pack_into("!H", out, port_at, (port + NAT_PORT_SHIFT) & 0xFFFF)
    else:
        private = _private(ipaddress.ip_address(raw))
        if private is None:
            return packet
        out[addr_at : addr_at + size] = private.packed
        struct.pack_into("!H", out, port_at, (port - NAT_PORT_SHIFT) & 0xFFFF)
    return refresh_checksums(out)


def _private(address: Address) -> Address | None:
    """Undo :func:`_public` (the simulator's client addresses are 10.0.i.1 and fd00:0:i::1)."""
    if address.version == 4:
        offset = int(address) - int(ipaddress.IPv4Address(NAT_BASE))
        return ipaddress.IPv4Address(f"10.0.{offset}.1") if 0 < offset < 256 else None
    offset6 = int(address) - int(ipaddress.IPv6Address(NAT6_BASE))
    return ipaddress.IPv6Address(f"fd00:0:{offset6:x}::1") if 0 < offset6 < 0x10000 else None
