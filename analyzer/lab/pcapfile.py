"""Minimal classic-pcap reading and merging for the lab (per-interface captures, sidecar statistics).

Stdlib only and deliberately not the analyzer's ingest: the lab must not depend on what it is used to test.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analyzer.lab.config import LINKTYPE_NAMES, LabError

PcapRecord = tuple[int, int, int, bytes]  # ts_sec, ts_frac, orig_len, data



def read_pcap(path: Path) -> tuple[bytes, int, list[PcapRecord]]:
    """Return (global header, link type, records) of a classic pcap file."""
    data = path.read_bytes()
    if len(data) < 24:
        raise LabError(f"{path}: not a pcap file (too short)")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise LabError(f"{path}: not a classic pcap file")
    linktype = struct.unpack_from(end + "I", data, 20)[0] & 0x0FFFFFFF
    records: list[PcapRecord] = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(end + "IIII", data, off)
        off += 16
        records.append((sec, frac, orig, data[off:off + incl]))
        off += incl
    return data[:24], linktype, records


def merge_pcaps(out: Path, inputs: Sequence[Path]) -> None:
    """Merge same-linktype pcaps by timestamp (used for per-interface Ethernet captures)."""
    header = b""
    linktype = None
    merged: list[PcapRecord] = []
    for p in inputs:
        hdr, lt, recs = read_pcap(p)
        if linktype is not None and lt != linktype:
            raise LabError(f"cannot merge link types {linktype} and {lt}")
        header, linktype = header or hdr, lt
        merged.extend(recs)
    end = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    merged.sort(key=lambda r: (r[0], r[1]))
    with out.open("wb") as fh:
        fh.write(header)
        for sec, frac, orig, payload in merged:
            fh.write(struct.pack(end + "IIII", sec, frac, len(payload), orig))
            fh.write(payload)


def pcap_stats(path: Path) -> dict[str, Any]:
    """Link type, packet count and size of a capture, for the sidecar."""
    _, lt, recs = read_pcap(path)
    return {"link_type": LINKTYPE_NAMES.get(lt, str(lt)), "linktype_number": lt, "packets": len(recs),
            "file_bytes": path.stat().st_size}

