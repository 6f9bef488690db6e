"""The connection-level data streams: what we send (with the shared window) and what we reassemble.

Positions are *offsets* from the first data byte (DSN = IDSN + 1 + offset, modulo 2^64), so nothing
here wraps. The DATA_FIN takes the offset right after the last byte (RFC 8684 §3.3.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzer.mptcp.reorder import ReorderQueue


@dataclass(slots=True)
class DataSender:
    """Send buffer from the first unacknowledged byte, the peer's window, reinjections and DATA_FIN."""

    una: int = 0  # first offset not data-acknowledged
    nxt: int = 0  # next offset never mapped before
    end: int = 0  # offset after the last byte the application wrote
    right_edge: int = 0  # highest offset the peer's receive window allows (never recedes)
    fin_offset: int | None = None  # set by close(): the DATA_FIN's offset
    fin_acked: bool = False
    fin_carried: bool = False  # a mapping with the F flag was built (set by the caller that builds it)
    fin_sent: bool = False  # a DATA_FIN-only mapping was sent
    buffer: bytearray = field(default_factory=bytearray)  # bytes [una, end)
    reinject: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) to send again

    def write(self, data: bytes) -> None:
        self.buffer += data
        self.end += len(data)

    def close(self) -> None:
        if self.fin_offset is None:
            self.fin_offset = self.end

    @property
    def closed(self) -> bool:
        return self.fin_offset is not None

    def window_room(self) -> int:
        """New bytes the window and the buffer allow to map now."""
        return max(0, min(self.end, self.right_edge) - self.nxt)

    def take(self, size: int) -> tuple[int, bytes, bool]:
        """Map up to ``size`` new bytes: (offset, bytes, whether they end where the DATA_FIN goes)."""
        size = min(size, self.window_room())
        offset = self.nxt
        data = self.bytes_at(offset, size)
        self.nxt += size
        fin = self.fin_offset is not None and self.nxt == self.fin_offset
        return offset, data, fin

    def bytes_at(self, offset: int, size: int) -> bytes:
        start = offset - self.una
        return bytes(self.buffer[start : start + size])

    def take_reinjection(self, size: int) -> tuple[int, bytes, bool] | None:
        """Next range to reinject (skipping what was acknowledged meanwhile)."""
        while self.reinject:
            offset, length = self.reinject[0]
            if offset + length <= self.una:
                self.reinject.pop(0)
                continue
            if offset < self.una:
                length -= self.una - offset
                offset = self.una
            piece = min(size, length)
            if piece == length:
                self.reinject.pop(0)
            else:
                self.reinject[0] = (offset + piece, length - piece)
            fin = self.fin_offset is not None and offset + piece == self.fin_offset
            return offset, self.bytes_at(offset, piece), fin
        return None

    def on_data_ack(self, ack: int, window: int) -> bool:
        """A Data ACK (offset) with the window it advertised; False if it acknowledges unsent data."""
        limit = self.nxt + (1 if self.fin_offset is not None and self.fin_carried_or_sent else 0)
        if ack > limit:
            return False  # Linux ignores such an ACK (shared rules §5.16)
        if ack > self.una:
            drop = min(ack, self.end) - self.una
            del self.buffer[:drop]
            self.una = min(ack, self.end)
            if self.fin_offset is not None and ack > self.fin_offset:
                self.fin_acked = True
        self.right_edge = max(self.right_edge, ack + window)
        return True

    @property
    def fin_carried_or_sent(self) -> bool:
        return self.fin_carried or self.fin_sent

    @property
    def all_mapped(self) -> bool:
        return self.nxt >= self.end

    @property
    def in_flight(self) -> int:
        return self.nxt - self.una


@dataclass(frozen=True, slots=True)
class _Chunk:
    """Bytes that arrived ahead of a gap."""

    offset: int
    data: bytes

    @property
    def length(self) -> int:
        return len(self.data)


@dataclass(slots=True)
class DataReceiver:
    """Reassembles the peer's data stream from pieces that arrive on any subflow, in any order."""

    buffer_size: int
    nxt: int = 0  # next offset expected
    fin_offset: int | None = None
    fin_done: bool = False
    _ooo: ReorderQueue[_Chunk] = field(default_factory=ReorderQueue)  # the protocol core's waiting room
    _edge: int = 0  # right edge last advertised (offset); never recedes

    def add(self, offset: int, data: bytes) -> bytes:
        """Place a piece; returns the bytes that became in-order (duplicates are dropped)."""
        end = offset + len(data)
        if end <= self.nxt or not data:
            return b""
        if offset > self.nxt:
            old = self._ooo.get(offset)
            if old is None or old.length < len(data):
                self._ooo.put(_Chunk(offset, data))
            return b""
        out = bytearray(data[self.nxt - offset :])
        self.nxt = end
        ooo = self._ooo
        while ooo:
            start = ooo.first()
            if start is None or start > self.nxt:
                break
            piece = ooo.pop_first()
            if start + piece.length > self.nxt:
                out += piece.data[self.nxt - start :]
                self.nxt = start + piece.length
        return bytes(out)

    def set_fin(self, offset: int) -> None:
        if self.fin_offset is None:
            self.fin_offset = offset

    def consume_fin(self) -> bool:
        """True once, when all data before the DATA_FIN has arrived."""
        if self.fin_offset is not None and not self.fin_done and self.nxt >= self.fin_offset:
            self.fin_done = True
            return True
        return False

    @property
    def ack(self) -> int:
        """The Data ACK offset: next expected byte, plus one once the DATA_FIN is consumed."""
        return self.nxt + (1 if self.fin_done else 0)

    def window(self) -> int:
        """Receive window to advertise from the current ACK; the right edge never moves left."""
        edge = max(self._edge, self.nxt + self.buffer_size - self._ooo.bytes)
        self._edge = edge
        return edge - self.ack if edge > self.ack else 0
