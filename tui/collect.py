"""Pipeline observers that gather what the plot and follow views show, in bounded memory.

* :class:`PlotCollector` keeps, per subflow direction, the DSN of each mapping and each Data ACK
  over time (decimated to a fixed number of points) and the payload bytes per time bin; mappings
  that resend data another subflow already carried are kept as reinjection marks.
* :class:`FollowSpool` is the reassembler's ``stream_writer``: every connection's in-order data
  goes to one temporary spool file (up to a byte cap), with a small chunk list per stream, so the
  follow view can show and save a conversation without holding it in memory.

No textual here.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import os
import tempfile
import threading
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from analyzer.ingest.segment import Segment
from analyzer.model import Analysis, Connection, Subflow
from analyzer.mptcp.datalevel import DataLevel, PacketLevels
from analyzer.mptcp.options import Dss
from analyzer.seqnum import MASK64

SERIES_CAP = 4000  # points kept per series before decimating
MAX_INTERVALS = 64  # disjoint DSN ranges remembered per connection side for reinjection marks


ANCHOR_STEP = 1 << 30  # data-level bytes between two remembered 64-bit DSNs (well inside the 2^31 of a 32-bit window)


def expand(value: int, idsn: int | None, reference: int | None = None) -> int:
    """A 32-bit DSN of a packet read again from the file, as 64 bits (unchanged without an IDSN or reference).

    The detail pane re-reads one packet at a time, long after the pass, and no per-packet 64-bit value is
    stored (memory stays per flow): ``reference`` is the 64-bit DSN :class:`DsnAnchors` remembered nearest
    before the packet (exact at any distance into the stream); without one, near ``idsn`` + 1 (exact for the
    first 2^31 bytes). Everything gathered during the pass reads the data levels instead.
    """
    if idsn is None and reference is None:
        return value
    level = DataLevel(idsn)
    if reference is not None:
        level.note_mapping(reference, 0, False, True)
    return level.expand(value)


class DsnAnchors:
    """Observer: per connection side, a 64-bit DSN every :data:`ANCHOR_STEP` bytes with the frame that mapped it.

    Why: the detail pane expands a re-read packet's 32-bit DSN or Data ACK near the last anchor before its
    frame, so a connection past 2 GiB still shows the values the data levels gave during the pass; one entry per
    GiB of data, nothing per packet. Only anchored values (IDSN or a 64-bit DSN known) are kept.
    """

    def __init__(self) -> None:
        self.packet = PacketLevels()
        self._frames: dict[tuple[int, int], array] = {}  # type: ignore[type-arg]  # (id(conn), side) -> frames
        self._values: dict[tuple[int, int], list[int]] = {}

    def attach_levels(self, packet: PacketLevels, level: object) -> None:
        self.packet = packet

    def on_segment(self, seg: Segment, subflow: Subflow, direction: int) -> None:
        packet = self.packet
        conn = subflow.connection
        if packet.dss is None or packet.frame != seg.frame or conn is None:
            return
        if packet.dsn64 is not None and packet.dsn_anchored:
            self._note((id(conn), subflow.sender(direction)), seg.frame, packet.dsn64)
        if packet.ack64 is not None and packet.ack_anchored:  # acknowledges the other side's data
            self._note((id(conn), 1 - (subflow.sender(direction))), seg.frame, packet.ack64)

    def _note(self, key: tuple[int, int], frame: int, value: int) -> None:
        values = self._values.get(key)
        if values is None:
            self._frames[key] = array("q", [frame])
            self._values[key] = [value]
            return
        distance = (value - values[-1]) & MASK64
        if min(distance, (1 << 64) - distance) >= ANCHOR_STEP:
            self._frames[key].append(frame)
            values.append(value)

    def finish(self, analysis: Analysis) -> None:
        """Nothing to hand over: the anchors are read while the inspector shows packets."""

    def reference(self, conn: Connection, side: int, frame: int) -> int | None:
        """The 64-bit DSN of ``conn``'s ``side`` remembered at or before ``frame`` (None: none yet)."""
        frames = self._frames.get((id(conn), side))
        if frames is None:
            return None
        at = bisect.bisect_right(frames, frame) - 1
        return self._values[(id(conn), side)][at] if at >= 0 else None


@dataclass(slots=True)
class Series:
    """Points (time, value), thinned by doubling the stride when full: bounded, evenly spread."""

    t: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    v: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    stride: int = 1
    seen: int = 0

    def add(self, t: float, v: float) -> None:
        self.seen += 1
        if (self.seen - 1) % self.stride:
            return
        self.t.append(t)
        self.v.append(v)
        if len(self.t) >= SERIES_CAP:
            self.t = self.t[::2]
            self.v = self.v[::2]
            self.stride *= 2

    def points(self) -> tuple[list[float], list[float]]:
        return list(self.t), list(self.v)


