"""``follow``: write one connection's rebuilt data stream, like Wireshark's Follow TCP Stream.

Connections are numbered only once the whole trace is read, so following takes two passes: the
first finds connection N and its subflows, the second streams that connection's bytes out as the
reassembler delivers them (in data-sequence order per direction, in capture order across both).

Raw output never joins the bytes on both sides of a hole silently: by default it stops at the first
hole of a direction; ``fill`` writes zeros in its place, ``allow`` joins them. Either way every hole
is listed in the result.
"""

from __future__ import annotations

import string
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from analyzer.ingest.capture import open_capture, read_records
from analyzer.ingest.decode import decode_segment
from analyzer.ingest.segment import Segment
from analyzer.model import CLIENT, Connection, Subflow
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.reassembly.stream import StreamWriter

FORMATS = ("raw", "ascii", "hexdump")
DIRECTIONS = ("c2s", "s2c", "both")
HOLE_POLICIES = ("stop", "fill", "allow")
PRINTABLE = frozenset(string.printable.encode()) - frozenset(b"\x0b\x0c")
FILL_CHUNK = 1 << 16
MAX_HOLES_LISTED = 1000
PCAP_SNAPLEN = 262144  # what tcpdump writes by default; each record keeps its own captured and original length


class ConnectionNotFound(LookupError):
    pass


@dataclass
class FollowResult:
    connection: Connection
    bytes_written: tuple[int, int] = (0, 0)
    holes: list[tuple[int, int, int]] = field(default_factory=list)  # (side, offset, length)
    stopped: list[tuple[int, int, int]] = field(default_factory=list)  # (side, offset, length) of the stopping hole


class _Formatter:
    """Turns (side, offset, bytes) chunks into the chosen output format, one output per side for raw."""

    def __init__(self, outs: tuple[BinaryIO, BinaryIO], fmt: str, both: bool, holes: str = "stop") -> None:
        self.outs = outs
        self.out = outs[CLIENT]
        self.fmt = fmt
        self.both = both
        self.holes = holes
        self.last_side: int | None = None
        self.written = [0, 0]
        self.stopped = [False, False]

    def chunk(self, side: int, offset: int, data: bytes) -> None:
        if self.stopped[side]:
            return
        self.written[side] += len(data)
        if self.fmt == "raw":
            self.outs[side].write(data)
            return
        if self.both and side != self.last_side:
            arrow = "client → server" if side == CLIENT else "server → client"
            self.out.write(f"\n=== {arrow} (stream offset {offset}) ===\n".encode())
        self.last_side = side
        if self.fmt == "ascii":
            self.out.write(bytes(b if b in PRINTABLE else 0x2E for b in data))
        else:
            self.out.write(hexdump(data, offset, indent="    " if side != CLIENT and self.both else "").encode())

    def hole(self, side: int, offset: int, length: int) -> bool:
        """Mark a hole in the output; True when this side stops at it (raw, policy ``stop``)."""
        if self.stopped[side]:
            return False
        if self.fmt == "raw":
            if self.holes == "stop":
                self.stopped[side] = True
                return True
            if self.holes == "fill":
                for start in range(0, length, FILL_CHUNK):
                    self.outs[side].write(bytes(min(FILL_CHUNK, length - start)))
            return False
        arrow = "c→s" if side == CLIENT else "s→c"
        self.out.write(f"\n[{arrow}: {length} bytes at offset {offset} missing from the capture]\n".encode())
        return False


def hexdump(data: bytes, offset: int, indent: str = "") -> str:
    lines = []
    for i in range(0, len(data), 16):
        row = data[i : i + 16]
        hexpart = " ".join(f"{b:02x}" for b in row[:8]) + "  " + " ".join(f"{b:02x}" for b in row[8:])
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in row)
        lines.append(f"{indent}{offset + i:08x}  {hexpart:<49} |{text}|\n")
    return "".join(lines)


class _SideWriter:
    def __init__(self, formatter: _Formatter, side: int, result: FollowResult) -> None:
        self.formatter = formatter
        self.side = side
        self.result = result

    def write(self, offset: int, time: float, data: bytes) -> None:
        self.formatter.chunk(self.side, offset, data)

    def hole(self, offset: int, length: int) -> None:
        if len(self.result.holes) < MAX_HOLES_LISTED:
            self.result.holes.append((self.side, offset, length))
        if self.formatter.hole(self.side, offset, length):
            self.result.stopped.append((self.side, offset, length))


