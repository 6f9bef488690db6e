"""JOIN family: MP_JOIN subflows (RFC 8684 §3.2, with §3.1, §3.4 and §3.7 where joins meet them).

The tracker links joins to connections by token and verifies both HMACs at the end (JOIN-002,
JOIN-003). This family follows each join's handshake as it is captured (SYN, SYN/ACK, third ACK,
the responder's fourth ACK, the first data) and judges the rest at the end, when HMAC results and
the whole connection are known.

Evidence rules: a join is only judged from its SYN on (H-MID); "the responder's fourth ACK" is the
responder's first non-SYN segment, which it cannot send before it received the third ACK. Data the
capture shows before the fourth ACK is an error only when that fourth ACK shows up after the data
(so the initiator cannot have received it), a warning when the fourth ACK may have been lost by the
capture, and nothing when the initiator's TCP timestamp echo shows it received a newer segment (H-LOSS).

Hot path: one loop over a segment's (usually one) option, an infinite-mapping test on a DSS, and a
truthiness test of the watch table (joins still in their handshake).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import ClassVar

from analyzer.checker.base import GRACE_SECONDS, Context, Family, header_cut
from analyzer.facts import Fact, JoinAckHmacChecked, JoinSynAckHmacChecked
from analyzer.findings import Severity
from analyzer.ingest.segment import TH_ACK, TH_RST, TH_SYN, Segment
from analyzer.model import CLIENT, SERVER, Analysis, Connection, Grouping, Subflow
from analyzer.mptcp import crypto
from analyzer.mptcp.options import Dss, MalformedOption, MpCapable, MpJoinAck, MpJoinSyn, MpJoinSynAck, MptcpOption
from analyzer.rules import Rule
from analyzer.seqnum import serial_lt

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

MASK32 = 0xFFFFFFFF
MIN_REORDER = 0.005  # seconds: smallest reordering allowance between two paths
MAX_WATCHED_SEGMENTS = 64  # a join's plain segments are looked at until its handshake is over, at most this many
MAX_HMAC_TRIALS = 4096  # JOIN-001: key pairs tried to prove which connection an unknown-token join belongs to
SIDE_NAMES = ("client", "server")


@dataclass(slots=True)
class JoinState:
    """One join subflow's handshake as captured."""

    syn_frame: int | None = None
    syn_time: float = 0.0
    syn_backup: bool = False
    synack_frame: int | None = None  # with MP_JOIN
    synack_backup: bool = False
    synack_tsval: int | None = None
    plain_synack_frame: int | None = None  # a SYN/ACK without MP_JOIN answering the join SYN
    third_ack_frame: int | None = None  # the initiator's first MP_JOIN third-ACK option
    third_ack_time: float = 0.0
    bare_third_ack_frame: int | None = None  # the initiator's first ACK carried no MPTCP option
    initiator_acked: bool = False  # the initiator's first non-SYN segment was seen
    fourth_ack_frame: int | None = None  # the responder's first non-SYN, non-RST segment
    responder_rst_frame: int | None = None
    initiator_data_frame: int | None = None
    early_data: tuple[int, int, int] | None = None  # JOIN-005 candidate: (frame, payload length, TCP seq)
    dss_seen: list[bool] = field(default_factory=lambda: [False, False])  # per subflow direction
    after_fallback: tuple[int, int] | None = None  # JOIN-007: (fallback frame, SYN frame)
    fallback_reported: bool = False
    watched: int = 0
    reported: set[str] = field(default_factory=set)

    @property
    def fallback_suspect(self) -> bool:
        """The handshake lacked MP_JOIN on the SYN/ACK or the third ACK: the subflow is not MPTCP."""
        return self.plain_synack_frame is not None or self.bare_third_ack_frame is not None


@dataclass(slots=True)
class ConnState:
    """Connection-level facts joins are judged against."""

    no_join_to: list[tuple[bytes, int, int] | None] = field(default_factory=lambda: [None, None])  # C flag
    key_seen: bool = False  # A's first MP_CAPABLE after the SYN/ACK was seen
    key_delivered: float | None = None  # ... and it was the third ACK (not MP_CAPABLE with data): its time
    syn_time: float | None = None  # the initial subflow's SYN and SYN/ACK (their gap bounds path reordering)
    synack_time: float | None = None
    infinite: tuple[float, int, int] | None = None  # (time, frame, sending side) of the first infinite mapping
    early_joins: list[tuple[Subflow, JoinState]] = field(default_factory=list)


