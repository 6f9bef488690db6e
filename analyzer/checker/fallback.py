"""FALLBACK family: fallback to regular TCP and the infinite mapping (RFC 8684 §3.7, §3.1).

A host *falls back* when it stops using MPTCP on a connection: its SYN/ACK did not carry
MP_CAPABLE, it sent or received an infinite mapping (a DSS mapping with data-level length 0), or
the first data of the initial subflow arrived without any MPTCP option. From then on it must not
send MPTCP signalling any more. The family keeps, per connection, the fallback points it has seen
and judges every later MPTCP option against them; it also checks each infinite mapping (only on
the initial subflow, only when it is the sole established subflow, at the right data sequence
number) and notices MPTCP options disappearing from a data direction (option stripping).

Evidence, not timestamps, decides whether a host had *learned* of a fallback before it sent a
segment (H-REORD): a host that sent the fallback signal is judged by its own TCP sequence numbers,
a host that received it by the TCP acknowledgment that covers the signal; only when the signal
carried no payload does one round trip (measured on the subflow's handshake) stand in for that.

The module also holds :class:`Observations`, the per-subflow facts that the FALLBACK, FC, FAIL and
ADDR families share (handshake round trip, recent mappings, coverage of subflow bytes), fed by this
family, the only one of them that looks at every segment; the others are dispatched by option type
and register a watcher for the connections they need to follow after an event. Recording a
mapping costs one dictionary lookup and a few attribute stores.
"""

from __future__ import annotations

from typing import ClassVar

from analyzer.checker.base import MASK64, Context, Family
from analyzer.checker.observations import (
    MASK32,
    FallbackPoint,
    live_subflows,
    observations,
    seq_le,
    side_name,
)
from analyzer.facts import Fact, FellBack
from analyzer.findings import Severity, dsn_ref
from analyzer.ingest.segment import TH_ACK, TH_RST, TH_SYN, Segment
from analyzer.model import CLIENT, SERVER, Analysis, Connection, Subflow
from analyzer.mptcp.options import (
    DSS_DSN64,
    DSS_MAPPING,
    AddAddr,
    Dss,
    MpCapable,
    MpFail,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MptcpOption,
    RemoveAddr,
)
from analyzer.rules import Rule
from analyzer.seqnum import serial_lt

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

