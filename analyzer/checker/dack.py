"""DACK family: Data ACKs (RFC 8684 §3.3.2).

The DSS family's pass (see :mod:`analyzer.checker.dss`) expands every Data ACK to 64 bits and calls
:meth:`DataAckRules.on_ack` whenever the value carried on a subflow direction changes (a Data ACK
repeated on every segment costs nothing here). Per-ack checks are cheap comparisons; anything
that depends on what the peer sends later ("acknowledges data that was never sent") is decided in
``finish`` from a few remembered candidates.

Hazards: a Data ACK may travel on any subflow, so monotonicity is judged per subflow in TCP-sequence
order and only on new segments (H-REORD, H-RTX); data on a subflow the capture did not see from its
SYN, or bytes lost by the capture, lower errors to warnings (H-POINT, H-LOSS); rules that need the
IDSN run only when the keys were captured (H-MID).
"""

from __future__ import annotations

from typing import ClassVar

from analyzer.checker.base import GRACE_SECONDS, Context, Family
from analyzer.checker.dss import HALF64, MASK64, Flow, SideData, bus_for, side_name
from analyzer.findings import Severity, dsn_ref
from analyzer.ingest.segment import Segment
from analyzer.model import SERVER, Analysis, Connection
from analyzer.rules import Rule
from analyzer.seqnum import serial_gt, serial_lt

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
MASK32 = 0xFFFFFFFF
MAX_CANDIDATES = 8


class _AckState:
    """What this family remembers per acking side."""

    __slots__ = ("acks", "backwards", "backwards_frames", "below_reported", "candidates", "decrease_reported",
                 "early")  # fmt: skip

    def __init__(self) -> None:
        self.acks = 0  # distinct Data ACK values seen from this side
        self.candidates: list[tuple[int, int, int, bool]] = []  # (ack, frame, subflow id, first ack of the side)
        self.below_reported = False
        self.decrease_reported: set[int] = set()  # subflow ids with a DACK-002 finding
        self.backwards = 0  # DACK-003 occurrences
        self.backwards_frames: list[int] = []
        self.early: list[tuple[int, int, int | None, bool]] = []  # DACK-007: (subflow id, frame, TSecr, join)


