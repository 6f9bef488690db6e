"""Packets materialised on demand: index row + bytes read back from the file + the analyzer's decode.

The packet list asks for the few dozen rows on screen; the detail and hex views ask for one. Each
packet is read from its file offset and decoded with :func:`analyzer.ingest.decode.decode_segment`,
and a small LRU cache keeps recent ones so scrolling back and forth costs nothing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from analyzer.ingest.capture import CaptureError, RecordError, RecordFile
from analyzer.ingest.decode import Skip, decode_segment
from analyzer.ingest.segment import Segment
from tui.describe import DsnBases, option_summary, other_summary
from tui.index import PacketIndex, Row

CACHE_SIZE = 2048


@dataclass(slots=True)
class Packet:
    row: Row
    data: bytes
    origlen: int
    decoded: Segment | Skip
    error: str | None = None

    @property
    def frame(self) -> int:
        return self.row.frame

    @property
    def segment(self) -> Segment | None:
        return self.decoded if isinstance(self.decoded, Segment) else None

    def summary(self, bases: DsnBases | None = None) -> str:
        """The Info column: MPTCP options, else a short TCP description, else why it is not TCP.

        ``bases``: the IDSNs DSNs and Data ACKs are shown relative to (None: raw, as on the wire).
        """
        if self.error is not None:
            return f"<{self.error}>"
        seg = self.segment
        if seg is None:
            assert isinstance(self.decoded, Skip)
            return other_summary(self.row.link_type, self.data, self.decoded)
        if seg.options is not None and seg.options.mptcp:
            return "; ".join(option_summary(opt, seg.flags, bases) for opt in seg.options.mptcp)
        text = f"{seg.sport} → {seg.dport} seq={seg.seq}"
        if seg.flags & 0x10:
            text += f" ack={seg.ack}"
        text += f" win={seg.window} len={seg.payload_len}"
        return text


class PacketStore:
    """Reads packets back by frame number; safe to use from several threads (one reader each).

    ``data_path`` is the file the index's offsets point into: the capture, or the decompressed copy
    of a gzip capture; ``before_read`` makes that copy's latest bytes readable (flushes it).
    """

    def __init__(self, index: PacketIndex, data_path: str, before_read: Callable[[], None] | None = None) -> None:
        self.index = index
        self.data_path = data_path
        self._before_read = before_read
        self._local = threading.local()
        self._readers: list[RecordFile] = []
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, Packet] = OrderedDict()
        # subflow id * 2 + direction -> (sender's IDSN, peer's IDSN), filled when the analysis ends
        self.dsn_bases: dict[int, DsnBases] = {}
        self.absolute = False  # --absolute: raw DSNs in the Info column

    def info(self, packet: Packet) -> str:
        """The Info column of ``packet``: DSNs relative to the IDSN once the analysis knows it."""
        row = packet.row
        bases = None if self.absolute else self.dsn_bases.get(row.subflow * 2 + row.direction)
        return packet.summary(bases)

    def _reader(self) -> RecordFile:
        reader: RecordFile | None = getattr(self._local, "reader", None)
        if reader is None:
            reader = RecordFile(self.data_path)
            self._local.reader = reader
            with self._lock:
                self._readers.append(reader)
        return reader

    def packet(self, frame: int) -> Packet:
        """Frame ``frame`` (1-based), from the cache or the file."""
        with self._lock:
            hit = self._cache.get(frame)
            if hit is not None:
                self._cache.move_to_end(frame)
                return hit
        packet = self.read(frame)
        with self._lock:
            self._cache[frame] = packet
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return packet

    def read(self, frame: int) -> Packet:
        """Frame ``frame`` straight from the file (not cached)."""
        row = self.index.row(frame - 1)
        try:
            if self._before_read is not None:
                self._before_read()
            data, origlen = self._reader().read(row.offset)
        except (RecordError, CaptureError, OSError, ValueError) as exc:
            return Packet(row, b"", 0, Skip.TRUNCATED_HEADER, error=f"cannot read frame {frame}: {exc}")
        decoded = decode_segment(frame, row.ts, row.link_type, data)
        return Packet(row, data, origlen, decoded)

    def close(self) -> None:
        with self._lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
