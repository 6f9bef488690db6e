"""MPTCP option codec: one immutable value per option, parsed from and built to wire bytes.

Layouts follow RFC 8684 section 3 (v1), with the RFC 6824 (v0) variants of ADD_ADDR and MP_PRIO.
Byte offsets in the comments count from the start of the option: byte 0 is the TCP option kind
(30), byte 1 the option length, and the high nibble of byte 2 the subtype.

Two rules shape the module:

* :func:`parse_option` never raises. It is context-free: the layout follows from the subtype,
  the length and (for DSS) the flags or (for ADD_ADDR) the low nibble of byte 2. Anything that does
  not fit becomes a :class:`MalformedOption` that says why, so a trace checker can report it.
* Every option stores the raw flag and reserved bits, so ``parse_option(opt.build()) == opt`` and
  ``parse_option(raw).build() == raw`` for any ``raw`` (a :class:`MalformedOption` keeps its bytes).
  The constructors check their own invariants and raise :class:`ValueError` for values that
  cannot be encoded.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Final, TypeAlias

__all__ = [
    "ADD_ADDR_ECHO",
    "DSS_ACK",
    "DSS_ACK64",
    "DSS_DATA_FIN",
    "DSS_DSN64",
    "DSS_MAPPING",
    "KIND_MPTCP",
    "MPC_CHECKSUM_REQUIRED",
    "MPC_EXTENSIBILITY",
    "MPC_HMAC_SHA",
    "MPC_NO_JOIN_TO_SOURCE",
    "OPTION_TYPES",
    "REASON_NAMES",
    "TCPRST_T",
    "TCPRST_U",
    "TCPRST_V",
    "TCPRST_W",
    "AddAddr",
    "Dss",
    "IPAddress",
    "MalformedOption",
    "MpCapable",
    "MpExperimental",
    "MpFail",
    "MpFastclose",
    "MpJoinAck",
    "MpJoinSyn",
    "MpJoinSynAck",
    "MpPrio",
    "MpTcpRst",
    "MptcpOption",
    "RemoveAddr",
    "Subtype",
    "UnknownMptcpOption",
    "dss_expected_length",
    "parse_option",
]

KIND_MPTCP: Final = 30
"""TCP option kind of every MPTCP option (RFC 8684 section 3)."""

_MAX_OPTION_LEN: Final = 255  # the length is one byte; TCP's 40-byte option space is the caller's concern


class Subtype(enum.IntEnum):
    """MPTCP option subtypes (high nibble of byte 2; IANA "MPTCP Option Subtypes")."""

    MP_CAPABLE = 0
    MP_JOIN = 1
    DSS = 2
    ADD_ADDR = 3
    REMOVE_ADDR = 4
    MP_PRIO = 5
    MP_FAIL = 6
    MP_FASTCLOSE = 7
    MP_TCPRST = 8
    MP_EXPERIMENTAL = 15


_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_JOIN_SYN = struct.Struct("!BBBBII")  # kind, len, subtype|rsv|B, address id, token, nonce
_JOIN_SYNACK = struct.Struct("!BBBBQI")  # kind, len, subtype|rsv|B, address id, truncated HMAC, nonce
_HEAD_U64 = struct.Struct("!BBBBQ")  # kind, len, byte 2, byte 3, 64-bit value (MP_FAIL, MP_FASTCLOSE)

_UINT8, _UINT16, _UINT32, _UINT64 = 0xFF, 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF


def _check(name: str, value: int, maximum: int) -> None:
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be in 0..{maximum:#x}, got {value!r}")


def _check_opt(name: str, value: int | None, maximum: int) -> None:
    if value is not None and not 0 <= value <= maximum:
        raise ValueError(f"{name} must be None or in 0..{maximum:#x}, got {value!r}")


# --------------------------------------------------------------------------------------------
# MP_CAPABLE (RFC 8684 section 3.1)
# byte 2: subtype 0 | version; byte 3: flags A B C D E F G H; 4-11 sender's key; 12-19 receiver's
# key; 20-21 data-level length; 22-23 checksum. Valid lengths: 4 (v1 SYN), 12, 20, 22, 24.

MPC_CHECKSUM_REQUIRED: Final = 0x80  # A
MPC_EXTENSIBILITY: Final = 0x40  # B
MPC_NO_JOIN_TO_SOURCE: Final = 0x20  # C (v1)
MPC_HMAC_SHA: Final = 0x01  # H: HMAC-SHA256 in v1, HMAC-SHA1 in v0

_MPC_LENGTHS: Final = (4, 12, 20, 22, 24)


@dataclass(frozen=True, slots=True)
class MpCapable:
    """MP_CAPABLE. Which fields are present sets the length: 4, 12, 20, 22 or 24 bytes."""

    subtype: ClassVar[Subtype] = Subtype.MP_CAPABLE
    version: int  # low nibble of byte 2: 0 = RFC 6824, 1 = RFC 8684
    flags: int  # byte 3, all eight bits as sent
    sender_key: int | None = None  # "Option Sender's Key", bytes 4-11 (length >= 12)
    receiver_key: int | None = None  # "Option Receiver's Key", bytes 12-19 (length >= 20)
    data_len: int | None = None  # data-level length of the implied mapping, bytes 20-21 (length >= 22)
    checksum: int | None = None  # DSS checksum of that data, bytes 22-23 (length 24)

    def __post_init__(self) -> None:
        _check("version", self.version, 0x0F)
        _check("flags", self.flags, _UINT8)
        _check_opt("sender_key", self.sender_key, _UINT64)
        _check_opt("receiver_key", self.receiver_key, _UINT64)
        _check_opt("data_len", self.data_len, _UINT16)
        _check_opt("checksum", self.checksum, _UINT16)
        if self.receiver_key is not None and self.sender_key is None:
            raise ValueError("MP_CAPABLE receiver_key needs sender_key")
        if self.data_len is not None and self.receiver_key is None:
            raise ValueError("MP_CAPABLE data_len needs both keys")
        if self.checksum is not None and self.data_len is None:
            raise ValueError("MP_CAPABLE checksum needs data_len")

    @property
    def length(self) -> int:
        if self.sender_key is None:
            return 4
        if self.receiver_key is None:
            return 12
        if self.data_len is None:
            return 20
        return 22 if self.checksum is None else 24

    @property
    def checksum_required(self) -> bool:
        return bool(self.flags & MPC_CHECKSUM_REQUIRED)

    @property
    def extensibility(self) -> bool:
        return bool(self.flags & MPC_EXTENSIBILITY)

    @property
    def no_join_to_source(self) -> bool:
        return bool(self.flags & MPC_NO_JOIN_TO_SOURCE)

    @property
    def hmac_sha(self) -> bool:
        return bool(self.flags & MPC_HMAC_SHA)

    def build(self) -> bytes:
        out = bytes((KIND_MPTCP, self.length, self.version, self.flags))
        if self.sender_key is not None:
            out += _U64.pack(self.sender_key)
        if self.receiver_key is not None:
            out += _U64.pack(self.receiver_key)
        if self.data_len is not None:
            out += _U16.pack(self.data_len)
        if self.checksum is not None:
            out += _U16.pack(self.checksum)
        return out


def _parse_mp_capable(raw: bytes) -> MptcpOption:
    n = len(raw)
    if n not in _MPC_LENGTHS:
        return MalformedOption(Subtype.MP_CAPABLE, raw, f"MP_CAPABLE length {n} is not one of 4, 12, 20, 22, 24")
    return MpCapable(
        version=raw[2] & 0x0F,
        flags=raw[3],
        sender_key=_U64.unpack_from(raw, 4)[0] if n >= 12 else None,
        receiver_key=_U64.unpack_from(raw, 12)[0] if n >= 20 else None,
        data_len=_U16.unpack_from(raw, 20)[0] if n >= 22 else None,
        checksum=_U16.unpack_from(raw, 22)[0] if n == 24 else None,
    )


# --------------------------------------------------------------------------------------------
# MP_JOIN (RFC 8684 section 3.2). The length tells the three forms apart: 12 SYN, 16 SYN/ACK,
# 24 third ACK. Byte 2 of the SYN forms: subtype 1 | 3 reserved bits (0x0E) | B (0x01).


def _join_byte2(backup: bool, reserved: int) -> int:
    return 0x10 | (reserved << 1) | int(backup)


@dataclass(frozen=True, slots=True)
class MpJoinSyn:
    """MP_JOIN on a SYN (length 12)."""

    subtype: ClassVar[Subtype] = Subtype.MP_JOIN
    backup: bool  # B: the initiator wants this subflow as a backup
    address_id: int  # address ID of the SYN's source address
    token: int  # receiver's token (32 bits)
    nonce: int  # sender's random number (32 bits)
    reserved: int = 0  # the 3 bits between subtype and B

    def __post_init__(self) -> None:
        _check("address_id", self.address_id, _UINT8)
        _check("token", self.token, _UINT32)
        _check("nonce", self.nonce, _UINT32)
        _check("reserved", self.reserved, 0x07)

    @property
    def length(self) -> int:
        return 12

    def build(self) -> bytes:
        return _JOIN_SYN.pack(
            KIND_MPTCP, 12, _join_byte2(self.backup, self.reserved), self.address_id, self.token, self.nonce
        )


@dataclass(frozen=True, slots=True)
class MpJoinSynAck:
    """MP_JOIN on a SYN/ACK (length 16)."""

    subtype: ClassVar[Subtype] = Subtype.MP_JOIN
    backup: bool  # B: the responder wants this subflow as a backup
    address_id: int  # address ID of the SYN/ACK's source address
    truncated_hmac: int  # leftmost 64 bits of the responder's HMAC
    nonce: int  # sender's random number (32 bits)
    reserved: int = 0  # the 3 bits between subtype and B

    def __post_init__(self) -> None:
        _check("address_id", self.address_id, _UINT8)
        _check("truncated_hmac", self.truncated_hmac, _UINT64)
        _check("nonce", self.nonce, _UINT32)
        _check("reserved", self.reserved, 0x07)

    @property
    def length(self) -> int:
        return 16

    def build(self) -> bytes:
        return _JOIN_SYNACK.pack(
            KIND_MPTCP,
            16,
            _join_byte2(self.backup, self.reserved),
            self.address_id,
            self.truncated_hmac,
            self.nonce,
        )


@dataclass(frozen=True, slots=True)
class MpJoinAck:
    """MP_JOIN on the third ACK (length 24)."""

    subtype: ClassVar[Subtype] = Subtype.MP_JOIN
    hmac: bytes  # sender's HMAC: 20 bytes (SHA-256 truncated in v1, full SHA-1 in v0)
    reserved: int = 0  # 12 bits: low nibble of byte 2, then byte 3

    def __post_init__(self) -> None:
        if not isinstance(self.hmac, bytes) or len(self.hmac) != 20:
            raise ValueError(f"MP_JOIN ACK hmac must be 20 bytes, got {self.hmac!r}")
        _check("reserved", self.reserved, 0x0FFF)

    @property
    def length(self) -> int:
        return 24

    def build(self) -> bytes:
        return bytes((KIND_MPTCP, 24, 0x10 | (self.reserved >> 8), self.reserved & 0xFF)) + self.hmac


def _parse_mp_join(raw: bytes) -> MptcpOption:
    n = len(raw)
    if n == 12:
        _, _, b2, address_id, token, nonce = _JOIN_SYN.unpack(raw)
        return MpJoinSyn(bool(b2 & 0x01), address_id, token, nonce, (b2 >> 1) & 0x07)
    if n == 16:
        _, _, b2, address_id, thmac, nonce = _JOIN_SYNACK.unpack(raw)
        return MpJoinSynAck(bool(b2 & 0x01), address_id, thmac, nonce, (b2 >> 1) & 0x07)
    if n == 24:
        return MpJoinAck(raw[4:24], ((raw[2] & 0x0F) << 8) | raw[3])
    return MalformedOption(Subtype.MP_JOIN, raw, f"MP_JOIN length {n} is not one of 12, 16, 24")


# --------------------------------------------------------------------------------------------
# DSS (RFC 8684 section 3.3). byte 2: subtype 2 | reserved nibble; byte 3: 3 reserved bits,
# F m M a A; then Data ACK (4/8), DSN (4/8), relative subflow sequence (4), data-level length (2),
# checksum (2, present only if negotiated, so only the length shows it).

DSS_DATA_FIN: Final = 0x10  # F
DSS_DSN64: Final = 0x08  # m
DSS_MAPPING: Final = 0x04  # M
DSS_ACK64: Final = 0x02  # a
DSS_ACK: Final = 0x01  # A


def dss_expected_length(flags: int) -> int:
    """DSS length implied by the flags, without the optional 2-byte checksum."""
    length = 4
    if flags & DSS_ACK:
        length += 8 if flags & DSS_ACK64 else 4
    if flags & DSS_MAPPING:
        length += (8 if flags & DSS_DSN64 else 4) + 6
    return length


@dataclass(frozen=True, slots=True)
class Dss:
    """Data Sequence Signal: Data ACK and/or a data sequence mapping, plus DATA_FIN."""

    subtype: ClassVar[Subtype] = Subtype.DSS
    flags: int  # byte 3 as sent: reserved 0xE0, F 0x10, m 0x08, M 0x04, a 0x02, A 0x01
    data_ack: int | None = None  # Data ACK as on the wire (32 bits unless a); None iff A is clear
    dsn: int | None = None  # mapping's data sequence number as on the wire (32 bits unless m)
    ssn: int | None = None  # mapping's relative subflow sequence number
    data_len: int | None = None  # mapping's data-level length (includes 1 for DATA_FIN; 0 = infinite)
    checksum: int | None = None  # DSS checksum, only with a mapping and only if negotiated
    reserved: int = 0  # low nibble of byte 2

    def __post_init__(self) -> None:
        flags = self.flags
        _check("flags", flags, _UINT8)
        _check("reserved", self.reserved, 0x0F)
        if flags & DSS_ACK:
            if self.data_ack is None:
                raise ValueError("DSS flag A is set but data_ack is None")
            _check("data_ack", self.data_ack, _UINT64 if flags & DSS_ACK64 else _UINT32)
        elif self.data_ack is not None:
            raise ValueError("DSS data_ack given but flag A is clear")
        mapping = (self.dsn, self.ssn, self.data_len)
        if flags & DSS_MAPPING:
            if self.dsn is None or self.ssn is None or self.data_len is None:
                raise ValueError("DSS flag M is set: dsn, ssn and data_len are all required")
            _check("dsn", self.dsn, _UINT64 if flags & DSS_DSN64 else _UINT32)
            _check("ssn", self.ssn, _UINT32)
            _check("data_len", self.data_len, _UINT16)
            _check_opt("checksum", self.checksum, _UINT16)
        elif mapping != (None, None, None) or self.checksum is not None:
            raise ValueError("DSS mapping fields or checksum given but flag M is clear")

    @property
    def data_fin(self) -> bool:
        return bool(self.flags & DSS_DATA_FIN)

    @property
    def dsn64(self) -> bool:
        return bool(self.flags & DSS_DSN64)

    @property
    def has_mapping(self) -> bool:
        return bool(self.flags & DSS_MAPPING)

    @property
    def ack64(self) -> bool:
        return bool(self.flags & DSS_ACK64)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & DSS_ACK)

    @property
    def is_infinite_mapping(self) -> bool:
        """A mapping with data-level length 0 (RFC 8684 section 3.3.1): fallback to plain TCP."""
        return self.data_len == 0

    @property
    def length(self) -> int:
        return dss_expected_length(self.flags) + (2 if self.checksum is not None else 0)

    def build(self) -> bytes:
        flags = self.flags
        out = bytes((KIND_MPTCP, self.length, 0x20 | self.reserved, flags))
        if self.data_ack is not None:
            out += (_U64 if flags & DSS_ACK64 else _U32).pack(self.data_ack)
        if self.dsn is not None and self.ssn is not None and self.data_len is not None:
            out += (_U64 if flags & DSS_DSN64 else _U32).pack(self.dsn)
            out += _U32.pack(self.ssn) + _U16.pack(self.data_len)
            if self.checksum is not None:
                out += _U16.pack(self.checksum)
        return out


def _parse_dss(raw: bytes) -> MptcpOption:
    n = len(raw)
    if n < 4:
        return MalformedOption(Subtype.DSS, raw, f"DSS length {n} leaves no room for the flags byte")
    flags = raw[3]
    expected = dss_expected_length(flags)
    mapping = flags & DSS_MAPPING
    if n != expected and not (mapping and n == expected + 2):
        allowed = f"{expected} or {expected + 2}" if mapping else str(expected)
        return MalformedOption(
            Subtype.DSS, raw, f"DSS length {n} does not match flags {flags:#04x} (expected {allowed})"
        )
    pos = 4
    data_ack = dsn = ssn = data_len = checksum = None
    if flags & DSS_ACK:
        if flags & DSS_ACK64:
            data_ack = _U64.unpack_from(raw, pos)[0]
            pos += 8
        else:
            data_ack = _U32.unpack_from(raw, pos)[0]
            pos += 4
    if mapping:
        if flags & DSS_DSN64:
            dsn = _U64.unpack_from(raw, pos)[0]
            pos += 8
        else:
            dsn = _U32.unpack_from(raw, pos)[0]
            pos += 4
        ssn = _U32.unpack_from(raw, pos)[0]
        data_len = _U16.unpack_from(raw, pos + 4)[0]
        if n == expected + 2:
            checksum = _U16.unpack_from(raw, pos + 6)[0]
    return _dss_trusted(flags, data_ack, dsn, ssn, data_len, checksum, raw[2] & 0x0F)


def _dss_trusted(
    flags: int,
    data_ack: int | None,
    dsn: int | None,
    ssn: int | None,
    data_len: int | None,
    checksum: int | None,
    reserved: int,
) -> Dss:
    """Build a Dss from parsed fields without re-validating them (hot path: one per segment).

    The parser already guarantees what ``Dss.__post_init__`` checks: every field fits its wire width
    and is present exactly when its flag says so.
    """
    dss: Dss = _object_new(Dss)
    _object_setattr(dss, "flags", flags)
    _object_setattr(dss, "data_ack", data_ack)
    _object_setattr(dss, "dsn", dsn)
    _object_setattr(dss, "ssn", ssn)
    _object_setattr(dss, "data_len", data_len)
    _object_setattr(dss, "checksum", checksum)
    _object_setattr(dss, "reserved", reserved)
    return dss


_object_new = object.__new__
_object_setattr = object.__setattr__


# --------------------------------------------------------------------------------------------
# ADD_ADDR (RFC 8684 section 3.4.1; v0 layout from RFC 6824 section 3.4.1).
# v1 byte 2: subtype 3 | 3 reserved bits | E; v0 byte 2: subtype 3 | IPVer (4 or 6).
# byte 3: address ID; then the address, an optional port, and (v1) an optional truncated HMAC.

ADD_ADDR_ECHO: Final = 0x01

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

# v1 length -> (address bytes, port present, HMAC present). The family comes from the length.
_ADD_ADDR_V1: Final[dict[int, tuple[int, bool, bool]]] = {
    8: (4, False, False),
    10: (4, True, False),
    16: (4, False, True),
    18: (4, True, True),
    20: (16, False, False),
    22: (16, True, False),
    28: (16, False, True),
    30: (16, True, True),
}
# v0 (IPVer nibble, length) -> port present.
_ADD_ADDR_V0: Final[dict[tuple[int, int], bool]] = {
    (4, 8): False,
    (4, 10): True,
    (6, 20): False,
    (6, 22): True,
}


@dataclass(frozen=True, slots=True)
class AddAddr:
    """ADD_ADDR, in the v1 layout (echo bit, optional HMAC) or the v0 layout (IPVer nibble)."""

    subtype: ClassVar[Subtype] = Subtype.ADD_ADDR
    address_id: int
    address: IPAddress
    port: int | None = None  # optional 2-byte port
    echo: bool = False  # v1 E bit: this is the receiver's echo of an ADD_ADDR
    hmac: int | None = None  # v1 truncated HMAC (rightmost 64 bits); expected iff not echo
    v0: bool = False  # RFC 6824 layout: low nibble of byte 2 is the IP version, no echo, no HMAC
    reserved: int = 0  # v1: the 3 bits between subtype and E (always 0 for v0)

    def __post_init__(self) -> None:
        _check("address_id", self.address_id, _UINT8)
        if not isinstance(self.address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise ValueError(f"ADD_ADDR address must be an IPv4Address or IPv6Address, got {self.address!r}")
        _check_opt("port", self.port, _UINT16)
        _check_opt("hmac", self.hmac, _UINT64)
        _check("reserved", self.reserved, 0x07)
        if self.v0:
            if self.echo or self.hmac is not None or self.reserved:
                raise ValueError("ADD_ADDR v0 has no echo bit, HMAC or reserved bits")
        elif not self.echo and self.reserved in (2, 3):
            # The low nibble would read 4 or 6, which is the v0 IPVer marker.
            raise ValueError(f"ADD_ADDR v1 reserved={self.reserved} with E=0 is indistinguishable from v0")

    @property
    def length(self) -> int:
        return (
            4
            + (4 if self.address.version == 4 else 16)
            + (2 if self.port is not None else 0)
            + (8 if self.hmac is not None else 0)
        )

    def build(self) -> bytes:
        nibble = self.address.version if self.v0 else (self.reserved << 1) | int(self.echo)
        out = bytes((KIND_MPTCP, self.length, 0x30 | nibble, self.address_id)) + self.address.packed
        if self.port is not None:
            out += _U16.pack(self.port)
        if self.hmac is not None:
            out += _U64.pack(self.hmac)
        return out


def _parse_add_addr(raw: bytes) -> MptcpOption:
    n = len(raw)
    nibble = raw[2] & 0x0F
    if nibble in (4, 6):
        v0_port = _ADD_ADDR_V0.get((nibble, n))
        if v0_port is None:
            return MalformedOption(
                Subtype.ADD_ADDR,
                raw,
                f"ADD_ADDR v0 (IPVer {nibble}) length {n} is not valid (IPv4: 8 or 10, IPv6: 20 or 22)",
            )
        addr: IPAddress
        if nibble == 4:
            addr = ipaddress.IPv4Address(raw[4:8])
            pos = 8
        else:
            addr = ipaddress.IPv6Address(raw[4:20])
            pos = 20
        port = _U16.unpack_from(raw, pos)[0] if v0_port else None
        return AddAddr(raw[3], addr, port, v0=True)
    layout = _ADD_ADDR_V1.get(n)
    if layout is None:
        return MalformedOption(
            Subtype.ADD_ADDR, raw, f"ADD_ADDR length {n} is not one of 8, 10, 16, 18, 20, 22, 28, 30"
        )
    addr_len, has_port, has_hmac = layout
    pos = 4 + addr_len
    addr = ipaddress.IPv4Address(raw[4:pos]) if addr_len == 4 else ipaddress.IPv6Address(raw[4:pos])
    port = None
    if has_port:
        port = _U16.unpack_from(raw, pos)[0]
        pos += 2
    hmac = _U64.unpack_from(raw, pos)[0] if has_hmac else None
    return AddAddr(raw[3], addr, port, bool(nibble & ADD_ADDR_ECHO), hmac, False, nibble >> 1)


# --------------------------------------------------------------------------------------------
# REMOVE_ADDR (RFC 8684 section 3.4.2): byte 2 subtype 4 | reserved nibble; one address ID per
# following byte. Length 3 + n, n >= 1.


@dataclass(frozen=True, slots=True)
class RemoveAddr:
    """REMOVE_ADDR with one or more address IDs."""

    subtype: ClassVar[Subtype] = Subtype.REMOVE_ADDR
    address_ids: tuple[int, ...]
    reserved: int = 0  # low nibble of byte 2

    def __post_init__(self) -> None:
        ids = tuple(self.address_ids)
        object.__setattr__(self, "address_ids", ids)  # accept any iterable, store a tuple
        if not 1 <= len(ids) <= _MAX_OPTION_LEN - 3:
            raise ValueError(f"REMOVE_ADDR needs 1..{_MAX_OPTION_LEN - 3} address IDs, got {len(ids)}")
        for address_id in ids:
            _check("address_id", address_id, _UINT8)
        _check("reserved", self.reserved, 0x0F)

    @property
    def length(self) -> int:
        return 3 + len(self.address_ids)

    def build(self) -> bytes:
        return bytes((KIND_MPTCP, self.length, 0x40 | self.reserved, *self.address_ids))


def _parse_remove_addr(raw: bytes) -> MptcpOption:
    if len(raw) < 4:
        return MalformedOption(Subtype.REMOVE_ADDR, raw, "REMOVE_ADDR length 3 carries no address ID")
    return RemoveAddr(tuple(raw[3:]), raw[2] & 0x0F)


# --------------------------------------------------------------------------------------------
# MP_PRIO (RFC 8684 section 3.3.8): byte 2 subtype 5 | 3 reserved bits | B. Length 3; RFC 6824
# also allowed length 4 with an address ID in byte 3.


@dataclass(frozen=True, slots=True)
class MpPrio:
    """MP_PRIO: change the backup priority of a subflow (v0 length 4 names an address ID)."""

    subtype: ClassVar[Subtype] = Subtype.MP_PRIO
    backup: bool  # B
    address_id: int | None = None  # only in the v0 length-4 form
    reserved: int = 0  # the 3 bits between subtype and B

    def __post_init__(self) -> None:
        _check_opt("address_id", self.address_id, _UINT8)
        _check("reserved", self.reserved, 0x07)

    @property
    def length(self) -> int:
        return 3 if self.address_id is None else 4

    def build(self) -> bytes:
        out = bytes((KIND_MPTCP, self.length, 0x50 | (self.reserved << 1) | int(self.backup)))
        if self.address_id is not None:
            out += bytes((self.address_id,))
        return out


def _parse_mp_prio(raw: bytes) -> MptcpOption:
    n = len(raw)
    if n not in (3, 4):
        return MalformedOption(Subtype.MP_PRIO, raw, f"MP_PRIO length {n} is not 3 (or 4 in v0)")
    b2 = raw[2]
    return MpPrio(bool(b2 & 0x01), raw[3] if n == 4 else None, (b2 >> 1) & 0x07)


# --------------------------------------------------------------------------------------------
# MP_FAIL (RFC 8684 section 3.7) and MP_FASTCLOSE (section 3.5): length 12, 12 reserved bits
# (low nibble of byte 2 and byte 3), then a 64-bit value.


@dataclass(frozen=True, slots=True)
class MpFail:
    """MP_FAIL: the receiver detected a checksum failure at this 64-bit DSN."""

    subtype: ClassVar[Subtype] = Subtype.MP_FAIL
    dsn: int
    reserved: int = 0  # 12 bits: low nibble of byte 2, then byte 3

    def __post_init__(self) -> None:
        _check("dsn", self.dsn, _UINT64)
        _check("reserved", self.reserved, 0x0FFF)

    @property
    def length(self) -> int:
        return 12

    def build(self) -> bytes:
        return _HEAD_U64.pack(KIND_MPTCP, 12, 0x60 | (self.reserved >> 8), self.reserved & 0xFF, self.dsn)


@dataclass(frozen=True, slots=True)
class MpFastclose:
    """MP_FASTCLOSE: carries the key of the host that receives the option."""

    subtype: ClassVar[Subtype] = Subtype.MP_FASTCLOSE
    receiver_key: int
    reserved: int = 0  # 12 bits: low nibble of byte 2, then byte 3

    def __post_init__(self) -> None:
        _check("receiver_key", self.receiver_key, _UINT64)
        _check("reserved", self.reserved, 0x0FFF)

    @property
    def length(self) -> int:
        return 12

    def build(self) -> bytes:
        return _HEAD_U64.pack(KIND_MPTCP, 12, 0x70 | (self.reserved >> 8), self.reserved & 0xFF, self.receiver_key)


def _parse_mp_fail(raw: bytes) -> MptcpOption:
    if len(raw) != 12:
        return MalformedOption(Subtype.MP_FAIL, raw, f"MP_FAIL length {len(raw)} is not 12")
    _, _, b2, b3, dsn = _HEAD_U64.unpack(raw)
    return MpFail(dsn, ((b2 & 0x0F) << 8) | b3)


def _parse_mp_fastclose(raw: bytes) -> MptcpOption:
    if len(raw) != 12:
        return MalformedOption(Subtype.MP_FASTCLOSE, raw, f"MP_FASTCLOSE length {len(raw)} is not 12")
    _, _, b2, b3, key = _HEAD_U64.unpack(raw)
    return MpFastclose(key, ((b2 & 0x0F) << 8) | b3)


# --------------------------------------------------------------------------------------------
# MP_TCPRST (RFC 8684 section 3.6): length 4; byte 2 subtype 8 | U V W T; byte 3 reason.

TCPRST_U: Final = 0x08
TCPRST_V: Final = 0x04
TCPRST_W: Final = 0x02
TCPRST_T: Final = 0x01  # transient error

REASON_NAMES: Final[dict[int, str]] = {
    # RFC 8684 section 3.6 / IANA "MPTCP MP_TCPRST Reason Codes"
    0x00: "Unspecified error",
    0x01: "MPTCP-specific error",
    0x02: "Lack of resources",
    0x03: "Administratively prohibited",
    0x04: "Too much outstanding data",
    0x05: "Unacceptable performance",
    0x06: "Middlebox interference",
}


@dataclass(frozen=True, slots=True)
class MpTcpRst:
    """MP_TCPRST: why a subflow was reset (only meaningful on a TCP RST)."""

    subtype: ClassVar[Subtype] = Subtype.MP_TCPRST
    REASON_NAMES: ClassVar[dict[int, str]] = REASON_NAMES
    flags: int  # low nibble of byte 2: U 0x08, V 0x04, W 0x02 (reserved), T 0x01 (transient)
    reason: int  # byte 3, see REASON_NAMES

    def __post_init__(self) -> None:
        _check("flags", self.flags, 0x0F)
        _check("reason", self.reason, _UINT8)

    @property
    def transient(self) -> bool:
        return bool(self.flags & TCPRST_T)

    @property
    def reason_name(self) -> str:
        return REASON_NAMES.get(self.reason, f"unassigned reason {self.reason:#04x}")

    @property
    def length(self) -> int:
        return 4

    def build(self) -> bytes:
        return bytes((KIND_MPTCP, 4, 0x80 | self.flags, self.reason))


def _parse_mp_tcprst(raw: bytes) -> MptcpOption:
    if len(raw) != 4:
        return MalformedOption(Subtype.MP_TCPRST, raw, f"MP_TCPRST length {len(raw)} is not 4")
    return MpTcpRst(raw[2] & 0x0F, raw[3])


# --------------------------------------------------------------------------------------------
# MP_EXPERIMENTAL (subtype 0xF, private use) and unassigned subtypes 0x9-0xE: opaque.


@dataclass(frozen=True, slots=True)
class MpExperimental:
    """MP_EXPERIMENTAL (subtype 0xF): opaque private-use contents."""

    subtype: ClassVar[Subtype] = Subtype.MP_EXPERIMENTAL
    data: bytes  # the bytes after byte 2
    nibble: int = 0  # low nibble of byte 2

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes) or len(self.data) > _MAX_OPTION_LEN - 3:
            raise ValueError(f"MP_EXPERIMENTAL data must be bytes of at most {_MAX_OPTION_LEN - 3} bytes")
        _check("nibble", self.nibble, 0x0F)

    @property
    def length(self) -> int:
        return 3 + len(self.data)

    def build(self) -> bytes:
        return bytes((KIND_MPTCP, self.length, 0xF0 | self.nibble)) + self.data


def _parse_mp_experimental(raw: bytes) -> MptcpOption:
    return MpExperimental(raw[3:], raw[2] & 0x0F)


@dataclass(frozen=True, slots=True)
class UnknownMptcpOption:
    """An option with an unassigned subtype (0x9-0xE), kept whole so no byte is lost."""

    subtype: int  # 9..14
    raw: bytes  # the whole option, kind and length included

    def __post_init__(self) -> None:
        if not 9 <= self.subtype <= 14:
            raise ValueError(f"unassigned MPTCP subtypes are 9..14, got {self.subtype!r}")
        raw = self.raw
        if (
            not isinstance(raw, bytes)
            or len(raw) < 3
            or raw[0] != KIND_MPTCP
            or raw[1] != len(raw)
            or raw[2] >> 4 != self.subtype
        ):
            raise ValueError(f"raw {raw!r} is not a well-formed MPTCP option of subtype {self.subtype}")

    @property
    def length(self) -> int:
        return len(self.raw)

    def build(self) -> bytes:
        return self.raw


@dataclass(frozen=True, slots=True)
class MalformedOption:
    """Bytes that do not form a valid option of their subtype; ``reason`` says why."""

    subtype: int | None  # None when there is no subtype byte (or the kind is not MPTCP)
    raw: bytes  # the bytes as given
    reason: str

    @property
    def length(self) -> int:
        return len(self.raw)

    def build(self) -> bytes:
        return self.raw


MptcpOption: TypeAlias = (
    MpCapable
    | MpJoinSyn
    | MpJoinSynAck
    | MpJoinAck
    | Dss
    | AddAddr
    | RemoveAddr
    | MpPrio
    | MpFail
    | MpFastclose
    | MpTcpRst
    | MpExperimental
    | UnknownMptcpOption
    | MalformedOption
)
"""Any value :func:`parse_option` returns."""

OPTION_TYPES: Final = (
    MpCapable,
    MpJoinSyn,
    MpJoinSynAck,
    MpJoinAck,
    Dss,
    AddAddr,
    RemoveAddr,
    MpPrio,
    MpFail,
    MpFastclose,
    MpTcpRst,
    MpExperimental,
    UnknownMptcpOption,
    MalformedOption,
)
"""The classes of :data:`MptcpOption`, for ``isinstance`` checks."""

_PARSERS: Final[dict[int, Callable[[bytes], MptcpOption]]] = {
    Subtype.MP_CAPABLE: _parse_mp_capable,
    Subtype.MP_JOIN: _parse_mp_join,
    Subtype.DSS: _parse_dss,
    Subtype.ADD_ADDR: _parse_add_addr,
    Subtype.REMOVE_ADDR: _parse_remove_addr,
    Subtype.MP_PRIO: _parse_mp_prio,
    Subtype.MP_FAIL: _parse_mp_fail,
    Subtype.MP_FASTCLOSE: _parse_mp_fastclose,
    Subtype.MP_TCPRST: _parse_mp_tcprst,
    Subtype.MP_EXPERIMENTAL: _parse_mp_experimental,
}


def _subtype_or_int(value: int) -> int:
    return Subtype(value) if value in _PARSERS else value


def parse_option(raw: bytes) -> MptcpOption:
    """Decode one whole MPTCP option (kind byte 30 and length byte included).

    Never raises: input that is not a valid option gives a :class:`MalformedOption`.
    """
    raw = bytes(raw)
    n = len(raw)
    if n < 2:
        return MalformedOption(None, raw, f"{n}-byte option has no room for kind and length")
    if raw[0] != KIND_MPTCP:
        return MalformedOption(None, raw, f"option kind {raw[0]} is not MPTCP ({KIND_MPTCP})")
    if raw[1] != n:
        return MalformedOption(
            _subtype_or_int(raw[2] >> 4) if n >= 3 else None,
            raw,
            f"length byte {raw[1]} does not match the {n} bytes given",
        )
    if n < 3:
        return MalformedOption(None, raw, "option length 2 leaves no room for the subtype")
    subtype = raw[2] >> 4
    parser = _PARSERS.get(subtype)
    if parser is None:
        return UnknownMptcpOption(subtype, raw)
    return parser(raw)
