"""Streaming reader for pcap and pcapng files.

dpkt's own readers drop what an analyzer needs (each record's original length, the interface and
link type of a pcapng packet, a truncated last record) and raise mid-file, so the record loop is
ours: plain ``struct`` over a buffered stream, one pass, constant memory.  dpkt still supplies the
format constants and decodes the (rare, cold) pcapng interface blocks.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from dpkt import pcapng

from analyzer.ingest import speedups
from analyzer.ingest.record import Record, new_record
from analyzer.limits import DEFAULT_LIMITS, Limits, limit_message

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

PCAP_MAGICS: dict[bytes, tuple[str, float]] = {
    # magic as stored on disk -> (struct byte order, timestamp fraction divisor)
    b"\xd4\xc3\xb2\xa1": ("<", 1e6),
    b"\xa1\xb2\xc3\xd4": (">", 1e6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e9),
    b"\xa1\xb2\x3c\x4d": (">", 1e9),
}
_fast = speedups.load()

PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"

# A record larger than this cannot be a real packet; it means the file is corrupt.
MAX_RECORD = DEFAULT_LIMITS.max_record_bytes  # the default; analyze() passes its own Limits
# pcapng blocks carry whole interface descriptions and name tables; anything bigger is corrupt.
MAX_BLOCK = DEFAULT_LIMITS.max_block_bytes

EPB, SPB, OBSOLETE_PB, IDB = 6, 3, 2, 1

# The pcap link-type word carries the FCS length and its "present" flag in the upper bits
# (libpcap's LT_FCS_LENGTH_PRESENT 0x04000000, LT_FCS_LENGTH 0xF0000000); the link type is the low 16.
LINKTYPE_MASK = 0xFFFF
# Stands for an interface whose block was too short to name its link type (keeps interface ids aligned).
UNKNOWN_LINK_TYPE = 0xFFFF

# Per-packet problems (e.g. every packet block naming a missing interface) are kept up to this many.
MAX_ERRORS = DEFAULT_LIMITS.max_capture_errors

# What a damaged (gzip) stream raises while being read; zlib.error is not an OSError.
READ_ERRORS = (OSError, EOFError, gzip.BadGzipFile, zlib.error)


class CaptureError(Exception):
    """The capture cannot be read at all (missing, unreadable, not a capture format)."""


class _OwningGzipFile(gzip.GzipFile):
    """A GzipFile that closes the file it decompresses (plain GzipFile leaves ``fileobj`` open)."""

    def __init__(self, source: BinaryIO, close_source: bool, copy_to: BinaryIO | None = None) -> None:
        self._source: BinaryIO | None = source if close_source else None
        self._copy_to = copy_to
        super().__init__(fileobj=source, mode="rb")

    def readinto(self, b: WriteableBuffer) -> int:
        # The BufferedReader on top asks for 8 KiB at a time. GzipFile.readinto insists on filling
        # all of it, so at a cut-off end of stream the EOFError would swallow the bytes decoded
        # before it (up to 8 KiB of records, or a whole small file). Hand over what is there.
        n = self.readinto1(b)
        if self._copy_to is not None and n:
            self._copy_to.write(memoryview(b)[:n])
        return n

    def close(self) -> None:
        try:
            super().close()
        finally:
            source, self._source = getattr(self, "_source", None), None
            if source is not None:
                source.close()


@dataclass(slots=True)
class Interface:
    link_type: int
    snaplen: int
    ts_divisor: float = 1e6
    ts_offset: int = 0
    name: str | None = None


@dataclass(slots=True)
class CaptureInfo:
    """What the reader learned about the file itself; filled in while records stream."""

    path: str
    file_format: str = "unknown"
    compressed: bool = False
    size: int | None = None
    interfaces: list[Interface] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bytes_read: int = 0  # of the (uncompressed) capture
    source: BinaryIO | None = None  # the file on disk, whose position tracks progress through it
    limits: Limits = DEFAULT_LIMITS

    def progress(self) -> int:
        """Bytes of the file on disk consumed so far (compressed bytes for a .gz)."""
        if self.compressed and self.source is not None:
            try:
                return self.source.tell()
            except (OSError, ValueError):
                return self.bytes_read
        return self.bytes_read


def open_capture(path: str, copy_to: BinaryIO | None = None) -> tuple[BinaryIO, CaptureInfo]:
    """Open a file (or ``-`` for stdin), transparently un-gzipping it.

    ``copy_to`` receives every decompressed byte of a gzip capture as it is read, so the records'
    offsets (which count in the decompressed stream) can be read back from that copy later.
    """
    info = CaptureInfo(path=path)
    raw: BinaryIO
    if path == "-":
        raw = sys.stdin.buffer
    else:
        try:
            raw = open(path, "rb")  # noqa: SIM115 - handed to the caller, closed by read_records
            info.size = os.fstat(raw.fileno()).st_size
        except FileNotFoundError:
            raise CaptureError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{path}: is a directory, not a capture file") from None
        except OSError as exc:
            raise CaptureError(f"{path}: cannot open: {exc.strerror or exc}") from None
    stream = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[type-var]
    try:
        head = stream.peek(4)[:4]
    except OSError as exc:
        if path != "-":
            stream.close()
        raise CaptureError(f"{path}: cannot read: {exc.strerror or exc}") from None
    info.source = stream
    if head[:2] == GZIP_MAGIC:
        info.compressed = True
        # Closing the returned reader must close the file too (not stdin, which is not ours).
        gz = _OwningGzipFile(stream, close_source=path != "-", copy_to=copy_to)
        stream = io.BufferedReader(gz)
    return stream, info


def _error(info: CaptureInfo, message: str) -> None:
    """Record a per-packet problem, keeping at most ``max_capture_errors`` of them (memory stays flat)."""
    cap = info.limits.max_capture_errors
    if len(info.errors) < cap:
        info.errors.append(message)
    elif len(info.errors) == cap:
        info.errors.append(limit_message("max_capture_errors", cap, "further capture problems are not listed"))


def read_records(stream: BinaryIO, info: CaptureInfo, limits: Limits | None = None) -> Iterator[Record]:
    """Yield a :class:`Record` (frame, file offset, time, link type, bytes, original length) per packet.

    Problems in the middle of a file end the stream with a message in ``info.errors``; they never
    raise, so the analysis keeps everything read up to that point.
    """
    if limits is not None:
        info.limits = limits
    try:
        head = stream.read(4)
    except READ_ERRORS as exc:
        raise CaptureError(f"{info.path}: cannot read: {exc}") from None
    if len(head) < 4:
        raise CaptureError(f"{info.path}: empty or too short to be a capture file")
    if head in PCAP_MAGICS:
        info.file_format = "pcap"
        records = _pcap_records(stream, info, head)
    elif head == PCAPNG_SHB:
        info.file_format = "pcapng"
        records = _pcapng_records(stream, info, head)
    else:
        raise CaptureError(f"{info.path}: not a pcap or pcapng file (starts with {head.hex()})")
    try:
        yield from records
    except (*READ_ERRORS, struct.error, ValueError) as exc:
        info.errors.append(f"read error after {info.bytes_read} bytes: {exc}")


def _pcap_records(stream: BinaryIO, info: CaptureInfo, magic: bytes) -> Iterator[Record]:
    order, divisor = PCAP_MAGICS[magic]
    rest = stream.read(20)
    if len(rest) < 20:
        raise CaptureError(f"{info.path}: pcap file header is truncated")
    _vmaj, _vmin, _zone, _sigfigs, snaplen, linktype = struct.unpack(order + "HHiIII", rest)
    # The upper bits of the link-type word may carry an FCS length (pcap "LINKTYPE_" extension).
    link_type = linktype & LINKTYPE_MASK
    info.interfaces.append(Interface(link_type=link_type, snaplen=snaplen, ts_divisor=divisor))
    info.bytes_read = 24
    if _fast is not None and not info.compressed:
        # Compiled record loop (same records, same messages); a .gz keeps the reference loop so a
        # damaged stream stops at exactly the same record.
        max_record = info.limits.max_record_bytes
        note = "; " + limit_message("max_record_bytes", max_record, "no packet is that large")
        yield from _fast.pcap_records(stream, info, order == "<", divisor, link_type, max_record, note, Record)
        return
    unpack_header = struct.Struct(order + "IIII").unpack
    read = stream.read
    offset = 24
    frame = 0
    max_record = info.limits.max_record_bytes
    while True:
        header = read(16)
        if len(header) < 16:
            if header:
                info.errors.append(f"truncated record header at end of file (offset {offset})")
            break
        sec, frac, caplen, origlen = unpack_header(header)
        if caplen > max_record:
            info.errors.append(
                f"corrupt record header at offset {offset} (captured length {caplen}); stopped reading; "
                + limit_message("max_record_bytes", max_record, "no packet is that large")
            )
            break
        data = read(caplen)
        start = offset
        offset += 16 + caplen
        info.bytes_read = offset
        if len(data) < caplen:
            info.errors.append(f"last record truncated: {len(data)} of {caplen} bytes present (file cut short)")
            break
        frame += 1
        yield new_record(Record, (frame, start, sec + frac / divisor, link_type, data, origlen))


def _pcapng_records(stream: BinaryIO, info: CaptureInfo, first: bytes) -> Iterator[Record]:
    order = "<"
    frame = 0
    max_block = info.limits.max_block_bytes
    interfaces: list[Interface] = []
    read = stream.read
    offset = 0
    last_ts = 0.0
    block_type_raw = first
    while True:
        rest = read(4)
        if len(rest) < 4:
            if block_type_raw or rest:
                info.errors.append(f"truncated pcapng block header at offset {offset}")
            return
        if block_type_raw == PCAPNG_SHB:
            bom = read(4)
            if len(bom) < 4:
                info.errors.append(f"truncated pcapng section header at offset {offset}")
                return
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                info.errors.append(f"bad pcapng byte-order magic at offset {offset}; stopped reading")
                return
            (length,) = struct.unpack(order + "I", rest)
            if length < 28 or length > max_block or length % 4:
                info.errors.append(f"corrupt pcapng section header at offset {offset}; stopped reading")
                return
            body = read(length - 12)
            if len(body) < length - 12:
                info.errors.append(f"truncated pcapng section header at offset {offset}")
                return
            interfaces = []  # interface ids restart in every section
            offset += length
            info.bytes_read = offset
            block_type_raw = read(4)
            if not block_type_raw:
                return
            continue
        (block_type,) = struct.unpack(order + "I", block_type_raw)
        (length,) = struct.unpack(order + "I", rest)
        if length < 12 or length > max_block or length % 4:
            message = f"corrupt pcapng block (length {length}) at offset {offset}; stopped reading"
            if length > max_block:
                message += "; " + limit_message("max_block_bytes", max_block, "no block is that large")
            info.errors.append(message)
            return
        body = read(length - 8)
        if len(body) < length - 8:
            info.errors.append(f"last pcapng block truncated at offset {offset} (file cut short)")
            return
        block_offset = offset
        offset += length
        info.bytes_read = offset
        if block_type in (EPB, OBSOLETE_PB):
            head = _packet_head(block_type, body, order, len(interfaces), block_offset, info)
            if head is not None:
                if_id, ts_high, ts_low, caplen, origlen = head
                iface = interfaces[if_id]
                ts = iface.ts_offset + ((ts_high << 32) | ts_low) / iface.ts_divisor
                last_ts = ts
                frame += 1
                data = body[20 : 20 + caplen]
                yield new_record(Record, (frame, block_offset, ts, iface.link_type, data, origlen))
        elif block_type == SPB:
            if not interfaces:
                _error(info, f"pcapng simple packet block at offset {block_offset} before any interface")
            elif len(body) >= 8:
                (origlen,) = struct.unpack_from(order + "I", body, 0)
                iface = interfaces[0]
                caplen = min(origlen, iface.snaplen or origlen, len(body) - 8)
                # Simple packet blocks carry no timestamp: keep time running from the last packet.
                frame += 1
                yield new_record(Record, (frame, block_offset, last_ts, iface.link_type, body[4 : 4 + caplen], origlen))
        elif block_type == IDB:
            # Always append, even for a damaged block: packet blocks name interfaces by position.
            iface = _parse_idb(block_type_raw + rest + body, order == "<", block_offset, info)
            interfaces.append(iface)
            info.interfaces.append(iface)
        block_type_raw = read(4)
        if not block_type_raw:
            return


def _packet_head(
    block_type: int, body: bytes, order: str, n_interfaces: int, offset: int, info: CaptureInfo
) -> tuple[int, int, int, int, int] | None:
    """(interface, ts high, ts low, caplen, origlen) of an enhanced or obsolete packet block, None if unusable.

    Both lay out their packet at byte 20; only the enhanced block's damage is reported (the obsolete block is
    skipped quietly, as before: old writers left such blocks truncated).
    """
    if len(body) < 24:
        if block_type == EPB:
            _error(info, f"pcapng packet block too short at offset {offset}")
        return None
    if block_type == EPB:
        if_id, ts_high, ts_low, caplen, origlen = struct.unpack_from(order + "IIIII", body, 0)
    else:
        if_id, _drops, ts_high, ts_low, caplen, origlen = struct.unpack_from(order + "HHIIII", body, 0)
    if if_id < n_interfaces and caplen <= len(body) - 24:
        return if_id, ts_high, ts_low, caplen, origlen
    if block_type == EPB:
        _error(
            info,
            f"pcapng packet block at offset {offset} names unknown interface {if_id}"
            if if_id >= n_interfaces
            else f"pcapng packet block at offset {offset} is shorter than its packet",
        )
    return None


def _parse_idb(block: bytes, little_endian: bool, offset: int, info: CaptureInfo) -> Interface:
    """Decode an interface description block with dpkt (cold path: once per interface).

    A block dpkt cannot decode still yields an interface (from its fixed fields when present), so
    the ids of the interfaces after it stay right.
    """
    if len(block) < 20:
        _error(info, f"pcapng interface block at offset {offset} is too short ({len(block)} bytes)")
        return Interface(link_type=UNKNOWN_LINK_TYPE, snaplen=0)
    link_type, _reserved, snaplen = struct.unpack_from("<HHI" if little_endian else ">HHI", block, 8)
    iface = Interface(link_type=link_type, snaplen=snaplen)
    try:
        idb = pcapng.InterfaceDescriptionBlockLE(block) if little_endian else pcapng.InterfaceDescriptionBlock(block)
    except Exception as exc:  # dpkt raises a variety of errors on malformed option lists
        _error(info, f"unreadable options in pcapng interface block at offset {offset}: {exc}")
        return iface
    for opt in getattr(idb, "opts", []):
        if opt.code == pcapng.PCAPNG_OPT_IF_TSRESOL and opt.data:
            value = opt.data[0]
            iface.ts_divisor = float((2 if value & 0x80 else 10) ** (value & 0x7F))
        elif opt.code == pcapng.PCAPNG_OPT_IF_TSOFFSET and len(opt.data) >= 8:
            iface.ts_offset = struct.unpack("<q" if little_endian else ">q", opt.data[:8])[0]
        elif opt.code == 2 and opt.data:  # if_name
            iface.name = bytes(opt.data).rstrip(b"\x00").decode("utf-8", "replace")
    return iface


class RecordError(Exception):
    """A record cannot be read back at the offset given (the file changed, or the offset is wrong)."""


_PACKET_BLOCKS = frozenset({EPB, SPB, OBSOLETE_PB})


class RecordFile:
    """Reads single records back by the offset a :class:`Record` carries (random access, e.g. the TUI).

    Why no table of sections or interfaces: a pcap record header is read with the file header's
    byte order, and a pcapng packet block names its own (its block type word reads as 2, 3 or 6 in
    exactly one order). For a gzip capture, open the decompressed copy made with
    ``open_capture(path, copy_to=...)``: offsets count in the decompressed stream.
    Returns the bytes and original length exactly as :func:`read_records` yielded them, except for a
    simple packet block cut by a snaplen less than 4 bytes short of the packet, where up to 3
    padding bytes follow the data (the snaplen lives in the section's interface block).
    """

    def __init__(self, path: str, limits: Limits = DEFAULT_LIMITS) -> None:
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise CaptureError(f"{path}: cannot open: {exc.strerror or exc}") from None
        self._limits = limits
        self._pcap_header: struct.Struct | None = None
        self._pcapng = False

    def _format(self) -> None:
        """Learn the format from the file's first bytes (lazily: a gzip copy may still be empty)."""
        self._file.seek(0)
        head = self._file.read(4)
        if head in PCAP_MAGICS:
            self._pcap_header = struct.Struct(PCAP_MAGICS[head][0] + "IIII")
        elif head == PCAPNG_SHB:
            self._pcapng = True
        else:
            raise RecordError(f"not a pcap or pcapng file (starts with {head.hex()})")

    def read(self, offset: int) -> tuple[bytes, int]:
        """``(captured bytes, original length)`` of the record starting at ``offset``."""
        if self._pcap_header is None and not self._pcapng:
            self._format()
        f = self._file
        f.seek(offset)
        if self._pcap_header is not None:
            head = f.read(16)
            if len(head) < 16:
                raise RecordError(f"no record at offset {offset}")
            _sec, _frac, caplen, origlen = self._pcap_header.unpack(head)
            if caplen > self._limits.max_record_bytes:
                raise RecordError(f"no record at offset {offset} (captured length {caplen})")
            data = f.read(caplen)
            if len(data) < caplen:
                raise RecordError(f"record at offset {offset} is cut short")
            return data, origlen
        head = f.read(8)
        if len(head) < 8:
            raise RecordError(f"no block at offset {offset}")
        order = "<" if struct.unpack_from("<I", head)[0] in _PACKET_BLOCKS else ">"
        block_type, length = struct.unpack(order + "II", head)
        if block_type not in _PACKET_BLOCKS or length < 12 or length > self._limits.max_block_bytes:
            raise RecordError(f"no packet block at offset {offset}")
        body = f.read(length - 8)
        if len(body) < length - 8:
            raise RecordError(f"block at offset {offset} is cut short")
        if block_type == SPB:
            if len(body) < 8:
                raise RecordError(f"simple packet block at offset {offset} is too short")
            (origlen,) = struct.unpack_from(order + "I", body, 0)
            return body[4 : 4 + min(origlen, len(body) - 8)], origlen
        if len(body) < 24:
            raise RecordError(f"packet block at offset {offset} is too short")
        caplen, origlen = struct.unpack_from(order + "II", body, 12)
        if caplen > len(body) - 24:
            raise RecordError(f"packet block at offset {offset} is shorter than its packet")
        return body[20 : 20 + caplen], origlen

    def close(self) -> None:
        self._file.close()
