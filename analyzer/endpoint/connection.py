"""A sans-IO MPTCP v1 connection (RFC 8684) over any number of TCP subflows.

Driven by three inputs, as in aioquic:

* API calls: :meth:`MptcpConnection.connect` (client), :meth:`send`, :meth:`close`, :meth:`abort`
  (MP_FASTCLOSE), :meth:`set_backup` (MP_PRIO), :meth:`remove_address` (REMOVE_ADDR);
* :meth:`receive_segment` with the bytes (or :class:`Segment`) of a packet and the current time;
* :meth:`handle_timer` when the time from :meth:`get_timer` has come.

Output is pulled: :meth:`segments_to_send`, :meth:`get_timer`, :meth:`next_event`. There are no
sockets and no clock inside; ``now`` is always an argument.

Linux-like wire behaviour (shared rules §5): MP_CAPABLE keys in the SYN/ACK and third ACK, data in
the third ACK's wake (MP_CAPABLE length 22 on the first data segment), 64-bit DSNs on every mapping,
32-bit Data ACKs until the peer sent a 64-bit DSN, a DSS on every segment once the keys are known,
one mapping per segment, DATA_FIN on the last mapping or on a zero-length mapping (SSN 0, length 1),
MP_FASTCLOSE as RST + MP_FASTCLOSE + MP_TCPRST on every subflow.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from analyzer.endpoint.config import EndpointConfig, LocalAddress, Misbehave, Role
from analyzer.endpoint.datalevel import DataReceiver, DataSender
from analyzer.endpoint.errors import LocalProtocolError, RemoteProtocolError
from analyzer.endpoint.events import (
    AddressAnnounced,
    AddressRemoved,
    Connected,
    ConnectionClosed,
    DataReceived,
    EndOfStream,
    Event,
    FellBack,
    PriorityChanged,
    SubflowAdded,
    SubflowClosed,
)
from analyzer.endpoint.keys import KeyMaterial, draw_key
from analyzer.endpoint.mapping import REASON_MPTCP, ChecksumFailure, MappingTable, RecvMapping
from analyzer.endpoint.pathmanager import JoinPlan, PathManager
from analyzer.endpoint.scheduler import PathInfo, make_scheduler
from analyzer.endpoint.segment import RST, Address, DecodeError, OutOption, RawOption, Segment, decode_packet
from analyzer.endpoint.state import TcpState
from analyzer.endpoint.tcp import Chunk, SegmentKind, TcpSubflow
from analyzer.mptcp.crypto import dss_checksum
from analyzer.mptcp.options import (
    DSS_ACK,
    DSS_ACK64,
    DSS_DATA_FIN,
    DSS_DSN64,
    DSS_MAPPING,
    MPC_CHECKSUM_REQUIRED,
    MPC_HMAC_SHA,
    AddAddr,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    RemoveAddr,
)
from analyzer.seqnum import MASK32, MASK64, unwrap

__all__ = ["MptcpConnection", "SubflowInfo"]

MPTCP_OPTION_RESERVE = 28  # option bytes kept free on data segments: DSS with checksum (28)
MAX_OPTION_SPACE = 40
REASON_UNSPECIFIED = 0x00
TCPRST_TRANSIENT = 0x01
BEYOND_GAP = 1 << 30  # data-ack-beyond fault: how far ahead of the real Data ACK
CLOSE_RETRIES = 2  # after the data-level close, a subflow whose FIN is not answered is reset sooner
EPHEMERAL_PORTS = (32768, 60999)


@dataclass(slots=True)
class JoinState:
    """MP_JOIN handshake values of one subflow."""

    initiator: bool
    nonce_local: int
    nonce_remote: int | None = None
    faulty: bool = False  # this subflow carries the injected HMAC fault
    complete: bool = False  # initiator: the fourth ACK arrived


@dataclass(slots=True)
class SubflowInfo:
    """MPTCP state of one subflow around its TCP machine."""

    tcp: TcpSubflow
    initial: bool
    local_id: int
    remote_id: int | None = None
    local_backup: bool = False
    remote_backup: bool = False
    join: JoinState | None = None
    ready: bool = False  # may carry data (joins: after the fourth ACK / a valid third ACK)
    closing: bool = False  # no new data; FIN once drained
    gone: bool = False  # reported closed
    mappings: MappingTable = field(default_factory=lambda: MappingTable(False))
    signals: list[OutOption] = field(default_factory=list)  # options for the next pure ACK
    override_dss: OutOption | None = None  # fault injection: replaces the next pure ACK's DSS
    no_data_ack: bool = False  # fault injection: stop sending Data ACKs on this subflow
    join_ack_deadline: float | None = None  # initiator: resend the third ACK until the fourth ACK
    join_ack_tries: int = 0
    reset_reason: int | None = None
    chunks_queued: int = 0
    last_data_ack: int | None = None  # offset of the last Data ACK sent on this subflow
    mpc_echo_sent: bool = False

    @property
    def backup(self) -> bool:
        return self.local_backup or self.remote_backup

    @property
    def id(self) -> int:
        return self.tcp.id


@dataclass(slots=True)
class _Announcement:
    address: LocalAddress
    subflow_id: int
    deadline: float
    tries: int = 1
    echoed: bool = False


class MptcpConnection:
    """One MPTCP connection, client or server side. See the module docstring for how to drive it."""

    def __init__(self, config: EndpointConfig) -> None:
        self.cfg = config
        self.role = config.role
        self._rng = config.rng
        self.keys = KeyMaterial(config.key if config.key is not None else draw_key(self._rng))
        self.mptcp = config.mptcp  # becomes False on fallback
        self.fallen_back = False
        self.checksums = False
        self.subflows: dict[int, SubflowInfo] = {}
        self._by_tuple: dict[tuple[Address, int, Address, int], SubflowInfo] = {}
        self._events: deque[Event] = deque()
        self._control: list[Segment] = []  # segments built outside a subflow's poll (RSTs)
        self.sender = DataSender()
        self.receiver = DataReceiver(buffer_size=config.receive_buffer)
        self._scheduler = make_scheduler(config.scheduler)
        self._pm = PathManager(config)
        self.connected = False
        self.fully_established = False  # client: saw a Data ACK (or ADD_ADDR) from the server
        self.closed = False  # ConnectionClosed was reported
        self._data_closed = False  # both DATA_FINs are acknowledged
        self.peer_dsn64 = False
        self._remote_addr: Address | None = None
        self._remote_port = 0
        self._next_id = 1
        self._announcements: dict[int, _Announcement] = {}
        self._removed_ids: set[int] = set()
        self._fin_deadline: float | None = None
        self._fin_backoff = 0
        self._fired: set[Misbehave] = set()
        self._first_chunk: tuple[int, bytes] | None = None  # (offset, payload), for a fault

    # ================================================================== API
    def connect(self, remote: Address, port: int, now: float) -> None:
        """Client: open the initial subflow with a SYN carrying MP_CAPABLE."""
        if self.role is not Role.CLIENT or self.subflows:
            raise LocalProtocolError("connect() is for a fresh client connection")
        self._remote_addr, self._remote_port = remote, port
        ctx = self._new_subflow(self.cfg.primary, self._ephemeral_port(), remote, port, initial=True)
        ctx.local_id = 0
        ctx.tcp.open(now)

    def send(self, data: bytes, now: float) -> None:
        if self.sender.closed:
            raise LocalProtocolError("send() after close()")
        self.sender.write(data)

    def close(self, now: float) -> None:
        """Send a DATA_FIN after the data written so far (the subflows close once both sides did)."""
        self.sender.close()

    def abort(self, now: float) -> None:
        """MP_FASTCLOSE, Linux style: RST + MP_FASTCLOSE(peer's key) + MP_TCPRST on every subflow."""
        if self.closed:
            return
        key = self.keys.remote_key
        if self._misbehave(Misbehave.FASTCLOSE_WRONG_KEY):
            key = self.keys.local_key
        for ctx in list(self.subflows.values()):
            if ctx.gone or ctx.tcp.state is TcpState.CLOSED:
                continue
            options: tuple[OutOption, ...] = (MpTcpRst(0, REASON_UNSPECIFIED),)
            if self.mptcp and key is not None and ctx.tcp.synchronized:
                options = (MpFastclose(key), MpTcpRst(0, REASON_UNSPECIFIED))
            self._control.append(ctx.tcp.reset_segment(options if self.mptcp else ()))
            self._subflow_gone(ctx, "fastclose", REASON_UNSPECIFIED, reinject=False)
        self._finish("fastclose")

    def set_backup(self, subflow_id: int, backup: bool, now: float) -> None:
        """Change our priority for a subflow and tell the peer with MP_PRIO (RFC 8684 §3.3.8)."""
        ctx = self.subflows[subflow_id]
        ctx.local_backup = backup
        if self.mptcp:
            ctx.signals.append(MpPrio(backup))
            ctx.tcp.request_ack()

    def remove_address(self, address_id: int, now: float) -> None:
        """Withdraw a local address: REMOVE_ADDR, and close our subflows that use it."""
        if not self.mptcp:
            return
        self._announcements.pop(address_id, None)
        carrier = next((c for c in self._live() if c.local_id != address_id and c.ready), None)
        if carrier is not None:
            carrier.signals.append(RemoveAddr((address_id,)))
            carrier.tcp.request_ack()
        for ctx in self._live():
            if ctx.local_id == address_id and not ctx.initial:
                self._close_subflow(ctx)

    # ================================================================== output
    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        deadlines = [self._fin_deadline]
        for ctx in self.subflows.values():
            deadlines.append(ctx.tcp.timer())
            deadlines.append(ctx.join_ack_deadline)
        deadlines += [a.deadline for a in self._announcements.values() if not a.echoed]
        real = [d for d in deadlines if d is not None]
        return min(real) if real else None

    def segments_to_send(self, now: float) -> list[Segment]:
        self._schedule(now)
        self._maybe_close_subflows()
        out, self._control = self._control, []
        for ctx in list(self.subflows.values()):
            if ctx.tcp.state is not TcpState.CLOSED:
                out += ctx.tcp.poll(now)
            if ctx.tcp.done and not ctx.gone:
                self._subflow_gone(ctx, "fin", None, reinject=True)
        self._check_finished()
        return out

    @property
    def finished(self) -> bool:
        """Nothing more will happen: closed, and every subflow is CLOSED or in TIME_WAIT."""
        return self.closed and all(c.tcp.done for c in self.subflows.values())

    # ================================================================== timers
    def handle_timer(self, now: float) -> None:
        for ctx in list(self.subflows.values()):
            timer = ctx.tcp.timer()
            if timer is not None and now >= timer:
                before = ctx.tcp.timeouts
                if ctx.tcp.on_timer(now):
                    reason = REASON_UNSPECIFIED
                    opts: tuple[OutOption, ...] = (MpTcpRst(TCPRST_TRANSIENT, reason),) if self.mptcp else ()
                    self._control.append(ctx.tcp.reset_segment(opts))
                    self._subflow_gone(ctx, "timeout", reason, reinject=True)
                elif ctx.tcp.timeouts > before and self._data_closed and ctx.tcp.timeouts >= CLOSE_RETRIES:
                    self._reset_subflow(ctx, REASON_UNSPECIFIED, reason_text="timeout")  # FIN unanswered
                elif ctx.tcp.timeouts > before and ctx.ready:
                    self._reinject_from(ctx)
            if ctx.join_ack_deadline is not None and now >= ctx.join_ack_deadline:
                if ctx.ready or ctx.gone:
                    ctx.join_ack_deadline = None
                else:
                    ctx.join_ack_tries += 1
                    ctx.tcp.request_ack()  # the third ACK again (RFC 8684 §3.2)
                    ctx.join_ack_deadline = now + ctx.tcp.rtt.current * (1 << min(ctx.join_ack_tries, 6))
        for ann in list(self._announcements.values()):
            if not ann.echoed and now >= ann.deadline:
                if ann.tries > self.cfg.add_addr_retries:
                    ann.echoed = True  # give up
                    continue
                ann.tries += 1
                ann.deadline = now + self.cfg.add_addr_timeout
                self._send_add_addr(ann)
        if self._fin_deadline is not None and now >= self._fin_deadline:
            self._fin_deadline = None
            if self._data_fin_only_pending():
                self._fin_backoff += 1
                self._request_data_fin(now)

    # ================================================================== input
    def receive_segment(self, packet: bytes | Segment, now: float) -> None:
        try:
            seg = decode_packet(packet) if isinstance(packet, bytes | bytearray) else packet
        except DecodeError:
            return
        ctx = self._by_tuple.get((seg.dst, seg.dport, seg.src, seg.sport))
        if ctx is None:
            self._on_new_flow(seg, now)
            return
        if ctx.tcp.state is TcpState.CLOSED:
            if not seg.rst:
                self._control.append(_plain_reset(seg))
            return
        try:
            self._on_subflow_segment(ctx, seg, now)
        except ChecksumFailure as exc:
            self._reset_subflow(ctx, exc.reason, (MpFail(exc.dsn),))
        except RemoteProtocolError as exc:
            self._reset_subflow(ctx, exc.reason)
        self._misbehave_tick(now)
        self._check_finished()

    # ------------------------------------------------------------------ new flows
    def _on_new_flow(self, seg: Segment, now: float) -> None:
        if seg.rst:
            return
        if not seg.syn or seg.has_ack or self.role is not Role.SERVER or self.closed:
            self._control.append(_plain_reset(seg))
            return
        mpc = _first(seg.mptcp, MpCapable)
        join = _first(seg.mptcp, MpJoinSyn)
        if join is not None:
            self._accept_join(seg, join, now)
            return
        if any(c.initial for c in self.subflows.values()):
            self._control.append(_plain_reset(seg))
            return
        self._remote_addr, self._remote_port = seg.src, seg.sport
        local = self._local_address(seg.dst)
        ctx = self._new_subflow(local, seg.dport, seg.src, seg.sport, initial=True)
        ctx.local_id = 0
        if self.mptcp and mpc is not None and mpc.version >= 1 and mpc.hmac_sha and not mpc.extensibility:
            self.checksums = self.cfg.checksum or mpc.checksum_required
            ctx.mappings = MappingTable(self.checksums)
        else:
            self._fall_back("the SYN did not carry a usable MP_CAPABLE" if self.mptcp else "plain TCP listener")
        ctx.tcp.accept(seg, now)

    def _accept_join(self, seg: Segment, join: MpJoinSyn, now: float) -> None:
        live = [c for c in self.subflows.values() if not c.gone]
        acceptable = (
            self.mptcp
            and self.keys.remote_key is not None
            and join.token == self.keys.local_token
            and not self._data_closed
            and len(live) < self.cfg.max_subflows
        )
        if not acceptable:
            self._control.append(_plain_reset(seg, (MpTcpRst(0, REASON_MPTCP),) if self.mptcp else ()))
            return
        local = self._local_address(seg.dst)
        ctx = self._new_subflow(local, seg.dport, seg.src, seg.sport, initial=False)
        ctx.local_id = local.address_id
        ctx.remote_id = join.address_id
        ctx.remote_backup = join.backup
        ctx.local_backup = local.backup
        ctx.join = JoinState(False, self._rng.getrandbits(32), join.nonce)
        ctx.join.faulty = self._misbehave(Misbehave.BAD_JOIN_SYNACK_HMAC)
        ctx.tcp.accept(seg, now)

    def _open_join(self, plan: JoinPlan, now: float) -> None:
        ctx = self._new_subflow(plan.local, self._ephemeral_port(), plan.remote, plan.port, initial=False)
        ctx.local_id = plan.local.address_id
        ctx.local_backup = plan.local.backup
        ctx.join = JoinState(True, self._rng.getrandbits(32))
        ctx.join.faulty = self._misbehave(Misbehave.BAD_JOIN_ACK_HMAC)
        ctx.tcp.open(now)

    # ------------------------------------------------------------------ one subflow
    def _on_subflow_segment(self, ctx: SubflowInfo, seg: Segment, now: float) -> None:
        tcp = ctx.tcp
        if seg.rst:
            rst = _first(seg.mptcp, MpTcpRst)
            fastclose = _first(seg.mptcp, MpFastclose)
            result = tcp.on_segment(seg, now)
            if result.reset:
                if fastclose is not None and fastclose.receiver_key == self.keys.local_key:
                    self._on_fastclose()
                    return
                self._subflow_gone(ctx, "reset-received", rst.reason if rst else None, reinject=True)
            return
        if not self._handshake_checks(ctx, seg, now):
            return
        if self.mptcp and not seg.syn and seg.has_ack and tcp.state is not TcpState.SYN_SENT:
            self._record_mappings(ctx, seg)
        was_ready = ctx.ready
        result = tcp.on_segment(seg, now)
        if result.established:
            self._on_established(ctx, now)
        if self.mptcp and not seg.syn and tcp.synchronized:
            if ctx.join is not None and ctx.join.initiator and not ctx.join.complete and not was_ready:
                self._on_fourth_ack(ctx, now)
            self._on_mptcp_options(ctx, seg, now)
        elif self.fallen_back and ctx.initial and tcp.state is not TcpState.SYN_SENT:
            self._on_fallback_ack(ctx)
        delivered = bytearray()
        for rel, data in result.delivered:
            if self.fallen_back:
                delivered += self.receiver.add(rel - 1, data)
                continue
            delivery = ctx.mappings.consume(rel, data)
            for offset, piece in delivery.pieces:
                delivered += self.receiver.add(offset, piece)
            if delivery.fin_offset is not None:
                self.receiver.set_fin(delivery.fin_offset)
        if result.fin_received and self.fallen_back:
            self.receiver.set_fin(tcp.rcv_nxt - 2)
        if delivered:
            self._events.append(DataReceived(bytes(delivered)))
        self._check_end_of_stream(ctx)
        if result.fin_received and not self.fallen_back and not self._data_closed:
            ctx.closing = True  # the peer closed this subflow: close ours when drained
            tcp.close()
        if tcp.done and not ctx.gone:
            self._subflow_gone(ctx, "fin", None, reinject=True)

    def _handshake_checks(self, ctx: SubflowInfo, seg: Segment, now: float) -> bool:
        """MPTCP checks on the segments that complete a handshake; False drops the segment."""
        tcp = ctx.tcp
        if tcp.state is TcpState.SYN_SENT and seg.syn and seg.has_ack:
            if (seg.ack - tcp.iss) & MASK32 != 1:
                return True  # the subflow ignores it
            if ctx.initial:
                mpc = _first(seg.mptcp, MpCapable)
                if self.mptcp and mpc is not None and mpc.sender_key is not None and mpc.hmac_sha:
                    self.keys.remote_key = mpc.sender_key
                    self.checksums = self.cfg.checksum or mpc.checksum_required
                    ctx.mappings = MappingTable(self.checksums)
                elif self.mptcp:
                    self._fall_back("the SYN/ACK did not carry MP_CAPABLE")
                return True
            synack = _first(seg.mptcp, MpJoinSynAck)
            assert ctx.join is not None
            if synack is None:
                self._reset_subflow(ctx, REASON_MPTCP)  # a join must not fall back (§3.2)
                return False
            expected = self.keys.expected_synack_hmac(ctx.join.nonce_local, synack.nonce)
            if synack.truncated_hmac != expected:
                self._reset_subflow(ctx, REASON_MPTCP, reason_text="hmac")
                return False
            ctx.join.nonce_remote = synack.nonce
            ctx.remote_id = synack.address_id
            ctx.remote_backup = synack.backup
            return True
        if tcp.state is TcpState.SYN_RCVD and seg.has_ack and not seg.syn:
            if ctx.initial:
                if not self.mptcp:
                    return True
                mpc = _first(seg.mptcp, MpCapable)
                if mpc is not None and mpc.sender_key is not None and mpc.receiver_key is not None:
                    # Like Linux, the echoed receiver key is not checked; the sender's key is learnt.
                    self.keys.remote_key = mpc.sender_key
                    return True
                if not seg.mptcp:
                    self._fall_back("the third ACK did not carry MP_CAPABLE")
                    return True
                return False  # MPTCP options without the key: wait for a retransmission with it
            ack = _first(seg.mptcp, MpJoinAck)
            assert ctx.join is not None and ctx.join.nonce_remote is not None
            if ack is None or ack.hmac != self.keys.expected_ack_hmac(ctx.join.nonce_local, ctx.join.nonce_remote):
                self._reset_subflow(ctx, REASON_MPTCP, reason_text="hmac")
                return False
            return True
        return True

    def _on_established(self, ctx: SubflowInfo, now: float) -> None:
        tcp = ctx.tcp
        if ctx.initial:
            ctx.ready = True
            self.sender.right_edge = max(self.sender.right_edge, tcp.snd_wnd)
            self.connected = True
            self._events.append(Connected(mptcp=self.mptcp))
            self._events.append(self._added(ctx))
            if self.role is Role.SERVER and self.mptcp:
                self._server_fully_established(now)
            return
        assert ctx.join is not None
        if not ctx.join.initiator:
            ctx.ready = True
            tcp.request_ack()  # the fourth ACK
            self._events.append(self._added(ctx))
        else:
            ctx.join_ack_deadline = now + tcp.rtt.current

    def _on_fourth_ack(self, ctx: SubflowInfo, now: float) -> None:
        assert ctx.join is not None
        ctx.join.complete = True
        ctx.ready = True
        ctx.join_ack_deadline = None
        self._events.append(self._added(ctx))

    def _added(self, ctx: SubflowInfo) -> SubflowAdded:
        t = ctx.tcp
        return SubflowAdded(t.id, t.local, t.local_port, t.remote, t.remote_port, not ctx.initial, ctx.backup)

    def _server_fully_established(self, now: float) -> None:
        initial = next(c for c in self.subflows.values() if c.initial)
        for address in self._pm.announcements():
            ann = _Announcement(address, initial.id, now + self.cfg.add_addr_timeout)
            self._announcements[address.address_id] = ann
            self._send_add_addr(ann)
        if self._misbehave(Misbehave.REMOVE_UNKNOWN_ID):
            unknown = max([a.address_id for a in self.cfg.addresses + self.cfg.announce] + [0]) + 40
            initial.signals.append(RemoveAddr((unknown,)))
            initial.tcp.request_ack()

    def _send_add_addr(self, ann: _Announcement) -> None:
        """ADD_ADDR on a pure ACK; a retransmission tries the next usable subflow (the first may be dead)."""
        usable = sorted((c for c in self._live() if c.ready and not c.tcp.stale), key=lambda c: c.id)
        if not usable:
            return
        first = next((i for i, c in enumerate(usable) if c.id == ann.subflow_id), 0)
        ctx = usable[(first + ann.tries - 1) % len(usable)]
        addr = ann.address
        hmac = self.keys.add_addr_hmac(addr.address_id, addr.address, None)
        if Misbehave.BAD_ADD_ADDR_HMAC in self.cfg.misbehave:
            hmac ^= 0x0101010101010101
        ctx.signals.append(AddAddr(addr.address_id, addr.address, None, echo=False, hmac=hmac))
        ctx.tcp.request_ack()

    def _client_fully_established(self, now: float) -> None:
        if self.fully_established or self.role is not Role.CLIENT:
            return
        self.fully_established = True
        assert self._remote_addr is not None
        for plan in self._pm.on_fully_established(self._remote_addr, self._remote_port):
            self._open_join(plan, now)

    # ------------------------------------------------------------------ MPTCP options
    def _record_mappings(self, ctx: SubflowInfo, seg: Segment) -> None:
        """Mappings are recorded before the payload is consumed (they may arrive with it)."""
        if self.keys.remote_key is None:
            return
        base = (self.keys.remote_idsn + 1) & MASK64
        for opt in seg.mptcp:
            if isinstance(opt, Dss) and opt.has_mapping:
                assert opt.dsn is not None and opt.ssn is not None and opt.data_len is not None
                bits = 64 if opt.dsn64 else 32
                mask = MASK64 if opt.dsn64 else MASK32
                offset = unwrap((opt.dsn - base) & mask, self.receiver.nxt, bits)
                dsn64 = (base + offset) & MASK64
                if opt.dsn64:
                    self.peer_dsn64 = True
                if opt.data_len == 0:
                    raise RemoteProtocolError("infinite mapping: fallback after MP_FAIL is not supported")
                if opt.data_fin and (not seg.payload or opt.ssn == 0) and opt.data_len == 1:
                    self.receiver.set_fin(offset)  # DATA_FIN-only mapping (§3.3.3)
                    continue
                length = opt.data_len - (1 if opt.data_fin else 0)
                ssn = unwrap(opt.ssn, ctx.tcp.rcv_nxt, 32)
                if length == 0:
                    continue
                if not seg.payload and ssn + length > ctx.mappings.received:
                    continue  # a mapping without its bytes: wait for the data segment
                ctx.mappings.add(RecvMapping(ssn, offset, length, opt.data_len, dsn64, opt.data_fin, opt.checksum))
            elif isinstance(opt, MpCapable) and opt.data_len is not None and self.role is Role.SERVER:
                # MP_CAPABLE with data: implied mapping DSN = IDSN(client) + 1, SSN 1 (§3.1).
                self.peer_dsn64 = True  # Linux answers it with 64-bit Data ACKs
                ctx.mappings.add(RecvMapping(1, 0, opt.data_len, opt.data_len, base, False, opt.checksum))

    def _on_mptcp_options(self, ctx: SubflowInfo, seg: Segment, now: float) -> None:
        for opt in seg.mptcp:
            if isinstance(opt, Dss):
                if opt.data_ack is not None:
                    self._on_data_ack(ctx, opt, seg, now)
            elif isinstance(opt, AddAddr):
                self._on_add_addr(ctx, opt, now)
            elif isinstance(opt, RemoveAddr):
                for address_id in opt.address_ids:
                    self._on_remove_addr(address_id)
            elif isinstance(opt, MpPrio):
                ctx.remote_backup = opt.backup
                self._events.append(PriorityChanged(ctx.id, opt.backup))
            elif isinstance(opt, MpJoinAck) and ctx.join is not None and not ctx.join.initiator:
                ctx.tcp.request_ack()  # the third ACK was retransmitted: resend the fourth ACK
            elif isinstance(opt, MpFastclose) and opt.receiver_key == self.keys.local_key:
                self._on_fastclose()
                return

    def _on_data_ack(self, ctx: SubflowInfo, dss: Dss, seg: Segment, now: float) -> None:
        assert dss.data_ack is not None
        base = (self.keys.local_idsn + 1) & MASK64
        bits, mask = (64, MASK64) if dss.ack64 else (32, MASK32)
        offset = unwrap((dss.data_ack - base) & mask, self.sender.una, bits)
        if offset < 0:
            return
        shift = ctx.tcp.peer_wscale if ctx.tcp.wscale_ok and ctx.tcp.peer_wscale is not None else 0
        if self.sender.on_data_ack(offset, seg.window << shift):
            if self.role is Role.CLIENT:
                self._client_fully_established(now)
            if self.sender.fin_acked:
                self._fin_deadline = None

    def _on_add_addr(self, ctx: SubflowInfo, opt: AddAddr, now: float) -> None:
        if opt.echo:
            ann = self._announcements.get(opt.address_id)
            if ann is not None and ann.address.address == opt.address:
                ann.echoed = True
            return
        if opt.v0 or opt.hmac is None:
            return
        if opt.hmac != self.keys.expected_add_addr_hmac(opt.address_id, opt.address, opt.port):
            return  # dropped silently, as Linux does
        ctx.signals.append(AddAddr(opt.address_id, opt.address, opt.port, echo=True))
        ctx.tcp.request_ack()
        self._events.append(AddressAnnounced(opt.address_id, opt.address, opt.port))
        self._client_fully_established(now)
        port = opt.port if opt.port is not None else self._remote_port
        for plan in self._pm.on_address_announced(opt.address, port):
            self._open_join(plan, now)

    def _on_remove_addr(self, address_id: int) -> None:
        affected = [c for c in self._live() if c.remote_id == address_id and not c.initial]
        known = bool(affected) or address_id in self._removed_ids
        self._removed_ids.add(address_id)
        for ctx in affected:
            self._close_subflow(ctx)
        self._events.append(AddressRemoved(address_id, known))

    def _on_fastclose(self) -> None:
        for ctx in self.subflows.values():
            if not ctx.gone:
                if ctx.tcp.state is not TcpState.CLOSED:
                    ctx.tcp.reset_segment(())  # the peer resets every subflow itself: send nothing
                self._subflow_gone(ctx, "fastclose", None, reinject=False)
        self._finish("fastclose")

    def _on_fallback_ack(self, ctx: SubflowInfo) -> None:
        tcp = ctx.tcp
        acked = max(0, tcp.snd_una - 1)
        sender = self.sender
        top = min(acked, sender.end)
        if top > sender.una:
            del sender.buffer[: top - sender.una]
            sender.una = top
        sender.right_edge = max(sender.right_edge, tcp.snd_una - 1 + tcp.snd_wnd)
        if tcp.fin_acked:
            sender.fin_acked = True

    def _check_end_of_stream(self, ctx: SubflowInfo) -> None:
        if self.receiver.consume_fin():
            self._events.append(EndOfStream())
            if not self.fallen_back and not ctx.gone:
                ctx.tcp.request_ack()  # acknowledge the DATA_FIN promptly

    # ------------------------------------------------------------------ options we send
    def options_for(self, sf: TcpSubflow, kind: SegmentKind, chunk: Chunk | None) -> tuple[OutOption, ...]:
        """Implements :class:`~analyzer.endpoint.tcp.OptionSource`."""
        ctx = self.subflows[sf.id]
        if not self.mptcp:
            return ()
        mpc_flags = MPC_HMAC_SHA | (MPC_CHECKSUM_REQUIRED if self.checksums or self.cfg.checksum else 0)
        if kind is SegmentKind.SYN:
            if ctx.initial:
                if sf.syn_transmissions > self.cfg.tcp.syn_retries_before_fallback:
                    return ()  # Linux retries without MP_CAPABLE (shared rules §5.8)
                return (MpCapable(1, MPC_HMAC_SHA | (MPC_CHECKSUM_REQUIRED if self.cfg.checksum else 0)),)
            assert ctx.join is not None
            return (MpJoinSyn(ctx.local_backup, ctx.local_id, self.keys.remote_token, ctx.join.nonce_local),)
        if kind is SegmentKind.SYNACK:
            if ctx.initial:
                return (MpCapable(1, mpc_flags, self.keys.local_key),)
            assert ctx.join is not None and ctx.join.nonce_remote is not None
            thmac = self.keys.synack_hmac(ctx.join.nonce_local, ctx.join.nonce_remote)
            if ctx.join.faulty:
                thmac ^= 0xFFFF
            return (MpJoinSynAck(ctx.local_backup, ctx.local_id, thmac, ctx.join.nonce_local),)
        if (
            ctx.join is not None
            and ctx.join.initiator
            and not ctx.join.complete
            and kind is SegmentKind.ACK
            and sf.snd_nxt <= 1
        ):
            assert ctx.join.nonce_remote is not None
            hmac = self.keys.ack_hmac(ctx.join.nonce_local, ctx.join.nonce_remote)
            if ctx.join.faulty:
                hmac = bytes(b ^ 0xA5 for b in hmac)
            return (MpJoinAck(hmac),)
        assert self.keys.remote_key is not None
        if ctx.initial and self.role is Role.CLIENT and not self.fully_established:
            if kind is SegmentKind.ACK and sf.snd_nxt <= 1 and not ctx.signals:
                return (self._mpc_ack(mpc_flags),)
            if kind is SegmentKind.DATA and chunk is not None and chunk.ssn == 1 and chunk.offset == 0:
                return (self._mpc_data(mpc_flags, chunk),)
        if kind is SegmentKind.ACK and ctx.override_dss is not None:
            override, ctx.override_dss = ctx.override_dss, None
            signals, ctx.signals = ctx.signals, []
            return (override, *signals)
        if kind is SegmentKind.ACK and ctx.signals:
            signals = self._take_signals(ctx, MAX_OPTION_SPACE - sf.timestamp_bytes)
            dss = self._dss(ctx, None, allow_fin=False)
            room = MAX_OPTION_SPACE - sf.timestamp_bytes - sum(_padded(o.length) for o in signals)
            if dss is None or _padded(dss.length) > room:
                return tuple(signals)  # like Linux, the signal replaces the DSS when space is short
            return (dss, *signals)
        dss = self._dss(ctx, chunk, allow_fin=kind in (SegmentKind.ACK, SegmentKind.FIN))
        return (dss,) if dss is not None else ()

    def _take_signals(self, ctx: SubflowInfo, room: int) -> list[OutOption]:
        """The pending signals that fit on one segment, one per subtype; the rest wait for another ACK."""
        taken: list[OutOption] = []
        kinds: set[int] = set()
        left: list[OutOption] = []
        for opt in ctx.signals:
            subtype = opt.build()[2] >> 4
            size = _padded(opt.length)
            if subtype in kinds or size > room:
                left.append(opt)
                continue
            kinds.add(subtype)
            room -= size
            taken.append(opt)
        ctx.signals = left
        if left:
            ctx.tcp.request_ack()
        return taken

    def _mpc_ack(self, flags: int) -> MpCapable:
        assert self.keys.remote_key is not None
        receiver_key = self.keys.remote_key
        if self._misbehave(Misbehave.WRONG_KEY_ECHO):
            receiver_key ^= 0x00FF00FF00FF00FF
        return MpCapable(1, flags, self.keys.local_key, receiver_key)

    def _mpc_data(self, flags: int, chunk: Chunk) -> MpCapable:
        assert self.keys.remote_key is not None
        data_len = len(chunk.payload)
        checksum = None
        if self.checksums:
            checksum = dss_checksum((self.keys.local_idsn + 1) & MASK64, 1, data_len, chunk.payload)
        return MpCapable(1, flags, self.keys.local_key, self.keys.remote_key, data_len, checksum)

    def _dss(self, ctx: SubflowInfo, chunk: Chunk | None, allow_fin: bool) -> Dss | None:
        flags = 0
        data_ack: int | None = None
        if not ctx.no_data_ack:
            ack = (self.keys.remote_idsn + 1 + self.receiver.ack) & MASK64
            ctx.last_data_ack = self.receiver.ack
            flags |= DSS_ACK
            if self.peer_dsn64:
                flags |= DSS_ACK64
                data_ack = ack
            else:
                data_ack = ack & MASK32
        dsn = ssn = data_len = checksum = None
        base = (self.keys.local_idsn + 1) & MASK64
        if chunk is not None and chunk.offset is not None and chunk.tag != "no-mapping":
            flags |= DSS_MAPPING | DSS_DSN64 | (DSS_DATA_FIN if chunk.data_fin else 0)
            dsn = (base + chunk.offset) & MASK64
            ssn = chunk.ssn & MASK32
            data_len = len(chunk.payload) + (1 if chunk.data_fin else 0)
            if self.checksums:
                checksum = dss_checksum(dsn, ssn, data_len, chunk.payload)
                if chunk.tag == "bad-checksum":
                    checksum ^= 0x5A5A
        elif allow_fin and chunk is None and self._data_fin_only_pending() and ctx.ready:
            assert self.sender.fin_offset is not None
            flags |= DSS_MAPPING | DSS_DSN64 | DSS_DATA_FIN
            dsn, ssn, data_len = (base + self.sender.fin_offset) & MASK64, 0, 1
            if self.checksums:
                checksum = dss_checksum(dsn, 0, 1, b"")
            self.sender.fin_sent = True
        if not flags:
            return None
        return Dss(flags, data_ack, dsn, ssn, data_len, checksum)

    # ------------------------------------------------------------------ scheduling
    def _available(self) -> list[SubflowInfo]:
        ready = [c for c in self._live() if c.ready and c.tcp.can_send_data and not c.closing]
        fresh = [c for c in ready if not c.tcp.stale]
        return fresh or ready

    def _payload_cap(self, ctx: SubflowInfo) -> int:
        return ctx.tcp.mss - ctx.tcp.timestamp_bytes - (MPTCP_OPTION_RESERVE if self.mptcp else 0)

    def _schedule(self, now: float) -> None:
        if not self.connected or self.closed:
            return
        while True:
            candidates = self._available()
            if not candidates:
                return
            reinjecting = bool(self.sender.reinject)
            need = self.sender.reinject[0][1] if reinjecting else self.sender.window_room()
            if need <= 0:
                break
            paths = [PathInfo(c.id, c.tcp.srtt, c.tcp.cwnd_space, self._payload_cap(c), c.backup) for c in candidates]
            chosen = self._scheduler.pick(paths, need)
            if chosen is None:
                break
            ctx = self.subflows[chosen]
            room = max(1, min(self._payload_cap(ctx), ctx.tcp.cwnd_space))
            taken = self.sender.take_reinjection(room) if reinjecting else self.sender.take(room)
            if taken is None:
                continue
            offset, data, fin = taken
            if not data:
                break
            # MP_CAPABLE with data (the client's first bytes) has no F flag: that DATA_FIN goes on its own.
            fin = fin and self.mptcp and not (offset == 0 and self.role is Role.CLIENT)
            if fin:
                self.sender.fin_carried = True
            chunk = Chunk(data, offset, data_fin=fin)
            self._tag_chunk(ctx, chunk)
            ctx.tcp.enqueue(chunk)
            ctx.chunks_queued += 1
        self._maybe_send_data_fin(now)

    def _tag_chunk(self, ctx: SubflowInfo, chunk: Chunk) -> None:
        if self._first_chunk is None and chunk.offset == 0:
            self._first_chunk = (0, chunk.payload)
        if ctx.initial or ctx.chunks_queued != 1:
            return
        if self._misbehave(Misbehave.MISSING_MAPPING):
            chunk.tag = "no-mapping"
        elif self.checksums and self._misbehave(Misbehave.BAD_DSS_CHECKSUM):
            chunk.tag = "bad-checksum"

    def _data_fin_only_pending(self) -> bool:
        s = self.sender
        return self.mptcp and s.closed and not s.fin_carried and s.all_mapped and not s.reinject and not s.fin_acked

    def _maybe_send_data_fin(self, now: float) -> None:
        if self._data_fin_only_pending() and not self.sender.fin_sent and self._fin_deadline is None:
            self._request_data_fin(now)

    def _request_data_fin(self, now: float) -> None:
        """Send the DATA_FIN-only mapping on the best subflow; retries go on every available subflow."""
        candidates = self._available()
        if not candidates:
            self._fin_deadline = now + 1.0
            return
        best = min(candidates, key=lambda c: (c.backup, c.tcp.srtt, c.id))
        for ctx in candidates if self._fin_backoff else [best]:
            ctx.tcp.request_ack()
        self._fin_deadline = now + best.tcp.rtt.current * (1 << min(self._fin_backoff, 6))

    def _reinject_from(self, ctx: SubflowInfo) -> None:
        """Queue the subflow's unacknowledged data for other subflows (RFC 8684 §3.3.6)."""
        others = [c for c in self._live() if c is not ctx and c.ready and not c.closing]
        if not others:
            return
        for chunk in ctx.tcp.unacked_chunks():
            if chunk.offset is None or chunk.reinjected:
                continue
            end = chunk.offset + len(chunk.payload)
            if end <= self.sender.una:
                continue
            chunk.reinjected = True
            self.sender.reinject.append((chunk.offset, len(chunk.payload)))
        self.sender.reinject.sort()

    # ------------------------------------------------------------------ subflow lifecycle
    def _new_subflow(
        self, local: LocalAddress, local_port: int, remote: Address, remote_port: int, initial: bool
    ) -> SubflowInfo:
        sid = self._next_id
        self._next_id += 1
        overhead = 40 if local.address.version == 4 else 60
        tcp = TcpSubflow(
            subflow_id=sid, local=local.address, local_port=local_port, remote=remote, remote_port=remote_port,
            iss=self._rng.getrandbits(32), mss=local.mtu - overhead, window_scale=self.cfg.window_scale,
            tuning=self.cfg.tcp, options=self, window=self.receiver.window,
        )  # fmt: skip
        ctx = SubflowInfo(tcp=tcp, initial=initial, local_id=local.address_id, mappings=MappingTable(self.checksums))
        self.subflows[sid] = ctx
        self._by_tuple[(local.address, local_port, remote, remote_port)] = ctx
        return ctx

    def _live(self) -> list[SubflowInfo]:
        return [c for c in self.subflows.values() if not c.gone and c.tcp.state is not TcpState.CLOSED]

    def _reset_subflow(self, ctx: SubflowInfo, reason: int, extra: Iterable[OutOption] = (),
                       reason_text: str = "reset-sent") -> None:  # fmt: skip
        if ctx.gone:
            return
        options: tuple[OutOption, ...] = (*extra, MpTcpRst(0, reason)) if self.mptcp else ()
        if ctx.tcp.state is not TcpState.CLOSED:
            self._control.append(ctx.tcp.reset_segment(options))
        self._subflow_gone(ctx, reason_text, reason, reinject=True)

    def _close_subflow(self, ctx: SubflowInfo) -> None:
        """Graceful close of one subflow: no new data, reinject what it still owes, then FIN."""
        ctx.closing = True
        self._reinject_from(ctx)
        ctx.tcp.close()

    def _subflow_gone(self, ctx: SubflowInfo, reason: str, reset_reason: int | None, reinject: bool) -> None:
        if ctx.gone:
            return
        if reinject:
            self._reinject_from(ctx)
        ctx.gone = True
        ctx.ready = False
        ctx.join_ack_deadline = None
        self._events.append(SubflowClosed(ctx.id, reason, reset_reason))

    def _maybe_close_subflows(self) -> None:
        if self.closed:
            return
        if self.fallen_back:
            initial = next((c for c in self.subflows.values() if c.initial), None)
            if initial is not None and self.sender.closed and self.sender.all_mapped and not initial.tcp.fin_requested:
                initial.tcp.close()
            return
        if not self._data_closed and self.sender.fin_acked and self.receiver.fin_done:
            self._data_closed = True
            for ctx in self._live():
                if ctx.tcp.stale:
                    self._reset_subflow(ctx, REASON_UNSPECIFIED)
                else:
                    ctx.closing = True
                    ctx.tcp.close()

    def _check_finished(self) -> None:
        if self.closed:
            return
        live = [c for c in self.subflows.values() if not c.gone]
        if self.fallen_back:
            if self.subflows and not live:
                done = self.sender.fin_acked and self.receiver.fin_done
                self._finish("closed" if done else "reset")
            return
        if not self.subflows or live:
            return
        if self._data_closed:
            self._finish("closed")
        elif self.connected or self.role is Role.CLIENT:
            self._finish("failed")

    def _finish(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self._fin_deadline = None
            self._announcements.clear()
            self._events.append(ConnectionClosed(reason))

    def _fall_back(self, reason: str) -> None:
        if self.fallen_back:
            return
        self.mptcp = False
        self.fallen_back = True
        self._events.append(FellBack(reason))

    # ------------------------------------------------------------------ helpers
    def _local_address(self, address: Address) -> LocalAddress:
        for local in [*self.cfg.addresses, *self.cfg.announce]:
            if local.address == address:
                return local
        return LocalAddress(address, 0)

    def _ephemeral_port(self) -> int:
        used = {c.tcp.local_port for c in self.subflows.values()}
        while True:
            port = self._rng.randint(*EPHEMERAL_PORTS)
            if port not in used:
                return port

    def _misbehave(self, kind: Misbehave) -> bool:
        """True once for a configured fault."""
        if kind in self.cfg.misbehave and kind not in self._fired:
            self._fired.add(kind)
            return True
        return False

    def _misbehave_tick(self, now: float) -> None:
        """Faults that fire on a condition rather than at a fixed place."""
        wanted = self.cfg.misbehave - self._fired
        if not wanted or not self.mptcp or self.keys.remote_key is None:
            return
        initial = next((c for c in self.subflows.values() if c.initial and c.ready and not c.gone), None)
        joins = [c for c in self._live() if not c.initial and c.ready]
        if initial is None:
            return
        base_remote = (self.keys.remote_idsn + 1) & MASK64
        last = initial.last_data_ack
        if Misbehave.DATA_ACK_BACKWARDS in wanted and last is not None and last >= 3000:
            self._fired.add(Misbehave.DATA_ACK_BACKWARDS)
            back = (base_remote + last - 1000) & MASK64
            flags = DSS_ACK | (DSS_ACK64 if self.peer_dsn64 else 0)
            initial.override_dss = Dss(flags, back if self.peer_dsn64 else back & MASK32)
            initial.tcp.request_ack()
        if Misbehave.DATA_ACK_BEYOND in wanted and joins:
            self._fired.add(Misbehave.DATA_ACK_BEYOND)
            target = joins[0]
            beyond = (base_remote + self.receiver.ack + BEYOND_GAP) & MASK64
            target.override_dss = Dss(DSS_ACK | DSS_ACK64, beyond)
            target.no_data_ack = True  # keep the Data ACK on this subflow from ever moving back
            target.tcp.request_ack()
        if self.role is not Role.CLIENT or not self.fully_established:
            return
        if Misbehave.BAD_DSS_LENGTH in wanted:
            self._fired.add(Misbehave.BAD_DSS_LENGTH)
            ack = (base_remote + self.receiver.ack) & MASK64
            raw = bytearray(Dss(DSS_ACK | DSS_ACK64, ack).build())
            raw[1] = len(raw) + 2  # length byte disagrees with the flags (12 expected)
            initial.override_dss = RawOption(bytes(raw) + b"\x00\x00")
            initial.tcp.request_ack()
        if Misbehave.BAD_OPTION_LENGTH in wanted:
            self._fired.add(Misbehave.BAD_OPTION_LENGTH)
            initial.signals.append(RawOption(bytes((30, 3, 0x40))))  # REMOVE_ADDR without an ID
            initial.tcp.request_ack()
        if Misbehave.CONFLICTING_MAPPING in wanted:
            acked_first = self._first_chunk
            if acked_first is not None and self.sender.una >= 4000 and initial.tcp.snd_una > 1000:
                self._fired.add(Misbehave.CONFLICTING_MAPPING)
                # Re-map subflow bytes 1.. (already sent and acknowledged) to a different DSN.
                base = (self.keys.local_idsn + 1) & MASK64
                length = len(acked_first[1])
                initial.override_dss = Dss(
                    DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64,
                    (base_remote + self.receiver.ack) & MASK64,
                    (base + 2000) & MASK64, 1, length,
                    dss_checksum((base + 2000) & MASK64, 1, length, acked_first[1]) if self.checksums else None,
                )  # fmt: skip
                initial.tcp.request_ack()
        if Misbehave.REINJECT_DIFFERENT_BYTES in wanted and joins and self._first_chunk is not None:
            offset, payload = self._first_chunk
            if self.sender.una >= offset + len(payload) + 1000:
                self._fired.add(Misbehave.REINJECT_DIFFERENT_BYTES)
                bogus = bytes(b ^ 0xFF for b in payload)
                joins[0].tcp.enqueue(Chunk(bogus, offset, tag="different-bytes"))


_O = TypeVar("_O")


def _first(options: Iterable[OutOption], kind: type[_O]) -> _O | None:
    """The first option of a type, or None."""
    for opt in options:
        if isinstance(opt, kind):
            return opt
    return None


def _padded(length: int) -> int:
    return (length + 3) & ~3


def _plain_reset(seg: Segment, options: tuple[OutOption, ...] = ()) -> Segment:
    """RFC 9293 §3.10.7.1 reply to a segment for no known connection."""
    if seg.has_ack:
        seq, ack, flags = seg.ack, 0, RST
    else:
        seq, ack, flags = 0, (seg.seq + seg.seq_space) & MASK32, RST | 0x10
    return Segment(seg.dst, seg.dport, seg.src, seg.sport, seq, ack, flags, 0, b"", options)
