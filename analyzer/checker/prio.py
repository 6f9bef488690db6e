"""PRIO family: subflow priority, MP_PRIO and the MP_JOIN B bit (RFC 8684 §3.3.8; RFC 6824 §3.3.8 for v0).

The tracker reports MP_PRIO options whose length no version defines (PRIO-001) and keeps each subflow
direction's backup flag up to date. This family checks the version-dependent length, where MP_PRIO
may appear, and observes how the priorities are used: data sent on a backup subflow while a regular
subflow of the same connection was usable is reported as info (a scheduling observation).

Hot path: one loop over the segment's (usually one) option and, only while some subflow is a backup,
a dictionary lookup for segments with payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from analyzer.checker.base import Context, Family
from analyzer.facts import Fact, OptionMalformed
from analyzer.findings import Severity
from analyzer.ingest.segment import TH_ACK, TH_RST, TH_SYN, Segment
from analyzer.model import Analysis, Connection, Subflow
from analyzer.mptcp.options import Dss, MpCapable, MpJoinSyn, MpJoinSynAck, MpPrio, Subtype
from analyzer.rules import Rule
from analyzer.seqnum import serial_lt

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

SIDE_NAMES = ("client", "server")
USABLE_WITHIN = 1.0  # seconds: a regular subflow that carried a packet this recently counts as usable


@dataclass(slots=True)
class BackupState:
    """A subflow currently flagged as backup by at least one of its hosts."""

    sf: Subflow
    since_frame: int  # the MP_JOIN or MP_PRIO that made it a backup
    reported: int = 0  # bit per direction: new data on it was already reported in this backup period


@dataclass(slots=True)
class PrioUse:
    """A v0 MP_PRIO naming an address ID (PRIO-004 is decided at the end)."""

    sf: Subflow
    frame: int
    address_id: int


class PriorityRules(Family):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("PRIO-001", E, "§3.3.8", "MP_PRIO length invalid",
             "MP_PRIO is 3 bytes in v1; RFC 6824 (v0) also allowed 4 bytes with an address ID, which RFC 8684 "
             "removed."),
        Rule("PRIO-002", W, "§3.3.8", "MP_PRIO on a SYN or together with MP_CAPABLE",
             "MP_PRIO changes the priority of an established subflow; it has no place on a SYN or SYN/ACK (the "
             "MP_JOIN B bit sets the initial priority) and Linux never combines it with MP_CAPABLE."),
        Rule("PRIO-003", INFO, "§3.3.8", "Subflow priority change and use of backup subflows",
             "A subflow's priority changed (MP_PRIO), or new data was sent on a backup subflow while a regular "
             "subflow of the same connection was established and active. This is a scheduling observation, not "
             "a violation; reinjections and retransmissions onto a backup subflow are not counted."),
        Rule("PRIO-004", W, "RFC 6824 §3.3.8", "v0 MP_PRIO names an unknown address ID",
             "The address ID of a v0 MP_PRIO must name an address of the connection (ID 0, an MP_JOIN address ID "
             "or an announced address). Only judged when the whole connection was captured from its handshake."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (OptionMalformed,)

    def on_fact(self, fact: Fact) -> None:
        if isinstance(fact, OptionMalformed) and fact.option.subtype == Subtype.MP_PRIO:
            self.ctx.report("PRIO-001", fact.describe(), list(fact.frames), fact.subflow)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._backup: dict[int, BackupState] = {}  # id(sf) -> state, while the subflow is a backup
        # While a connection has a backup subflow: each side's highest mapped DSN end as of the previous
        # data segment (the context's value already includes the current one), keyed id(conn) * 2 + side.
        self._frontier: dict[int, int | None] = {}
        self._v0_ids: list[PrioUse] = []

    # ------------------------------------------------------------------ per segment
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        opts = seg.options
        if opts is not None:
            mptcp = opts.mptcp
            if len(mptcp) != 1 or type(mptcp[0]) is not Dss:  # the common case (one DSS) has nothing for us
                for opt in mptcp:
                    if type(opt) is MpPrio:
                        self._mp_prio(seg, sf, direction, opt)
                    elif (type(opt) is MpJoinSyn or type(opt) is MpJoinSynAck) and seg.flags & TH_SYN:
                        self._update_backup(sf, seg.frame)  # the MP_JOIN B bit (the tracker stored it already)
        if self._backup and seg.payload_len:
            state = self._backup.get(id(sf))
            if state is not None:
                self._backup_data(seg, sf, direction, state)
            else:
                self._note_frontier(sf, direction)

    def _mp_prio(self, seg: Segment, sf: Subflow, direction: int, opt: MpPrio) -> None:
        ctx = self.ctx
        conn = sf.connection
        flags = seg.flags
        if flags & TH_SYN:
            ctx.report(
                "PRIO-002",
                f"MP_PRIO on a {'SYN/ACK' if flags & TH_ACK else 'SYN'}; the initial priority is the MP_JOIN B bit",
                seg.frame, sf,
            )  # fmt: skip
        elif seg.options is not None and any(type(o) is MpCapable for o in seg.options.mptcp):
            ctx.report("PRIO-002", "MP_PRIO together with MP_CAPABLE in one segment", seg.frame, sf)
        if opt.address_id is not None:
            if conn is not None and conn.version == 1:
                ctx.report(
                    "PRIO-001",
                    f"MP_PRIO of 4 bytes (address ID {opt.address_id}) in an MPTCP v1 connection; RFC 8684 defines "
                    "only the 3-byte form, which applies to the subflow it is sent on",
                    seg.frame, sf,
                )  # fmt: skip
            elif conn is not None and conn.version == 0:
                self._v0_ids.append(PrioUse(sf, seg.frame, opt.address_id))
        was_backup = id(sf) in self._backup
        self._update_backup(sf, seg.frame)
        sender = SIDE_NAMES[sf.sender(direction)]
        now = id(sf) in self._backup
        if now != was_backup:
            state = "a backup path" if now else "a regular path again"
            ctx.report(
                "PRIO-003",
                f"the {sender} sets subflow {sf.id} to {'backup' if opt.backup else 'regular'} priority (MP_PRIO "
                f"B={int(opt.backup)}); the subflow is now {state}",
                seg.frame, sf,
            )  # fmt: skip

    def _update_backup(self, sf: Subflow, frame: int) -> None:
        key = id(sf)
        if sf.halves[0].backup or sf.halves[1].backup:
            if key not in self._backup:
                self._backup[key] = BackupState(sf, frame)
                conn = sf.connection
                if conn is not None:
                    for side in (0, 1):
                        self._frontier[id(conn) * 2 + side] = self.ctx.level(conn, side).known_end()
        else:
            self._backup.pop(key, None)

    def _note_frontier(self, sf: Subflow, direction: int) -> None:
        """Remember where a connection with a backup subflow stands after a data segment on another subflow."""
        conn = sf.connection
        if conn is not None:
            side = sf.sender(direction)
            key = id(conn) * 2 + side
            if key in self._frontier:
                self._frontier[key] = self.ctx.level(conn, side).known_end()

    # ------------------------------------------------------------------ PRIO-003: data on a backup subflow
    def _backup_data(self, seg: Segment, sf: Subflow, direction: int, state: BackupState) -> None:
        conn = sf.connection
        opts = seg.options
        if conn is None or opts is None or seg.flags & (TH_SYN | TH_RST):
            return
        dss = next((opt for opt in opts.mptcp if type(opt) is Dss), None)
        if not isinstance(dss, Dss) or dss.dsn is None or not dss.data_len:
            return
        ctx = self.ctx
        side = sf.sender(direction)
        start = ctx.dsn64(dss)
        if start is None:
            return
        key = id(conn) * 2 + side
        before = self._frontier.get(key)
        self._frontier[key] = ctx.level(conn, side).known_end()
        if state.reported & (1 << direction):
            return
        if before is not None and serial_lt(start, before):
            return  # data the sender had mapped before: a reinjection, a retransmission or a TSO copy
        regular = self._usable_regular_subflow(conn, sf, seg.ts)
        if regular is None:
            return
        state.reported |= 1 << direction
        ctx.report(
            "PRIO-003",
            f"the {SIDE_NAMES[side]} sends new data on backup subflow {sf.id} while regular subflow {regular.id} "
            "is established and active",
            [state.since_frame, seg.frame], sf,
        )  # fmt: skip

    def _usable_regular_subflow(self, conn: Connection, backup: Subflow, now: float) -> Subflow | None:
        for other in conn.subflows:
            if other is backup or id(other) in self._backup:
                continue
            c, s = other.halves
            if c.rst_frame is not None or s.rst_frame is not None or c.fin_frame is not None or s.fin_frame is not None:
                continue
            if not (c.packets and s.packets) or now - other.last_time > USABLE_WITHIN:
                continue
            if other.kind == "join" and other.join_ack_hmac is None and not (c.dss_packets and s.dss_packets):
                continue  # its handshake is not complete
            return other
        return None

    # ------------------------------------------------------------------ PRIO-004
    def finish(self, analysis: Analysis) -> None:
        ctx = self.ctx
        for use in self._v0_ids:
            conn = use.sf.connection
            if conn is None or not ctx.handshake_seen(conn) or not ctx.fully_captured(conn):
                continue  # H-MID: IDs may come from before the capture or from uncaptured subflows
            known = {0}
            for sf in conn.subflows:
                for half in sf.halves:
                    if half.address_id is not None:
                        known.add(half.address_id)
            for ann in conn.announcements:
                if ann.kind == "add":
                    known.update(ann.address_ids)
            if use.address_id not in known:
                ctx.report(
                    "PRIO-004",
                    f"the v0 MP_PRIO names address ID {use.address_id}, which no MP_JOIN, ADD_ADDR or the initial "
                    "subflow of this connection uses",
                    use.frame, use.sf,
                )  # fmt: skip