def find_connection(path: str, connection_id: int, progress: Callable[[int, int | None], None] | None) -> Connection:
    """The first pass: connection ``connection_id`` as the report numbers it; raises ConnectionNotFound."""
    first = analyze(path, AnalysisOptions(progress=progress, check=False, stats=False))
    target = next((c for c in first.connections if c.id == connection_id), None)
    if target is None:
        ids = ", ".join(str(c.id) for c in first.connections) or "none"
        raise ConnectionNotFound(f"no connection {connection_id} in {path} (connections: {ids})")
    return target


def follow(
    path: str,
    connection_id: int,
    out: BinaryIO,
    direction: str = "both",
    fmt: str = "raw",
    progress: Callable[[int, int | None], None] | None = None,
    holes: str = "stop",
    out_s2c: BinaryIO | None = None,
) -> FollowResult:
    """Write connection ``connection_id``'s data to ``out`` (raw ``both``: server → client to ``out_s2c``)."""
    target = find_connection(path, connection_id, progress)
    subflow_ids = {sf.id for sf in target.subflows}
    wanted = {"c2s": {0}, "s2c": {1}, "both": {0, 1}}[direction]
    if fmt == "raw" and len(wanted) == 2 and out_s2c is None:
        raise ValueError("raw output of both directions needs a second output: one per direction")
    outs = (out, out_s2c if out_s2c is not None else out)
    formatter = _Formatter(outs, fmt, both=len(wanted) == 2, holes=holes)
    result = FollowResult(connection=target)

    def factory(conn: Connection | None, side: int, sf: Subflow) -> StreamWriter | None:
        if sf.id not in subflow_ids or side not in wanted:
            return None
        return _SideWriter(formatter, side, result)

    analyze(path, AnalysisOptions(stream_writer=factory))
    if fmt != "raw":
        out.write(b"\n")
    result.bytes_written = (formatter.written[0], formatter.written[1])
    return result


def _subflow_matcher(conn: Connection) -> Callable[[Segment], bool]:
    """Does a segment belong to one of the connection's subflows (4-tuple, within the subflow's frames)?"""
    spans: dict[tuple[bytes, int, bytes, int], list[tuple[int, int]]] = {}
    for sf in conn.subflows:
        for key in (
            (sf.client_ip, sf.client_port, sf.server_ip, sf.server_port),
            (sf.server_ip, sf.server_port, sf.client_ip, sf.client_port),
        ):
            spans.setdefault(key, []).append((sf.first_frame, sf.last_frame or sf.first_frame))

    def matches(seg: Segment) -> bool:
        found = spans.get((seg.src, seg.sport, seg.dst, seg.dport))
        return found is not None and any(first <= seg.frame <= last for first, last in found)

    return matches


def write_connection_pcap(
    path: str, connection_id: int, out: BinaryIO, progress: Callable[[int, int | None], None] | None = None
) -> int:
    """Copy the packets of one connection (all its subflows) into a new pcap, original lengths kept.

    Returns the number of packets written. A capture whose packets of this connection come with several
    link types cannot be one pcap: ValueError.
    """
    target = find_connection(path, connection_id, progress)
    matches = _subflow_matcher(target)
    stream, info = open_capture(path)
    written = 0
    link: int | None = None
    with stream:
        for frame, _offset, ts, link_type, data, origlen in read_records(stream, info):
            seg = decode_segment(frame, ts, link_type, data)
            if not isinstance(seg, Segment) or not matches(seg):
                continue
            if link is None:
                link = link_type
                out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, PCAP_SNAPLEN, link))
            elif link_type != link:
                raise ValueError(f"the connection's packets use link types {link} and {link_type}: one pcap holds one")
            seconds = int(ts)
            nanos = min(round((ts - seconds) * 1e9), 999_999_999)
            out.write(struct.pack("<IIII", seconds, nanos, len(data), max(origlen, len(data))))
            out.write(data)
            written += 1
    return written
