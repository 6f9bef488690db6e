"""CLOSE family: DATA_FIN and connection close (RFC 8684 §3.3.3).

A DATA_FIN is the F flag of a DSS mapping and occupies one unit of data sequence space, right after
the host's last data byte (DATA_FIN DSN = DSN + data-level length − 1). Without payload it must be
a mapping of its own: relative subflow sequence 0, data-level length 1. It is data-acknowledged
with DATA_FIN + 1, and the connection is closed at data level once both DATA_FINs were acked. A
host must not close all its functioning subflows while data other than the DATA_FIN is still
unacknowledged.

The DSS family's pass (:mod:`analyzer.checker.dss`) records each side's DATA_FIN and calls this
family on a DATA_FIN, on a subflow FIN and — only while this family watches a side — on the peer's
Data ACKs of that side's data. The reassembler reports CLOSE-003 (a DATA_FIN at two positions).

Hazards: closing rules need every subflow from its SYN (H-POINT) and a connection that did not fall
back or fast-close; the order of a FIN and the Data ACK that allowed it is judged with a small
reordering allowance (H-REORD); a hole in the data the DATA_FIN ack skips is an error only without
capture loss (H-LOSS) and when the keys were captured (H-MID).
"""

from __future__ import annotations

from typing import ClassVar

from analyzer.checker.base import Context, Family
from analyzer.checker.dss import (
    FIN_WITHOUT_MAPPING,
    MASK64,
    ODD_FLAGS,
    REORDER_WINDOW,
    Flow,
    SideData,
    bus_for,
    side_name,
)
from analyzer.facts import DataFinMoved, Fact
from analyzer.findings import Severity, dsn_ref
from analyzer.ingest.segment import Segment
from analyzer.model import Analysis, Connection
from analyzer.mptcp.options import Dss
from analyzer.rules import Rule
from analyzer.seqnum import serial_gt

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


class _EarlyClose:
    """A host sent the FIN of its last open subflow while its data was not all data-acked (CLOSE-005)."""

    __slots__ = ("confirmed", "data_end", "frame", "sd", "sf_id", "time")

    def __init__(self, sd: SideData, data_end: int, frame: int, time: float, sf_id: int) -> None:
        self.sd = sd
        self.data_end = data_end
        self.frame = frame
        self.time = time
        self.sf_id = sf_id
        self.confirmed = False


