#!/usr/bin/env python3
"""Micro-benchmark of the hot path: nanoseconds per packet in ``decode_segment`` by link type.

The packets of the given captures (default: samples/*.pcap) are re-framed as Ethernet, Linux
cooked v1/v2 and raw IP, so every link type decodes the same IP packets; the best of
``--repeat`` timed passes is reported (a loaded machine makes the mean meaningless).
"""

from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path

from analyzer.ingest.capture import open_capture, read_records
from analyzer.ingest.decode import Skip, decode_segment, network_offset

ETHERNET, RAW, SLL, SLL2 = 1, 101, 113, 276


def ip_packets(paths: list[Path]) -> list[bytes]:
    """The IP packets (link header stripped) of every decodable record."""
    out = []
    for path in paths:
        stream, info = open_capture(str(path))
        with stream:
            for record in read_records(stream, info):
                link_type, data = record.link_type, record.data
                net = network_offset(link_type, data)
                if not isinstance(net, Skip):
                    out.append(data[net[0] :])
    return out


def frame(link_type: int, ip: bytes) -> bytes:
    ethertype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    if link_type == ETHERNET:
        return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01" + struct.pack("!H", ethertype) + ip
    if link_type == SLL:
        return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\0\0\0\0\x01", ethertype) + ip
    if link_type == SLL2:
        return struct.pack("!HHIHBB8s", ethertype, 0, 2, 1, 0, 6, b"\x02\0\0\0\0\x01") + ip
    return ip


def best_ns_per_packet(link_type: int, frames: list[bytes], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for i, data in enumerate(frames):
            decode_segment(i, 0.0, link_type, data)
        best = min(best, (time.perf_counter_ns() - start) / len(frames))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    paths = args.captures or sorted(Path(__file__).resolve().parent.parent.joinpath("samples").glob("*.pcap"))
    packets = ip_packets(paths)
    print(f"{len(packets)} IP packets from {len(paths)} captures; best of {args.repeat}")
    for name, link_type in (("ethernet", ETHERNET), ("sll", SLL), ("sll2", SLL2), ("raw", RAW)):
        frames = [frame(link_type, ip) for ip in packets]
        print(f"{name:9s} {best_ns_per_packet(link_type, frames, args.repeat):7.0f} ns/packet")


if __name__ == "__main__":
    main()