SIGNALLING = (AddAddr, RemoveAddr, MpPrio, MpCapable, MpJoinSyn, MpJoinSynAck, MpJoinAck)
OPTION_NAMES: dict[type, str] = {
    Dss: "DSS", AddAddr: "ADD_ADDR", RemoveAddr: "REMOVE_ADDR", MpPrio: "MP_PRIO", MpCapable: "MP_CAPABLE",
    MpJoinSyn: "MP_JOIN", MpJoinSynAck: "MP_JOIN", MpJoinAck: "MP_JOIN",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The family


class FallbackRules(Family):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("FALLBACK-001", INFO, "§3.1", "Connection fell back to TCP during the handshake",
             "The SYN offered MP_CAPABLE but the SYN/ACK did not carry it (or carried one the client must ignore: "
             "wrong length, version, flags), so the connection is plain TCP. A middlebox stripping the option on "
             "the path looks the same."),
        Rule("FALLBACK-002", E, "§3.7", "MPTCP signalling after the host fell back to TCP",
             "Once a host has fallen back to regular TCP it sends no more MPTCP signalling on that connection: "
             "after its handshake failed (SYN/ACK without MP_CAPABLE), after it sent or received an infinite "
             "mapping (no more data mappings or address signalling; a bare Data ACK is not judged), or after the "
             "first data of the initial subflow arrived without any MPTCP option before any Data ACK. MP_FAIL, "
             "MP_TCPRST and MP_FASTCLOSE are exempt. Whether a host had learned of the fallback is decided by "
             "its own sequence numbers or by the acknowledgment that covers the signal, so segments in flight "
             "are not reported. When only the responder's captured SYN/ACK lacked MP_CAPABLE, a middlebox may "
             "have stripped it after the responder sent it: a warning."),
        Rule("FALLBACK-003", E, "§3.7", "Infinite mapping while several subflows are established",
             "An infinite mapping (fallback to TCP inside an MPTCP connection) is only possible while a single "
             "subflow is in use; with several, the subflow with the problem is reset instead. Subflows already "
             "closed by FIN both ways or by a RST do not count."),
        Rule("FALLBACK-004", E, "§3.7", "Infinite mapping on an MP_JOIN subflow",
             "Only the initial (MP_CAPABLE) subflow can fall back to TCP; a join subflow that cannot continue as "
             "MPTCP must be reset."),
        Rule("FALLBACK-005", W, "§3.7, §6", "MPTCP options disappeared from a data direction",
             "Data segments arrive without any MPTCP option, and not covered by an earlier mapping, after that "
             "direction had carried DSS options, with no infinite mapping or MP_FAIL: likely a middlebox "
             "stripping options mid-connection, or a broken stack. Segments covered by an earlier multi-segment "
             "mapping (TSO/GRO, other stacks) are fine, and so is data after a gap the capture did not see (the "
             "mapping may have been in it)."),
        Rule("FALLBACK-006", W, "§3.7", "Infinite mapping with data still unacknowledged",
             "The sender falls back with an infinite mapping at a data sequence number above the last Data ACK "
             "it had received, so data-level data is outstanding. A fallback is only safe when everything before "
             "it was acknowledged in order. After MP_FAIL the fallback point is the first data sent past the last "
             "mapping without a DSS (Linux carries the infinite mapping on a later segment); on the connection's "
             "only subflow, data in flight at that MP_FAIL is in sequence and TCP delivers it. (Data ACKs on "
             "uncaptured subflows would make this wrong.)"),
        Rule("FALLBACK-007", INFO, "§3.7", "Connection fell back to TCP",
             "The connection stopped using MPTCP (infinite mapping, or data without any DSS after the handshake); "
             "the cause is recorded."),
        Rule("FALLBACK-008", W, "§3.1, §3.7", "MPTCP continues although the first data arrived without MPTCP",
             "In v1, the initiator's first data carried neither MP_CAPABLE with data nor a DSS mapping while the "
             "responder had not seen the third ACK (no MP_CAPABLE after the SYN/ACK was captured). The responder "
             "then lacks the initiator's key and should fall back to TCP; it keeps sending MPTCP options "
             "instead. The third ACK may only have escaped the capture, so this is a warning."),
        Rule("FALLBACK-009", W, "§3.7", "Infinite mapping at an unexpected data sequence number",
             "The infinite mapping's DSN does not continue the subflow's earlier mappings at its relative subflow "
             "sequence number (Linux keeps the current mapping's DSN and SSN). The exact RFC requirement for "
             "these fields is not settled, so this is a warning."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (FellBack,)

    def on_fact(self, fact: Fact) -> None:
        if isinstance(fact, FellBack):
            rule = "FALLBACK-001" if fact.cause == "synack" else "FALLBACK-007"
            self.ctx.report(rule, f"connection fell back to TCP: {fact.reason}", list(fact.frames), fact.subflow)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.obs = observations(ctx)
        self._points: dict[int, list[FallbackPoint]] = {}  # id(conn) -> fallback points
        self._infinite: set[tuple[int, int]] = set()  # (id(conn), side) that sent an infinite mapping
        self._failed: set[int] = set()  # id(conn) with an MP_FAIL seen
        self._first_data: dict[int, Subflow] = {}  # id(sf) * 2 + direction still waiting for its first payload
        self._stripped: set[int] = set()  # id(sf) * 2 + direction reported for FALLBACK-005
        # id(sf) * 2 + direction -> (frame, DSN, peer's Data ACK then) of the first data past the last mapping
        # after an MP_FAIL: where that host really fell back (Linux sends the infinite mapping later)
        self._fail_start: dict[int, tuple[int, int, int | None]] = {}

    # ------------------------------------------------------------------ per segment
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        obs = self.obs
        if seg.flags & TH_SYN:
            obs.on_syn(seg, sf, direction)
            self._on_syn(seg, sf, direction)
            return
        if obs.awaiting_ack and id(sf) in obs.awaiting_ack:
            obs.on_third_ack(seg, sf, direction)
        conn = sf.connection
        if conn is None:
            return
        if obs.watchers:
            watchers = obs.watchers.get(id(conn))
            if watchers:
                for watcher in watchers:
                    watcher(seg, sf, direction)
        opts = seg.options
        mptcp = opts.mptcp if opts is not None else None
        if self._first_data and seg.payload_len and id(sf) * 2 + direction in self._first_data:
            self._check_first_data(seg, sf, direction, conn, mptcp)
        if not mptcp:
            if seg.payload_len and not conn.fallback and sf.halves[direction].dss_packets:
                self._optionless_data(seg, sf, direction, conn)
            return
        dss: Dss | None = None
        other = False
        if len(mptcp) == 1 and type(mptcp[0]) is Dss:  # the common case: one DSS
            dss = mptcp[0]
        else:
            dss, other = self._scan(seg, sf, direction, conn, mptcp)
        if dss is not None:
            data_len = dss.data_len
            if data_len:
                obs.note(seg, sf, direction, dss, self.ctx.dsn64(dss))
            elif data_len == 0:
                self._on_infinite(seg, sf, direction, conn, dss)
        if self._points and not seg.flags & TH_RST:  # a RST ends the subflow: nothing it carries is judged
            points = self._points.get(id(conn))
            if points:
                self._check_points(seg, sf, direction, points, mptcp, dss, other)

    def _scan(self, seg: Segment, sf: Subflow, direction: int, conn: Connection,
              mptcp: list[MptcpOption]) -> tuple[Dss | None, bool]:  # fmt: skip
        """The DSS among several options, and whether other signalling rides along."""
        dss: Dss | None = None
        other = False
        for opt in mptcp:
            if isinstance(opt, Dss):
                dss = opt
            elif isinstance(opt, MpCapable):
                other = True
                if opt.data_len and opt.sender_key is not None and not seg.flags & TH_RST:
                    self._note_mpc_data(seg, sf, direction, opt)
            elif isinstance(opt, MpFail):
                self._failed.add(id(conn))
            else:
                other = True
        return dss, other

    def _note_mpc_data(self, seg: Segment, sf: Subflow, direction: int, mpc: MpCapable) -> None:
        """MP_CAPABLE with data maps (IDSN(A) + 1, relative 1, length): its bytes are covered."""
        conn = sf.connection
        idsn = conn.sides[sf.sender(direction)].idsn if conn is not None else None
        if idsn is None or not mpc.data_len:
            return
        implied = Dss(DSS_MAPPING | DSS_DSN64, dsn=(idsn + 1) & MASK64, ssn=1, data_len=mpc.data_len)
        self.obs.note(seg, sf, direction, implied, implied.dsn)

    # ------------------------------------------------------------------ SYN/ACK without MP_CAPABLE
    def _on_syn(self, seg: Segment, sf: Subflow, direction: int) -> None:
        if not seg.flags & TH_ACK or direction != SERVER or not sf.mpc_syn:
            return
        conn = sf.connection
        opts = seg.options
        has_mpc = opts is not None and any(type(opt) is MpCapable for opt in opts.mptcp)
        if has_mpc:
            if sf.syn_seen and sf.kind == "initial":
                self._first_data[id(sf) * 2 + CLIENT] = sf
                self._first_data[id(sf) * 2 + SERVER] = sf
            return
        if conn is None or sf.mpc_synack or id(conn) in self._points:
            return  # an earlier SYN/ACK accepted MPTCP, or this one was already handled
        if len(seg.data) < seg.payload_offset or (opts is not None and opts.truncated):
            return  # H-SNAP: the snaplen cut the options, MP_CAPABLE may be among them
        reason = f"its SYN/ACK (frame {seg.frame}) did not carry MP_CAPABLE"
        synack_end = (seg.seq + 1) & MASK32
        self._points[id(conn)] = [
            # The client learned of it from the SYN/ACK it acknowledges.
            FallbackPoint(sf, CLIENT, "handshake", seg.frame, f"the client fell back to TCP because {reason}",
                          "FALLBACK-002", ack_from=synack_end),
            # The server chose not to answer with MP_CAPABLE, unless a middlebox stripped it (H-MBOX).
            FallbackPoint(sf, SERVER, "handshake", seg.frame,
                          f"the server fell back to TCP: {reason} (or a middlebox stripped the option after the "
                          "server sent it, if the capture was taken on the client's side)",
                          "FALLBACK-002", severity=W, seq_from=synack_end),
        ]  # fmt: skip

    # ------------------------------------------------------------------ first data without MPTCP
    def _check_first_data(self, seg: Segment, sf: Subflow, direction: int, conn: Connection,
                          mptcp: list[MptcpOption] | None) -> None:  # fmt: skip
        key = id(sf) * 2 + direction
        if self._first_data.pop(key, None) is None:
            return
        isn = sf.halves[direction].ssn_base()  # the first data follows any TCP Fast Open data
        if mptcp or isn is None or seg.seq != (isn + 1) & MASK32 or conn.fallback or conn.version == 0:
            return  # carries MPTCP options, or is not the first data (H-LOSS), or v0 (other rules)
        if len(seg.data) < seg.payload_offset:
            return  # H-SNAP: the options were not captured
        log = self.obs.peek(sf, direction)
        end = (seg.seq + seg.payload_len) & MASK32
        if log is not None and log.covered_end is not None and seq_le(end, log.covered_end):
            return  # an earlier mapping (sent ahead of the data) covers it
        peer = 1 - direction
        if sf.halves[peer].data_ack_last is not None:
            return  # the peer had already sent Data ACKs: missing mappings are DSS-004's business
        third_ack = sf.mpc_ack
        sender = side_name(sf.sender(direction))
        if third_ack:
            rule, note = "FALLBACK-002", ""
        elif direction == CLIENT:
            rule, note = "FALLBACK-008", " and the third ACK was not seen, so it lacks the client's key"
        else:
            return
        reason = (
            f"the {side_name(sf.sender(peer))} received the {sender}'s first data (frame {seg.frame}) without any "
            f"MPTCP option{note}, so it should have fallen back to TCP"
        )
        self._points.setdefault(id(conn), []).append(
            FallbackPoint(sf, peer, "first-data", seg.frame, reason, rule, ack_from=end)
        )

    # ------------------------------------------------------------------ FALLBACK-005
    def _optionless_data(self, seg: Segment, sf: Subflow, direction: int, conn: Connection) -> None:
        key = id(sf) * 2 + direction
        if key in self._stripped or len(seg.data) < seg.payload_offset:
            return  # already reported, or the header was cut by the snaplen (H-SNAP)
        if id(conn) in self._failed:
            self._note_fail_start(seg, sf, direction, conn)
            return  # MP_FAIL explains missing options
        if sf.halves[direction].isn is None or id(conn) in self._points:
            return  # H-MID, or a fallback explains missing options
        log = self.obs.peek(sf, direction)
        if log is None or log.covered_end is None:
            return
        end = (seg.seq + seg.payload_len) & MASK32
        if seq_le(end, log.covered_end):
            return  # covered by an earlier mapping (multi-segment mapping, retransmission)
        if not seq_le(seg.seq, log.covered_end):
            return  # H-LOSS: bytes between the last mapping and this segment were not captured
        self._stripped.add(key)
        sender = side_name(sf.sender(direction))
        self.ctx.report(
            "FALLBACK-005",
            f"the {sender} sends data on subflow {sf.id} without any MPTCP option, right after the bytes of its "
            f"last mapping (frame {log.last_frame}) and not covered by it, after that direction had carried DSS "
            "options, with no infinite mapping or MP_FAIL: MPTCP options were probably stripped by a middlebox",
            [log.last_frame, seg.frame], sf,
        )  # fmt: skip

    def _note_fail_start(self, seg: Segment, sf: Subflow, direction: int, conn: Connection) -> None:
        """After MP_FAIL, the first data past the last mapping, sent without any MPTCP option, is the fallback."""
        key = id(sf) * 2 + direction
        if key in self._fail_start:
            return
        log = self.obs.peek(sf, direction)
        isn = sf.halves[direction].ssn_base()
        if log is None or log.covered_end is None or log.last is None or isn is None:
            return
        if seq_le((seg.seq + seg.payload_len) & MASK32, log.covered_end):
            return  # covered by an earlier mapping
        last = log.last
        last_dsn = log.last_dsn
        assert last.ssn is not None and last.data_len is not None
        offset = (log.covered_end - isn - last.ssn) & MASK32
        if last_dsn is None or offset > last.data_len:
            return  # the newest mapping is not the furthest one: no DSN to name
        acked = self.ctx.level(conn, sf.sender(direction)).acked
        self._fail_start[key] = (seg.frame, (last_dsn + offset) & MASK64, acked)

    # ------------------------------------------------------------------ infinite mapping
    def _on_infinite(self, seg: Segment, sf: Subflow, direction: int, conn: Connection, dss: Dss) -> None:
        ctx = self.ctx
        side = sf.sender(direction)
        marker = (id(conn), side)
        if marker in self._infinite:
            return  # a retransmission of the infinite mapping
        self._infinite.add(marker)
        assert dss.dsn is not None and dss.ssn is not None
        who = side_name(side)
        if sf.kind == "join":
            ctx.report(
                "FALLBACK-004",
                f"the {who} sent an infinite mapping on join subflow {sf.id}; only the initial subflow may fall "
                "back, a join subflow must be reset",
                seg.frame, sf,
            )  # fmt: skip
        others = [other for other in live_subflows(conn) if other is not sf]
        if others:
            names = ", ".join(str(other.id) for other in others)
            ctx.report(
                "FALLBACK-003",
                f"the {who} sent an infinite mapping on subflow {sf.id} while subflow(s) {names} of the connection "
                "were still established; with several subflows the failing one must be reset instead",
                [seg.frame, *(other.first_frame for other in others)], sf,
            )  # fmt: skip
        dsn = ctx.dsn64(dss)
        acked = ctx.level(conn, side).acked  # the peer's highest Data ACK of this side's data
        point, where = dsn, f"DSN {dsn_ref(dsn, side)}"
        start = self._fail_start.get(id(sf) * 2 + direction)
        frames = [seg.frame]
        if start is not None and start[0] < seg.frame:
            # After MP_FAIL the host stopped sending DSS options (frame start[0]) before this infinite
            # mapping: it fell back there, and what was acknowledged then is what counts.
            frame, point, acked = start
            where = f"DSN {dsn_ref(point, side)} (frame {frame}, its first data without a DSS after the MP_FAIL)"
            frames = [frame, seg.frame]
            if len(conn.subflows) == 1:
                # §3.7's own case: one subflow ever, the receiver asked for the fallback. Data mapped after
                # the failed mapping was in flight on this very subflow, in sequence, and TCP still delivers
                # it (Linux: no other subflow, no out-of-sequence data): unacknowledged is no hazard here.
                point = None
        if point is not None and acked is not None and serial_lt(acked, point):
            ctx.report(
                "FALLBACK-006",
                f"the {who} falls back at {where} although the peer had only acknowledged up to {dsn_ref(acked, side)} "
                f"({(point - acked) & MASK64} bytes of data-level data still unacknowledged)",
                frames, sf,
            )  # fmt: skip
        log = self.obs.peek(sf, direction)
        last = log.last if log is not None else None
        last_dsn = None if log is None else log.last_dsn
        if dsn is not None and log is not None and last is not None and last_dsn is not None:
            assert last.ssn is not None and last.data_len is not None
            offset = (dss.ssn - last.ssn) & MASK32
            if offset <= last.data_len:
                expected = (last_dsn + offset) & MASK64
                if expected != dsn:
                    ctx.report(
                        "FALLBACK-009",
                        f"the infinite mapping names DSN {dsn_ref(dsn, side)} for relative subflow sequence "
                        f"{dss.ssn}, but the mapping of frame {log.last_frame} puts that subflow byte at DSN "
                        f"{dsn_ref(expected, side)}",
                        [log.last_frame, seg.frame], sf,
                    )  # fmt: skip
        after_fail = id(conn) in self._failed
        reason = f"the {who} sent an infinite mapping at frame {seg.frame}"
        end = (seg.seq + seg.payload_len) & MASK32
        receiver = FallbackPoint(sf, 1 - direction, "infinite", seg.frame,
                                 f"the {side_name(1 - side)} fell back to TCP: {reason}", "FALLBACK-002",
                                 after_fail=after_fail)  # fmt: skip
        if seg.payload_len:
            receiver.ack_from = end
        else:
            receiver.time_from = seg.ts + self.obs.allowance(sf)
        self._points.setdefault(id(conn), []).extend((
            FallbackPoint(sf, direction, "infinite", seg.frame, f"{reason} and so fell back to TCP",
                          "FALLBACK-002", seq_from=seg.seq, after_fail=after_fail),
            receiver,
        ))  # fmt: skip

    # ------------------------------------------------------------------ FALLBACK-002 / -008
    def _check_points(self, seg: Segment, sf: Subflow, direction: int, points: list[FallbackPoint],
                      mptcp: list[MptcpOption], dss: Dss | None, other: bool) -> None:  # fmt: skip
        for point in points:
            if point.reported or point.sf is not sf or point.direction != direction or not point.covers(seg):
                continue
            offending = self._offending(point, mptcp, dss, other)
            if offending is None:
                continue
            point.reported = True
            self.ctx.report(
                point.rule,
                f"{point.reason}, yet it sends {offending} afterwards on subflow {sf.id}",
                [point.frame, seg.frame], sf, severity=point.severity,
            )  # fmt: skip

    @staticmethod
    def _offending(point: FallbackPoint, mptcp: list[MptcpOption], dss: Dss | None, other: bool) -> str | None:
        """The MPTCP signalling in ``mptcp`` that a host fallen back at ``point`` must not send."""
        if other:
            for opt in mptcp:
                if isinstance(opt, SIGNALLING):
                    return OPTION_NAMES[type(opt)]
        if dss is None:
            return None
        if point.kind != "infinite":
            return "a DSS option"
        if dss.data_len and not point.after_fail:  # after MP_FAIL, mappings are FAIL-006's
            return "a DSS mapping"
        return None

    def finish(self, analysis: Analysis) -> None:
        return None
