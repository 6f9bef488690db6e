"""One TCP subflow: handshake, sequence/ACK, windows, RTO with back-off, fast retransmit, FIN, RST.

The subflow knows nothing about MPTCP. Its owner (the connection) hands it :class:`Chunk`\\ s of
payload, each sent as exactly one segment and retransmitted unchanged, and supplies the MPTCP
options of every outgoing segment through an :class:`OptionSource`. Incoming segments return a
:class:`SubflowInput` saying what happened. Sequence numbers are kept relative to the ISNs (0 is the
SYN, 1 the first data byte) and unbounded; only the wire wraps them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from analyzer.endpoint.config import TcpTuning
from analyzer.endpoint.congestion import NewReno, RttEstimator
from analyzer.endpoint.segment import ACK, FIN, PSH, RST, SYN, Address, OutOption, Segment
from analyzer.endpoint.state import CAN_SEND_DATA, DONE, SYNCHRONIZED, TcpState, Trigger, step
from analyzer.seqnum import MASK32, unwrap32

__all__ = ["Chunk", "OptionSource", "SegmentKind", "SubflowInput", "TcpSubflow"]

MAX_WINDOW_FIELD = 0xFFFF


class SegmentKind(enum.Enum):
    """What a segment is for; decides which MPTCP options the connection attaches."""

    SYN = enum.auto()
    SYNACK = enum.auto()
    ACK = enum.auto()  # pure ACK
    DATA = enum.auto()
    FIN = enum.auto()


@dataclass(slots=True)
class Chunk:
    """Payload sent as one segment, with the data-level position it maps to."""

    payload: bytes
    offset: int | None  # data-level offset of the first byte (None: not mapped, e.g. after fallback)
    data_fin: bool = False  # the DATA_FIN rides on this mapping (data-level length = payload + 1)
    ssn: int = 0  # relative subflow sequence number of the first byte (set when queued)
    first_sent: float | None = None
    transmissions: int = 0
    reinjected: bool = False  # its data was also queued on another subflow
    tag: str | None = None  # marks a deliberately broken chunk (fault injection)

    @property
    def end(self) -> int:
        return self.ssn + len(self.payload)


class OptionSource(Protocol):
    """Gives each outgoing segment its MPTCP options (the connection implements this)."""

    def options_for(self, sf: TcpSubflow, kind: SegmentKind, chunk: Chunk | None) -> tuple[OutOption, ...]: ...


@dataclass(slots=True)
class SubflowInput:
    """What one received segment did to the subflow."""

    delivered: list[tuple[int, bytes]] = field(default_factory=list)  # in-order (relative seq, bytes)
    established: bool = False  # the handshake completed with this segment
    acked: bool = False  # new data or FIN acknowledged
    fin_received: bool = False  # the peer's FIN became in-order
    reset: bool = False  # an acceptable RST arrived
    closed: bool = False  # the subflow reached CLOSED (or TIME_WAIT) with this segment


class TcpSubflow:
    """A TCP connection between two (address, port) pairs, driven by segments and time."""

    def __init__(
        self,
        *,
        subflow_id: int,
        local: Address,
        local_port: int,
        remote: Address,
        remote_port: int,
        iss: int,
        mss: int,
        window_scale: int,
        tuning: TcpTuning,
        options: OptionSource,
        window: Callable[[], int],
    ) -> None:
        self.id = subflow_id
        self.local, self.local_port, self.remote, self.remote_port = local, local_port, remote, remote_port
        self.iss = iss
        self.irs = 0
        self.state = TcpState.CLOSED
        self.tuning = tuning
        self._options = options
        self._window = window
        self.local_mss = mss
        self.peer_mss = 536
        self.local_wscale = window_scale
        self.peer_wscale: int | None = None
        self.wscale_ok = False
        self.ts_ok = tuning.timestamps  # until the peer's SYN says otherwise
        self._ts_offset = iss ^ 0x5A5A5A5A  # per-subflow TSval offset (Linux randomises it)
        self._ts_recent = 0
        # send side (relative: 0 = SYN)
        self.snd_una = 0
        self.snd_nxt = 0
        self.snd_max = 0
        self.snd_wnd = 65535
        self.next_ssn = 1  # where the next queued chunk starts
        self.chunks: list[Chunk] = []  # queued and unacknowledged, in sequence order
        self._send_idx = 0  # next chunk to (re)transmit
        self._rtx: list[Chunk] = []  # one-off retransmissions (fast retransmit, partial ACK)
        self.fin_requested = False
        self.fin_seq: int | None = None
        self.fin_acked = False
        self._syn_due = False
        self.syn_transmissions = 0
        # receive side
        self.rcv_nxt = 0
        self._ooo: dict[int, bytes] = {}
        self._peer_fin_seq: int | None = None
        self.fin_received = False
        self.ack_pending = False
        self._force_ack = False  # a pure ACK was requested (it carries MPTCP signals)
        self._ack_first = False  # the third ACK goes out before any data
        # timers and congestion control
        self.rtt = RttEstimator(tuning.initial_rto, tuning.min_rto, tuning.max_rto)
        self.cc = NewReno(mss=mss)
        self._rto_deadline: float | None = None
        self._time_wait_deadline: float | None = None
        self._rtt_probe: tuple[int, float] | None = None  # (sequence end, send time) of the timed segment
        self.dupacks = 0
        self.timeouts = 0  # retransmission timeouts since the last progress
        self.segments_sent = 0
        self.retransmissions = 0

    # ------------------------------------------------------------------ properties
    @property
    def mss(self) -> int:
        """Largest segment: the smaller of ours and the peer's MSS option."""
        return min(self.local_mss, self.peer_mss)

    @property
    def synchronized(self) -> bool:
        return self.state in SYNCHRONIZED

    @property
    def can_send_data(self) -> bool:
        return self.state in CAN_SEND_DATA and not self.fin_requested

    @property
    def done(self) -> bool:
        return self.state in DONE

    @property
    def stale(self) -> bool:
        """A retransmission timeout fired and nothing was acknowledged since."""
        return self.timeouts > 0

    @property
    def srtt(self) -> float:
        return self.rtt.smoothed

    @property
    def outstanding(self) -> int:
        """Bytes queued or in flight and not yet acknowledged."""
        return self.next_ssn - max(self.snd_una, 1)

    @property
    def cwnd_space(self) -> int:
        return self.cc.cwnd - self.outstanding

    def unacked_chunks(self) -> list[Chunk]:
        return [c for c in self.chunks if c.end > self.snd_una]

    # ------------------------------------------------------------------ opening
    def open(self, now: float) -> None:
        """Active open: send a SYN."""
        self.state = step(self.state, Trigger.SEND_SYN)
        self.snd_nxt = 0
        self._syn_due = True

    def accept(self, syn: Segment, now: float) -> None:
        """Passive open from a received SYN: answer with a SYN/ACK."""
        self.state = step(self.state, Trigger.RECV_SYN)
        self._learn_syn_options(syn)
        self.irs = syn.seq
        self.rcv_nxt = 1
        self._syn_due = True

    def _learn_syn_options(self, seg: Segment) -> None:
        self.ts_ok = self.tuning.timestamps and seg.timestamp is not None
        if seg.timestamp is not None:
            self._ts_recent = seg.timestamp[0]
        if seg.mss is not None:
            self.peer_mss = seg.mss
        self.peer_wscale = seg.wscale
        self.wscale_ok = seg.wscale is not None
        self.cc.mss = self.mss
        self.cc.start(self.tuning.initial_window)

    # ------------------------------------------------------------------ application side
    def enqueue(self, chunk: Chunk) -> None:
        """Queue a chunk behind the others; it is sent when the congestion window allows."""
        chunk.ssn = self.next_ssn
        self.next_ssn = chunk.end
        self.chunks.append(chunk)

    def close(self) -> None:
        """Send a FIN once the queued chunks are out."""
        self.fin_requested = True

    def request_ack(self) -> None:
        """Send a pure ACK at the next poll, even if data segments go out too."""
        self._force_ack = True

    def reset_segment(self, options: tuple[OutOption, ...]) -> Segment:
        """Abort: the RST to send (with the given MPTCP options); the subflow is CLOSED afterwards."""
        seg = self._segment(RST | ACK, self.snd_nxt if self.snd_nxt else self.snd_max, b"", options)
        self._enter_closed()
        return seg

    def _enter_closed(self) -> None:
        self.state = step(self.state, Trigger.RESET) if self.state is not TcpState.CLOSED else self.state
        self._rto_deadline = None
        self._time_wait_deadline = None

    # ------------------------------------------------------------------ receiving
    def on_segment(self, seg: Segment, now: float) -> SubflowInput:
        out = SubflowInput()
        if self.state is TcpState.SYN_SENT:
            self._on_segment_syn_sent(seg, now, out)
            return out
        if self.state is TcpState.CLOSED:
            return out
        rel = unwrap32((seg.seq - self.irs) & MASK32, self.rcv_nxt)
        tsval = seg.timestamp[0] if seg.timestamp is not None else None
        if tsval is not None and rel <= self.rcv_nxt and ((tsval - self._ts_recent) & MASK32) < (1 << 31):
            self._ts_recent = tsval  # RFC 7323 §4.3
        if seg.rst:
            if -1 <= rel - self.rcv_nxt < (1 << 30):
                self._enter_closed()
                out.reset = out.closed = True
            return out
        if seg.syn:
            # A retransmitted SYN (we are SYN_RCVD) or SYN/ACK (our third ACK was lost): answer again.
            if self.state is TcpState.SYN_RCVD and not seg.has_ack:
                self._syn_due = True
            else:
                self.ack_pending = True
            return out
        if not seg.has_ack:
            return out
        if self.state is TcpState.SYN_RCVD:
            if unwrap32((seg.ack - self.iss) & MASK32, 0) != 1:
                return out
            self.state = step(self.state, Trigger.RECV_ACK_OF_SYN)
            self._after_ack(1, now)
            self.snd_wnd = self._scaled_window(seg)
            out.established = True
        self._on_ack(seg, now, out)
        if self.state in (TcpState.CLOSED,):
            out.closed = True
            return out
        self._on_payload(seg, rel, now, out)
        return out

    def _on_segment_syn_sent(self, seg: Segment, now: float, out: SubflowInput) -> None:
        ack_ok = seg.has_ack and (seg.ack - self.iss) & MASK32 == 1
        if seg.rst:
            if ack_ok:
                self._enter_closed()
                out.reset = out.closed = True
            return
        if not (seg.syn and ack_ok):
            return
        self._learn_syn_options(seg)
        self.irs = seg.seq
        self.rcv_nxt = 1
        self.state = step(self.state, Trigger.RECV_SYNACK)
        self._after_ack(1, now)
        self.snd_wnd = seg.window  # not scaled on a SYN (RFC 7323)
        self._ack_first = True
        out.established = True

    def _scaled_window(self, seg: Segment) -> int:
        shift = self.peer_wscale if self.wscale_ok and self.peer_wscale is not None else 0
        return seg.window << shift

    def _after_ack(self, ack: int, now: float) -> None:
        """Bookkeeping shared by the handshake and data ACKs: new ``snd_una`` and timers."""
        probe = self._rtt_probe
        if probe is not None and ack >= probe[0]:
            self.rtt.sample(max(1e-6, now - probe[1]))
            self._rtt_probe = None
        self.snd_una = ack
        if self.snd_nxt < ack:
            self.snd_nxt = ack
        self.timeouts = 0
        self.rtt.on_progress()
        self._rto_deadline = now + self.rtt.current if self.snd_una < self.snd_max else None

    def _on_ack(self, seg: Segment, now: float, out: SubflowInput) -> None:
        ack = unwrap32((seg.ack - self.iss) & MASK32, self.snd_una)
        window = self._scaled_window(seg)
        if ack > self.snd_max:
            self.ack_pending = True  # acknowledges something we never sent
            return
        if ack > self.snd_una:
            acked = ack - self.snd_una
            self._after_ack(ack, now)
            self.snd_wnd = window
            self.dupacks = 0
            while self.chunks and self.chunks[0].end <= ack:
                self.chunks.pop(0)
                self._send_idx = max(0, self._send_idx - 1)
            self._rtx = [c for c in self._rtx if c.end > ack]
            if self.cc.on_ack(acked, ack) and self.chunks:
                self._rtx.append(self.chunks[0])  # NewReno partial ACK: the next hole
            out.acked = True
            if self.fin_seq is not None and ack > self.fin_seq and not self.fin_acked:
                self.fin_acked = True
                self.state = step(self.state, Trigger.ACK_OF_FIN)
                if self.state is TcpState.TIME_WAIT:
                    self._time_wait_deadline = now + self.tuning.time_wait
                elif self.state is TcpState.CLOSED:
                    self._rto_deadline = None
            return
        if (
            ack == self.snd_una
            and self.snd_una < self.snd_max
            and not seg.payload
            and not seg.fin
            and window == self.snd_wnd
        ):
            self.dupacks += 1
            flight = self.snd_max - self.snd_una
            if self.cc.on_dupack(self.dupacks, flight, self.snd_max, self.tuning.dupack_threshold) and self.chunks:
                self._rtx.append(self.chunks[0])
        self.snd_wnd = max(self.snd_wnd, window) if ack == self.snd_una else self.snd_wnd

    def _on_payload(self, seg: Segment, rel: int, now: float, out: SubflowInput) -> None:
        if self.state not in (TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2):
            if seg.payload or seg.fin:
                self.ack_pending = True  # peer retransmits after its FIN: acknowledge again
            return
        payload = seg.payload
        if payload:
            end = rel + len(payload)
            if end <= self.rcv_nxt:
                self.ack_pending = True  # duplicate
            elif rel <= self.rcv_nxt:
                piece = payload[self.rcv_nxt - rel :]
                out.delivered.append((self.rcv_nxt, piece))
                self.rcv_nxt = end
                self._drain(out)
                self.ack_pending = True
            else:
                if rel not in self._ooo or len(self._ooo[rel]) < len(payload):
                    self._ooo[rel] = payload
                self.ack_pending = True  # duplicate ACK tells the sender about the hole
        if seg.fin:
            self._peer_fin_seq = rel + len(payload)
            self.ack_pending = True
        if self._peer_fin_seq is not None and self.rcv_nxt == self._peer_fin_seq and not self.fin_received:
            self.rcv_nxt += 1
            self.fin_received = True
            out.fin_received = True
            self.state = step(self.state, Trigger.RECV_FIN)
            if self.state is TcpState.TIME_WAIT:
                self._time_wait_deadline = now + self.tuning.time_wait
                self._rto_deadline = None

    def _drain(self, out: SubflowInput) -> None:
        while self._ooo:
            start = min(self._ooo)
            if start > self.rcv_nxt:
                return
            data = self._ooo.pop(start)
            end = start + len(data)
            if end <= self.rcv_nxt:
                continue
            out.delivered.append((self.rcv_nxt, data[self.rcv_nxt - start :]))
            self.rcv_nxt = end

    @property
    def out_of_order_bytes(self) -> int:
        return sum(len(d) for d in self._ooo.values())

    # ------------------------------------------------------------------ timers
    def timer(self) -> float | None:
        deadlines = [d for d in (self._rto_deadline, self._time_wait_deadline) if d is not None]
        return min(deadlines) if deadlines else None

    def on_timer(self, now: float) -> bool:
        """Handle expired timers; returns True when retransmissions gave up (the caller resets)."""
        if self._time_wait_deadline is not None and now >= self._time_wait_deadline:
            self._time_wait_deadline = None
            self.state = step(self.state, Trigger.TIMEOUT)
            return False
        if self._rto_deadline is None or now < self._rto_deadline:
            return False
        self._rto_deadline = None
        self.timeouts += 1
        self._rtt_probe = None  # Karn: no samples from retransmissions
        if self.timeouts > self.tuning.max_retries:
            return True
        self.rtt.on_timeout()
        if self.state in (TcpState.SYN_SENT, TcpState.SYN_RCVD):
            self._syn_due = True
            return False
        self.cc.on_timeout(self.snd_max - self.snd_una)
        # Go back N: resend everything unacknowledged, starting at snd_una.
        self._send_idx = 0
        self._rtx.clear()
        self.snd_nxt = self.snd_una
        self.dupacks = 0
        self._rto_deadline = now + self.rtt.current
        return False

    # ------------------------------------------------------------------ sending
    def _window_field(self, kind: SegmentKind) -> int:
        window = max(0, self._window())
        if kind in (SegmentKind.SYN, SegmentKind.SYNACK):
            return min(window, MAX_WINDOW_FIELD)
        if self.wscale_ok:
            shift = self.local_wscale
            window = (window + (1 << shift) - 1) >> shift  # round up so the right edge never recedes
        return min(window, MAX_WINDOW_FIELD)

    @property
    def timestamp_bytes(self) -> int:
        """Option space the timestamp takes on non-SYN segments (NOP NOP + 10)."""
        return 12 if self.ts_ok else 0

    def _segment(
        self,
        flags: int,
        seq: int,
        payload: bytes,
        options: tuple[OutOption, ...],
        kind: SegmentKind = SegmentKind.ACK,
        now: float | None = None,
    ) -> Segment:
        ack = (self.irs + self.rcv_nxt) & MASK32 if flags & ACK else 0
        syn = kind in (SegmentKind.SYN, SegmentKind.SYNACK)
        timestamp = None
        if self.ts_ok and now is not None and not flags & RST:
            tsval = (self._ts_offset + int(now * 1000)) & MASK32
            timestamp = (tsval, 0 if kind is SegmentKind.SYN else self._ts_recent)
        return Segment(
            src=self.local, sport=self.local_port, dst=self.remote, dport=self.remote_port,
            seq=(self.iss + seq) & MASK32, ack=ack, flags=flags, window=self._window_field(kind),
            payload=payload, mptcp=options,
            mss=self.local_mss if syn else None,
            wscale=self.local_wscale if syn and (kind is SegmentKind.SYN or self.wscale_ok) else None,
            timestamp=timestamp,
        )  # fmt: skip

    def _arm(self, now: float) -> None:
        if self._rto_deadline is None:
            self._rto_deadline = now + self.rtt.current

    def _emit(self, kind: SegmentKind, flags: int, seq: int, chunk: Chunk | None, now: float) -> Segment:
        options = self._options.options_for(self, kind, chunk)
        payload = chunk.payload if chunk is not None else b""
        seg = self._segment(flags, seq, payload, options, kind, now)
        self.segments_sent += 1
        return seg

    def poll(self, now: float) -> list[Segment]:
        """Segments to send now: handshake, retransmissions, new data within the windows, FIN, ACK."""
        out: list[Segment] = []
        if self._syn_due:
            self._syn_due = False
            if self.state is TcpState.SYN_SENT:
                self.syn_transmissions += 1
                out.append(self._emit(SegmentKind.SYN, SYN, 0, None, now))
            elif self.state is TcpState.SYN_RCVD:
                self.syn_transmissions += 1
                out.append(self._emit(SegmentKind.SYNACK, SYN | ACK, 0, None, now))
            self.snd_max = max(self.snd_max, 1)
            self.snd_nxt = 1
            self._arm(now)
            return out
        if not self.synchronized:
            return out
        if self._ack_first:
            self._ack_first = False
            out.append(self._emit(SegmentKind.ACK, ACK, self.snd_nxt, None, now))
        for chunk in self._rtx:
            if chunk.end > self.snd_una:
                out.append(self._send_chunk(chunk, now))
        self._rtx.clear()
        while self._send_idx < len(self.chunks):
            chunk = self.chunks[self._send_idx]
            flight = self.snd_nxt - self.snd_una
            if flight > 0 and flight + len(chunk.payload) > self.cc.cwnd:
                break
            if chunk.ssn >= self.snd_max and flight > 0 and chunk.end > self.snd_una + self.snd_wnd:
                break
            out.append(self._send_chunk(chunk, now))
            self._send_idx += 1
            self.snd_nxt = max(self.snd_nxt, chunk.end)
        if (
            self.fin_requested
            and self._send_idx >= len(self.chunks)
            and not self.fin_acked
            and (self.fin_seq is None or self.snd_nxt <= self.fin_seq)
            and self.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT, TcpState.FIN_WAIT_1,
                               TcpState.LAST_ACK, TcpState.CLOSING)
        ):  # fmt: skip
            seq = self.next_ssn
            if self.fin_seq is None:
                self.fin_seq = seq
                self.state = step(self.state, Trigger.SEND_FIN)
            else:
                self.retransmissions += 1
            out.append(self._emit(SegmentKind.FIN, FIN | ACK, seq, None, now))
            self.snd_nxt = seq + 1
            self.snd_max = max(self.snd_max, seq + 1)
            self._arm(now)
        if len(out) > 0:
            self.ack_pending = False
        if (self._force_ack or self.ack_pending) and self.state is not TcpState.CLOSED:
            self.ack_pending = self._force_ack = False
            out.append(self._emit(SegmentKind.ACK, ACK, self.snd_nxt if self.snd_nxt else 1, None, now))
        return out

    def _send_chunk(self, chunk: Chunk, now: float) -> Segment:
        chunk.transmissions += 1
        if chunk.first_sent is None:
            chunk.first_sent = now
            if self._rtt_probe is None:
                self._rtt_probe = (chunk.end, now)
        else:
            self.retransmissions += 1
            if self._rtt_probe is not None and self._rtt_probe[0] > chunk.ssn:
                self._rtt_probe = None
        self.snd_max = max(self.snd_max, chunk.end)
        self._arm(now)
        last = chunk is self.chunks[-1] if self.chunks else True
        return self._emit(SegmentKind.DATA, ACK | (PSH if last else 0), chunk.ssn, chunk, now)
