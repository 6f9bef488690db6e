"""MPTCP crypto: key hashes, tokens, IDSNs, the MP_JOIN and ADD_ADDR HMACs, and the DSS checksum.

Pure functions of integers and bytes (RFC 8684 sections 3.1, 3.2, 3.3.1, 3.4.1; RFC 6824 for v0):

* keys are 64-bit integers, hashed and used as HMAC keys as 8 big-endian bytes;
* v1 uses SHA-256 / HMAC-SHA256, v0 uses SHA-1 / HMAC-SHA1;
* whoever computes an HMAC puts its own key first and its own nonce first.

The DSS checksum is the 16-bit ones'-complement "Internet checksum" (RFC 1071) over a 16-byte
pseudo-header (64-bit DSN, relative subflow sequence number, data-level length, two zero bytes)
followed by all payload bytes of the mapping. :class:`ChecksumAccumulator` sums a mapping that
arrives in several segments of any length, odd ones included.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Callable, Iterable
from typing import Any, Final

__all__ = [
    "ChecksumAccumulator",
    "add_addr_hmac",
    "add_addr_hmac_digest",
    "dss_checksum",
    "dss_checksum_ok",
    "idsn_from_key",
    "join_ack_hmac",
    "join_hmac",
    "join_synack_truncated_hmac",
    "key_sha",
    "token_from_key",
]

_U64 = struct.Struct("!Q")
_NONCES = struct.Struct("!II")
_PSEUDO_HEADER = struct.Struct("!QIHH")  # DSN (64), relative SSN (32), data-level length (16), zero (16)
_UINT64: Final = 0xFFFF_FFFF_FFFF_FFFF
_MOD: Final = 0xFFFF  # 2**16 == 1 (mod 0xFFFF), so a big-endian integer's residue is its 16-bit word sum


def _hash(version: int) -> Callable[..., Any]:
    if version == 1:
        return hashlib.sha256
    if version == 0:
        return hashlib.sha1
    raise ValueError(f"MPTCP version must be 0 or 1, got {version!r}")


def _key_bytes(key: int) -> bytes:
    if not 0 <= key <= _UINT64:
        raise ValueError(f"MPTCP keys are 64-bit, got {key!r}")
    return _U64.pack(key)


def key_sha(key: int, version: int) -> bytes:
    """SHA-256 (v1) or SHA-1 (v0) of the key as 8 big-endian bytes (RFC 8684 section 3.1)."""
    digest: bytes = _hash(version)(_key_bytes(key)).digest()
    return digest


def token_from_key(key: int, version: int = 1) -> int:
    """The connection token: the most significant 32 bits of the key's hash."""
    return int.from_bytes(key_sha(key, version)[:4], "big")


def idsn_from_key(key: int, version: int = 1) -> int:
    """The initial data sequence number of data sent by the key's owner: the hash's last 64 bits."""
    return int.from_bytes(key_sha(key, version)[-8:], "big")


def join_hmac(key_local: int, key_remote: int, nonce_local: int, nonce_remote: int, version: int = 1) -> bytes:
    """Full MP_JOIN HMAC (RFC 8684 section 3.2): key = local ‖ remote key, message = local ‖ remote nonce.

    "Local" is the host that sends the HMAC.
    """
    message = _NONCES.pack(nonce_local, nonce_remote)
    return hmac.new(_key_bytes(key_local) + _key_bytes(key_remote), message, _hash(version)).digest()


def join_synack_truncated_hmac(
    key_responder: int, key_initiator: int, nonce_responder: int, nonce_initiator: int, version: int = 1
) -> int:
    """The responder's truncated HMAC in the MP_JOIN SYN/ACK: the leftmost 64 bits."""
    digest = join_hmac(key_responder, key_initiator, nonce_responder, nonce_initiator, version)
    return int.from_bytes(digest[:8], "big")


def join_ack_hmac(
    key_initiator: int, key_responder: int, nonce_initiator: int, nonce_responder: int, version: int = 1
) -> bytes:
    """The initiator's HMAC in the MP_JOIN third ACK: 20 bytes (leftmost 160 bits in v1)."""
    return join_hmac(key_initiator, key_responder, nonce_initiator, nonce_responder, version)[:20]


def add_addr_hmac_digest(
    key_sender: int,
    key_receiver: int,
    address_id: int,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int | None,
) -> bytes:
    """The full 32-byte HMAC-SHA256 behind the ADD_ADDR truncated HMAC (see :func:`add_addr_hmac`).

    Useful to recognise implementations that sent the wrong 64 bits of it.
    """
    if not 0 <= address_id <= 0xFF:
        raise ValueError(f"address_id must be 0..255, got {address_id!r}")
    port_value = 0 if port is None else port
    if not 0 <= port_value <= 0xFFFF:
        raise ValueError(f"port must be 0..65535, got {port!r}")
    message = bytes((address_id,)) + address.packed + port_value.to_bytes(2, "big")
    return hmac.new(_key_bytes(key_sender) + _key_bytes(key_receiver), message, hashlib.sha256).digest()


