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