STILL_OPEN = 1 << 62  # "end frame" of something still alive when the capture ended


def subflow_end_frame(sf: Subflow) -> int:
    """The frame after which a subflow no longer uses its addresses: its first RST or last FIN (else still open)."""
    rst = [h.rst_frame for h in sf.halves if h.rst_frame is not None]
    if rst:
        return min(rst)
    fins = [h.fin_frame for h in sf.halves if h.fin_frame is not None]
    if len(fins) == 2:
        return max(f for f in fins if f is not None)
    return STILL_OPEN


def _reorder_allowance(cs: ConnState, st: JoinState) -> float:
    """How far a join SYN may overtake the third ACK on another path: about one RTT of either path."""
    spans = [MIN_REORDER]
    if cs.syn_time is not None and cs.synack_time is not None:
        spans.append(cs.synack_time - cs.syn_time)
    if st.third_ack_frame is not None:
        spans.append(st.third_ack_time - st.syn_time)
    return max(spans)


class JoinRules(Family):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("JOIN-001", E, "§3.2", "MP_JOIN token matches no connection, yet the join was accepted",
             "A SYN with MP_JOIN names the token of the connection to join; a responder that does not know the "
             "token refuses the join with a RST. An accepted join whose token matches no captured connection is "
             "an error when its SYN/ACK HMAC proves it belongs to another captured connection; otherwise the "
             "connection's handshake is most likely simply not in the capture (info)."),
        Rule("JOIN-002", E, "§3.2", "MP_JOIN SYN/ACK HMAC mismatch",
             "The truncated HMAC in the SYN/ACK must be the first 64 bits of HMAC(Key-responder‖Key-initiator, "
             "R-responder‖R-initiator)."),
        Rule("JOIN-003", E, "§3.2", "MP_JOIN third-ACK HMAC mismatch",
             "The HMAC in the third ACK must be the first 160 bits of HMAC(Key-initiator‖Key-responder, "
             "R-initiator‖R-responder)."),
        Rule("JOIN-004", E, "§3.2", "Join not torn down after an HMAC failure",
             "A host that receives a wrong MP_JOIN HMAC resets the subflow: the initiator must not send the third "
             "ACK after a bad SYN/ACK HMAC, and the responder must not send the fourth ACK (or accept data) after "
             "a bad third-ACK HMAC."),
        Rule("JOIN-005", E, "§3.2", "Data on a join subflow before the fourth ACK",
             "The initiator of a join must not send data until it has received the responder's ACK of its third "
             "ACK (the fourth ACK), and the third ACK itself carries no data. Not reported when the initiator's "
             "timestamp echo shows it had received a later segment the capture missed."),
        Rule("JOIN-006", E, "§3.2, §3.7", "Join subflow used as plain TCP",
             "A join subflow cannot fall back to TCP: when the SYN/ACK or the third ACK lacks MP_JOIN it must be "
             "reset. Here data flows on it without DSS (a middlebox may have stripped the options)."),
        Rule("JOIN-007", E, "§3.7", "MP_JOIN on a connection that already fell back",
             "After an infinite mapping (fallback to TCP) a connection must not open or accept new subflows. "
             "Accepting the join is an error; only sending the SYN is a warning. The fallback must be at least "
             "one grace period old, unless the host itself sent the infinite mapping."),
        Rule("JOIN-008", W, "§3.1, §3.2", "Join to an address its owner flagged with C",
             "A host that sets C in its MP_CAPABLE does not accept subflows to the source address and port of "
             "that packet; a join SYN is sent there anyway. NAT may make addresses look equal or different."),
        Rule("JOIN-009", W, "§3.4", "One address ID used for two addresses",
             "A host's address ID names one address at a time (until a REMOVE_ADDR frees it); here the same ID is "
             "used for two different addresses by overlapping MP_JOIN subflows, ADD_ADDR or the initial subflow "
             "(ID 0). NAT may rewrite the addresses the capture shows."),
        Rule("JOIN-010", W, "§3.2", "Join attempted before the connection was fully established",
             "A join SYN was sent before the initiator's key had been delivered (no third ACK or MP_CAPABLE with "
             "data yet) and before any DSS from the responder. Linux refuses such joins; the RFC's wording on it "
             "is not settled, so this is a warning. One RTT of reordering between paths is allowed."),
        Rule("JOIN-011", INFO, "§3.2", "Join requested as backup",
             "The B bit of the MP_JOIN SYN or SYN/ACK asks for the subflow to be used as a backup path."),
        Rule("JOIN-012", W, "§3.2", "Join SYN answered without MP_JOIN",
             "A responder that does not accept a join (for example an unknown token) answers with a RST; here it "
             "answered with a plain SYN/ACK, turning the join into a plain TCP connection. A listener that does "
             "not speak MPTCP at all behaves like this."),
        Rule("JOIN-013", INFO, "§3.2", "Join to a port that was never announced",
             "The join targets a port other than the connection's initial port, and no ADD_ADDR announced it. "
             "The RFC allows this; Linux rejects such joins unless the port was announced."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (JoinSynAckHmacChecked, JoinAckHmacChecked)

    def on_fact(self, fact: Fact) -> None:
        """Join HMACs next to the values the keys and nonces give."""
        sf = fact.subflow
        if sf is None:
            return
        if isinstance(fact, JoinSynAckHmacChecked) and fact.seen != fact.expected:
            self.ctx.report(
                "JOIN-002",
                f"SYN/ACK of join subflow {sf.id} carries truncated HMAC {fact.seen:016x}, "
                f"expected {fact.expected:016x}",
                list(fact.frames), sf,
            )  # fmt: skip
        elif isinstance(fact, JoinAckHmacChecked) and fact.seen != fact.expected:
            self.ctx.report(
                "JOIN-003",
                f"third ACK of join subflow {sf.id} carries HMAC {fact.seen.hex()}, expected {fact.expected.hex()}",
                list(fact.frames), sf,
            )  # fmt: skip

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._joins: dict[int, tuple[Subflow, JoinState]] = {}  # id(sf) -> join state, every captured join SYN
        self._watch: dict[int, JoinState] = {}
        self._conns: dict[int, ConnState] = {}

    def _conn_state(self, conn: Connection) -> ConnState:
        state = self._conns.get(id(conn))
        if state is None:
            state = self._conns[id(conn)] = ConnState()
        return state

    # ------------------------------------------------------------------ per segment
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        opts = seg.options
        if opts is not None:
            mptcp = opts.mptcp
            if len(mptcp) == 1 and type(mptcp[0]) is Dss:  # the common case
                if mptcp[0].data_len == 0:
                    self._infinite_mapping(seg, sf, direction)
            else:
                for opt in mptcp:
                    if type(opt) is Dss:
                        if opt.data_len == 0:
                            self._infinite_mapping(seg, sf, direction)
                    elif type(opt) is not MalformedOption:
                        self._handshake_option(seg, sf, direction, opt)
        if self._watch:
            st = self._watch.get(id(sf))
            if st is not None:
                self._watched(seg, sf, direction, st)

    def _infinite_mapping(self, seg: Segment, sf: Subflow, direction: int) -> None:
        conn = sf.connection
        if conn is not None:
            cs = self._conn_state(conn)
            if cs.infinite is None:
                cs.infinite = (seg.ts, seg.frame, sf.sender(direction))

    def _handshake_option(self, seg: Segment, sf: Subflow, direction: int, opt: MptcpOption) -> None:
        flags = seg.flags
        if isinstance(opt, MpCapable):
            self._mp_capable(seg, sf, direction, opt)
        elif isinstance(opt, MpJoinSyn):
            if flags & TH_SYN and not flags & TH_ACK and direction == CLIENT:
                self._join_syn(seg, sf, opt)
        elif isinstance(opt, MpJoinSynAck):
            if flags & TH_SYN and flags & TH_ACK and direction == SERVER:
                self._join_synack(seg, sf, opt)
        elif isinstance(opt, MpJoinAck) and not flags & TH_SYN and direction == CLIENT:
            entry = self._joins.get(id(sf))
            if entry is not None:
                self._join_ack(seg, sf, entry[1])

    # ------------------------------------------------------------------ the initial subflow (C flag, key)
    def _mp_capable(self, seg: Segment, sf: Subflow, direction: int, opt: MpCapable) -> None:
        conn = sf.connection
        if conn is None or sf.kind == "join":
            return
        cs = self._conn_state(conn)
        side = sf.sender(direction)
        if seg.flags & TH_SYN:
            if not seg.flags & TH_ACK and cs.syn_time is None:
                cs.syn_time = seg.ts
            elif seg.flags & TH_ACK and cs.synack_time is None:
                cs.synack_time = seg.ts
            if opt.no_join_to_source and opt.version >= 1:
                src = (sf.client_ip, sf.client_port) if direction == CLIENT else (sf.server_ip, sf.server_port)
                cs.no_join_to[side] = (src[0], src[1], seg.frame)
            return
        if side == CLIENT and not cs.key_seen:
            cs.key_seen = True
            if opt.data_len is None and not seg.payload_len:
                cs.key_delivered = seg.ts  # the third ACK itself (MP_CAPABLE with data may mean it was not captured)

    # ------------------------------------------------------------------ join handshake
    def _join_syn(self, seg: Segment, sf: Subflow, opt: MpJoinSyn) -> None:
        entry = self._joins.get(id(sf))
        if entry is not None:
            return  # retransmitted SYN
        st = JoinState(syn_frame=seg.frame, syn_time=seg.ts, syn_backup=opt.backup)
        self._joins[id(sf)] = (sf, st)
        self._watch[id(sf)] = st
        conn = sf.connection
        if conn is None:
            return  # token not (yet) known: JOIN-001 at the end
        cs = self._conn_state(conn)
        initiator = sf.sender(CLIENT)
        responder = 1 - initiator
        ctx = self.ctx
        flagged = cs.no_join_to[responder]
        if flagged is not None and conn.version != 0 and flagged[:2] == (sf.server_ip, sf.server_port):
            ctx.report(
                "JOIN-008",
                f"the {SIDE_NAMES[initiator]} opens a join to {sf.server}, the address and port the "
                f"{SIDE_NAMES[responder]} flagged with C (no further subflows) in its MP_CAPABLE",
                [flagged[2], seg.frame], sf,
            )  # fmt: skip
        initial = conn.initial_subflow
        if (
            initial is not None and initial is not sf and initial.syn_seen and not initial.mpc_ack
            and not cs.key_seen
            and not initial.halves[initial.direction_of(SERVER)].dss_packets
        ):  # fmt: skip
            cs.early_joins.append((sf, st))  # JOIN-010, decided at the end
        if cs.infinite is not None:
            when, frame, sender = cs.infinite
            if sender == initiator or seg.ts - when >= GRACE_SECONDS:
                st.after_fallback = (frame, seg.frame)

    def _join_synack(self, seg: Segment, sf: Subflow, opt: MpJoinSynAck) -> None:
        entry = self._joins.get(id(sf))
        if entry is None:
            return  # the join SYN was not captured (H-MID)
        st = entry[1]
        if st.synack_frame is not None:
            return  # retransmitted SYN/ACK
        st.synack_frame = seg.frame
        st.synack_backup = opt.backup
        if seg.options is not None and seg.options.timestamp is not None:
            st.synack_tsval = seg.options.timestamp[0]
        conn = sf.connection
        if conn is None:
            return
        cs = self._conn_state(conn)
        responder = sf.sender(SERVER)
        if cs.infinite is not None and not st.fallback_reported:
            when, frame, sender = cs.infinite
            if sender == responder or seg.ts - when >= GRACE_SECONDS:
                st.fallback_reported = True
                self.ctx.report(
                    "JOIN-007",
                    f"the {SIDE_NAMES[responder]} accepts a join (SYN/ACK with MP_JOIN) on a connection that fell "
                    f"back to TCP with an infinite mapping at frame {frame}",
                    [frame, st.syn_frame or seg.frame, seg.frame], sf,
                )  # fmt: skip

    def _join_ack(self, seg: Segment, sf: Subflow, st: JoinState) -> None:
        if st.third_ack_frame is None:
            st.third_ack_frame = seg.frame
            st.third_ack_time = seg.ts
        if seg.payload_len and "JOIN-005/ack" not in st.reported:
            st.reported.add("JOIN-005/ack")
            st.reported.add("JOIN-005")
            self.ctx.report(
                "JOIN-005",
                f"the third ACK of join subflow {sf.id} carries {seg.payload_len} bytes of data; the initiator may "
                "only send data after the responder's fourth ACK",
                seg.frame, sf,
            )  # fmt: skip

    # ------------------------------------------------------------------ the rest of a join's handshake phase
    def _watched(self, seg: Segment, sf: Subflow, direction: int, st: JoinState) -> None:
        st.watched += 1
        flags = seg.flags
        opts = seg.options
        mptcp = opts.mptcp if opts is not None else []
        has_dss = any(type(opt) is Dss for opt in mptcp)
        if has_dss:
            st.dss_seen[direction] = True
        if flags & TH_SYN:
            if flags & TH_ACK and direction == SERVER and st.synack_frame is None:
                self._plain_synack(seg, sf, st, mptcp)
        elif flags & TH_RST:
            if direction == SERVER and st.responder_rst_frame is None:
                st.responder_rst_frame = seg.frame
                if st.early_data is not None:
                    self._resolve_early_data(None, sf, st)
        elif direction == CLIENT:
            if not st.initiator_acked:
                st.initiator_acked = True
                if not mptcp and not seg.payload_len and not header_cut(seg):
                    st.bare_third_ack_frame = seg.frame
            if seg.payload_len:
                self._initiator_data(seg, sf, st, has_dss)
        else:
            if st.fourth_ack_frame is None:
                st.fourth_ack_frame = seg.frame
                if st.early_data is not None:
                    self._resolve_early_data(seg, sf, st)
            if seg.payload_len and st.fallback_suspect and not has_dss:
                self._plain_data(seg, sf, st)
        if st.watched >= MAX_WATCHED_SEGMENTS or (
            (st.fourth_ack_frame is not None or st.responder_rst_frame is not None)
            and st.initiator_data_frame is not None and not st.fallback_suspect
        ):  # fmt: skip
            del self._watch[id(sf)]

    def _plain_synack(self, seg: Segment, sf: Subflow, st: JoinState, mptcp: list[MptcpOption]) -> None:
        isn = sf.halves[CLIENT].isn
        if st.syn_frame is None or isn is None or seg.ack != (isn + 1) & MASK32:
            return
        if any(type(opt) is MpJoinSynAck for opt in mptcp) or st.plain_synack_frame is not None or header_cut(seg):
            return  # (H-SNAP: an MP_JOIN the capture did not keep)
        st.plain_synack_frame = seg.frame
        known = sf.connection is not None
        self.ctx.report(
            "JOIN-012",
            f"the join SYN (token {sf.join_token or 0:08x}, "
            f"{'known' if known else 'unknown'} to the analyzer) was answered by a SYN/ACK without MP_JOIN "
            "instead of a RST: the responder turned it into a plain TCP connection",
            [st.syn_frame, seg.frame], sf,
        )  # fmt: skip

    def _initiator_data(self, seg: Segment, sf: Subflow, st: JoinState, has_dss: bool) -> None:
        if st.initiator_data_frame is None:
            st.initiator_data_frame = seg.frame
        if st.fallback_suspect:
            if not has_dss:
                self._plain_data(seg, sf, st)
            return
        if (
            st.fourth_ack_frame is not None or st.responder_rst_frame is not None or st.synack_frame is None
            or "JOIN-005" in st.reported
        ):  # fmt: skip
            return
        ts = seg.options.timestamp if seg.options is not None else None
        if ts is not None and st.synack_tsval is not None and serial_lt(st.synack_tsval, ts[1], 32):
            return  # H-LOSS: the initiator echoes a newer timestamp, so it received a segment the capture missed
        peer_isn = sf.halves[SERVER].isn
        if peer_isn is not None and seg.ack != (peer_isn + 1) & MASK32:
            return  # it acknowledges responder data, so the responder had long completed the handshake
        st.reported.add("JOIN-005")
        st.early_data = (seg.frame, seg.payload_len, seg.seq)  # judged by the responder's next segment

    def _resolve_early_data(self, seg: Segment | None, sf: Subflow, st: JoinState) -> None:
        """The responder's first ACK after early data: a late fourth ACK proves JOIN-005, anything else does not.

        If the responder's first segment after the data does not acknowledge it, it is the fourth ACK, and it
        was seen after the data at this capture point, so the initiator sent before receiving it (wherever the
        capture ran). If it already acknowledges the data, or never comes, the fourth ACK may have been lost by
        the capture (H-LOSS): a warning.
        """
        assert st.early_data is not None
        frame, length, seq = st.early_data
        st.early_data = None
        proven = seg is not None and serial_lt(seg.ack, (seq + length) & MASK32, 32)
        frames = [f for f in (st.third_ack_frame, frame) if f is not None]
        if proven and seg is not None:
            frames.append(seg.frame)
            detail = f"its fourth ACK only came at frame {seg.frame}"
        else:
            detail = (
                "no ACK from the responder after the third ACK was captured before the data; it may have been "
                "lost by the capture"
            )
        self.ctx.report(
            "JOIN-005",
            f"the initiator sends {length} bytes on join subflow {sf.id} before the responder's fourth ACK ({detail})",
            frames, sf, assumes=() if proven else ("no-capture-loss",),
        )  # fmt: skip

    def _plain_data(self, seg: Segment, sf: Subflow, st: JoinState) -> None:
        if "JOIN-006" in st.reported or any(st.dss_seen):
            return
        if seg.options is not None and seg.options.truncated:
            return  # H-SNAP: the options were cut by the snaplen
        st.reported.add("JOIN-006")
        frame: int | None
        if st.plain_synack_frame is not None:
            why, frame = "the SYN/ACK carried no MP_JOIN", st.plain_synack_frame
        else:
            why, frame = "the third ACK carried no MP_JOIN", st.bare_third_ack_frame
        self.ctx.report(
            "JOIN-006",
            f"join subflow {sf.id} carries data without DSS after {why}: a join must be reset, never fall back "
            "to TCP (if the endpoints did send the options, a middlebox stripped them)",
            [f for f in (st.syn_frame, frame, seg.frame) if f is not None], sf,
        )  # fmt: skip

    # ------------------------------------------------------------------ end of capture
    def finish(self, analysis: Analysis) -> None:
        ctx = self.ctx
        for sf, st in self._joins.values():
            if st.early_data is not None:
                self._resolve_early_data(None, sf, st)
            self._hmac_failures(sf, st)
            if st.synack_frame is not None and (st.syn_backup or st.synack_backup):
                initiator = SIDE_NAMES[sf.sender(CLIENT)]
                responder = SIDE_NAMES[sf.sender(SERVER)]
                wants = [who for who, b in ((initiator, st.syn_backup), (responder, st.synack_backup)) if b]
                ctx.report(
                    "JOIN-011",
                    f"join subflow {sf.id} was opened as a backup path (B bit set by the {' and the '.join(wants)})",
                    [f for f in (st.syn_frame, st.synack_frame) if f is not None], sf,
                )  # fmt: skip
            if st.after_fallback is not None and not st.fallback_reported:
                frame, syn = st.after_fallback
                ctx.report(
                    "JOIN-007",
                    f"the {SIDE_NAMES[sf.sender(CLIENT)]} opens a join on a connection that fell back to TCP with "
                    f"an infinite mapping at frame {frame}",
                    [frame, syn], sf, severity=W,
                )  # fmt: skip
        for cs in self._conns.values():
            for sf, st in cs.early_joins:
                if cs.key_delivered is None:
                    continue  # H-LOSS/H-END: the third ACK was never captured, so when it was sent is unknown
                if cs.key_delivered - st.syn_time <= _reorder_allowance(cs, st):
                    continue  # H-REORD: the third ACK was only overtaken by the join SYN on another path
                ctx.report(
                    "JOIN-010",
                    f"join subflow {sf.id} was attempted before the connection was fully established (the "
                    "initiator's key had not been delivered and the responder had sent no DSS yet)",
                    [f for f in (st.syn_frame,) if f is not None], sf,
                )  # fmt: skip
        for conn in analysis.connections:
            if conn.grouping == Grouping.TOKEN:
                self._unknown_token(conn, analysis)
            else:
                self._address_ids(conn)
                self._unannounced_ports(conn)

    def _hmac_failures(self, sf: Subflow, st: JoinState) -> None:
        ctx = self.ctx
        if sf.join_synack_hmac_ok is False and st.third_ack_frame is not None and st.synack_frame is not None:
            ctx.report(
                "JOIN-004",
                f"the SYN/ACK of join subflow {sf.id} carries a wrong HMAC (JOIN-002), yet the initiator completed "
                "the handshake with a third ACK instead of resetting the subflow",
                [st.synack_frame, st.third_ack_frame], sf,
            )  # fmt: skip
        if (
            sf.join_ack_hmac_ok is False and st.third_ack_frame is not None and st.fourth_ack_frame is not None
            and st.fourth_ack_frame > st.third_ack_frame
            and (st.responder_rst_frame is None or st.responder_rst_frame > st.fourth_ack_frame)
        ):  # fmt: skip
            ctx.report(
                "JOIN-004",
                f"the third ACK of join subflow {sf.id} carries a wrong HMAC (JOIN-003), yet the responder answered "
                "with an ACK instead of resetting the subflow",
                [st.third_ack_frame, st.fourth_ack_frame], sf,
            )  # fmt: skip

    # ------------------------------------------------------------------ JOIN-001
    def _unknown_token(self, conn: Connection, analysis: Analysis) -> None:
        joins = [sf for sf in conn.subflows if sf.kind == "join" and sf.join_synack_hmac is not None]
        if not joins:
            return
        keyed = [
            c for c in analysis.connections
            if c is not conn and c.sides[0].key is not None and c.sides[1].key is not None
        ]  # fmt: skip
        trials = 0
        for sf in joins:
            nonce_init, nonce_resp = sf.join_nonces
            if nonce_init is None or nonce_resp is None or sf.join_synack_hmac is None:
                continue
            for other in keyed:
                trials += 1
                if trials > MAX_HMAC_TRIALS:
                    break
                version = 0 if other.version == 0 else 1  # as the tracker: unknown versions hash as v1
                for resp in (SERVER, CLIENT):
                    key_resp, key_init = other.sides[resp].key, other.sides[1 - resp].key
                    assert key_resp is not None and key_init is not None
                    expected = crypto.join_synack_truncated_hmac(key_resp, key_init, nonce_resp, nonce_init, version)
                    if expected == sf.join_synack_hmac:
                        self.ctx.report(
                            "JOIN-001",
                            f"join subflow {sf.id} names token {sf.join_token or 0:08x}, which is not the token of "
                            f"connection {other.id}; yet its SYN/ACK HMAC was computed with that connection's keys, "
                            f"so the {SIDE_NAMES[resp]} of connection {other.id} accepted a join with a wrong token "
                            f"(its token is {other.sides[resp].token or 0:08x})",
                            [f for f in (sf.first_frame, self._synack_frame(sf)) if f is not None], sf, conn=conn,
                        )  # fmt: skip
                        return
        first = joins[0]
        self.ctx.report(
            "JOIN-001",
            f"{len(joins)} accepted join(s) name token {first.join_token or 0:08x}, which matches no connection in "
            "the capture; the connection's MP_CAPABLE handshake is most likely not captured (H-MID), so this "
            "cannot be judged",
            [f for sf in joins for f in (sf.first_frame, self._synack_frame(sf)) if f is not None],
            first, conn=conn, severity=INFO,
        )  # fmt: skip

    def _synack_frame(self, sf: Subflow) -> int | None:
        entry = self._joins.get(id(sf))
        return entry[1].synack_frame if entry is not None else None

    # ------------------------------------------------------------------ JOIN-009
    def _address_ids(self, conn: Connection) -> None:
        # (side, address id) -> [(address, first frame, last frame, frame to cite, from a join)]
        claims: dict[tuple[int, int], list[tuple[bytes, int, int, int, bool]]] = {}

        def claim(side: int, aid: int, address: bytes, start: int, end: int, join: bool) -> None:
            claims.setdefault((side, aid), []).append((address, start, end, start, join))

        for sf in conn.subflows:
            end = subflow_end_frame(sf)
            if sf.kind == "initial":
                claim(sf.sender(CLIENT), 0, sf.client_ip, sf.first_frame, end, False)
                claim(sf.sender(SERVER), 0, sf.server_ip, sf.first_frame, end, False)
            elif sf.kind == "join":
                entry = self._joins.get(id(sf))
                first = entry[1].syn_frame if entry is not None and entry[1].syn_frame else sf.first_frame
                for direction, address in ((CLIENT, sf.client_ip), (SERVER, sf.server_ip)):
                    aid = sf.halves[direction].address_id
                    if aid is not None:
                        claim(sf.sender(direction), aid, address, first, end, True)
        removals: dict[tuple[int, int], list[int]] = {}
        for ann in conn.announcements:
            if ann.kind == "remove":
                for aid in ann.address_ids:
                    removals.setdefault((ann.sender, aid), []).append(ann.frame)
        for ann in conn.announcements:
            if ann.kind == "add" and ann.address is not None:
                try:
                    packed = ipaddress.ip_address(ann.address).packed
                except ValueError:
                    continue
                key = (ann.sender, ann.address_ids[0])
                end = min((f for f in removals.get(key, ()) if f > ann.frame), default=STILL_OPEN)
                claim(ann.sender, ann.address_ids[0], packed, ann.frame, end, False)
        for (side, aid), items in claims.items():
            if len(items) < 2 or not any(join for *_, join in items):
                continue
            cuts = removals.get((side, aid), [])
            conflict = _first_conflict(items, cuts)
            if conflict is None:
                continue
            (a_addr, a_frame), (b_addr, b_frame) = conflict
            self.ctx.report(
                "JOIN-009",
                f"the {SIDE_NAMES[side]} uses address ID {aid} for {ipaddress.ip_address(a_addr)} and, at the same "
                f"time, for {ipaddress.ip_address(b_addr)}",
                [a_frame, b_frame], conn=conn,
            )  # fmt: skip

    # ------------------------------------------------------------------ JOIN-013
    def _unannounced_ports(self, conn: Connection) -> None:
        initial = conn.initial_subflow
        if initial is None or not initial.syn_seen:
            return  # H-MID: the connection's ports and announcements are not all known
        for sf in conn.subflows:
            entry = self._joins.get(id(sf))
            if sf.kind != "join" or entry is None:
                continue
            owner = sf.sender(SERVER)  # the host the join SYN was sent to
            owner_port = initial.server_port if initial.sender(SERVER) == owner else initial.client_port
            if sf.server_port == owner_port:
                continue
            if any(a.kind == "add" and a.sender == owner and a.port == sf.server_port for a in conn.announcements):
                continue
            self.ctx.report(
                "JOIN-013",
                f"join subflow {sf.id} targets port {sf.server_port}, but the {SIDE_NAMES[owner]}'s initial port is "
                f"{owner_port} and no ADD_ADDR announced port {sf.server_port} (Linux would refuse this join)",
                [f for f in (entry[1].syn_frame,) if f is not None], sf,
            )  # fmt: skip


def _first_conflict(
    items: list[tuple[bytes, int, int, int, bool]], cuts: list[int]
) -> tuple[tuple[bytes, int], tuple[bytes, int]] | None:
    """Two claims of one address ID with different addresses whose lifetimes overlap (no REMOVE_ADDR between)."""
    ordered = sorted(items, key=lambda item: item[1])
    for i, (a_addr, a_start, a_end, a_frame, a_join) in enumerate(ordered):
        for b_addr, b_start, _b_end, b_frame, b_join in ordered[i + 1 :]:
            if b_addr == a_addr or not (a_join or b_join):
                continue
            if b_start > a_end:
                continue  # the first claim had ended
            if any(a_start < cut <= b_start for cut in cuts):
                continue  # a REMOVE_ADDR freed the ID in between
            return (a_addr, a_frame), (b_addr, b_frame)
    return None