class DataAckRules(Family):
    WANTS: ClassVar[frozenset[type] | None] = frozenset()  # driven by the DSS family's pass
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("DACK-001", E, "§3.3.2", "Data ACK for data that was never sent",
             "A Data ACK is the next data sequence number the receiver expects. It cannot exceed the end of the "
             "highest mapping the peer sent (which counts the DATA_FIN). A warning only when a subflow was not "
             "captured from its SYN or the capture lost packets of the peer."),
        Rule("DACK-002", W, "§3.3.2", "Data ACK goes backwards on one subflow",
             "Within one subflow and in the sender's sequence order (new segments only; retransmissions and "
             "reordered segments are skipped), the cumulative Data ACK must not decrease."),
        Rule("DACK-003", INFO, "§3.3.2", "Data ACK order differs across subflows",
             "Data ACKs travel on every subflow and arrive in any order, so a lower value on one subflow after a "
             "higher one on another is expected. Counted per connection for insight."),
        Rule("DACK-004", E, "§3.3.2", "Data ACK below the peer's IDSN + 1",
             "The peer's data starts at its IDSN + 1 (derived from its key): a host's first Data ACK before the "
             "peer sent data must be exactly IDSN + 1, and no Data ACK may be below it. A wrong IDSN derivation "
             "(hash, key order, version) is the usual cause."),
        Rule("DACK-005", W, "§3.3.2, §3.8", "Data never data-acknowledged",
             "A host received data on an MPTCP connection for a long time (more than 3 RTT and 2 MSS) and sent DSS "
             "options, yet never a Data ACK on any subflow. Only checked when every subflow was captured."),
        Rule("DACK-006", E, "§3.3.3", "Data ACK beyond the DATA_FIN",
             "The DATA_FIN is the last unit of the peer's data sequence space: a Data ACK can be at most "
             "DATA_FIN + 1."),
        Rule("DACK-007", W, "§3.3.2", "Data ACK before the peer's key is known",
             "The responder of the MP_CAPABLE handshake (v1) learns the initiator's key only from the third ACK, and a "
             "join's responder authenticates the initiator only with the third ACK's HMAC; a Data ACK sent before that "
             "ACK cannot refer to a known data sequence space. Reported only when the third ACK was captured after "
             "the Data ACK and, with TCP timestamps, the Data ACK does not echo it."),
    )  # fmt: skip

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.bus = bus_for(ctx)
        self.bus.ack_hooks.append(self.on_ack)
        self.states: dict[int, _AckState] = {}  # id(conn) * 2 + acking side

    def _state(self, flow: Flow) -> _AckState:
        state = flow.dack
        if isinstance(state, _AckState):
            return state
        key = id(flow.conn) * 2 + flow.side
        state = self.states.get(key)
        if state is None:
            state = self.states[key] = _AckState()
        flow.dack = state
        return state

    # ------------------------------------------------------------------ per changed Data ACK
    def on_ack(self, seg: Segment, flow: Flow, ack: int, is_new: bool) -> None:
        state = flow.dack
        if state.__class__ is not _AckState:
            state = self._state(flow)
        assert isinstance(state, _AckState)
        first = state.acks == 0
        state.acks += 1
        acked = flow.peer  # whose data the ack acknowledges
        base = acked.base if acked.base is not None else acked.base_now()
        if not flow.keyed:
            self._early(seg, flow, state)
        if base is not None and ((ack - base) & MASK64) >= HALF64:
            if not state.below_reported:
                state.below_reported = True
                self.ctx.report(
                    "DACK-004",
                    f"the {side_name(flow.side)}'s Data ACK {dsn_ref(ack, acked.side)} is {(base - ack) & MASK64} "
                    f"below the {side_name(acked.side)}'s IDSN + 1 = {dsn_ref(base, acked.side)}; the data sequence "
                    "space starts there",
                    seg.frame, flow.sf,
                )  # fmt: skip
            return
        bound = acked.ref if acked.ref is not None else base
        if bound is not None and serial_gt(ack, bound):
            candidates = state.candidates
            if len(candidates) >= MAX_CANDIDATES:  # forget those the peer's data has caught up with
                candidates[:] = [c for c in candidates if serial_gt(c[0], bound) or c[3]]
            if len(candidates) < MAX_CANDIDATES:
                candidates.append(
                    (ack, seg.frame, flow.sf.id, first and acked.ref is None and not _sent_payload(acked))
                )
        if is_new:
            self._monotonic(seg, flow, ack, state)

    def _early(self, seg: Segment, flow: Flow, state: _AckState) -> None:
        """DACK-007 candidates: a Data ACK before the third ACK that gives the sender the peer's key."""
        sf = flow.sf
        if sf.kind == "initial":
            if flow.side != SERVER or flow.conn.version == 0 or sf.mpc_ack:
                flow.keyed = True
                return
            join = False
        elif sf.kind == "join":
            if flow.direction != SERVER or sf.join_ack_hmac is not None:
                flow.keyed = True
                return
            join = True
        else:
            flow.keyed = True
            return
        flow.keyed = True  # one candidate per subflow
        opts = seg.options
        tsecr = opts.timestamp[1] if opts is not None and opts.timestamp is not None else None
        state.early.append((sf.id, seg.frame, tsecr, join))

    def _monotonic(self, seg: Segment, flow: Flow, ack: int, state: _AckState) -> None:
        last = flow.dack_last
        opts = seg.options
        tsval = opts.timestamp[0] if opts is not None and opts.timestamp is not None else None
        if last is not None and serial_gt(last, ack):
            # A lower Data ACK. Only a violation when this segment was provably sent after the one that carried
            # the higher value: it sends later bytes, acknowledges more at the TCP level, or has a later TCP
            # timestamp. Pure ACKs otherwise share their sequence number and may be reordered by the network.
            later = (
                (flow.dack_seq is not None and serial_lt(flow.dack_seq, seg.seq, 32))
                or (flow.dack_tcp_ack is not None and serial_lt(flow.dack_tcp_ack, seg.ack, 32))
                or (tsval is not None and flow.dack_tsval is not None and serial_lt(flow.dack_tsval, tsval, 32))
            )
            if later and flow.sf.id not in state.decrease_reported:
                state.decrease_reported.add(flow.sf.id)
                self.ctx.report(
                    "DACK-002",
                    f"the {side_name(flow.side)}'s Data ACK on subflow {flow.sf.id} went back from "
                    f"{dsn_ref(last, flow.peer.side)} to {dsn_ref(ack, flow.peer.side)} "
                    f"({(last - ack) & MASK64} bytes) on a segment sent after the higher one",
                    seg.frame, flow.sf,
                )  # fmt: skip
            return
        flow.dack_last = ack
        flow.dack_seq = seg.seq
        flow.dack_tcp_ack = seg.ack
        flow.dack_tsval = tsval
        highest = flow.sd.max_ack
        if highest is not None and highest != ack:  # lower than a Data ACK sent on another subflow
            state.backwards += 1
            if len(state.backwards_frames) < 4:
                state.backwards_frames.append(seg.frame)

    # ------------------------------------------------------------------ end of trace
    def finish(self, analysis: Analysis) -> None:
        bus = self.bus
        for conn in analysis.connections:
            for side in (0, 1):
                sd = bus.sides.get(id(conn) * 2 + side)
                acked = bus.sides.get(id(conn) * 2 + 1 - side)
                state = self.states.get(id(conn) * 2 + side)
                if state is not None and acked is not None:
                    self._beyond(conn, side, state, acked)
                    self._report_early(conn, side, state)
                    if state.backwards:
                        self.ctx.report(
                            "DACK-003",
                            f"the {side_name(side)}'s Data ACKs arrived out of order across subflows {state.backwards} "
                            "time(s) (expected: each subflow carries its own copy)",
                            state.backwards_frames, conn=conn,
                        )  # fmt: skip
                if acked is not None:
                    self._never_acked(conn, side, sd, acked, analysis)

    def _beyond(self, conn: Connection, side: int, state: _AckState, acked: SideData) -> None:
        """DACK-001 / DACK-004 (first ack) / DACK-006 from the acks that exceeded the peer's mapped data."""
        if not state.candidates or acked.cut or not self.bus.followed(conn, acked.side):
            return  # the peer's mappings are not all known (options cut by the snaplen, a subflow seen too late)
        bound = acked.ref if acked.ref is not None else acked.base
        fin = acked.fin_dsn
        stop = min((f for f in (acked.infinite_frame, self.bus.conn(conn).infinite_frame) if f is not None),
                   default=None)  # fmt: skip
        assumes = self.ctx.unproven(conn, capture_gap=acked.gap)
        certain = not assumes
        hazard = "" if certain else " (a subflow not captured from its SYN or a capture loss may hide that data)"
        who, peer = side_name(side), side_name(acked.side)
        reported: set[str] = set()
        for ack, frame, sf_id, first in state.candidates:
            if stop is not None and frame > stop:
                break  # after a fallback the data continues without mappings
            sf = next((s for s in conn.subflows if s.id == sf_id), None)
            if fin is not None and serial_gt(ack, (fin + 1) & MASK64):
                if "DACK-006" not in reported:
                    reported.add("DACK-006")
                    self.ctx.report(
                        "DACK-006",
                        f"the {who}'s Data ACK {dsn_ref(ack, acked.side)} is beyond the {peer}'s DATA_FIN at DSN "
                        f"{dsn_ref(fin, acked.side)} (frame {acked.fin_frame}); at most {dsn_ref(fin + 1, acked.side)} "
                        f"can be acknowledged{hazard}",
                        [frame, acked.fin_frame], sf, conn, assumes=assumes,
                    )  # fmt: skip
                continue
            if bound is None or not serial_gt(ack, bound) or acked.tfo:
                continue  # the peer mapped that data later (capture reordering), or sent it on its SYN (H-TFO)
            if ((ack - bound) & MASK64) <= acked.lost:
                continue  # the capture lost at least that many of the peer's bytes (H-LOSS)
            rule = "DACK-004" if first and acked.base is not None else "DACK-001"
            if rule in reported:
                continue
            reported.add(rule)
            if rule == "DACK-004":
                message = (
                    f"the {who}'s first Data ACK is {dsn_ref(ack, acked.side)}, but the {peer} had sent no data and "
                    f"its IDSN + 1 is {dsn_ref(acked.base, acked.side)} ({(ack - (acked.base or 0)) & MASK64} above); "
                    f"the {who} seems to derive another IDSN"
                )
            else:
                message = (
                    f"the {who}'s Data ACK {dsn_ref(ack, acked.side)} acknowledges {(ack - bound) & MASK64} bytes "
                    "beyond anything the "
                    f"{peer} mapped (highest mapping end {bound})"
                )
            self.ctx.report(rule, message + hazard, frame, sf, conn, assumes=assumes)

    def _report_early(self, conn: Connection, side: int, state: _AckState) -> None:
        """DACK-007, kept only when the key-giving third ACK was captured after the Data ACK."""
        for sf_id, frame, tsecr, join in state.early:
            key_ack = self.bus.key_acks.get(sf_id)
            sf = next((s for s in conn.subflows if s.id == sf_id), None)
            if key_ack is None or sf is None:
                continue  # never captured: it may simply have been lost by the capture (H-LOSS)
            ack_frame, tsval, with_data = key_ack
            if ack_frame < frame:
                continue
            if tsecr is not None and tsval is not None:
                if not serial_lt(tsecr, tsval, 32):
                    continue  # it echoes the third ACK's timestamp: the ACK was received, only captured late
            elif with_data:
                continue  # MP_CAPABLE with data may follow a third ACK the capture lost
            what = "the join's third ACK (HMAC)" if join else "the third ACK carrying the client's key"
            self.ctx.report(
                "DACK-007",
                f"the {side_name(side)} sent a Data ACK on subflow {sf_id} before {what} (frame {ack_frame}) reached "
                "it",
                [frame, ack_frame], sf, conn,
            )  # fmt: skip

    def _never_acked(
        self, conn: Connection, side: int, sd: SideData | None, acked: SideData, analysis: Analysis
    ) -> None:
        """DACK-005: ``side`` received data for a long time and never sent a Data ACK."""
        if (sd is not None and (sd.acks_sent or sd.cut)) or conn.fallback or acked.first_map_frame is None:
            return
        if not self.ctx.fully_captured(conn) or acked.base is None or acked.ref is None:
            return
        if not self.bus.followed(conn, side):
            return  # Data ACKs on a subflow grouped only at the end were not seen
        received = (acked.ref - acked.base) & MASK64
        flows = self.bus.flows_of(conn, side)
        if not any(flow.sf.halves[flow.direction].dss_packets for flow in flows):
            return  # no DSS at all from this side: option stripping or fallback (FALLBACK-005)
        mss = max((sf.halves[sf.direction_of(side)].mss or 536) for sf in conn.subflows)
        rtt = _longest_rtt(conn)
        last_time = analysis.trace.last_time or 0.0
        if received <= 2 * mss or last_time - acked.first_map_time <= max(3 * rtt, GRACE_SECONDS):
            return
        self.ctx.report(
            "DACK-005",
            f"the {side_name(side)} received {received} bytes of data over {last_time - acked.first_map_time:.3f} s "
            "but never sent a Data ACK on any subflow",
            acked.first_map_frame, conn=conn,
        )  # fmt: skip


def _sent_payload(sd: SideData) -> bool:
    """Whether the capture shows any payload from this side so far (mapped or not)."""
    return any(sf.halves[sf.direction_of(sd.side)].payload_bytes for sf in sd.conn.subflows)


def _longest_rtt(conn: Connection) -> float:
    longest = 0.0
    for sf in conn.subflows:
        for half in sf.halves:
            rtt = half.rtt
            if rtt and isinstance(rtt.get("max_ms"), int | float):
                longest = max(longest, float(rtt["max_ms"]) / 1000)  # type: ignore[arg-type]
    return longest
