"""Damage captures the way broken systems do (cut files, flipped bits, editcap -E byte errors), and judge the result.

Shared by the truncation, corruption and fuzz tests: an analysis of damaged input must finish, report the
damage, and never hit an internal error.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from analyzer.model import Analysis
from analyzer.pipeline import analyze

PCAP_HEADER = 24
RECORD_HEADER = 16


def record_boundaries(data: bytes) -> list[int]:
    """Byte offsets at which each pcap record starts, plus the end of the file."""
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offsets, offset = [], PCAP_HEADER
    while offset + RECORD_HEADER <= len(data):
        offsets.append(offset)
        (caplen,) = struct.unpack_from(order + "I", data, offset + 8)
        offset += RECORD_HEADER + caplen
    offsets.append(min(offset, len(data)))
    return offsets


def flip_bits(data: bytes, count: int, rng: random.Random, start: int = PCAP_HEADER) -> bytes:
    """``count`` random single-bit flips past the file header."""
    out = bytearray(data)
    for _ in range(count):
        pos = rng.randrange(start, len(out))
        out[pos] ^= 1 << rng.randrange(8)
    return bytes(out)


def byte_errors(data: bytes, rate: float, rng: random.Random, start: int = PCAP_HEADER) -> bytes:
    """editcap -E style: each byte past the file header replaced by a random one with probability ``rate``."""
    out = bytearray(data)
    count = max(1, int((len(out) - start) * rate))
    for _ in range(count):
        out[rng.randrange(start, len(out))] = rng.randrange(256)
    return bytes(out)


def analyze_bytes(data: bytes, directory: Path, name: str = "damaged.pcap") -> Analysis:
    path = directory / name
    path.write_bytes(data)
    return analyze(str(path))


def assert_sound(analysis: Analysis) -> None:
    """What every damaged input must give: no internal error, and every finding names a frame or the capture."""
    internal = [e for e in analysis.trace.errors if "internal error" in e]
    assert not internal, internal
    assert not [f for f in analysis.findings if f.rule == "CHECKER-001"], "a rule family crashed"
    for finding in analysis.findings:
        assert finding.frames or finding.rule in ("CAPTURE-001", "LIMIT-001"), finding


def fingerprint(analysis: Analysis, ignore: tuple[str, ...] = ("CAPTURE-001",)) -> tuple[object, ...]:
    """What must not change when only damage past the intact part differs: connections, subflows, findings."""
    conns = tuple(
        (c.id, c.version, c.fallback, tuple((sf.id, sf.client, sf.server, sf.kind, sf.packets) for sf in c.subflows))
        for c in analysis.connections
    )
    findings = tuple(
        sorted((f.rule, f.severity.label, tuple(f.frames), f.connection, f.subflow, f.message)
               for f in analysis.findings if f.rule not in ignore)
    )  # fmt: skip
    flows = tuple((sf.client, sf.server, sf.packets) for sf in analysis.tcp_flows)
    return conns, findings, flows, analysis.trace.packets
