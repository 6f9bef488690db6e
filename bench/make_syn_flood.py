#!/usr/bin/env python3
"""Generate a SYN-flood capture: N MP_CAPABLE SYNs, each from a distinct (address, port).

Why: every SYN opens a half-open connection, so this trace measures the analyzer's cost per
tracked connection rather than per packet.  No handshake completes; no data flows.  Written with
plain ``struct`` (no root, no lab) so 200,000 SYNs take a second or two.  Output: a pcap with
Ethernet framing, IPv4, TCP with MSS, SACK-permitted, timestamps, window scale and MP_CAPABLE
(v1: 4 bytes, no key; ``--version 0``: 12 bytes with the client's key).

    python3 bench/make_syn_flood.py 200000 bench/out/synflood-200k.pcap
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

from analyzer.mptcp.crypto import internet_checksum

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # µs, LINKTYPE_ETHERNET
ETH_HEADER = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
FIRST_PORT, LAST_PORT = 1024, 65535
SERVER_IP = bytes([10, 210, 255, 1])
SERVER_PORT = 443
START_TIME = 1_700_000_000


def _mp_capable(version: int, index: int) -> bytes:
    """MP_CAPABLE for a SYN: v1 carries no key, v0 the sender's 64-bit key."""
    if version == 0:
        key = (0x9E3779B97F4A7C15 * (index + 1)) & 0xFFFFFFFFFFFFFFFF
        return struct.pack("!BBBBQ", 30, 12, 0x00, 0x81, key)
    return struct.pack("!BBBB", 30, 4, 0x01, 0x81)


def syn_packet(index: int, version: int) -> bytes:
    """One Ethernet frame: the SYN of the ``index``-th client (distinct source address/port)."""
    ports = LAST_PORT - FIRST_PORT + 1
    host, port = divmod(index, ports)
    src = bytes([10, 210, (host >> 8) & 0xFF, (host & 0xFF) + 1])
    sport = FIRST_PORT + port
    options = (
        struct.pack("!BBH", 2, 4, 1460)
        + b"\x04\x02"  # MSS, SACK permitted
        + struct.pack("!BBII", 8, 10, index & 0xFFFFFFFF, 0)  # timestamps
        + b"\x01"
        + struct.pack("!BBB", 3, 3, 7)  # NOP, window scale
        + _mp_capable(version, index)
    )
    options += b"\x01" * (-len(options) % 4)
    seq = (index * 2654435761) & 0xFFFFFFFF
    tcp = struct.pack("!HHIIBBHHH", sport, SERVER_PORT, seq, 0, (20 + len(options)) << 2, 0x02, 64240, 0, 0)
    tcp += options
    pseudo = src + SERVER_IP + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", internet_checksum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), index & 0xFFFF, 0x4000, 64, 6, 0, src, SERVER_IP)
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    return ETH_HEADER + ip + tcp


def records(count: int, version: int, gap_us: int) -> Iterator[bytes]:
    """pcap records, one SYN each, ``gap_us`` apart."""
    for index in range(count):
        frame = syn_packet(index, version)
        stamp = index * gap_us
        yield struct.pack("<IIII", START_TIME + stamp // 1_000_000, stamp % 1_000_000, len(frame), len(frame)) + frame


def write(path: Path, count: int, version: int = 1, gap_us: int = 10) -> Path:
    """Write the capture; returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(PCAP_HEADER)
        for record in records(count, version, gap_us):
            fh.write(record)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("count", type=int, help="number of SYNs (= half-open connections)")
    ap.add_argument("output", type=Path)
    ap.add_argument("--version", type=int, choices=(0, 1), default=1, help="MP_CAPABLE version (default 1)")
    ap.add_argument("--gap-us", type=int, default=10, help="microseconds between SYNs (default 10)")
    ns = ap.parse_args(argv)
    write(ns.output, ns.count, ns.version, ns.gap_us)
    print(f"{ns.output}: {ns.count} MP_CAPABLE v{ns.version} SYNs, {ns.output.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
