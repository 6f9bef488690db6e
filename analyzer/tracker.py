"""Groups TCP segments into subflows and subflows into MPTCP connections.

The tracker is fed one decoded segment at a time (single pass) and keeps per-flow summaries only.
Linking rules (RFC 8684 §3.1, §3.2):

* an initial subflow's MP_CAPABLE handshake carries the keys; each key gives its host's token;
* a join's SYN names the token of the host it joins, which finds the connection;
* when the handshake was not captured, keys echoed in the third ACK / MP_CAPABLE with data, tokens
  shared between joins, and data-sequence continuity of DSS mappings are used instead (see
  :meth:`Tracker.finish`), and the subflow's :class:`~analyzer.model.Grouping` says which.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from analyzer.facts import (
    AddAddrHmacChecked,
    Fact,
    FactLog,
    FastcloseKeyMismatch,
    FellBack,
    JoinAckHmacChecked,
    JoinSynAckHmacChecked,
    KeyChanged,
    KeyEchoMismatch,
    OptionExperimental,
    OptionListMalformed,
    OptionMalformed,
    OptionUnassigned,
)
from analyzer.findings import FindingSink
from analyzer.ingest.segment import TH_ACK, TH_FIN, TH_RST, TH_SYN, Segment
from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import CLIENT, SERVER, Announcement, Connection, Grouping, Subflow, format_ip
from analyzer.mptcp import crypto
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
    Subtype,
    UnknownMptcpOption,
)
from analyzer.seqnum import dsn_near
from analyzer.tcp_options import TcpOptions
from analyzer.tfo import decide_ssn_shift, note_syn_payload

FlowKey = tuple[bytes, int, bytes, int]
EPHEMERAL_PORT_FLOOR = 32768

Handler = Callable[[Any, Subflow, int, Segment], None]
_PORTS = struct.Struct("!HH")
HOLD_AFTER_HALF_OPEN = 256


class HeldSyn:
    """A flow that so far sent one bare SYN, kept as its captured bytes instead of a Subflow (~0.4 kB).

    Why: in a SYN flood almost no flow ever sends a second packet, so building the model and every
    observer's state for it is wasted. The flow's next packet (or the end of the trace) promotes it:
    the SYN is decoded again from ``data`` and goes through the tracker and the observers before that
    packet, with the subflow id reserved when it arrived. Past ``max_half_open`` it is summarised unseen.
    """

    __slots__ = ("data", "frame", "link_type", "mptcp", "subflow_id", "ts")

    def __init__(self, subflow_id: int, frame: int, ts: float, link_type: int, data: bytes, mptcp: bool) -> None:
        self.subflow_id = subflow_id
        self.frame = frame
        self.ts = ts
        self.link_type = link_type
        self.data = data
        self.mptcp = mptcp  # it offered MP_CAPABLE: counted as an MPTCP packet and connection


def _flow_bytes(src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
    """A held flow's key: one short bytes object instead of a 4-tuple (a third of the memory)."""
    return src + dst + _PORTS.pack(sport, dport)


def _holdable(seg: Segment) -> bool:
    """A bare SYN whose only MPTCP option (if any) is a well-formed MP_CAPABLE: nothing a rule could flag alone
    that the tracker would publish, no data. Anything else is tracked at once."""
    if seg.payload_len:
        return False
    opts = seg.options
    if opts is None:
        return True
    if opts.malformed is not None or opts.truncated:
        return False
    mptcp = opts.mptcp
    return not mptcp or (len(mptcp) == 1 and type(mptcp[0]) is MpCapable)


