"""Serial-number arithmetic for the 32-bit subflow and 64-bit data sequence spaces (RFC 1982 style).

Inside the endpoint, sequence numbers are *relative offsets* that never wrap (Python ints); only
the wire carries values modulo 2^32 or 2^64. These helpers convert between the two.
"""

from __future__ import annotations

from typing import Final

MASK32: Final = (1 << 32) - 1
MASK64: Final = (1 << 64) - 1


def unwrap(value: int, reference: int, bits: int) -> int:
    """The unbounded integer congruent to ``value`` mod 2^bits that lies closest to ``reference``."""
    modulus = 1 << bits
    half = modulus >> 1
    base = reference - (reference % modulus)
    candidate = base + (value % modulus)
    if candidate - reference > half:
        candidate -= modulus
    elif reference - candidate > half:
        candidate += modulus
    return candidate


def unwrap32(value: int, reference: int) -> int:
    return unwrap(value, reference, 32)


def unwrap64(value: int, reference: int) -> int:
    return unwrap(value, reference, 64)
