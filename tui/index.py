"""A compact per-frame index of a capture: a few numbers per packet, in column arrays.

The packet list shows millions of rows, so it cannot hold one Python object per packet. Each frame
gets 29 bytes spread over typed columns (file offset, time, subflow, payload length, TCP flags,
direction/link, MPTCP option kinds, DSS flags), stored in chunks of 65,536 rows: a chunk is filled
through :class:`array.array` appends (cheap in the analysis thread) and then frozen into numpy
arrays that filters work on whole. Everything else about a packet is read back from the file.

Frame ``n`` is row ``n - 1``: every record has a row, TCP or not, so frame numbers and rows agree.
This module does not import textual.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.ingest.record import Record
from analyzer.ingest.segment import Segment
from analyzer.model import Analysis, Subflow
from analyzer.mptcp.options import (
    AddAddr,
    Dss,
    MalformedOption,
    MpCapable,
    MpExperimental,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    RemoveAddr,
    UnknownMptcpOption,
)

CHUNK_BITS = 16
CHUNK = 1 << CHUNK_BITS

# Option-kind bits of the ``opts`` column.
OPT_MP_CAPABLE = 1 << 0
OPT_MP_JOIN = 1 << 1
OPT_DSS = 1 << 2
OPT_ADD_ADDR = 1 << 3
OPT_REMOVE_ADDR = 1 << 4
OPT_MP_PRIO = 1 << 5
OPT_MP_FAIL = 1 << 6
OPT_MP_FASTCLOSE = 1 << 7
OPT_MP_TCPRST = 1 << 8
OPT_MP_EXPERIMENTAL = 1 << 9
OPT_UNKNOWN = 1 << 10
OPT_MALFORMED = 1 << 11
OPT_TCP_MALFORMED = 1 << 12  # the TCP option list itself is malformed
OPT_ADD_ADDR_ECHO = 1 << 13
OPT_MPTCP_ANY = (1 << 12) - 1

OPTION_BITS: dict[str, int] = {
    "MP_CAPABLE": OPT_MP_CAPABLE,
    "MP_JOIN": OPT_MP_JOIN,
    "DSS": OPT_DSS,
    "ADD_ADDR": OPT_ADD_ADDR,
    "REMOVE_ADDR": OPT_REMOVE_ADDR,
    "MP_PRIO": OPT_MP_PRIO,
    "MP_FAIL": OPT_MP_FAIL,
    "MP_FASTCLOSE": OPT_MP_FASTCLOSE,
    "MP_TCPRST": OPT_MP_TCPRST,
    "MP_EXPERIMENTAL": OPT_MP_EXPERIMENTAL,
    "UNKNOWN": OPT_UNKNOWN,
    "MALFORMED": OPT_MALFORMED,
}

_OPTION_TYPE_BITS: dict[type, int] = {
    MpCapable: OPT_MP_CAPABLE,
    MpJoinSyn: OPT_MP_JOIN,
    MpJoinSynAck: OPT_MP_JOIN,
    MpJoinAck: OPT_MP_JOIN,
    Dss: OPT_DSS,
    AddAddr: OPT_ADD_ADDR,
    RemoveAddr: OPT_REMOVE_ADDR,
    MpPrio: OPT_MP_PRIO,
    MpFail: OPT_MP_FAIL,
    MpFastclose: OPT_MP_FASTCLOSE,
    MpTcpRst: OPT_MP_TCPRST,
    MpExperimental: OPT_MP_EXPERIMENTAL,
    UnknownMptcpOption: OPT_UNKNOWN,
    MalformedOption: OPT_MALFORMED,
}

# DSS bits of the ``dss`` column: the low five bits are the DSS flags byte as sent.
DSS_ACK, DSS_ACK64, DSS_MAP, DSS_DSN64, DSS_FIN = 0x01, 0x02, 0x04, 0x08, 0x10
DSS_CSUM = 0x40  # the mapping carries a checksum
DSS_INFINITE = 0x80  # infinite mapping (data-level length 0)

# Bits of the ``meta`` column.
META_DIR = 0x01  # sent by the subflow's server (s2c)
META_TCP = 0x02  # decoded as a TCP segment (has a subflow)
META_LINK_SHIFT = 2  # link-type table index (0..63) in the upper six bits
META_SEGMENT_BITS = META_DIR | META_TCP  # what a segment adds to a frame-only row (the link bits stay)

# (name, array typecode, numpy dtype)
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("offset", "Q", "u8"),
    ("ts", "d", "f8"),
    ("subflow", "I", "u4"),
    ("plen", "I", "u4"),
    ("flags", "B", "u1"),
    ("meta", "B", "u1"),
    ("opts", "H", "u2"),
    ("dss", "B", "u1"),
)
COLUMN_NAMES = tuple(name for name, _code, _dtype in COLUMNS)
BYTES_PER_PACKET = sum(np.dtype(dtype).itemsize for _n, _c, dtype in COLUMNS)

Column = npt.NDArray[Any]


@dataclass(slots=True, frozen=True)
class Row:
    """One frame's indexed fields (materialised for a visible row)."""

    frame: int
    offset: int
    ts: float
    subflow: int  # 0 for a frame that is not a TCP segment
    plen: int
    flags: int
    direction: int
    is_tcp: bool
    link_type: int
    opts: int
    dss: int


