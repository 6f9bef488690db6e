"""Where every record of a capture sits in its file, so the inspector can read one packet again.

The analyzer reads a capture once and keeps no per-packet state; the inspector needs the bytes of
any frame on demand (detail tree, hex dump, the summary line of a row scrolled into view). A
:class:`RecordScanner` walks the same file alongside the analysis, record by record, and reports
each record's offset; a :class:`RecordReader` later reads one record back from its offset.

The scanner counts records exactly as :func:`analyzer.ingest.capture.read_records` does (pcap
records; pcapng enhanced, simple and obsolete packet blocks with a known interface), so its n-th
record is the analyzer's frame n. A gzip capture is copied, uncompressed, to a temporary file while
it is scanned, because a gzip stream cannot be read at random.
"""

from __future__ import annotations

import bisect
import contextlib
import gzip
import os
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from dpkt import pcapng

from analyzer.ingest.capture import (
    EPB,
    GZIP_MAGIC,
    IDB,
    LINKTYPE_MASK,
    MAX_BLOCK,
    MAX_RECORD,
    OBSOLETE_PB,
    PCAP_MAGICS,
    SPB,
    UNKNOWN_LINK_TYPE,
)

PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


class RecordError(Exception):
    """A record could not be read back (the file changed, or the offset is wrong)."""


Record = tuple[int, float, int]
"""One packet record: (offset of its pcap record header / pcapng block, time, link type)."""

BLOCK = 1 << 20  # bytes read at a time while scanning


@dataclass(slots=True)
class _Layout:
    """What random reads need to know about the file (filled while scanning)."""

    file_format: str = "unknown"
    pcap_order: str = "<"
    # pcapng: (section start offset, byte order, link types of its interfaces), in file order.
    sections: list[tuple[int, str, list[int]]] = field(default_factory=list)


