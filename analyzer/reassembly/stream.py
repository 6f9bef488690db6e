"""One direction of an MPTCP connection's data stream, rebuilt in data-sequence order.

Bytes arrive as (offset, bytes) pieces, where offset = DSN − (IDSN + 1) modulo 2^64, in whatever
order the subflows delivered them. In-order bytes are hashed (and optionally handed to a writer)
immediately; only pieces waiting for an earlier gap are buffered, up to a cap beyond which the gap
is declared a hole. A window of recently delivered bytes lets later copies (TCP retransmissions,
reinjections on another subflow) be compared byte for byte. Nothing is ever invented: a range the
capture did not contain is a hole, the stream is then incomplete and its SHA-256 is not reported.

Bytes whose DSS checksum failed never reach :meth:`DataStream.add` (the mapper holds a checksummed
mapping's bytes until its verdict). Only when the receiver kept them (it fell back to TCP after MP_FAIL,
RFC 8684 §3.7) do they come in through :meth:`DataStream.add_failed`: they fill what no other copy
filled and are never compared, since a copy known to be bad proves nothing about the others.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Protocol

from analyzer.mptcp.reorder import ReorderQueue

MASK64 = (1 << 64) - 1
DEFAULT_BUFFER_CAP = 64 << 20  # bytes of out-of-order data held before a gap is declared a hole
DEFAULT_PIECE_CAP = 1 << 16  # out-of-order pieces held (tiny segments cost far more than their bytes)
RECENT_WINDOW = 4 << 20  # delivered bytes kept for comparing duplicates
MAX_RECORDED = 100  # holes / conflicts kept with their details (counts are always exact)
MAX_BAD_RANGES = 256  # delivered ranges known to hold bytes that failed their checksum (never compared)
MAX_OWNER_RUNS = 1 << 16  # runs of "which subflow first carried these bytes", for reinjection attribution
BUCKET = 0.1  # seconds per progress bucket


class StreamWriter(Protocol):
    """Receives a stream's bytes in order (``follow``, the TUI), and the holes between them."""

    def write(self, offset: int, time: float, data: bytes) -> None: ...

    def hole(self, offset: int, length: int) -> None: ...


@dataclass(slots=True)
class Conflict:
    """The same data-sequence range was carried with different bytes."""

    offset: int
    length: int
    frame: int
    first_frame: int | None
    subflow: int


@dataclass(slots=True)
class _Piece:
    offset: int
    data: bytes | None  # None: bytes known to exist but not captured (snaplen) → a hole
    length: int
    time: float
    frame: int
    subflow: int
    bad: bool = False  # bytes of a mapping whose checksum failed, kept by the receiver