def add_addr_hmac(
    key_sender: int,
    key_receiver: int,
    address_id: int,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    port: int | None,
) -> int:
    """The v1 ADD_ADDR truncated HMAC (RFC 8684 section 3.4.1): rightmost 64 bits of
    HMAC-SHA256(key = sender ‖ receiver key, message = address ID ‖ address ‖ port).

    The message always has a 2-byte port; it is zero when the option carries no port.
    """
    digest = add_addr_hmac_digest(key_sender, key_receiver, address_id, address, port)
    return int.from_bytes(digest[-8:], "big")


def internet_checksum(data: bytes) -> int:
    """RFC 1071 ones'-complement sum of 16-bit words (odd length padded with a zero byte), complemented.

    The IP and TCP checksums of every packet the endpoint, the simulator, the lab tools and the tests write.
    """
    if len(data) % 2:
        data += b"\x00"
    total = int(sum(struct.unpack(f"!{len(data) // 2}H", data)))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(dsn64: int, rel_ssn: int, data_len: int) -> bytes:
    if not 0 <= dsn64 <= _UINT64:
        raise ValueError(f"the checksum's DSN is always the full 64-bit value, got {dsn64!r}")
    if not 0 <= rel_ssn <= 0xFFFF_FFFF:
        raise ValueError(f"rel_ssn must be 32-bit, got {rel_ssn!r}")
    if not 0 <= data_len <= 0xFFFF:
        raise ValueError(f"data_len must be 16-bit, got {data_len!r}")
    return _PSEUDO_HEADER.pack(dsn64, rel_ssn, data_len, 0)


class ChecksumAccumulator:
    """Running ones'-complement sum of a mapping's payload, fed piece by piece.

    Pieces may have any length: the sum tracks whether the bytes so far end mid-word, so the
    result equals one sum over the concatenation (RFC 1071 byte-order independence). Each
    :meth:`update` costs two C-level passes over the piece, with no per-byte Python loop.
    """

    __slots__ = ("_nbytes", "_nonzero", "_residue")

    def __init__(self) -> None:
        self._residue = 0  # the concatenated bytes, read as one big-endian integer, modulo 0xFFFF
        self._nbytes = 0
        self._nonzero = False  # ones'-complement sums of nonzero data never fold to 0 ("-0" is 0xFFFF)

    @property
    def nbytes(self) -> int:
        """How many payload bytes have been added."""
        return self._nbytes

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Append the next payload bytes of the mapping."""
        n = len(data)
        if not n:
            return
        value = int.from_bytes(data, "big")
        # Appending n bytes shifts what came before by 8*n bits; 256**n is 1 or 256 modulo 0xFFFF.
        self._residue = (self._residue * (256 if n & 1 else 1) + value) % _MOD
        self._nbytes += n
        if value:
            self._nonzero = True

    def _payload_sum(self) -> tuple[int, bool]:
        # An odd total is padded with one zero byte at the end: one more shift by 8 bits.
        residue = self._residue * 256 if self._nbytes & 1 else self._residue
        return residue, self._nonzero

    def _fold(self, header: bytes, extra: int) -> int:
        residue, nonzero = self._payload_sum()
        header_value = int.from_bytes(header, "big")
        total = residue + header_value + extra
        folded = total % _MOD
        if folded == 0 and (nonzero or header_value or extra):
            folded = 0xFFFF
        return folded

    def finish(self, dsn64: int, rel_ssn: int, data_len: int) -> int:
        """The checksum to put in the option for this mapping (the accumulator stays usable)."""
        return ~self._fold(_pseudo_header(dsn64, rel_ssn, data_len), 0) & 0xFFFF

    def verify(self, dsn64: int, rel_ssn: int, data_len: int, checksum: int) -> bool:
        """True if ``checksum`` is valid: the sum including it folds to 0xFFFF (RFC 1071)."""
        if not 0 <= checksum <= 0xFFFF:
            return False
        return self._fold(_pseudo_header(dsn64, rel_ssn, data_len), checksum) == 0xFFFF


def _accumulate(payload: bytes | bytearray | memoryview | Iterable[bytes]) -> ChecksumAccumulator:
    acc = ChecksumAccumulator()
    if isinstance(payload, bytes | bytearray | memoryview):
        acc.update(payload)
    else:
        for piece in payload:
            acc.update(piece)
    return acc


def dss_checksum(
    dsn64: int, rel_ssn: int, data_len: int, payload: bytes | bytearray | memoryview | Iterable[bytes]
) -> int:
    """The DSS checksum of a mapping (RFC 8684 section 3.3.1), as carried in the option.

    ``dsn64`` is the full 64-bit DSN even if the option carried 32 bits; ``data_len`` is the
    data-level length as sent (it counts the DATA_FIN); ``payload`` is all of the mapping's bytes,
    as one buffer or as pieces in subflow-sequence order.
    """
    return _accumulate(payload).finish(dsn64, rel_ssn, data_len)


def dss_checksum_ok(
    dsn64: int,
    rel_ssn: int,
    data_len: int,
    payload: bytes | bytearray | memoryview | Iterable[bytes],
    checksum: int,
) -> bool:
    """True if ``checksum`` verifies for this mapping and payload."""
    return _accumulate(payload).verify(dsn64, rel_ssn, data_len, checksum)