@dataclass(slots=True)
class SubflowSeries:
    """The mappings one direction of one subflow sent, for the DSN plot."""

    dsn: Series = field(default_factory=Series)  # 64-bit DSN of each mapping's first byte
    reinjections: Series = field(default_factory=Series)  # mappings resending another subflow's data
    highest: int | None = None  # highest DSN end this direction sent


class SentRanges:
    """The DSN ranges a connection side has sent on any subflow, as few disjoint intervals."""

    __slots__ = ("ends", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def covers(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self.starts, start) - 1
        return i >= 0 and self.ends[i] >= end

    def add(self, start: int, end: int) -> None:
        starts, ends = self.starts, self.ends
        if starts and starts[-1] <= start <= ends[-1]:  # the usual case: extends the newest range
            if end > ends[-1]:
                ends[-1] = end
            return
        i = bisect.bisect_left(ends, start)  # first interval that ends at or after start
        j = bisect.bisect_right(starts, end)  # intervals before j start at or before end
        if i < j:
            start = min(start, starts[i])
            end = max(end, ends[j - 1])
        starts[i:j] = [start]
        ends[i:j] = [end]
        if len(starts) > MAX_INTERVALS:  # forget the oldest gap
            starts[0:2] = [starts[0]]
            ends[0:2] = [ends[1]]


class PlotCollector:
    """Observer keeping each subflow direction's mappings (DSN over time) and reinjections, bounded.

    Throughput and Data ACK progress come from the analysis model (:mod:`analyzer.stats`).
    """

    def __init__(self) -> None:
        self.series: dict[tuple[int, int], SubflowSeries] = {}
        self.first_ts: float | None = None
        self.packet = PacketLevels()  # the current segment's 64-bit DSN (analyzer.datalevels)
        self._sent: dict[tuple[int, int], SentRanges] = {}
        self.lock = threading.Lock()

    def attach_levels(self, packet: PacketLevels, level: object) -> None:
        """The pipeline's data levels: each mapping's 64-bit DSN is read there (what the checker saw)."""
        self.packet = packet

    def on_segment(self, seg: Segment, subflow: Subflow, direction: int) -> None:
        if self.first_ts is None:
            self.first_ts = seg.ts
        options = seg.options
        if options is None or not options.mptcp:
            return
        for opt in options.mptcp:
            if type(opt) is Dss and opt.dsn is not None and opt.data_len:
                self._mapping(opt, seg, subflow, direction)

    def _mapping(self, opt: Dss, seg: Segment, subflow: Subflow, direction: int) -> None:
        assert opt.dsn is not None and opt.data_len is not None and self.first_ts is not None
        key = (subflow.id, direction)
        series = self.series.get(key)
        if series is None:
            with self.lock:
                series = self.series[key] = SubflowSeries()
        conn = subflow.connection
        side = subflow.sender(direction)
        skey = (id(conn) if conn is not None else -subflow.id, side)
        packet = self.packet
        dsn = packet.dsn64 if packet.dss is opt and packet.dsn64 is not None else opt.dsn
        end = dsn + max(0, opt.data_len - (1 if opt.data_fin else 0))
        sent = self._sent.get(skey)
        if sent is None:
            sent = self._sent[skey] = SentRanges()
        # New on this subflow (not a TCP retransmission) yet already sent: another subflow had it.
        reinjected = (series.highest is None or dsn >= series.highest) and end > dsn and sent.covers(dsn, end)
        if series.highest is None or end > series.highest:
            series.highest = end
        if end > dsn:
            sent.add(dsn, end)
        t = seg.ts - self.first_ts
        with self.lock:
            series.dsn.add(t, float(dsn))
            if reinjected:
                series.reinjections.add(t, float(dsn))

    def finish(self, analysis: Analysis) -> None:
        self._sent.clear()


@dataclass(slots=True)
class SpooledStream:
    """One direction of one connection's data, as chunks in the spool file."""

    conn: Connection | None
    side: int
    pos: array = field(default_factory=lambda: array("Q"))  # type: ignore[type-arg]  # spool file offsets
    offset: array = field(default_factory=lambda: array("Q"))  # type: ignore[type-arg]  # stream offsets
    time: array = field(default_factory=lambda: array("d"))  # type: ignore[type-arg]
    length: array = field(default_factory=lambda: array("I"))  # type: ignore[type-arg]
    nbytes: int = 0
    truncated: bool = False  # the spool cap was reached: later bytes are not kept


@dataclass(slots=True, frozen=True)
class Chunk:
    side: int
    offset: int
    time: float
    data: bytes
    missing: int = 0  # a gap of this many bytes the capture does not have (data is empty)


HOLE = (1 << 64) - 1  # spool position of a gap
MERGE_LIMIT = 1 << 16  # bytes per chunk entry when consecutive writes are merged


class _SpoolWriter:
    """What the reassembler writes one stream to (``write`` and ``hole``; callable for older callers)."""

    def __init__(self, spool: FollowSpool, stream: SpooledStream) -> None:
        self._spool = spool
        self._stream = stream

    def write(self, offset: int, time: float, data: bytes) -> None:
        self._spool._write(self._stream, offset, time, data)

    __call__ = write

    def hole(self, offset: int, length: int) -> None:
        self._spool._hole(self._stream, offset, length)


DEFAULT_SPOOL_CAP = 256 << 20


class FollowSpool:
    """The reassembler's stream writer: keeps every connection's data in one temporary file."""

    def __init__(self, cap: int = DEFAULT_SPOOL_CAP) -> None:
        self.cap = cap
        self.streams: list[SpooledStream] = []
        self._file: BinaryIO | None = None
        self._path: str | None = None
        self._size = 0
        self._read_since_write = False
        self._lock = threading.Lock()

    def factory(self, conn: Connection | None, side: int, *_context: object) -> _SpoolWriter | None:
        """``AnalysisOptions.stream_writer``: a writer for each connection direction (extra arguments ignored)."""
        if conn is None:
            return None
        stream = SpooledStream(conn, side)
        with self._lock:
            self.streams.append(stream)
        return _SpoolWriter(self, stream)

    def _hole(self, stream: SpooledStream, offset: int, length: int) -> None:
        """Bytes the capture lacks: kept as a chunk with no data, shown as a gap."""
        with self._lock:
            lengths = stream.length
            if (
                lengths
                and stream.pos[-1] == HOLE
                and stream.offset[-1] + lengths[-1] == offset
                and lengths[-1] + length <= 0xFFFFFFFF
            ):
                lengths[-1] += length
                return
            last_time = stream.time[-1] if stream.time else 0.0
            stream.pos.append(HOLE)
            stream.offset.append(offset)
            stream.time.append(last_time)
            stream.length.append(min(length, 0xFFFFFFFF))

    def _write(self, stream: SpooledStream, offset: int, time: float, data: bytes) -> None:
        n = len(data)
        if not n:
            return
        with self._lock:
            if self._size + n > self.cap:
                stream.truncated = True
                return
            f = self._file
            if f is None:
                fd, self._path = tempfile.mkstemp(prefix="mptcp-inspector-", suffix=".streams")
                f = self._file = os.fdopen(fd, "w+b")
            if self._read_since_write:
                f.seek(self._size)
                self._read_since_write = False
            f.write(data)
            lengths = stream.length
            # Consecutive bytes of the stream written back to back extend the last chunk.
            if (
                lengths
                and stream.pos[-1] + lengths[-1] == self._size
                and stream.offset[-1] + lengths[-1] == offset
                and lengths[-1] + n <= MERGE_LIMIT
            ):
                lengths[-1] += n
            else:
                stream.pos.append(self._size)
                stream.offset.append(offset)
                stream.time.append(time)
                lengths.append(n)
            self._size += n
            stream.nbytes += n

    def streams_of(self, conn: Connection) -> list[SpooledStream]:
        with self._lock:
            return [s for s in self.streams if s.conn is conn]

    def chunks(
        self, conn: Connection, sides: tuple[int, ...] = (0, 1), limit: int | None = None, max_chunks: int | None = None
    ) -> list[Chunk]:
        """The connection's data in time order (both directions interleaved), up to ``limit`` bytes."""
        out: list[Chunk] = []
        total = 0
        for side, pos, offset, time, length in self._merged(conn, sides):
            if (limit is not None and total >= limit) or (max_chunks is not None and len(out) >= max_chunks):
                break
            if pos == HOLE:
                out.append(Chunk(side, offset, time, b"", missing=length))
                continue
            data = self._read_at(pos, length)
            if data is None:
                break
            out.append(Chunk(side, offset, time, data))
            total += length
        return out

    def _read_at(self, pos: int, length: int) -> bytes | None:
        """Bytes of one spooled chunk; None once the spool is closed (the caller stops)."""
        with self._lock:
            if self._file is None:
                return None
            self._file.seek(pos)
            data = self._file.read(length)
            self._read_since_write = True
        return data

    def _merged(self, conn: Connection, sides: tuple[int, ...]) -> Iterator[tuple[int, int, int, float, int]]:
        """(side, spool position, stream offset, time, length) of each chunk, merged lazily by time."""
        with self._lock:
            if self._file is not None:
                self._file.flush()

        def entries(stream: SpooledStream) -> Iterator[tuple[float, int, int, int, int]]:
            for i in range(len(stream.pos)):
                yield stream.time[i], stream.side, stream.pos[i], stream.offset[i], stream.length[i]

        streams = [s for s in self.streams_of(conn) if s.side in sides]
        for time, side, pos, offset, length in heapq.merge(*(entries(s) for s in streams)):
            yield side, pos, offset, time, length

    def write_to(self, conn: Connection, sides: tuple[int, ...], target: BinaryIO) -> int:
        """Write the connection's data (one direction: the stream; both: interleaved by time)."""
        written = 0
        for _side, pos, _offset, _time, length in self._merged(conn, sides):
            if pos == HOLE:
                continue
            data = self._read_at(pos, length)
            if data is None:
                break
            target.write(data)
            written += len(data)
        return written

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._path)
                self._path = None