class RecordScanner:
    """Walks a capture's records in file order, reporting each one's offset.

    ``path`` is the file the analyzer reads. :attr:`data_path` is the file whose offsets the
    records give: the capture itself, or an uncompressed temporary copy of a gzip capture
    (removed by :meth:`close`).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self.errors: list[str] = []
        self.layout = _Layout()
        raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._raw = raw
        head = raw.read(2)
        raw.seek(0)
        self._copy: BinaryIO | None = None
        self._stream: BinaryIO
        if head == GZIP_MAGIC:
            self._stream = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
            fd, copy_path = tempfile.mkstemp(prefix="mptcp-inspector-", suffix=".pcap")
            self._copy = os.fdopen(fd, "wb")
            self.data_path = copy_path
        else:
            self._stream = raw
            self.data_path = path
        self._size = os.fstat(raw.fileno()).st_size
        self._pos = 0  # offset in the uncompressed stream
        self._done = False
        self._gen = self._records()

    # -- reading -----------------------------------------------------------------------------
    def _read(self, n: int) -> bytes:
        data = self._stream.read(n)
        self._pos += len(data)
        if self._copy is not None:
            self._copy.write(data)
        return data

    def _skip(self, n: int) -> int:
        """Skip ``n`` bytes (copying them for gzip); returns how many were there."""
        if self._copy is not None:
            return len(self._read(n))
        here = self._pos
        end = min(here + n, self._size)
        self._stream.seek(end)
        self._pos = end
        return end - here

    def next(self) -> Record | None:
        """The next record, or None at the end of the capture (or where it stops being readable)."""
        if self._done:
            return None
        try:
            record = next(self._gen)
        except StopIteration:
            record = None
        except (OSError, EOFError, gzip.BadGzipFile, struct.error, ValueError) as exc:
            self.errors.append(f"record index stopped after {self._pos} bytes: {exc}")
            record = None
        if record is None:
            self._done = True
            if self._copy is not None:
                self._copy.flush()
            return None
        self.count += 1
        return record

    @property
    def bytes_read(self) -> int:
        """How far into the file (as stored, compressed or not) the scan has got."""
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return 0

    def flush(self) -> None:
        """Make the records scanned so far readable by a :class:`RecordReader` (gzip copy)."""
        if self._copy is not None:
            self._copy.flush()

    def close(self) -> None:
        self._stream.close()
        self._raw.close()
        if self._copy is not None:
            self._copy.close()

    def remove_copy(self) -> None:
        """Delete the temporary uncompressed copy, if there is one."""
        if self.data_path != self.path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.data_path)

    # -- formats -----------------------------------------------------------------------------
    def _records(self) -> Iterator[Record]:
        head = self._read(4)
        if head in PCAP_MAGICS:
            self.layout.file_format = "pcap"
            yield from self._pcap(head)
        elif head == PCAPNG_SHB:
            self.layout.file_format = "pcapng"
            yield from self._pcapng(head)

    def _pcap(self, magic: bytes) -> Iterator[Record]:
        order, divisor = PCAP_MAGICS[magic]
        self.layout.pcap_order = order
        rest = self._read(20)
        if len(rest) < 20:
            return
        link_type = struct.unpack(order + "I", rest[16:20])[0] & LINKTYPE_MASK
        unpack = struct.Struct(order + "IIII").unpack_from
        # Records are parsed out of large blocks: one read per block, not two calls per record.
        buf = b""
        base = 24  # file offset of buf[0]
        i = 0
        while True:
            if len(buf) - i < 16:
                more = self._read(BLOCK)
                if not more:
                    return
                buf, base, i = buf[i:] + more, base + i, 0
                continue
            sec, frac, caplen, _origlen = unpack(buf, i)
            if caplen > MAX_RECORD:
                return
            end = i + 16 + caplen
            if end > len(buf):
                more = self._read(max(BLOCK, end - len(buf)))
                if not more:
                    return
                buf, base, i = buf[i:] + more, base + i, 0
                continue
            yield base + i, sec + frac / divisor, link_type
            i = end

    def _pcapng(self, first: bytes) -> Iterator[Record]:
        order = "<"
        interfaces: list[tuple[int, float, int]] = []  # (link type, divisor, ts offset)
        link_types: list[int] = []
        last_ts = 0.0
        block_type_raw = first
        while True:
            offset = self._pos - 4
            rest = self._read(4)
            if len(rest) < 4:
                return
            if block_type_raw == PCAPNG_SHB:
                bom = self._read(4)
                if bom == b"\x4d\x3c\x2b\x1a":
                    order = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    order = ">"
                else:
                    return
                (length,) = struct.unpack(order + "I", rest)
                if length < 28 or length > MAX_BLOCK or length % 4 or self._skip(length - 12) < length - 12:
                    return
                interfaces = []
                link_types = []
                self.layout.sections.append((offset, order, link_types))
                block_type_raw = self._read(4)
                if not block_type_raw:
                    return
                continue
            (block_type,) = struct.unpack(order + "I", block_type_raw)
            (length,) = struct.unpack(order + "I", rest)
            if length < 12 or length > MAX_BLOCK or length % 4:
                return
            if block_type in (EPB, OBSOLETE_PB):
                body = self._read(min(length - 8, 24))
                if len(body) < min(length - 8, 24) or self._skip(length - 8 - len(body)) < length - 8 - len(body):
                    return
                if len(body) >= 24:
                    if block_type == EPB:
                        if_id, ts_high, ts_low, caplen = struct.unpack_from(order + "IIII", body, 0)
                    else:
                        if_id, _drops, ts_high, ts_low, caplen = struct.unpack_from(order + "HHIII", body, 0)
                    if if_id < len(interfaces) and caplen <= length - 8 - 24:
                        link, divisor, ts_offset = interfaces[if_id]
                        last_ts = ts_offset + ((ts_high << 32) | ts_low) / divisor
                        yield offset, last_ts, link
            elif block_type == SPB:
                if self._skip(length - 8) < length - 8:
                    return
                if interfaces and length - 8 >= 8:
                    yield offset, last_ts, interfaces[0][0]  # a simple block has no time of its own
            elif block_type == IDB:
                body = self._read(length - 8)
                if len(body) < length - 8:
                    return
                iface = _parse_idb(block_type_raw + rest + body, order == "<")
                interfaces.append(iface)
                link_types.append(iface[0])
            elif self._skip(length - 8) < length - 8:
                return
            block_type_raw = self._read(4)
            if not block_type_raw:
                return


def _parse_idb(block: bytes, little_endian: bool) -> tuple[int, float, int]:
    """Link type, timestamp divisor and offset of an interface block, read as the analyzer reads it.

    A damaged block still counts as an interface, so the ids of the ones after it stay right.
    """
    if len(block) < 20:
        return UNKNOWN_LINK_TYPE, 1e6, 0
    link_type = struct.unpack_from("<H" if little_endian else ">H", block, 8)[0]
    divisor, ts_offset = 1e6, 0
    try:
        idb = pcapng.InterfaceDescriptionBlockLE(block) if little_endian else pcapng.InterfaceDescriptionBlock(block)
    except Exception:
        return link_type, divisor, ts_offset
    for opt in getattr(idb, "opts", []):
        if opt.code == pcapng.PCAPNG_OPT_IF_TSRESOL and opt.data:
            value = opt.data[0]
            divisor = float((2 if value & 0x80 else 10) ** (value & 0x7F))
        elif opt.code == pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) >= 8:
            ts_offset = struct.unpack("<q" if little_endian else ">q", opt.data[:8])[0]
    return link_type, divisor, ts_offset


class RecordReader:
    """Reads single records back from the file a :class:`RecordScanner` indexed."""

    def __init__(self, scanner: RecordScanner) -> None:
        self.layout = scanner.layout
        self._scanner = scanner
        self._file: BinaryIO = open(scanner.data_path, "rb")  # noqa: SIM115 - closed in close()
        self._section_starts: list[int] = []

    def read(self, offset: int) -> tuple[bytes, int]:
        """``(captured bytes, original length)`` of the record starting at ``offset``."""
        self._scanner.flush()
        f = self._file
        f.seek(offset)
        if self.layout.file_format == "pcap":
            head = f.read(16)
            if len(head) < 16:
                raise RecordError(f"no record at offset {offset}")
            _sec, _frac, caplen, origlen = struct.unpack(self.layout.pcap_order + "IIII", head)
            data = f.read(caplen)
            if len(data) < caplen:
                raise RecordError(f"record at offset {offset} is cut short")
            return data, origlen
        order = self._order_at(offset)
        head = f.read(8)
        if len(head) < 8:
            raise RecordError(f"no block at offset {offset}")
        block_type, length = struct.unpack(order + "II", head)
        body = f.read(length - 8)
        if block_type == EPB:
            caplen, origlen = struct.unpack_from(order + "II", body, 12)
            return body[20 : 20 + caplen], origlen
        if block_type == OBSOLETE_PB:
            caplen, origlen = struct.unpack_from(order + "II", body, 12)
            return body[20 : 20 + caplen], origlen
        if block_type == SPB:
            (origlen,) = struct.unpack_from(order + "I", body, 0)
            return body[4 : 4 + min(origlen, len(body) - 8)], origlen
        raise RecordError(f"block at offset {offset} is not a packet block")

    def _order_at(self, offset: int) -> str:
        sections = self.layout.sections
        if len(self._section_starts) != len(sections):
            self._section_starts = [start for start, _order, _links in sections]
        i = bisect.bisect_right(self._section_starts, offset) - 1
        return sections[i][1] if i >= 0 else "<"

    def close(self) -> None:
        self._file.close()