class PacketIndex:
    """Column store of every frame. One writer thread appends; readers see rows below :attr:`count`."""

    def __init__(self) -> None:
        self.count = 0
        self.link_types: list[int] = []
        # Every chunk, the last one open (array.array columns) and the others frozen (numpy). The open
        # chunk is swapped for its frozen copy in one list assignment, so a reader in another thread
        # always finds complete rows.
        self._chunks: list[tuple[Any, ...]] = [self._new_chunk()]
        self._append = [col.append for col in self._chunks[-1]]

    @staticmethod
    def _new_chunk() -> tuple[array, ...]:  # type: ignore[type-arg]
        return tuple(array(code) for _name, code, _dtype in COLUMNS)

    # -- writing ------------------------------------------------------------------------------
    def link_index(self, link_type: int) -> int:
        try:
            return self.link_types.index(link_type)
        except ValueError:
            self.link_types.append(link_type)
            return min(len(self.link_types) - 1, 63)

    def append(
        self, offset: int, ts: float, subflow: int, plen: int, flags: int, meta: int, opts: int, dss: int
    ) -> None:
        a = self._append
        a[0](offset)
        a[1](ts)
        a[2](subflow)
        a[3](plen)
        a[4](flags)
        a[5](meta)
        a[6](opts)
        a[7](dss)
        self.count += 1
        if self.count & (CHUNK - 1) == 0:
            self._freeze()

    def fill(self, row: int, subflow: int, plen: int, flags: int, meta: int, opts: int, dss: int) -> None:
        """Give an existing frame-only row its segment: one the pipeline held back and replayed once grouped."""
        cols = self._chunks[row // CHUNK]
        i = row % CHUNK
        cols[2][i] = subflow
        cols[3][i] = plen
        cols[4][i] = flags
        cols[5][i] = (int(cols[5][i]) & ~META_SEGMENT_BITS) | meta
        cols[6][i] = opts
        cols[7][i] = dss

    def _freeze(self) -> None:
        cols = self._chunks[-1]
        frozen = tuple(
            np.frombuffer(col, dtype=dtype).copy() for col, (_n, _c, dtype) in zip(cols, COLUMNS, strict=True)
        )
        self._chunks[-1] = frozen
        opened = self._new_chunk()
        self._append = [col.append for col in opened]
        self._chunks.append(opened)

    # -- reading ------------------------------------------------------------------------------
    def _chunk(self, i: int) -> tuple[Column, ...] | tuple[array, ...]:  # type: ignore[type-arg]
        return self._chunks[i]

    def row(self, index: int) -> Row:
        """The fields of row ``index`` (frame ``index + 1``)."""
        if not 0 <= index < self.count:
            raise IndexError(index)
        chunk = self._chunk(index >> CHUNK_BITS)
        j = index & (CHUNK - 1)
        meta = int(chunk[5][j])
        link = meta >> META_LINK_SHIFT
        return Row(
            frame=index + 1,
            offset=int(chunk[0][j]),
            ts=float(chunk[1][j]),
            subflow=int(chunk[2][j]),
            plen=int(chunk[3][j]),
            flags=int(chunk[4][j]),
            direction=meta & META_DIR,
            is_tcp=bool(meta & META_TCP),
            link_type=self.link_types[link] if link < len(self.link_types) else -1,
            opts=int(chunk[6][j]),
            dss=int(chunk[7][j]),
        )

    @property
    def first_ts(self) -> float | None:
        """Time of frame 1."""
        if not self.count:
            return None
        return float(self._chunk(0)[1][0])

    def ts(self, index: int) -> float:
        chunk = self._chunk(index >> CHUNK_BITS)
        return float(chunk[1][index & (CHUNK - 1)])

    def chunks(self, name: str, stop: int | None = None) -> Iterator[tuple[int, Column]]:
        """``(first row, values)`` per chunk of column ``name`` for rows below ``stop`` (default all)."""
        col = COLUMN_NAMES.index(name)
        stop = self.count if stop is None else min(stop, self.count)
        dtype = COLUMNS[col][2]
        for i, chunk in enumerate(list(self._chunks)):
            start = i << CHUNK_BITS
            if start >= stop:
                return
            values = chunk[col]
            if isinstance(values, np.ndarray):
                yield start, values[: stop - start]
            else:  # the open chunk, still growing: copy what is there
                yield start, np.array(values[: stop - start], dtype=dtype)

    def values(self, name: str, start: int, stop: int) -> Column:
        """Column ``name`` for rows ``[start, stop)`` (a copy), touching only the chunks needed."""
        col = COLUMN_NAMES.index(name)
        dtype = COLUMNS[col][2]
        start, stop = max(0, start), min(stop, self.count)
        parts: list[Column] = []
        row = start
        while row < stop:
            ci = row >> CHUNK_BITS
            base = ci << CHUNK_BITS
            end = min(stop, base + CHUNK)
            chunk = self._chunk(ci)
            parts.append(np.array(chunk[col][row - base : end - base], dtype=dtype))
            row = end
        if not parts:
            return np.zeros(0, dtype=dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def column(self, name: str, stop: int | None = None) -> Column:
        """Column ``name`` as one numpy array (a copy) of the rows below ``stop``."""
        parts = [values for _start, values in self.chunks(name, stop)]
        if not parts:
            return np.zeros(0, dtype=COLUMNS[COLUMN_NAMES.index(name)][2])
        return np.concatenate(parts)

    @property
    def nbytes(self) -> int:
        """Bytes held by the columns (allocated capacity of the open chunk included)."""
        total = 0
        for chunk in self._chunks:
            for col in chunk:
                total += col.nbytes if isinstance(col, np.ndarray) else col.buffer_info()[1] * col.itemsize
        return total


class IndexObserver:
    """Pipeline observer that fills a :class:`PacketIndex` and keeps the live subflows.

    The analysis hands it every record the capture reader yields (:meth:`on_record`, with its file
    offset) and then, for a TCP segment, the segment (:meth:`on_segment`). A record that no segment
    follows (not TCP, or not tracked) gets a row of its own: frame ``n`` is always row ``n - 1``.
    """

    def __init__(self, index: PacketIndex, tick: Callable[[], None] | None = None) -> None:
        self.index = index
        self.subflows: dict[int, Subflow] = {}
        self.misaligned = 0  # segments whose frame is not the record just read (would be a pipeline bug)
        self.last_offset = 0  # file offset of the latest record (progress through the file)
        self._pending: Record | None = None  # the latest record, until its row is written
        self._tick = tick
        self._since_tick = 0
        self._last_link = -1
        self._last_link_index = 0

    def _link(self, link_type: int) -> int:
        if link_type != self._last_link:
            self._last_link, self._last_link_index = link_type, self.index.link_index(link_type)
        return self._last_link_index

    def _flush(self) -> None:
        """Write the pending record's row as a frame without a segment."""
        rec = self._pending
        if rec is not None:
            self._pending = None
            self.index.append(rec.offset, rec.ts, 0, 0, 0, self._link(rec.link_type) << META_LINK_SHIFT, 0, 0)

    def on_record(self, rec: Record) -> None:
        if self._pending is not None:
            self._flush()
        self._pending = rec
        self.last_offset = rec.offset

    def on_segment(self, seg: Segment, subflow: Subflow, direction: int) -> None:
        index = self.index
        rec = self._pending
        offset, link = 0, 0
        replayed = False
        if rec is not None and rec.frame == seg.frame:
            self._pending = None
            offset, link = rec.offset, self._link(rec.link_type)
        elif seg.frame <= index.count:
            replayed = True  # held back until its subflow was grouped (pipeline.Ungrouped): its row exists
        else:
            self.misaligned += 1
            self._flush()
        while index.count < seg.frame - 1:  # never with the pipeline: it shows every record first
            index.append(0, 0.0, 0, 0, 0, 0, 0, 0)
        opts = 0
        dss = 0
        options = seg.options
        if options is not None:
            if options.malformed is not None:
                opts = OPT_TCP_MALFORMED
            for opt in options.mptcp:
                kind = type(opt)
                opts |= _OPTION_TYPE_BITS.get(kind, OPT_UNKNOWN)
                if kind is Dss:
                    dss |= opt.flags & 0x1F  # type: ignore[union-attr]
                    if opt.checksum is not None:  # type: ignore[union-attr]
                        dss |= DSS_CSUM
                    if opt.data_len == 0 and opt.flags & DSS_MAP:  # type: ignore[union-attr]
                        dss |= DSS_INFINITE
                elif kind is AddAddr and opt.echo:  # type: ignore[union-attr]
                    opts |= OPT_ADD_ADDR_ECHO
        subflows = self.subflows
        if subflow.id not in subflows:
            subflows[subflow.id] = subflow
        if replayed:
            index.fill(seg.frame - 1, subflow.id, seg.payload_len, seg.flags, META_TCP | (direction & 1), opts, dss)
            return
        index.append(
            offset, seg.ts, subflow.id, seg.payload_len, seg.flags,
            (link << META_LINK_SHIFT) | META_TCP | (direction & 1), opts, dss,
        )  # fmt: skip
        if self._tick is not None:
            self._since_tick += 1
            if self._since_tick >= 256:
                self._since_tick = 0
                self._tick()

    def finish(self, analysis: Analysis) -> None:
        self._flush()
        while self.index.count < analysis.trace.packets:
            self.index.append(0, 0.0, 0, 0, 0, 0, 0, 0)
