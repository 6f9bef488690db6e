"""``follow``: write one connection's rebuilt data stream, like Wireshark's Follow TCP Stream.

Connections are numbered only once the whole trace is read, so following takes two passes: the
first finds connection N and its subflows, the second streams that connection's bytes out as the
reassembler delivers them (in data-sequence order per direction, in capture order across both).
"""

from __future__ import annotations

import string
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from analyzer.model import CLIENT, Connection, Subflow
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.reassembly.stream import StreamWriter

FORMATS = ("raw", "ascii", "hexdump")
DIRECTIONS = ("c2s", "s2c", "both")
PRINTABLE = frozenset(string.printable.encode()) - frozenset(b"\x0b\x0c")


class ConnectionNotFound(LookupError):
    pass


@dataclass
class FollowResult:
    connection: Connection
    bytes_written: tuple[int, int] = (0, 0)
    holes: list[tuple[int, int, int]] = field(default_factory=list)  # (side, offset, length)


class _Formatter:
    """Turns (side, offset, bytes) chunks into the chosen output format."""

    def __init__(self, out: BinaryIO, fmt: str, both: bool) -> None:
        self.out = out
        self.fmt = fmt
        self.both = both
        self.last_side: int | None = None
        self.written = [0, 0]

    def chunk(self, side: int, offset: int, data: bytes) -> None:
        self.written[side] += len(data)
        if self.fmt == "raw":
            self.out.write(data)
            return
        if self.both and side != self.last_side:
            arrow = "client → server" if side == CLIENT else "server → client"
            self.out.write(f"\n=== {arrow} (stream offset {offset}) ===\n".encode())
        self.last_side = side
        if self.fmt == "ascii":
            self.out.write(bytes(b if b in PRINTABLE else 0x2E for b in data))
        else:
            self.out.write(hexdump(data, offset, indent="    " if side != CLIENT and self.both else "").encode())

    def hole(self, side: int, offset: int, length: int) -> None:
        if self.fmt == "raw":
            return
        arrow = "c→s" if side == CLIENT else "s→c"
        self.out.write(f"\n[{arrow}: {length} bytes at offset {offset} missing from the capture]\n".encode())


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
        if len(self.result.holes) < 1000:
            self.result.holes.append((self.side, offset, length))
        self.formatter.hole(self.side, offset, length)


def follow(
    path: str,
    connection_id: int,
    out: BinaryIO,
    direction: str = "both",
    fmt: str = "raw",
    progress: Callable[[int, int | None], None] | None = None,
) -> FollowResult:
    """Write connection ``connection_id``'s data to ``out``; raises ConnectionNotFound."""
    first = analyze(path, AnalysisOptions(progress=progress))
    target = next((c for c in first.connections if c.id == connection_id), None)
    if target is None:
        ids = ", ".join(str(c.id) for c in first.connections) or "none"
        raise ConnectionNotFound(f"no connection {connection_id} in {path} (connections: {ids})")
    subflow_ids = {sf.id for sf in target.subflows}
    wanted = {"c2s": {0}, "s2c": {1}, "both": {0, 1}}[direction]
    formatter = _Formatter(out, fmt, both=len(wanted) == 2)
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
