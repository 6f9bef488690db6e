"""What several rule families observe alike: per-connection segment logs, fallback points, capture loss.

The FALLBACK, FC, FAIL and ADDR families read these facts; none of them imports another family, they all
import this module (and :mod:`analyzer.checker.base`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from analyzer.checker.base import GRACE_SECONDS, Context
from analyzer.findings import Severity
from analyzer.ingest.segment import TH_ACK, Segment
from analyzer.model import CLIENT, Analysis, Connection, Subflow
from analyzer.mptcp.options import DSS_DATA_FIN, Dss
from analyzer.seqnum import serial_lt

MASK32 = 0xFFFFFFFF
RECENT_MAPPINGS = 64  # mappings kept per subflow direction (MP_FAIL names a recent one)
MIN_ALLOWANCE = 0.010  # seconds: the smallest in-flight allowance, for captures on one host


def seq_le(a: int, b: int) -> bool:
    """``a <= b`` for 32-bit TCP sequence numbers."""
    return a == b or serial_lt(a, b, 32)


def side_name(side: int) -> str:
    return "client" if side == CLIENT else "server"


# ---------------------------------------------------------------------------------------------
# Facts shared by the FALLBACK, FC and FAIL families


Watcher = Callable[[Segment, Subflow, int], None]


@dataclass(slots=True)
class HalfLog:
    """The DSS mappings one subflow direction carried, as far as the shared rules need them.

    Mappings are kept as carried, with the 64-bit DSN the data levels published for them (None: a 32-bit
    DSN whose high half is unknown): recording one must cost next to nothing, since nearly every data
    segment brings a new one.
    """

    last: Dss | None = None  # newest mapping
    last_dsn: int | None = None  # its 64-bit DSN
    last_frame: int = 0
    recent: deque[tuple[Dss, int | None]] = field(default_factory=lambda: deque(maxlen=RECENT_MAPPINGS))
    covered_end: int | None = None  # absolute TCP sequence number just past the furthest mapped byte


class Observations:
    """Per-subflow facts several families need; fed by :class:`FallbackRules` for every segment.

    One instance exists per checker :class:`Context` (see :func:`observations`). Families that are
    dispatched by option type (``Family.WANTS``) but must follow a connection after an event
    (MP_FASTCLOSE, MP_FAIL, REMOVE_ADDR) register a *watcher* for it: :class:`FallbackRules` hands
    every later non-SYN segment of that connection to it, so only one family pays for looking at
    every segment.
    """

    def __init__(self) -> None:
        self.halves: dict[int, HalfLog] = {}  # id(subflow) * 2 + direction
        self.syn_time: dict[int, float] = {}  # id(subflow) -> time of its (last) SYN
        self.awaiting_ack: set[int] = set()  # subflows whose SYN/ACK was seen, third ACK not yet
        self.rtt: dict[int, float] = {}  # id(subflow) -> SYN-to-third-ACK time at the capture point
        self.watchers: dict[int, list[Watcher]] = {}  # id(connection) -> callbacks

    # ---------------------------------------------------------------- watchers
    def watch(self, conn: Connection, watcher: Watcher) -> None:
        """Call ``watcher(seg, sf, direction)`` for every later non-SYN segment of ``conn``."""
        self.watchers.setdefault(id(conn), []).append(watcher)

    # ---------------------------------------------------------------- round trip
    def on_syn(self, seg: Segment, sf: Subflow, direction: int) -> None:
        if seg.flags & TH_ACK:
            if id(sf) in self.syn_time:
                self.awaiting_ack.add(id(sf))
        elif direction == CLIENT:
            self.syn_time[id(sf)] = seg.ts

    def on_third_ack(self, seg: Segment, sf: Subflow, direction: int) -> None:
        if direction == CLIENT:
            self.awaiting_ack.discard(id(sf))
            self.rtt[id(sf)] = max(seg.ts - self.syn_time[id(sf)], 0.0)

    def allowance(self, sf: Subflow) -> float:
        """How long a segment may still be in flight on ``sf``: two handshake round trips (H-REORD).

        Without a captured handshake on this subflow, the slowest handshake of its connection is used;
        without any, :data:`GRACE_SECONDS`.
        """
        rtt = self.rtt.get(id(sf))
        if rtt is None and sf.connection is not None:
            known = [r for other in sf.connection.subflows if (r := self.rtt.get(id(other))) is not None]
            rtt = max(known) if known else None
        return GRACE_SECONDS if rtt is None else max(2 * rtt, MIN_ALLOWANCE)

    # ---------------------------------------------------------------- mappings
    def peek(self, sf: Subflow, direction: int) -> HalfLog | None:
        return self.halves.get(id(sf) * 2 + direction)

    def note(self, seg: Segment, sf: Subflow, direction: int, dss: Dss, dsn64: int | None) -> None:
        """Remember a mapping (data-level length > 0) that ``seg`` carried, and its 64-bit DSN."""
        key = id(sf) * 2 + direction
        log = self.halves.get(key)
        if log is None:
            log = self.halves[key] = HalfLog()
        log.last = dss
        log.last_dsn = dsn64
        log.last_frame = seg.frame
        log.recent.append((dss, dsn64))
        ssn = dss.ssn
        if ssn:  # relative SSN 0 is a DATA_FIN-only mapping: no subflow bytes
            isn = sf.halves[direction].ssn_base()  # (past TCP Fast Open data when the sender numbers so)
            if isn is not None:
                length = dss.data_len
                assert length is not None
                if dss.flags & DSS_DATA_FIN:
                    length -= 1
                end = (isn + ssn + length) & MASK32
                covered = log.covered_end
                if covered is None or 0 < (end - covered) & MASK32 < 0x80000000:
                    log.covered_end = end


SHARED_KEY = "_fallback_observations"


def observations(ctx: Context) -> Observations:
    """The :class:`Observations` of ``ctx``, created on first use.

    It is kept in the context's instance dictionary, so it lives exactly as long as the checker run
    (watchers refer back to the families, a module-level registry would keep every run alive).
    """
    shared = vars(ctx)
    obs = shared.get(SHARED_KEY)
    if not isinstance(obs, Observations):
        obs = shared[SHARED_KEY] = Observations()
    return obs


LOSS_NOTE = "; the capture itself lost data of this connection, so the missing packet may be among the losses"


def capture_lost_packets(analysis: Analysis, conn: Connection) -> bool:
    """H-LOSS evidence: a data stream of ``conn`` has holes the capture never filled."""
    streams = analysis.streams.get(conn.id)
    return streams is not None and any(stream.holes for stream in streams)


def established(sf: Subflow) -> bool:
    """The subflow completed its handshake (or was captured without one but carried traffic)."""
    if not sf.syn_seen:
        return sf.halves[0].packets > 0 and sf.halves[1].packets > 0
    if sf.kind == "join":
        return sf.join_ack_hmac is not None
    return sf.mpc_ack or (sf.synack_seen and sf.halves[0].payload_bytes > 0)


def live_subflows(conn: Connection) -> list[Subflow]:
    """Established subflows of ``conn`` not yet ended by a RST or by FINs both ways (as captured so far)."""
    live = []
    for sf in conn.subflows:
        client, server = sf.halves
        if client.rst_frame is not None or server.rst_frame is not None:
            continue
        if client.fin_frame is not None and server.fin_frame is not None:
            continue
        if established(sf):
            live.append(sf)
    return live


@dataclass(slots=True)
class FallbackPoint:
    """From when on one host of a connection counts as fallen back, and how we know it learned of it."""

    sf: Subflow  # the subflow the fallback happened on (later options are judged on it)
    direction: int  # subflow direction of the host that fell back
    kind: str  # "handshake" | "infinite" | "first-data"
    frame: int  # the segment that caused it
    reason: str
    rule: str  # FALLBACK-002, or FALLBACK-008 for first data while the third ACK was not seen
    severity: Severity | None = None  # override (H-MBOX)
    seq_from: int | None = None  # the host's own segments from this TCP sequence number on are "after"
    ack_from: int | None = None  # ... or those that acknowledge up to here (it received the signal)
    time_from: float | None = None  # ... or those sent after this time (signal without payload)
    after_fail: bool = False  # the infinite mapping answered an MP_FAIL (mappings are FAIL-006's)
    reported: bool = False

    def covers(self, seg: Segment) -> bool:
        """Was ``seg`` (sent by this point's host on its subflow) sent after the host fell back?"""
        if seg.frame <= self.frame:
            return False
        if self.seq_from is not None:
            return seq_le(self.seq_from, seg.seq)
        if self.ack_from is not None:
            return bool(seg.flags & TH_ACK) and seq_le(self.ack_from, seg.ack)
        return self.time_from is not None and seg.ts >= self.time_from