@dataclass(slots=True)
class DataStream:
    """Reassembles one direction; see the module docstring."""

    base: int  # DSN of offset 0: IDSN + 1, or the first DSN seen when the handshake was not captured
    base_known: bool
    buffer_cap: int = DEFAULT_BUFFER_CAP
    writer: StreamWriter | None = None
    piece_cap: int = DEFAULT_PIECE_CAP
    cap_hits: int = 0  # gaps declared holes because a buffer cap was reached (reported as LIMIT-001)
    cap_hit_frame: int | None = None
    next_offset: int = 0
    delivered: int = 0  # bytes hashed (holes excluded)
    hole_bytes: int = 0
    holes: list[tuple[int, int]] = field(default_factory=list)  # (offset, length), first MAX_RECORDED
    # per recorded hole: (frame, time) of the first data the capture has after it (None: not known)
    hole_frames: list[tuple[int, float] | None] = field(default_factory=list)
    hole_count: int = 0
    duplicate_bytes: int = 0  # bytes seen again after they were delivered
    unverified_duplicate_bytes: int = 0  # duplicates too old (or not captured) to compare
    conflicts: list[Conflict] = field(default_factory=list)
    conflict_count: int = 0
    out_of_order: int = 0  # pieces that arrived ahead of a gap
    hol_wait_total: float = 0.0  # sum over buffered pieces of how long they waited for the gap
    hol_wait_max: float = 0.0
    hol_blocked: float = 0.0  # seconds the stream's head waited for a gap (overlapping waits counted once)
    fin_offset: int | None = None  # offset of the DATA_FIN unit
    high_known: bool = False  # a 64-bit DSN was mapped into this stream: 32-bit DSNs expand unambiguously
    fin_frame: int | None = None  # the frame that set fin_offset
    fin_conflict_at: tuple[int, int | None] | None = None  # (offset, frame) of the first DATA_FIN elsewhere
    highest_dsn: int | None = None  # for expanding 32-bit DSNs
    zero_window_at: int | None = None  # the receiver's Data ACK when it last advertised a zero window
    probe_bytes: int = 0  # bytes of zero-window probes (mapped below the Data ACK: old, never compared)
    # subflow id -> bytes it was first to carry (delivered or, under a snaplen, seen but not kept)
    first_carrier: dict[int, int] = field(default_factory=dict)
    # (subflow that first carried the bytes, subflow that carried them again) -> bytes
    reinjections: dict[tuple[int, int], int] = field(default_factory=dict)
    # bytes credited to ``reinjections`` so far: the mapper reads its growth per piece, so the per-subflow
    # count and the matrix are one definition (a re-send on another subflow than the first carrier)
    reinjected: int = 0
    # same key -> (first time, first frame, last time, last frame) of those re-sent bytes, for the diagnosis
    reinjection_spans: dict[tuple[int, int], tuple[float, int, float, int]] = field(default_factory=dict)
    progress: dict[int, int] = field(default_factory=dict)  # time bucket -> bytes the stream advanced
    checksum_failed_bytes: int = 0  # bytes of mappings whose DSS checksum failed (every failed copy counted)
    checksum_kept_bytes: int = 0  # of those, bytes the receiver kept (fallback after MP_FAIL): in the stream
    # bytes released before their checksum was known (the mapper's hold was full) that then failed: the
    # stream may hold a bad copy where the receiver took a good one, so its SHA-256 proves nothing
    unverified_bad_bytes: int = 0
    _bad: list[tuple[int, int]] = field(default_factory=list)  # [start, end) ranges never compared
    _owner_starts: list[int] = field(default_factory=list)
    _owner_ids: list[int] = field(default_factory=list)
    _last_time: float = 0.0
    _hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    # pieces ahead of a gap, one per offset (the protocol core's ordered waiting room, the endpoint's too)
    _waiting: ReorderQueue[_Piece] = field(default_factory=ReorderQueue)
    _recent: bytearray = field(default_factory=bytearray)
    _recent_start: int = 0

    # ------------------------------------------------------------------ input
    def offset_of(self, dsn: int) -> int:
        return (dsn - self.base) & MASK64

    def note_dsn(self, dsn_end: int) -> None:
        if self.highest_dsn is None or ((dsn_end - self.highest_dsn) & MASK64) < (1 << 63):
            self.highest_dsn = dsn_end & MASK64

    def add(self, offset: int, data: bytes, time: float, frame: int, subflow: int, retransmission: bool = False) -> int:
        """Add captured bytes at ``offset``; returns how many of them were duplicates.

        ``retransmission``: the carrier already sent these bytes itself (TCP retransmission), so a
        duplicate is not credited as a reinjection from another subflow.
        """
        if offset == self.next_offset and not self._waiting:  # the common case: the next bytes, in order
            if data:
                self._deliver(data, time, subflow)
            return 0
        length = len(data)
        if not length:
            return 0
        if offset >= 1 << 63:  # before the stream's start (data sent before a late capture began)
            return 0
        end = offset + length
        nxt = self.next_offset
        dup = 0
        if offset < nxt:
            overlap = min(end, nxt) - offset
            self._compare_delivered(offset, data[:overlap], frame, subflow, retransmission, time)
            dup = overlap
            if end <= nxt:
                return dup
            data = data[overlap:]
            offset = nxt
        if offset == nxt:
            waiting = self._waiting
            while (first := waiting.first()) is not None and offset < first < offset + len(data):
                # Bytes buffered earlier lie inside this piece: they came first, so they are delivered as
                # their carrier's, and this piece's copy of them is the duplicate (the reinjection).
                cut = first - offset
                self._deliver(data[:cut], time, subflow)
                self._drain(time)
                offset += cut
                data = data[cut:]
                overlap = min(len(data), self.next_offset - offset)
                if overlap > 0:
                    self._compare_delivered(offset, data[:overlap], frame, subflow, retransmission)
                    dup += overlap
                    offset += overlap
                    data = data[overlap:]
                if not data:
                    return dup
            self._deliver(data, time, subflow)
            if waiting:
                self._drain(time)
        else:
            self._buffer(_Piece(offset, data, len(data), time, frame, subflow))
        return dup

    def add_probe(self, offset: int, length: int) -> None:
        """A zero-window probe: its mapping names an acknowledged DSN but its payload is the next byte, so the
        receiver drops it as old data. Counted as a duplicate that proves nothing; never compared."""
        self.probe_bytes += length
        if offset + length <= self.next_offset:
            self.duplicate_bytes += length
            self.unverified_duplicate_bytes += length

    def add_failed(self, offset: int, data: bytes, time: float, frame: int, subflow: int) -> None:
        """Bytes whose mapping failed its checksum but which the receiver kept (see the module docstring)."""
        self.checksum_kept_bytes += len(data)
        end = offset + len(data)
        if not data or offset >= 1 << 63 or end <= self.next_offset:
            return  # nothing left that another copy did not already fill
        if offset < self.next_offset:
            data = data[self.next_offset - offset :]
            offset = self.next_offset
        self._mark_bad(offset, end)
        if offset == self.next_offset:
            self._deliver(data, time, subflow)
            if self._waiting:
                self._drain(time)
        else:
            self._buffer(_Piece(offset, data, len(data), time, frame, subflow, bad=True))

    def note_failed(self, length: int, offset: int | None = None) -> None:
        """A mapping of ``length`` bytes failed its checksum; ``offset``: its bytes already entered the stream."""
        self.checksum_failed_bytes += length
        if offset is not None:
            self.unverified_bad_bytes += length
            self._mark_bad(offset, offset + length)

    def add_missing(
        self, offset: int, length: int, time: float, frame: int, subflow: int, retransmission: bool = False
    ) -> int:
        """Bytes that were on the wire but not in the capture (snaplen): a hole when reached.

        Returns how many of them lie behind the stream's position (already seen: duplicates).
        """
        if length <= 0 or offset >= 1 << 63:
            return 0
        end = offset + length
        if end <= self.next_offset:
            self.duplicate_bytes += length
            self.unverified_duplicate_bytes += length
            if not retransmission:
                self._attribute(offset, length, subflow, time, frame)
            return length
        dup = 0
        if offset < self.next_offset:
            dup = self.next_offset - offset
            self.duplicate_bytes += dup
            self.unverified_duplicate_bytes += dup
            if not retransmission:
                self._attribute(offset, dup, subflow, time, frame)
            length -= dup
            offset = self.next_offset
        if offset == self.next_offset and not self._waiting:
            self._hole(offset, length, subflow, time, frame)  # the common snaplen case: in order, nothing waiting
            return dup
        existing = self._waiting.get(offset)
        if existing is not None and existing.length >= length:
            return dup
        self._buffer(_Piece(offset, None, length, time, frame, subflow), counted=False)
        if offset == self.next_offset:
            self._drain(time)
        return dup

    def set_fin(self, offset: int, frame: int | None = None) -> None:
        if self.fin_offset is None:
            self.fin_offset = offset
            self.fin_frame = frame
        elif self.fin_offset != offset and self.fin_conflict_at is None:
            self.fin_conflict_at = (offset, frame)

    @property
    def fin_conflict(self) -> bool:
        """The DATA_FIN was seen at two different offsets."""
        return self.fin_conflict_at is not None

    def finish(self) -> None:
        """End of capture: whatever still waits behind a gap is delivered after recording the hole."""
        while (offset := self._waiting.first()) is not None:
            if offset > self.next_offset:
                self._hole(self.next_offset, offset - self.next_offset, *self._seen_at(offset))
            self._drain(None)

    def _seen_at(self, offset: int) -> tuple[None, float | None, int | None]:
        """(subflow, time, frame) arguments of ``_hole`` for the piece waiting at ``offset``: the data after a gap."""
        piece = self._waiting.get(offset)
        return (None, None, None) if piece is None else (None, piece.time, piece.frame)

    # ------------------------------------------------------------------ results
    @property
    def complete(self) -> bool:
        """Every byte from the first one to the DATA_FIN was captured and placed."""
        return (
            self.base_known
            and self.hole_count == 0
            and self.unverified_bad_bytes == 0
            and not self._waiting
            and self.fin_offset is not None
            and not self.fin_conflict
            and self.next_offset == self.fin_offset
        )

    @property
    def sha256(self) -> str:
        return self._hasher.hexdigest()

    # ------------------------------------------------------------------ internals
    def _deliver(self, data: bytes, time: float | None, subflow: int) -> None:
        self._hasher.update(data)
        self._advance(len(data), subflow, time)
        if self.writer is not None:
            self.writer.write(self.next_offset, time or 0.0, data)
        self.next_offset += len(data)
        self.delivered += len(data)
        recent = self._recent
        recent += data
        if len(recent) > 2 * RECENT_WINDOW:
            cut = len(recent) - RECENT_WINDOW
            del recent[:cut]
            self._recent_start += cut

    def _advance(self, length: int, subflow: int, time: float | None) -> None:
        """Bookkeeping for bytes that move the stream forward: carrier, owner runs, progress."""
        self.first_carrier[subflow] = self.first_carrier.get(subflow, 0) + length
        ids = self._owner_ids
        if not ids or ids[-1] != subflow:
            self._owner_starts.append(self.next_offset)
            ids.append(subflow)
            if len(ids) > MAX_OWNER_RUNS:
                del self._owner_starts[: MAX_OWNER_RUNS // 2]
                del ids[: MAX_OWNER_RUNS // 2]
        if time is None:
            time = self._last_time
        else:
            self._last_time = time
        bucket = int(time / BUCKET)
        self.progress[bucket] = self.progress.get(bucket, 0) + length

    def _attribute(self, offset: int, length: int, subflow: int, time: float, frame: int) -> None:
        """Bytes at ``offset`` were carried again by ``subflow``: credit a reinjection to their first carrier."""
        starts, ids = self._owner_starts, self._owner_ids
        index = bisect_right(starts, offset) - 1
        if index < 0:
            return
        end = offset + length
        while index < len(starts) and starts[index] < end:
            run_end = starts[index + 1] if index + 1 < len(starts) else self.next_offset
            overlap = min(end, run_end) - max(offset, starts[index])
            owner = ids[index]
            if overlap > 0 and owner != subflow:
                key = (owner, subflow)
                self.reinjections[key] = self.reinjections.get(key, 0) + overlap
                self.reinjected += overlap
                span = self.reinjection_spans.get(key)
                self.reinjection_spans[key] = (time, frame, time, frame) if span is None else (*span[:2], time, frame)
            index += 1

    def _hole(
        self, offset: int, length: int, subflow: int | None = None, time: float | None = None, frame: int | None = None
    ) -> None:
        """Skip ``length`` bytes; ``subflow`` carried them but the capture kept no bytes (snaplen)."""
        if subflow is not None:
            self._advance(length, subflow, time)
        self.hole_bytes += length
        holes = self.holes
        if holes and holes[-1][0] + holes[-1][1] == offset:  # extends the previous hole
            holes[-1] = (holes[-1][0], holes[-1][1] + length)
        else:
            self.hole_count += 1
            if len(holes) < MAX_RECORDED:
                holes.append((offset, length))
                seen = time if time is not None else self._last_time
                self.hole_frames.append(None if frame is None else (frame, seen))
        if self.writer is not None:
            self.writer.hole(offset, length)
        self.next_offset = offset + length
        # The comparison window must stay contiguous with next_offset.
        self._recent.clear()
        self._recent_start = self.next_offset

    def _buffer(self, piece: _Piece, counted: bool = True) -> None:
        waiting = self._waiting
        existing = waiting.get(piece.offset)
        if existing is not None:
            # Two copies waiting at one offset (a re-send cut at other boundaries): the common range is a
            # duplicate, compared byte for byte whichever copy is longer; the longer one stays.
            if existing.data is not None and piece.data is not None and not (existing.bad or piece.bad):
                self._compare_pieces(existing, piece)
                common = min(existing.length, piece.length)
                self.duplicate_bytes += common
            good_over_bad = existing.bad and not piece.bad and piece.data is not None
            if existing.length >= piece.length and not good_over_bad:
                return
        waiting.put(piece)  # replaces the shorter (or bad) copy
        if counted:
            self.out_of_order += 1
        while (waiting.bytes > self.buffer_cap or len(waiting) > self.piece_cap) and waiting:
            self.cap_hits += 1
            if self.cap_hit_frame is None:
                self.cap_hit_frame = piece.frame
            first = waiting.first()
            assert first is not None
            self._hole(self.next_offset, first - self.next_offset, *self._seen_at(first))
            self._drain(None)

    def _drain(self, now: float | None) -> None:
        waiting = self._waiting
        longest = 0.0  # the earliest piece waiting behind this gap says how long the head was blocked
        while (first := waiting.first()) is not None and first <= self.next_offset:
            piece = waiting.pop_first()
            offset = piece.offset
            end = offset + piece.length
            nxt = self.next_offset
            if end <= nxt:
                if piece.data is not None and not piece.bad:
                    self._compare_delivered(offset, piece.data, piece.frame, piece.subflow, time=piece.time)
                continue
            skip = nxt - offset
            if piece.data is None:
                self._hole(nxt, end - nxt, piece.subflow, piece.time, piece.frame)
                continue
            if skip and not piece.bad:
                self._compare_delivered(offset, piece.data[:skip], piece.frame, piece.subflow, time=piece.time)
            if now is not None:
                wait = now - piece.time
                self.hol_wait_total += wait
                if wait > self.hol_wait_max:
                    self.hol_wait_max = wait
                longest = max(longest, wait)
            self._deliver(piece.data[skip:], piece.time, piece.subflow)
        self.hol_blocked += longest

    def _compare_delivered(
        self, offset: int, data: bytes, frame: int, subflow: int, retransmission: bool = False, time: float = 0.0
    ) -> None:
        self.duplicate_bytes += len(data)
        if not retransmission:
            self._attribute(offset, len(data), subflow, time, frame)
        start = offset - self._recent_start
        if start < 0 or offset + len(data) > self.next_offset or (self._bad and self._overlaps_bad(offset, len(data))):
            self.unverified_duplicate_bytes += len(data)
            return
        if self._recent[start : start + len(data)] != data:
            self._conflict(offset, data, frame, subflow, None, bytes(self._recent[start : start + len(data)]))

    def _mark_bad(self, start: int, end: int) -> None:
        bad = self._bad
        bad.append((start, end))
        if len(bad) > MAX_BAD_RANGES:
            del bad[0]  # the oldest: far behind the comparison window by now

    def _overlaps_bad(self, offset: int, length: int) -> bool:
        """Does [offset, offset + length) touch bytes known to have failed their checksum?"""
        end = offset + length
        return any(start < end and offset < stop for start, stop in self._bad)

    def _compare_pieces(self, old: _Piece, new: _Piece) -> None:
        assert old.data is not None and new.data is not None
        common = min(old.length, new.length)
        if old.data[:common] != new.data[:common]:
            self._conflict(new.offset, new.data[:common], new.frame, new.subflow, old.frame, old.data[:common])

    def _conflict(
        self, offset: int, data: bytes, frame: int, subflow: int, first_frame: int | None, earlier: bytes
    ) -> None:
        # Locate the first differing byte so the report points at it.
        diff = next((i for i, (a, b) in enumerate(zip(data, earlier, strict=False)) if a != b), 0)
        self.conflict_count += 1
        if len(self.conflicts) < MAX_RECORDED:
            self.conflicts.append(Conflict(offset + diff, len(data) - diff, frame, first_frame, subflow))
