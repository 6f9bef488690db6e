"""Sequence-number arithmetic shared by the stages: serial comparison and 32 → 64-bit expansion."""

from __future__ import annotations

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1


def expand32(value: int, reference: int) -> int:
    """The 64-bit number whose low 32 bits are ``value``, nearest ``reference`` (RFC 8684 §3.3.1).

    This is how a receiver turns a 4-byte DSN or Data ACK into the full 64-bit value; Linux's
    ``__mptcp_expand_seq`` keeps the reference's upper half and corrects by ±2^32 across a wrap.
    """
    candidate = (reference & ~MASK32) | value
    diff = (candidate - reference) & MASK64
    if diff >= 1 << 63:
        if (reference - candidate) & MASK64 > 1 << 31:
            candidate += 1 << 32
    elif diff > 1 << 31:
        candidate -= 1 << 32
    return candidate & MASK64


def serial_lt(a: int, b: int, bits: int = 64) -> bool:
    """``a < b`` in serial-number arithmetic modulo 2^bits (RFC 1982)."""
    half = 1 << (bits - 1)
    return a != b and ((b - a) & ((1 << bits) - 1)) < half


def serial_gt(a: int, b: int) -> bool:
    """``a > b`` for 64-bit serial numbers (the hot-path form of ``serial_lt(b, a)``)."""
    return 0 < ((a - b) & MASK64) < 1 << 63


def unwrap32(value: int, reference: int) -> int:
    """A 32-bit relative sequence number as an unbounded integer, nearest ``reference``.

    Unlike :func:`expand32` the result is not reduced modulo 2^64: relative subflow sequence numbers
    start near 0 and may step just below it, and plain integer comparison must keep working.
    """
    unwrapped = (reference & ~MASK32) | value
    if unwrapped - reference > 1 << 31:
        unwrapped -= 1 << 32
    elif reference - unwrapped > 1 << 31:
        unwrapped += 1 << 32
    return unwrapped


def unwrap(value: int, reference: int, bits: int) -> int:
    """The unbounded integer congruent to ``value`` mod 2^bits closest to ``reference``.

    The endpoint keeps sequence numbers as offsets that never wrap; only the wire carries them modulo
    2^32 (subflow) or 2^64 (data level).
    """
    modulus = 1 << bits
    half = modulus >> 1
    candidate = reference - (reference % modulus) + (value % modulus)
    if candidate - reference > half:
        candidate -= modulus
    elif reference - candidate > half:
        candidate += modulus
    return candidate


def unwrap64(value: int, reference: int) -> int:
    return unwrap(value, reference, 64)


# Two DSNs this close lie in one data stream: IDSNs are hash outputs, so unrelated connections are
# 2^64 apart on average. Used to link subflows (and their bytes) whose handshake was not captured.
DSN_LINK_DISTANCE = 1 << 40


def dsn_near(value: int, reference: int) -> bool:
    distance = (value - reference) & MASK64
    return distance < DSN_LINK_DISTANCE or (1 << 64) - distance < DSN_LINK_DISTANCE
