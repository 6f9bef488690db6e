"""Observer: how much of the time each side's data was held back by the peer's receive window.

MPTCP's receive window is one window for the connection, relative to the Data ACK (RFC 8684 §3.3.5): the
right edge the receiver allows is Data ACK + the TCP window scaled by the subflow's window scale. A sender
is window-limited while the data it has sent (highest DSN) is less than one segment below that edge. The
verdict needs the scale, so windows are read only from subflows whose SYN and SYN/ACK were captured; a
connection without one is not judged (no guess at the scale). A period counts only when the sender sent
more new data after the window opened: a sender that simply had nothing left to send is not limited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzer.ingest.segment import TH_ACK, Segment
from analyzer.model import Analysis, Connection, Subflow, WindowLimit
from analyzer.mptcp.datalevel import PacketLevels
from analyzer.mptcp.options import Dss
from analyzer.results import WindowLimits
from analyzer.seqnum import serial_gt

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
HALF64 = 1 << 63
FRAMES_KEPT = 3  # periods whose frames are named


@dataclass(slots=True)
class _Side:
    """One data direction of a connection: what its sender sent and what its receiver allowed."""

    conn: Connection
    side: int
    high: int | None = None  # end (exclusive) of the highest new data sent, 64-bit
    edge: int | None = None  # right edge of the receive window advertised, 64-bit
    largest: int = 0  # largest payload sent: less room than that is a full window
    first: float | None = None
    last: float = 0.0
    since: tuple[float, int] | None = None  # (time, frame) the window filled
    pending: tuple[float, float, int, int] | None = None  # a closed period waiting for more new data
    limited: float = 0.0
    periods: int = 0
    frames: list[int] = field(default_factory=list)
    start: float | None = None  # of the first counted period

    def room(self) -> int | None:
        if self.edge is None or self.high is None:
            return None
        room = (self.edge - self.high) & MASK64
        return room - (1 << 64) if room >= HALF64 else room

    def count(self, start: float, end: float, frames: tuple[int, int]) -> None:
        self.limited += max(0.0, end - start)
        self.periods += 1
        if self.start is None:
            self.start = start
        if len(self.frames) < 2 * FRAMES_KEPT:
            self.frames.extend(frames)


class WindowLimitCollector:
    """Pipeline observer; ``finish`` sets ``Connection.window_limits``."""

    def __init__(self) -> None:
        self.sides: dict[int, _Side] = {}  # id(conn) * 2 + data side
        self.mappings: dict[int, tuple[int, int, int]] = {}  # Subflow.key(direction) -> (dsn64, ssn, len)
        self.packet = PacketLevels()  # the current segment's 64-bit DSN and Data ACK (analyzer.datalevels)

    def attach_levels(self, packet: PacketLevels, level: object) -> None:
        """The pipeline's data levels: DSNs and Data ACKs are read there as 64 bits, never expanded here."""
        self.packet = packet

    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        conn = sf.connection
        if conn is None or conn.fallback:
            return  # after a fallback the window is plain TCP's, and the data has no DSNs
        opts = seg.options
        dss = None
        if opts is not None and opts.mptcp:
            for opt in opts.mptcp:
                if type(opt) is Dss:
                    dss = opt
                    break
        if dss is not None and dss.dsn is not None and dss.ssn is not None and dss.data_len:
            dsn = self.packet.known_dsn(dss)
            if dsn is not None:
                self.mappings[sf.key(direction)] = (dsn, dss.ssn, dss.data_len)
        if seg.payload_len:
            self._data(seg, sf, direction, conn)
        if dss is not None and dss.data_ack is not None and seg.flags & TH_ACK:
            self._ack(seg, sf, direction, conn, dss)

    def forget(self, sf: Subflow) -> None:
        """A half-open subflow the tracker summarised (Limits.max_half_open): its state goes too."""
        for direction in (0, 1):
            self.mappings.pop(sf.key(direction), None)
        if sf.connection is not None:
            for side in (0, 1):
                self.sides.pop(id(sf.connection) * 2 + side, None)

    def _state(self, conn: Connection, side: int) -> _Side:
        key = id(conn) * 2 + side
        state = self.sides.get(key)
        if state is None:
            state = self.sides[key] = _Side(conn, side)
        return state

    def _data(self, seg: Segment, sf: Subflow, direction: int, conn: Connection) -> None:
        mapping = self.mappings.get(sf.key(direction))
        isn = sf.halves[direction].isn
        if mapping is None or isn is None:
            return
        dsn, ssn, length = mapping
        offset = ((seg.seq - isn) - ssn) & MASK32
        if offset >= length:
            return  # not under the latest mapping
        end = (dsn + min(offset + seg.payload_len, length)) & MASK64
        state = self.sides.get(id(conn) * 2 + (sf.sender(direction))) or self._state(conn, sf.sender(direction))
        high = state.high
        if high is not None and not 0 < ((end - high) & MASK64) < HALF64:
            return  # a retransmission or a reinjection: not new data
        if state.pending is not None:  # more data after the window opened: the sender was held back
            start, stop, filled, opened = state.pending
            state.count(start, stop, (filled, opened))
            state.pending = None
        if state.since is not None and state.edge is not None and serial_gt(end, state.edge):
            # beyond the edge the capture knows: the ACK that opened the window was not captured here
            start, filled = state.since
            state.count(start, seg.ts, (filled, seg.frame))
            state.since = None
        state.high = end
        state.largest = max(state.largest, seg.payload_len)
        if state.first is None:
            state.first = seg.ts
        state.last = seg.ts
        room = state.room()
        if state.since is None and room is not None and room < state.largest:
            state.since = (seg.ts, seg.frame)

    def _ack(self, seg: Segment, sf: Subflow, direction: int, conn: Connection, dss: Dss) -> None:
        if not (sf.syn_seen and sf.synack_seen):
            return  # the window scale of this subflow is unknown: its windows say nothing certain
        acked = 1 - (sf.sender(direction))
        assert dss.data_ack is not None
        ack = self.packet.known_ack(dss)
        if ack is None:
            return
        halves = sf.halves
        scaled = halves[0].wscale is not None and halves[1].wscale is not None  # RFC 7323: both SYNs offer it
        shift = (halves[direction].wscale or 0) if scaled else 0
        state = self.sides.get(id(conn) * 2 + acked) or self._state(conn, acked)
        edge = (ack + (seg.window << shift)) & MASK64
        old = state.edge
        if old is None or 0 < ((edge - old) & MASK64) < HALF64:
            state.edge = edge
        if state.since is not None:
            room = state.room()
            if room is not None and room >= state.largest:
                start, filled = state.since
                state.pending = (start, seg.ts, filled, seg.frame)
                state.since = None

    def results(self, analysis: Analysis) -> WindowLimits:
        """End of capture: each judged data side's receive-window limit, by connection (analyzer.results)."""
        limits: dict[int, list[WindowLimit]] = {}
        for state in self.sides.values():
            if state.first is None or state.edge is None or state.conn.id is None:
                continue  # no data, or no window the capture can scale
            limit = WindowLimit(
                state.side, state.limited, state.last - state.first, state.periods, tuple(state.frames), state.start
            )
            limits.setdefault(state.conn.id, []).append(limit)
        return WindowLimits(limits)