class Tracker:
    """Streaming subflow/connection bookkeeping; call :meth:`on_segment` per packet, then :meth:`finish`."""

    def __init__(self, sink: FindingSink, limits: Limits = DEFAULT_LIMITS, facts: FactLog | None = None) -> None:
        self.sink = sink  # GROUP-001 only: how a subflow was grouped is the tracker's own verdict
        self.limits = limits
        self.facts = facts  # what it saw, for the rule families (None: nobody judges, nothing kept)
        self.flows: dict[FlowKey, tuple[Subflow, int]] = {}
        self.subflows: list[Subflow] = []
        self.connections: list[Connection] = []
        self._next_subflow = 1
        self._next_connection = 1
        self.live_subflows = 0  # tracked and not summarised
        # Flows that saw only their client's SYN so far (insertion order = oldest first); see max_half_open.
        self.half_open: dict[int, Subflow] = {}
        self.evicted_subflows = 0  # half-open flows summarised past max_half_open
        self.evicted_connections = 0
        self.first_evicted_frame: int | None = None
        self._dropped = 0  # summarised objects still in self.subflows / self.connections (compacted lazily)
        self.untracked_packets = 0  # segments of flows not tracked because max_flows / max_connections was reached
        self.untracked_frame: int | None = None
        self.untracked_limit: str | None = None
        self._compacted_connections = 0
        self.just_evicted: list[Subflow] = []  # evicted by the last on_segment: observers forget them
        self.token_index: dict[int, list[tuple[Connection, int]]] = {}
        self.pending_joins: dict[int, list[Subflow]] = {}
        self.mptcp_packets = 0
        # Bare SYNs not yet modelled (see HeldSyn), oldest first; they count as half-open flows.
        self.held: dict[bytes, HeldSyn] = {}
        # held's keys oldest first: finding a dict's oldest key after many deletions at its front scans them all
        self._held_order: deque[bytes] = deque()
        # Hold only once this many flows are half-open (a flood): a held SYN reaches the observers late, after
        # other flows' packets, so ordinary traces keep the exact arrival order.
        self.hold_after = min(HOLD_AFTER_HALF_OPEN, limits.max_half_open // 2)
        self.promoted: HeldSyn | None = None  # set when on_segment met a held flow's next packet
        self._reserved_id: int | None = None
        self._grouping_resolved = False
        self._handlers: dict[type, Handler] = {
            MpCapable: self._on_mp_capable,
            MpJoinSyn: self._on_join_syn,
            MpJoinSynAck: self._on_join_synack,
            MpJoinAck: self._on_join_ack,
            Dss: self._on_dss,
            AddAddr: self._on_add_addr,
            RemoveAddr: self._on_remove_addr,
            MpPrio: self._on_prio,
            MpFail: self._on_fail,
            MpFastclose: self._on_fastclose,
            MpTcpRst: self._on_tcprst,
            MalformedOption: self._on_malformed,
            UnknownMptcpOption: self._on_unknown,
            MpExperimental: self._on_experimental,
        }

    # ------------------------------------------------------------------ per packet
    def on_segment(self, seg: Segment, link_type: int | None = None) -> tuple[Subflow, int] | None:
        """Account one segment; returns its subflow and direction (CLIENT = sent by the TCP client).

        None: the segment opens a new flow but a tracking limit is reached (counted, reported at the end),
        or it is a bare SYN held as bytes (``link_type`` given: the caller can decode it again), or it is the
        next packet of a held flow: then :attr:`promoted` is set and the caller replays :meth:`promote`'s
        segments, then this one again.
        """
        flags = seg.flags
        entry = self.flows.get((seg.src, seg.sport, seg.dst, seg.dport))
        held_key: bytes | None = None
        if entry is None and self.held and self._reserved_id is None:  # (not while a held SYN is replayed)
            held_key = _flow_bytes(seg.src, seg.sport, seg.dst, seg.dport)
            record = self.held.pop(held_key, None)
            if record is None:
                record = self.held.pop(_flow_bytes(seg.dst, seg.dport, seg.src, seg.sport), None)
            if record is not None:
                self.promoted = record
                return None
        if (
            entry is not None
            and self.half_open
            and entry[0].id in self.half_open
            and (entry[1] != CLIENT or not flags & TH_SYN or flags & TH_ACK)
        ):
            del self.half_open[entry[0].id]  # answered or continued: no longer half-open
        if entry is None and not self._can_track(seg):
            return None
        if (
            entry is None
            and link_type is not None
            and flags & TH_SYN
            and not flags & TH_ACK
            and len(self.half_open) + len(self.held) >= self.hold_after
            and _holdable(seg)
        ):
            self._hold(seg, link_type, held_key or _flow_bytes(seg.src, seg.sport, seg.dst, seg.dport))
            return None
        if flags & TH_SYN and not flags & TH_ACK:
            if entry is None or self._starts_new_incarnation(entry, seg):
                if entry is not None and not self._can_track(seg):
                    return None
                entry = (self._new_subflow(seg, client_is_src=True), CLIENT)
                self._note_half_open(entry[0])
        elif entry is None:
            if flags & TH_SYN:  # SYN/ACK whose SYN was not captured
                entry = (self._new_subflow(seg, client_is_src=False), SERVER)
            else:
                client_is_src = _guess_client_is_src(seg)
                sf = self._new_subflow(seg, client_is_src=client_is_src)
                sf.role_guessed = True
                entry = (sf, CLIENT if client_is_src else SERVER)
        sf, direction = entry
        half = sf.halves[direction]
        half.packets += 1
        if seg.payload_len > 0:
            half.payload_bytes += seg.payload_len
            half.captured_bytes += seg.captured_payload_len
        sf.last_frame = seg.frame
        sf.last_time = seg.ts
        opts = seg.options
        if flags & (TH_SYN | TH_FIN | TH_RST):
            self._on_control_flags(sf, direction, seg)
        if half.ssn_shift is None:
            decide_ssn_shift(half, seg)  # TCP Fast Open: where the mappings' subflow numbering starts
        if opts is not None:
            if opts.malformed is not None:
                self._publish(OptionListMalformed((seg.frame,), sf, opts.malformed))
            if opts.mptcp:
                self.mptcp_packets += 1
                half.mptcp_packets += 1
                sf.mptcp_seen = True
                handlers = self._handlers
                options = opts.mptcp
                # The option that stopped a malformed walk is already reported as OPT-001.
                walk_stopper = options[-1] if opts.malformed is not None else None
                for opt in options:
                    if opt is walk_stopper and type(opt) is MalformedOption:
                        continue
                    handler = handlers.get(type(opt))
                    if handler is not None:
                        handler(opt, sf, direction, seg)
        if (
            flags & TH_SYN
            and flags & TH_ACK
            and sf.mpc_syn
            and not sf.mpc_synack
            and sf.connection is not None
            and not (opts is not None and opts.truncated)  # H-SNAP: options cut by the capture prove nothing
        ):
            self._fallback(sf, seg, self._synack_refusal(opts), "synack")
        return entry

    @staticmethod
    def _synack_refusal(opts: TcpOptions | None) -> str:
        """Why the SYN/ACK does not accept MPTCP (Linux ignores an unacceptable MP_CAPABLE entirely)."""
        mpc = [opt for opt in (opts.mptcp if opts else []) if getattr(opt, "subtype", None) == Subtype.MP_CAPABLE]
        if not mpc:
            return "the SYN/ACK did not carry MP_CAPABLE"
        opt = mpc[0]
        if isinstance(opt, MpCapable):
            problem = _mpc_synack_problem(opt)
            return f"the SYN/ACK's MP_CAPABLE is not acceptable ({problem}), so the client ignores it"
        reason = opt.reason if isinstance(opt, MalformedOption) else "unknown layout"
        return f"the SYN/ACK's MP_CAPABLE is malformed ({reason}), so the client ignores it"

    def _starts_new_incarnation(self, entry: tuple[Subflow, int], seg: Segment) -> bool:
        sf, direction = entry
        if direction != CLIENT:
            return False  # simultaneous open: keep it on the existing flow
        isn = sf.halves[CLIENT].isn
        return isn is None or isn != seg.seq

    def _can_track(self, seg: Segment) -> bool:
        """Whether a new flow may be tracked under max_flows / max_connections; else count the segment."""
        limits = self.limits
        if self.live_subflows < limits.max_flows and len(self.connections) - self._dropped_connections() < (
            limits.max_connections
        ):
            return True
        self.untracked_packets += 1
        if self.untracked_frame is None:
            self.untracked_frame = seg.frame
            self.untracked_limit = "max_flows" if self.live_subflows >= limits.max_flows else "max_connections"
        return False

    def _dropped_connections(self) -> int:
        return self.evicted_connections - self._compacted_connections

    def _note_half_open(self, sf: Subflow) -> None:
        """Remember a SYN-only flow; past max_half_open, summarise the oldest one (SYN flood: bounded memory)."""
        self.half_open[sf.id] = sf
        self._bound_half_open()

    def _bound_half_open(self) -> None:
        """Held SYNs and modelled SYN-only flows share max_half_open; the oldest of either goes first."""
        half_open, held = self.half_open, self.held
        if len(half_open) + len(held) <= self.limits.max_half_open:
            return
        order = self._held_order
        while order and order[0] not in held:
            order.popleft()  # promoted since
        oldest_held = held[order[0]] if order else None
        if half_open and (oldest_held is None or next(iter(half_open)) < oldest_held.subflow_id):
            self._evict(half_open.pop(next(iter(half_open))))
        elif oldest_held is not None:
            self._drop_held(order.popleft())

    def _hold(self, seg: Segment, link_type: int, key: bytes) -> None:
        """Keep a bare SYN as bytes (see HeldSyn); its subflow id is taken now so numbering is unchanged."""
        mptcp = seg.options is not None and bool(seg.options.mptcp)
        record = HeldSyn(self._next_subflow, seg.frame, seg.ts, link_type, seg.data, mptcp)
        self._next_subflow += 1
        self.live_subflows += 1
        if mptcp:
            self.mptcp_packets += 1
        held = self.held
        held[key] = record
        order = self._held_order
        order.append(key)
        if len(order) > 2 * len(held) + 1024:  # promoted keys pile up in a trace of many short connections
            self._held_order = deque(held)
        self._bound_half_open()

    def _drop_held(self, key: bytes) -> None:
        """Summarise a held SYN: counted like an evicted half-open flow; no stage ever saw it."""
        record = self.held.pop(key)
        self.live_subflows -= 1
        self.evicted_subflows += 1
        self.evicted_connections += record.mptcp
        self._compacted_connections += record.mptcp  # never in self.connections: nothing to compact
        if self.first_evicted_frame is None:
            self.first_evicted_frame = record.frame

    def take_promoted(self) -> HeldSyn | None:
        """The held flow met by the last on_segment: the caller decodes its SYN again, passes it to
        :meth:`replay` and the observers, then retries the segment that promoted it."""
        record, self.promoted = self.promoted, None
        return record

    def replay(self, record: HeldSyn, seg: Segment) -> tuple[Subflow, int] | None:
        """Model a held SYN now (``seg`` is its SYN decoded again), under the subflow id it was given."""
        self.live_subflows -= 1
        if record.mptcp:
            self.mptcp_packets -= 1  # counted when held; on_segment counts it again
        self._reserved_id = record.subflow_id
        try:
            return self.on_segment(seg)
        finally:
            self._reserved_id = None

    def take_held(self) -> list[HeldSyn]:
        """Every still-held SYN, oldest first (end of the trace: they are listed like any half-open flow)."""
        records = list(self.held.values())
        self.held.clear()
        self._held_order.clear()
        return records

    def _evict(self, sf: Subflow) -> None:
        """Drop a half-open flow's state; it is counted (and reported) instead of listed."""
        for key in ((sf.client_ip, sf.client_port, sf.server_ip, sf.server_port),
                    (sf.server_ip, sf.server_port, sf.client_ip, sf.client_port)):  # fmt: skip
            if self.flows.get(key, (None, 0))[0] is sf:
                del self.flows[key]
        sf.evicted = True
        self.live_subflows -= 1
        self.evicted_subflows += 1
        self._dropped += 1
        if self.first_evicted_frame is None:
            self.first_evicted_frame = sf.first_frame
        self.just_evicted.append(sf)
        conn = sf.connection
        if conn is None and sf.join_token is not None:
            waiting = [join for join in self.pending_joins.get(sf.join_token, []) if join is not sf]
            if waiting:
                self.pending_joins[sf.join_token] = waiting
            else:
                self.pending_joins.pop(sf.join_token, None)
        elif conn is not None and conn.subflows == [sf]:
            conn.evicted = True
            self.evicted_connections += 1
            for side in conn.sides:
                if side.token is not None:
                    self._forget_token(side.token, conn)
        elif conn is not None:
            conn.subflows.remove(sf)
        if self._dropped > 1024 and self._dropped * 2 > len(self.subflows):
            self._compact()

    @staticmethod
    def release(sf: Subflow) -> None:
        """Break the subflow ↔ connection cycle of a summarised flow so it is freed at once, not by a late GC."""
        conn = sf.connection
        sf.connection = None
        if conn is not None and conn.evicted:
            conn.subflows = []

    def _forget_token(self, token: int, conn: Connection) -> None:
        entries = [entry for entry in self.token_index.get(token, []) if entry[0] is not conn]
        if entries:
            self.token_index[token] = entries
        else:
            self.token_index.pop(token, None)

    def _compact(self) -> None:
        """Remove summarised flows and connections from the lists (amortised O(1) per eviction)."""
        self.subflows = [sf for sf in self.subflows if not sf.evicted]
        before = len(self.connections)
        self.connections = [conn for conn in self.connections if not conn.evicted]
        self._compacted_connections += before - len(self.connections)
        self._dropped = 0

    def _new_subflow(self, seg: Segment, client_is_src: bool) -> Subflow:
        if client_is_src:
            cip, cport, sip, sport = seg.src, seg.sport, seg.dst, seg.dport
        else:
            cip, cport, sip, sport = seg.dst, seg.dport, seg.src, seg.sport
        number = self._reserved_id
        if number is None:
            number = self._next_subflow
            self._next_subflow += 1
        self._reserved_id = None
        sf = Subflow(
            id=number, client_ip=cip, client_port=cport, server_ip=sip, server_port=sport,
            first_frame=seg.frame, first_time=seg.ts, last_frame=seg.frame, last_time=seg.ts,
        )  # fmt: skip
        self.live_subflows += 1
        self.subflows.append(sf)
        self.flows[(cip, cport, sip, sport)] = (sf, CLIENT)
        self.flows[(sip, sport, cip, cport)] = (sf, SERVER)
        return sf

    def _on_control_flags(self, sf: Subflow, direction: int, seg: Segment) -> None:
        half = sf.halves[direction]
        flags = seg.flags
        if flags & TH_SYN:
            if half.isn is None:
                half.isn = seg.seq
            note_syn_payload(half, seg)
            if direction == CLIENT and not flags & TH_ACK:
                sf.syn_seen = True
            elif flags & TH_ACK:
                sf.synack_seen = True
            opts = seg.options
            if opts is not None:
                if opts.mss is not None:
                    half.mss = opts.mss
                if opts.wscale is not None:
                    half.wscale = opts.wscale
        if flags & TH_FIN and half.fin_frame is None:
            half.fin_frame = seg.frame
        if flags & TH_RST and half.rst_frame is None:
            half.rst_frame = seg.frame

    # ------------------------------------------------------------------ MPTCP options
    def _connection_for(self, sf: Subflow, seg: Segment) -> Connection:
        if sf.connection is None:
            conn = Connection(id=self._new_connection_id(), first_frame=seg.frame)
            conn.client_ip, conn.server_ip = sf.client_ip, sf.server_ip
            self.connections.append(conn)
            self._attach(sf, conn, Grouping.HANDSHAKE, reversed_roles=False)
        return sf.connection  # type: ignore[return-value]

    def _new_connection_id(self) -> int:
        number = self._next_connection
        self._next_connection += 1
        return number

    def _attach(self, sf: Subflow, conn: Connection, grouping: Grouping, reversed_roles: bool) -> None:
        sf.connection = conn
        sf.grouping = grouping
        sf.reversed = reversed_roles
        conn.subflows.append(sf)

    def _on_mp_capable(self, opt: MpCapable, sf: Subflow, direction: int, seg: Segment) -> None:
        flags = seg.flags
        if flags & TH_SYN and not flags & TH_ACK:
            sf.kind = "initial"
            sf.mpc_syn = True
            conn = self._connection_for(sf, seg)
            conn.version = opt.version
            conn.sides[CLIENT].checksum_flag = opt.checksum_required
            if opt.sender_key is not None:  # v0 sends the client's key in the SYN
                self._learn_key(conn, CLIENT, opt.sender_key, seg, sf)
            return
        if flags & TH_SYN:
            sf.kind = "initial"
            conn = self._connection_for(sf, seg)
            if _mpc_synack_problem(opt, conn.version) is not None:
                return  # ignored like Linux does: the connection falls back (see on_segment)
            sf.mpc_synack = True
            conn.version = opt.version
            conn.sides[SERVER].checksum_flag = opt.checksum_required
            conn.checksum = bool(conn.sides[SERVER].checksum_flag) or bool(conn.sides[CLIENT].checksum_flag)
            if opt.sender_key is not None:
                self._learn_key(conn, SERVER, opt.sender_key, seg, sf)
            return
        # Third ACK or MP_CAPABLE with data: the client echoes both keys.
        if sf.connection is None:
            sf.kind = "initial"
            conn = self._connection_for(sf, seg)
            sf.grouping = Grouping.KEYS
            conn.grouping = Grouping.KEYS
            conn.version = opt.version
            conn.checksum = opt.checksum_required
            if direction == SERVER:  # roles were guessed wrongly: only the client sends this
                _swap_roles(self, sf)
                direction = CLIENT
        conn = sf.connection  # type: ignore[assignment]
        if conn.version is None:
            conn.version = opt.version
        if direction == sf.direction_of(CLIENT):
            sf.mpc_ack = True
            if opt.sender_key is not None:
                self._learn_key(conn, CLIENT, opt.sender_key, seg, sf)
            if opt.receiver_key is not None:
                known = conn.sides[SERVER].key
                if known is None:
                    self._learn_key(conn, SERVER, opt.receiver_key, seg, sf)
                elif known != opt.receiver_key:
                    known_frame = conn.sides[SERVER].key_frame
                    self._publish(KeyEchoMismatch(_frames(seg, known_frame), sf, opt.receiver_key, known, known_frame))

    def _learn_key(self, conn: Connection, side: int, key: int, seg: Segment, sf: Subflow) -> None:
        record = conn.sides[side]
        if record.key is not None:
            if record.key != key:
                frames = _frames(seg, record.key_frame)
                self._publish(KeyChanged(frames, sf, side, record.key, key, record.key_frame, conn.version))
            return
        # Versions above 1 are not defined; Linux answers them with v1, so hash as v1 does.
        version = 0 if conn.version == 0 else 1
        record.key = key
        record.key_frame = seg.frame
        record.token = crypto.token_from_key(key, version)
        record.idsn = crypto.idsn_from_key(key, version)
        self.token_index.setdefault(record.token, []).append((conn, side))
        for join in self.pending_joins.pop(record.token, []):
            self._attach_join(join, conn, side)

    def _on_join_syn(self, opt: MpJoinSyn, sf: Subflow, direction: int, seg: Segment) -> None:
        if not seg.flags & TH_SYN or seg.flags & TH_ACK:
            return
        sf.kind = "join"
        sf.join_token = opt.token
        sf.join_nonces[CLIENT] = opt.nonce
        sf.join_frames.append(seg.frame)
        half = sf.halves[CLIENT]
        half.address_id = opt.address_id
        half.backup = opt.backup
        if sf.connection is not None:
            return  # retransmitted SYN
        owner = self._resolve_token(opt.token, sf)
        if owner is None:
            self.pending_joins.setdefault(opt.token, []).append(sf)
        else:
            self._attach_join(sf, *owner)

    def _resolve_token(self, token: int, sf: Subflow) -> tuple[Connection, int] | None:
        candidates = self.token_index.get(token)
        if not candidates:
            return None
        if len(candidates) == 1:
            return candidates[0]
        # Tokens are 32 bits: on a collision prefer the connection whose token owner has the join's
        # destination address (initial subflow address or announced address).
        for conn, side in reversed(candidates):
            owner_ip = conn.server_ip if side == SERVER else conn.client_ip
            if sf.server_ip == owner_ip or any(
                a.address == format_ip(sf.server_ip) for a in conn.announcements if a.sender == side
            ):
                return conn, side
        return candidates[-1]

    def _attach_join(self, sf: Subflow, conn: Connection, token_side: int) -> None:
        # The join SYN is sent *to* the token owner, so the subflow's TCP client is the other host.
        self._attach(sf, conn, Grouping.HANDSHAKE, reversed_roles=token_side == CLIENT)

    def _on_join_synack(self, opt: MpJoinSynAck, sf: Subflow, direction: int, seg: Segment) -> None:
        if not (seg.flags & TH_SYN and seg.flags & TH_ACK):
            return
        sf.kind = "join"
        sf.join_nonces[SERVER] = opt.nonce
        sf.join_synack_hmac = opt.truncated_hmac
        sf.join_frames.append(seg.frame)
        half = sf.halves[SERVER]
        half.address_id = opt.address_id
        half.backup = opt.backup

    def _on_join_ack(self, opt: MpJoinAck, sf: Subflow, direction: int, seg: Segment) -> None:
        if seg.flags & TH_SYN:
            return
        sf.kind = "join"
        if sf.join_ack_hmac is None:
            sf.join_ack_hmac = opt.hmac
            sf.join_frames.append(seg.frame)

    def _on_dss(self, opt: Dss, sf: Subflow, direction: int, seg: Segment) -> None:
        half = sf.halves[direction]
        half.dss_packets += 1
        if opt.dsn is not None and opt.dsn64:
            if half.dsn_first is None:
                half.dsn_first = opt.dsn
            half.dsn_last = opt.dsn
        if opt.data_ack is not None:
            half.data_ack_last = opt.data_ack
        if opt.data_fin and half.data_fin_frame is None:
            half.data_fin_frame = seg.frame
        if opt.is_infinite_mapping and sf.connection is not None and not sf.connection.fallback:
            reason = f"infinite mapping (data-level length 0) at frame {seg.frame}"
            self._fallback(sf, seg, reason, "infinite-mapping")

    def _announce(
        self,
        sf: Subflow,
        direction: int,
        seg: Segment,
        kind: str,
        address_ids: tuple[int, ...],
        address: str | None = None,
        port: int | None = None,
        hmac: int | None = None,
    ) -> None:
        """Record an ADD_ADDR / REMOVE_ADDR on the subflow's connection (none yet: nothing to attach it to)."""
        conn = sf.connection
        if conn is None:
            return
        conn.announcements.append(
            Announcement(
                frame=seg.frame, time=seg.ts, sender=sf.sender(direction), subflow=sf.id,
                kind=kind, address_ids=address_ids, address=address, port=port, hmac=hmac,
            )
        )  # fmt: skip

    def _on_add_addr(self, opt: AddAddr, sf: Subflow, direction: int, seg: Segment) -> None:
        self._announce(
            sf, direction, seg, "echo" if opt.echo else "add", (opt.address_id,),
            address=str(opt.address), port=opt.port, hmac=opt.hmac,
        )  # fmt: skip

    def _on_remove_addr(self, opt: RemoveAddr, sf: Subflow, direction: int, seg: Segment) -> None:
        self._announce(sf, direction, seg, "remove", tuple(opt.address_ids))

    def _on_prio(self, opt: MpPrio, sf: Subflow, direction: int, seg: Segment) -> None:
        sf.halves[direction].backup = opt.backup
        if sf.connection is not None:
            sf.connection.note(seg.frame, f"MP_PRIO backup={int(opt.backup)} on subflow {sf.id}")

    def _on_fail(self, opt: MpFail, sf: Subflow, direction: int, seg: Segment) -> None:
        if sf.connection is not None:
            sender = "client" if sf.sender(direction) == CLIENT else "server"
            sf.connection.note(seg.frame, f"MP_FAIL from the {sender} on subflow {sf.id}, DSN {opt.dsn}")
            if len(sf.connection.mp_fails) < 8:
                sf.connection.mp_fails.append((seg.frame, seg.ts))
            if len(sf.connection.event_dsns) < sf.connection.MAX_EVENTS:  # MP_FAIL names a DSN of the peer's data
                sf.connection.event_dsns[seg.frame] = (1 - (sf.sender(direction)), opt.dsn)

    def _on_fastclose(self, opt: MpFastclose, sf: Subflow, direction: int, seg: Segment) -> None:
        if sf.fastclose_frame is None:
            sf.fastclose_frame = seg.frame
        conn = sf.connection
        if conn is None:
            return
        sender = sf.sender(direction)
        if conn.fastclose_frame is None:
            conn.fastclose_frame = seg.frame
            conn.fastclose_sender = sender
            conn.note(seg.frame, f"MP_FASTCLOSE from the {'client' if sender == CLIENT else 'server'}")
        receiver_key = conn.sides[1 - sender].key
        sender_key = conn.sides[sender].key
        if receiver_key is not None and opt.receiver_key != receiver_key:
            self._publish(FastcloseKeyMismatch((seg.frame,), sf, opt.receiver_key, receiver_key, sender_key))

    def _on_tcprst(self, opt: MpTcpRst, sf: Subflow, direction: int, seg: Segment) -> None:
        if seg.flags & TH_RST and sf.reset_reason is None:
            sf.reset_reason = opt.reason
            sf.reset_transient = opt.transient

    def _on_malformed(self, opt: MalformedOption, sf: Subflow, direction: int, seg: Segment) -> None:
        self._publish(OptionMalformed((seg.frame,), sf, opt, _subtype_name(opt.subtype)))

    def _on_unknown(self, opt: UnknownMptcpOption, sf: Subflow, direction: int, seg: Segment) -> None:
        self._publish(OptionUnassigned((seg.frame,), sf, opt.subtype))

    def _on_experimental(self, opt: MpExperimental, sf: Subflow, direction: int, seg: Segment) -> None:
        self._publish(OptionExperimental((seg.frame,), sf))

    def _fallback(self, sf: Subflow, seg: Segment, reason: str, cause: Literal["synack", "infinite-mapping"]) -> None:
        conn = sf.connection
        if conn is None or conn.fallback:
            return
        conn.fallback = True
        conn.fallback_reason = reason
        conn.fallback_cause = cause
        conn.fallback_frame = seg.frame
        conn.fallback_time = seg.ts
        conn.note(seg.frame, f"fallback to TCP: {reason}")
        self._publish(FellBack((seg.frame,), sf, cause, reason))

    def _publish(self, fact: Fact) -> None:
        if self.facts is not None:
            self.facts.append(fact)

    # ------------------------------------------------------------------ end of trace
    def group_now(self, sf: Subflow) -> bool:
        """Group an MPTCP subflow without a handshake before the trace ends (its replay buffer is full).

        By data-sequence continuity with a connection known by now, else as a connection of its own: the same
        decision the end of the trace makes, taken early. A join whose token is unknown is left waiting (its
        keys may still come): False.
        """
        if sf.connection is not None or not sf.mptcp_seen or sf.join_token is not None:
            return sf.connection is not None
        self._group_orphan(sf)
        return True

    def resolve_grouping(self) -> None:
        """End of the trace: group what the stream left ungrouped (joins by token, the rest by DSN)."""
        if self._dropped:
            self._compact()
        self.subflows.sort(key=lambda sf: sf.id)  # promoted held SYNs were modelled late, under their own id
        self._group_pending_joins()
        self._group_by_data_sequence()
        self._grouping_resolved = True

    def finish(self) -> None:
        """Resolve what needs the whole trace: late grouping, HMACs, fallbacks, how subflows ended."""
        if not self._grouping_resolved:
            self.resolve_grouping()
        for conn in self.connections:
            self._detect_silent_fallback(conn)
            self._verify_join_hmacs(conn)
            self._verify_add_addr_hmacs(conn)
            conn.subflows.sort(key=lambda s: s.first_frame)
        for sf in self.subflows:
            _decide_end(sf)
            if sf.connection is None:
                sf.kind = "tcp"

    def _group_pending_joins(self) -> None:
        for token, joins in self.pending_joins.items():
            conn = Connection(id=self._new_connection_id(), first_frame=joins[0].first_frame)
            conn.grouping = Grouping.TOKEN
            # The joins were sent to the token owner, which we call the server here.
            conn.client_ip, conn.server_ip = joins[0].client_ip, joins[0].server_ip
            conn.sides[SERVER].token = token
            self.connections.append(conn)
            for join in joins:
                self._attach(join, conn, Grouping.TOKEN, reversed_roles=False)
            self.sink.add(
                "GROUP-001",
                f"{len(joins)} join subflow(s) name token {token:08x}, whose MP_CAPABLE handshake was not "
                "captured; grouped by that token (keys unknown, so HMACs cannot be verified)",
                [j.first_frame for j in joins], conn.id, joins[0].id,
            )  # fmt: skip
        self.pending_joins.clear()

    def _group_by_data_sequence(self) -> None:
        """Attach MPTCP subflows without a handshake to a connection whose DSN space they continue."""
        orphans = [sf for sf in self.subflows if sf.connection is None and sf.mptcp_seen]
        for sf in orphans:
            self._group_orphan(sf)

    def _group_orphan(self, sf: Subflow) -> None:
        match = self._match_dsn(sf)
        if match is not None:
            conn, reversed_roles = match
            self._attach(sf, conn, Grouping.DSN, reversed_roles)
            self.sink.add(
                "GROUP-001",
                f"subflow {sf.id} ({sf.client} → {sf.server}) has no captured handshake; attached to "
                f"connection {conn.id} because its data sequence numbers continue that connection's",
                [sf.first_frame], conn.id, sf.id,
            )  # fmt: skip
        else:
            conn = Connection(id=self._new_connection_id(), first_frame=sf.first_frame)
            conn.grouping = Grouping.NONE
            conn.client_ip, conn.server_ip = sf.client_ip, sf.server_ip
            self.connections.append(conn)
            self._attach(sf, conn, Grouping.NONE, reversed_roles=False)
            self.sink.add(
                "GROUP-001",
                f"subflow {sf.id} ({sf.client} → {sf.server}) carries MPTCP options but its handshake was not "
                "captured and nothing links it to another subflow; shown as a connection of its own",
                [sf.first_frame], conn.id, sf.id,
            )  # fmt: skip

    def _match_dsn(self, sf: Subflow) -> tuple[Connection, bool] | None:
        """Find a connection whose per-direction DSN space contains this subflow's DSNs."""
        for conn in self.connections:
            for direction in (CLIENT, SERVER):
                first = sf.halves[direction].dsn_first
                if first is None:
                    continue
                for side in (CLIENT, SERVER):
                    if _dsn_near(first, _side_dsn_refs(conn, side)):
                        return conn, direction != side
        return None

    def _detect_silent_fallback(self, conn: Connection) -> None:
        initial = conn.initial_subflow
        if conn.fallback or initial is None or not initial.mpc_synack:
            return
        if any(h.dss_packets for sf in conn.subflows for h in sf.halves):
            return
        data = initial.halves[CLIENT].payload_bytes + initial.halves[SERVER].payload_bytes
        if data == 0:
            return
        conn.fallback = True
        conn.fallback_reason = "data flowed without any DSS after the MP_CAPABLE handshake"
        conn.fallback_cause = "no-dss"
        conn.fallback_frame = initial.first_frame
        conn.fallback_time = initial.first_time
        conn.note(initial.first_frame, f"fallback to TCP: {conn.fallback_reason}")
        self._publish(FellBack((initial.first_frame,), initial, "no-dss", conn.fallback_reason))

    def _verify_join_hmacs(self, conn: Connection) -> None:
        version = 0 if conn.version == 0 else 1
        for sf in conn.subflows:
            if sf.kind != "join":
                continue
            init_side = SERVER if sf.reversed else CLIENT
            key_init, key_resp = conn.sides[init_side].key, conn.sides[1 - init_side].key
            nonce_init, nonce_resp = sf.join_nonces
            if key_init is None or key_resp is None or nonce_init is None or nonce_resp is None:
                continue
            if sf.join_synack_hmac is not None:
                expected = crypto.join_synack_truncated_hmac(key_resp, key_init, nonce_resp, nonce_init, version)
                sf.join_synack_hmac_ok = expected == sf.join_synack_hmac
                sf.join_synack_hmac_expected = expected
                frames = tuple(sorted(set(sf.join_frames[:2])))
                self._publish(JoinSynAckHmacChecked(frames, sf, sf.join_synack_hmac, expected))
            if sf.join_ack_hmac is not None:
                expected_ack = crypto.join_ack_hmac(key_init, key_resp, nonce_init, nonce_resp, version)
                sf.join_ack_hmac_ok = expected_ack == sf.join_ack_hmac
                sf.join_ack_hmac_expected = expected_ack
                frames = tuple(sorted(set(sf.join_frames)))
                self._publish(JoinAckHmacChecked(frames, sf, sf.join_ack_hmac, expected_ack))

    def _verify_add_addr_hmacs(self, conn: Connection) -> None:
        if conn.version == 0:
            return
        for ann in conn.announcements:
            if ann.kind != "add" or ann.hmac is None or ann.address is None:
                continue
            key_s, key_r = conn.sides[ann.sender].key, conn.sides[1 - ann.sender].key
            if key_s is None or key_r is None:
                continue
            expected = crypto.add_addr_hmac(
                key_s, key_r, ann.address_ids[0], ipaddress.ip_address(ann.address), ann.port
            )
            ann.hmac_ok = expected == ann.hmac
            ann.hmac_expected = expected
            self._publish(AddAddrHmacChecked((ann.frame,), None, conn, ann, key_s, key_r, expected))


def awaits_grouping(sf: Subflow) -> bool:
    """An MPTCP subflow without a connection that a later packet or the end of the trace may still group: a join
    whose token is not known yet, or one captured without its SYN. A subflow whose captured SYN offered no MPTCP
    is not waiting (its MPTCP options are judged as such)."""
    return sf.connection is None and (sf.join_token is not None or not sf.syn_seen)


def _mpc_synack_problem(opt: MpCapable, syn_version: int | None = None) -> str | None:
    """What makes a SYN/ACK's MP_CAPABLE unacceptable to the client (RFC 8684 §3.1; Linux checks the same)."""
    if opt.sender_key is None or opt.receiver_key is not None:
        return f"length {opt.length}, a SYN/ACK's MP_CAPABLE is 12 bytes"
    if opt.version > 1 or (syn_version is not None and opt.version > syn_version):
        return f"version {opt.version} was not offered"
    if opt.flags & 0x40:
        return "the extensibility bit B is set"
    if opt.flags & 0x1F != 0x01:
        return f"crypto algorithm bits {opt.flags & 0x1F:#04x}; only H (HMAC-SHA256) is defined"
    return None


def _frames(seg: Segment, other: int | None) -> tuple[int, ...]:
    return tuple(sorted({seg.frame, other})) if other is not None else (seg.frame,)


def _side_dsn_refs(conn: Connection, side: int) -> list[int]:
    """DSN values known to lie in ``side``'s data space: IDSN+1 and DSNs its subflows carried."""
    refs: list[int] = []
    idsn = conn.sides[side].idsn
    if idsn is not None:
        refs.append((idsn + 1) & 0xFFFFFFFFFFFFFFFF)
    for sf in conn.subflows:
        half = sf.halves[sf.direction_of(side)]
        for value in (half.dsn_first, half.dsn_last):
            if value is not None:
                refs.append(value)
    return refs


def _dsn_near(value: int, refs: list[int]) -> bool:
    return any(dsn_near(value, ref) for ref in refs)


def _guess_client_is_src(seg: Segment) -> bool:
    """Without a SYN, guess that the host on the ephemeral (higher) port is the client."""
    if seg.sport >= EPHEMERAL_PORT_FLOOR > seg.dport:
        return True
    if seg.dport >= EPHEMERAL_PORT_FLOOR > seg.sport:
        return False
    return seg.sport >= seg.dport


def _swap_roles(tracker: Tracker, sf: Subflow) -> None:
    """A guessed client/server assignment turned out wrong: flip the subflow's orientation."""
    sf.client_ip, sf.server_ip = sf.server_ip, sf.client_ip
    sf.client_port, sf.server_port = sf.server_port, sf.client_port
    sf.halves = (sf.halves[1], sf.halves[0])
    tracker.flows[(sf.client_ip, sf.client_port, sf.server_ip, sf.server_port)] = (sf, CLIENT)
    tracker.flows[(sf.server_ip, sf.server_port, sf.client_ip, sf.client_port)] = (sf, SERVER)
    conn = sf.connection
    if conn is not None and conn.initial_subflow is sf:
        conn.client_ip, conn.server_ip = sf.client_ip, sf.server_ip


def _decide_end(sf: Subflow) -> None:
    c, s = sf.halves
    names = ("client", "server")
    rst = [(h.rst_frame, names[i]) for i, h in enumerate(sf.halves) if h.rst_frame is not None]
    if sf.fastclose_frame is not None:
        sf.end = "fastclose"
        sf.end_detail = f"MP_FASTCLOSE at frame {sf.fastclose_frame}"
    elif rst:
        frame, who = min(rst)
        if sf.reset_reason is not None:
            sf.end = "mp_tcprst"
            reason = MpTcpRst.REASON_NAMES.get(sf.reset_reason, "unknown reason")
            transient = ", transient" if sf.reset_transient else ""
            sf.end_detail = f"RST from the {who} at frame {frame}, reason {sf.reset_reason:#04x} {reason}{transient}"
        else:
            sf.end = "rst"
            sf.end_detail = f"RST from the {who} at frame {frame}"
    elif c.fin_frame is not None and s.fin_frame is not None:
        sf.end = "fin"
        sf.end_detail = f"FIN from the client at frame {c.fin_frame}, from the server at frame {s.fin_frame}"
    elif c.fin_frame is not None or s.fin_frame is not None:
        who, fin = ("client", c.fin_frame) if c.fin_frame is not None else ("server", s.fin_frame)
        sf.end_detail = f"half-closed: FIN from the {who} at frame {fin} only"


def _subtype_name(subtype: int | None) -> str:
    if subtype is None:
        return "MPTCP"
    try:
        return Subtype(subtype).name
    except ValueError:
        return f"subtype {subtype:#x}"
