"""Derived captures for tests (the bundled samples cut by a snaplen, or merged) and frame lookups in them."""

from __future__ import annotations

import struct
from pathlib import Path

import dpkt

from analyzer.ingest.capture import open_capture, read_records

PCAP_HEADER = 24
RECORD_HEADER = 16


def truncate_capture(source: Path, target: Path, snaplen: int) -> None:
    """``source`` as tcpdump -s SNAPLEN would have written it: records cut, original lengths kept."""
    with source.open("rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        records = list(reader)
        linktype = reader.datalink()
    with target.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        for ts, buf in records:
            seconds = int(ts)
            micros = min(round((ts - seconds) * 1e6), 999_999)
            out.write(struct.pack("<IIII", seconds, micros, min(len(buf), snaplen), len(buf)))
            out.write(buf[:snaplen])


def merge_captures(sources: list[Path], target: Path) -> None:
    """One capture of several (same link type), records in time order."""
    records: list[tuple[float, bytes]] = []
    linktype = None
    for source in sources:
        with source.open("rb") as fh:
            reader = dpkt.pcap.Reader(fh)
            linktype = reader.datalink()
            records.extend(reader)
    records.sort(key=lambda record: record[0])
    with target.open("wb") as out:
        writer = dpkt.pcap.Writer(out, linktype=linktype, snaplen=262144)
        for ts, buf in records:
            writer.writepkt(buf, ts=ts)


def frames_of(path: Path, packets: list[bytes]) -> list[int]:
    """Frames of ``path`` holding exactly these packets (raw IP, as the simulator writes them)."""
    wanted = set(packets)
    stream, info = open_capture(str(path))
    try:
        return [rec.frame for rec in read_records(stream, info) if rec.data in wanted]
    finally:
        stream.close()