class CloseRules(Family):
    WANTS: ClassVar[frozenset[type] | None] = frozenset()  # driven by the DSS family's pass
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("CLOSE-001", E, "§3.3.3", "DATA_FIN flag without a mapping",
             "The DATA_FIN (F) is part of a data sequence mapping: a DSS with F set must also have M set, since the "
             "DATA_FIN's position is given by the mapping."),
        Rule("CLOSE-002", E, "§3.3.3", "DATA_FIN-only mapping with the wrong fields",
             "When the DATA_FIN is not attached to a segment carrying data, its mapping must have relative subflow "
             "sequence number 0, data-level length 1 and the DATA_FIN's own DSN. (With payload, the DATA_FIN rides on "
             "an ordinary data mapping whose length counts it.) Payload length comes from the IP header, never from "
             "the captured bytes."),
        Rule("CLOSE-003", E, "§3.3.3", "DATA_FIN position changed",
             "A host's DATA_FIN must always be at the same data sequence number, in every retransmission and on "
             "every subflow."),
        Rule("CLOSE-004", W, "§3.3.3", "Connection closed without a complete data-level close",
             "Every subflow ended with FIN, yet a DATA_FIN was never data-acknowledged, or a host closed its last "
             "subflow without ever sending a DATA_FIN (and the connection did not fall back or fast-close)."),
        Rule("CLOSE-005", W, "§3.3.3", "All subflows closed before the data was acknowledged",
             "A host must not close all its functioning subflows until all its data has been data-acknowledged (or "
             "only the DATA_FIN is outstanding): with no subflow left it cannot retransmit."),
        Rule("CLOSE-006", E, "§3.3.3", "DATA_FIN acknowledged across a hole",
             "A Data ACK covering the DATA_FIN acknowledges every byte before it, yet part of that data-level range "
             "was never mapped on any subflow. A warning when the capture lost packets of that host."),
        Rule("CLOSE-007", INFO, "§3.3.3", "Clean data-level close",
             "Both DATA_FINs were data-acknowledged: the connection closed at the data level."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (DataFinMoved,)

    def on_fact(self, fact: Fact) -> None:
        if isinstance(fact, DataFinMoved):
            name = "client → server" if fact.side == 0 else "server → client"
            self.ctx.report(
                "CLOSE-003",
                f"the {name} DATA_FIN was sent at two different data sequence numbers: stream offset {fact.offset} "
                f"and {fact.other}",
                list(fact.frames), conn=fact.connection,
            )  # fmt: skip

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        bus = self.bus = bus_for(ctx)
        bus.flags_hooks.append(self.on_flags)
        bus.data_fin_hooks.append(self.on_data_fin)
        bus.fin_hooks.append(self.on_fin)
        bus.watch_hooks.append(self.on_watched_ack)
        self.early: dict[int, _EarlyClose] = {}  # id(side data) -> candidate
        # CLOSE-006 candidates: (acking flow, data side, ack frame, ack, first hole, bytes missing)
        self.holes: list[tuple[Flow, SideData, int, int, tuple[int, int], int]] = []

    # ------------------------------------------------------------------ events
    def on_flags(self, seg: Segment, flow: Flow, opt: Dss) -> None:
        if FIN_WITHOUT_MAPPING in ODD_FLAGS[opt.flags & 0x1F]:
            self.ctx.report(
                "CLOSE-001",
                f"the {side_name(flow.side)}'s DSS sets DATA_FIN without a mapping (flags {opt.flags:#04x}): the "
                "DATA_FIN's data sequence number is unknown",
                seg.frame, flow.sf,
            )  # fmt: skip

    def on_data_fin(self, seg: Segment, flow: Flow, fin_dsn: int, ssn: int, dll: int) -> None:
        sd = flow.sd
        if sd.fin_ack_frame is None:
            sd.watch = True
        if seg.payload_len == 0 and (ssn != 0 or dll != 1):
            self.ctx.report(
                "CLOSE-002",
                f"the {side_name(flow.side)}'s DATA_FIN on a segment without payload uses relative subflow sequence "
                f"{ssn} and data-level length {dll}; a DATA_FIN-only mapping must use 0 and 1 (DSN = the DATA_FIN's "
                "own)",
                seg.frame, flow.sf,
            )  # fmt: skip

    def on_fin(self, seg: Segment, flow: Flow) -> None:
        """CLOSE-005 candidates: the FIN that closes a host's last functioning subflow."""
        conn = flow.conn
        if conn.fallback or conn.fastclose_frame is not None:
            return
        side = flow.side
        for sf in conn.subflows:
            if sf.halves[sf.direction_of(side)].fin_frame is None and all(h.rst_frame is None for h in sf.halves):
                return  # this host still has a functioning subflow
        sd = flow.sd
        acked = flow.peer.max_ack
        if sd.data_end is None or (acked is not None and not serial_gt(sd.data_end, acked)) or id(sd) in self.early:
            return
        self.early[id(sd)] = _EarlyClose(sd, sd.data_end, seg.frame, seg.ts, flow.sf.id)
        sd.watch = True

    def on_watched_ack(self, seg: Segment, flow: Flow, ack: int) -> None:
        sd = flow.peer  # the side whose data this Data ACK acknowledges
        fin = sd.fin_dsn
        if fin is not None and sd.fin_ack_frame is None and not serial_gt((fin + 1) & MASK64, ack):
            sd.fin_ack_frame, sd.fin_ack_time, sd.fin_ack_sf = seg.frame, seg.ts, flow.sf.id
            self._hole_before_fin(seg, flow, sd, fin, ack)
        early = self.early.get(id(sd))
        if early is not None and not early.confirmed and not serial_gt(early.data_end, ack):
            if seg.ts - early.time <= REORDER_WINDOW:
                del self.early[id(sd)]  # the Data ACK was only captured a moment after the FIN
            else:
                early.confirmed = True
        pending = self.early.get(id(sd))
        sd.watch = (sd.fin_dsn is not None and sd.fin_ack_frame is None) or (
            pending is not None and not pending.confirmed
        )

    def _hole_before_fin(self, seg: Segment, flow: Flow, sd: SideData, fin: int, ack: int) -> None:
        """CLOSE-006 candidate: the ack covers the DATA_FIN, but some data before it was never mapped."""
        base = sd.base
        if base is None or sd.holes_lost or sd.tfo or flow.conn.fallback or sd.infinite_frame is not None:
            return
        upto = (fin - base) & MASK64
        hole = sd.first_hole(upto)
        if hole is None:
            return
        missing = sum(min(end, upto) - start for start, end in sd.holes if start < upto)
        self.holes.append((flow, sd, seg.frame, ack, hole, missing))

    # ------------------------------------------------------------------ end of trace
    def finish(self, analysis: Analysis) -> None:
        for flow, sd, frame, ack, hole, missing in self.holes:
            self._report_hole(flow, sd, frame, ack, hole, missing)
        bus = self.bus
        first_time = analysis.trace.first_time or 0.0
        for conn in analysis.connections:
            sides = (bus.sides.get(id(conn) * 2), bus.sides.get(id(conn) * 2 + 1))
            self._early_close(conn, sides)
            self._incomplete_close(conn, sides)
            self._clean_close(conn, sides, first_time)

    def _report_hole(self, flow: Flow, sd: SideData, frame: int, ack: int, hole: tuple[int, int], missing: int) -> None:
        conn = flow.conn
        if sd.cut or missing <= sd.lost or not self.bus.followed(conn, sd.side):
            return  # lost or cut by the capture, or carried by a subflow only grouped at the end (H-LOSS, H-MID)
        lo, hi = hole
        base = sd.base or 0
        assumes = self.ctx.unproven(conn, capture_gap=sd.gap)
        certain = not assumes
        self.ctx.report(
            "CLOSE-006",
            f"the {side_name(flow.side)}'s Data ACK {dsn_ref(ack, sd.side)} covers the {side_name(sd.side)}'s DATA_FIN "
            f"(DSN {dsn_ref(sd.fin_dsn, sd.side)}, frame {sd.fin_frame}), but DSN {dsn_ref(base + lo, sd.side)}–"
            f"{dsn_ref(base + hi - 1, sd.side)} "
            f"({hi - lo} bytes) was never mapped on any subflow"
            + ("" if certain else " in the capture (which lost packets or missed a subflow's start)"),
            [frame, sd.fin_frame], flow.sf, assumes=assumes,
        )  # fmt: skip

    def _early_close(self, conn: Connection, sides: tuple[SideData | None, SideData | None]) -> None:
        if not self.ctx.fully_captured(conn):
            return
        if not (self.bus.followed(conn, 0) and self.bus.followed(conn, 1)):
            return
        for sd in sides:
            early = self.early.get(id(sd)) if sd is not None else None
            if sd is None or early is None:
                continue
            peer = sides[1 - sd.side]
            if peer is not None and peer.cut:
                continue  # the Data ACK that made the close safe may be in options the snaplen cut
            acked = peer.max_ack if peer is not None else None
            state = "nothing of it" if acked is None else f"only up to DSN {dsn_ref(acked, sd.side)}"
            self.ctx.report(
                "CLOSE-005",
                f"the {side_name(sd.side)} sent the FIN of its last open subflow {early.sf_id} while its data up to "
                f"DSN {dsn_ref(early.data_end, sd.side)} was not data-acknowledged ({state} at that time); no subflow "
                "was left to retransmit it",
                early.frame, conn=conn,
            )  # fmt: skip

    def _incomplete_close(self, conn: Connection, sides: tuple[SideData | None, SideData | None]) -> None:
        """CLOSE-004: every subflow ended with FIN, but the data-level close did not complete."""
        if conn.fallback or conn.fastclose_frame is not None or not conn.subflows:
            return
        if not all(sf.end == "fin" for sf in conn.subflows) or not self.ctx.fully_captured(conn):
            return
        if sides[0] is None or sides[1] is None or not (self.bus.followed(conn, 0) and self.bus.followed(conn, 1)):
            return  # a subflow grouped only at the end (handshake not captured) was never followed here
        if any(sd is not None and sd.cut for sd in sides):
            return  # the snaplen cut DSS options: DATA_FINs and Data ACKs may be hidden (H-SNAP)
        for side in (0, 1):
            sd, peer = sides[side], sides[1 - side]
            acked = peer.max_ack if peer is not None else None
            last_fin = max(sf.halves[sf.direction_of(side)].fin_frame or 0 for sf in conn.subflows)
            if sd is not None and sd.fin_dsn is not None:
                if sd.fin_ack_frame is not None or (
                    acked is not None and not serial_gt((sd.fin_dsn + 1) & MASK64, acked)
                ):
                    continue
                hint = (
                    "; the Data ACK stops at the DATA_FIN's own DSN (early Linux 5.x acknowledged the data but not "
                    "the DATA_FIN; RFC 8684 needs DATA_FIN + 1)"
                    if acked == sd.fin_dsn
                    else ""
                )
                self.ctx.report(
                    "CLOSE-004",
                    f"every subflow closed with FIN, but the {side_name(side)}'s DATA_FIN (DSN "
                    f"{dsn_ref(sd.fin_dsn, side)}) was never data-acknowledged (highest Data ACK "
                    f"{dsn_ref(acked, side)}){hint}",
                    [sd.fin_frame, last_fin], conn=conn,
                )  # fmt: skip
                continue
            lost_fin = (
                acked is not None and sd is not None and sd.data_end is not None and serial_gt(acked, sd.data_end)
            )
            if lost_fin or (sd is not None and sd.gap):
                continue  # the peer acknowledged a DATA_FIN unit: the DATA_FIN was sent, the capture lost it
            self.ctx.report(
                "CLOSE-004",
                f"the {side_name(side)} closed every subflow with FIN without ever sending a DATA_FIN",
                last_fin, conn=conn,
            )  # fmt: skip

    def _clean_close(self, conn: Connection, sides: tuple[SideData | None, SideData | None], first_time: float) -> None:
        parts: list[str] = []
        frames: list[int] = []
        for sd in sides:
            if sd is None or sd.fin_dsn is None or sd.fin_ack_frame is None:
                return
            parts.append(
                f"the {side_name(sd.side)}'s DATA_FIN (subflow {sd.fin_sf}, {sd.fin_time - first_time:.6f} s) was "
                f"data-acked on subflow {sd.fin_ack_sf} at {sd.fin_ack_time - first_time:.6f} s"
            )
            frames += [sd.fin_frame, sd.fin_ack_frame]
        self.ctx.report("CLOSE-007", "clean data-level close: " + "; ".join(parts), frames, conn=conn)
