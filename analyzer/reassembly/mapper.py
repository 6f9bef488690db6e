"""Maps subflow bytes to data-sequence numbers through DSS mappings (RFC 8684 §3.3.1).

A :class:`Reassembler` watches every segment (it is a pipeline observer). Per subflow direction it
keeps the recent mappings (bounded), turns each payload byte range into DSN ranges, and hands them
to the connection direction's :class:`~analyzer.reassembly.stream.DataStream`. It also verifies DSS
checksums over whole mappings, notices conflicting mappings and unmapped bytes, and counts TCP
retransmissions and reinjections per subflow.

Checksummed mappings (RFC 8684 §3.3.1): the bytes of a mapping whose checksum is still open are *held*
and enter the stream only once it verifies. A mapping that fails is never part of the stream: its copy
waits aside (bounded) and is dropped when the subflow is reset (MP_FAIL on a RST: the data goes again on
another subflow, and that good copy is the stream). Only when the receiver keeps it, i.e. answers with
MP_FAIL on an ACK and falls back to TCP (§3.7; Linux delivers the failed bytes then, there is no other
copy), or the sender falls back with an infinite mapping, does the failed copy enter the stream, flagged.
After such an MP_FAIL, payload that no mapping covers is the fallback's data: it continues the last
mapping by TCP sequence from the first segment sent without a DSS, not from the later segment that
carries the infinite mapping.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field

from analyzer.facts import (
    ChecksumFailed,
    DataFinMoved,
    Fact,
    FactLog,
    MappingsConflict,
    Reinjected,
    StreamConflict,
    UnmappedBytes,
)
from analyzer.ingest.segment import TH_FIN, TH_RST, TH_SYN, Segment
from analyzer.model import Analysis, ChecksumFailure, Connection, StreamSummary, Subflow
from analyzer.mptcp import mapindex
from analyzer.mptcp.crypto import ChecksumAccumulator, idsn_from_key
from analyzer.mptcp.datalevel import PacketLevels
from analyzer.mptcp.options import Dss, MpCapable, MpFail
from analyzer.reassembly.stream import DEFAULT_BUFFER_CAP, DEFAULT_PIECE_CAP, MASK64, DataStream, StreamWriter
from analyzer.results import HalfDelivery, Reassembled
from analyzer.seqnum import unwrap32

MASK32 = 0xFFFFFFFF
MAX_MAPPINGS = 256  # recent mappings kept per subflow direction (bounded memory per subflow)
MAX_CHECKSUM_FRAMES = 8
# Bytes of checksummed mappings held until their verdict, over all streams. A mapping is at most 64 KiB, and
# its bytes are normally released by the segment that completes it; only mappings waiting for a lost segment
# stay. Beyond the cap the oldest held mapping's bytes enter the stream unverified: if that mapping later
# fails, the stream is flagged (``unverified_bad_bytes``: no SHA-256, not complete) instead of rebuilt.
HOLD_CAP = 8 << 20
# Failed copies waiting for the receiver's reaction (kept on a fallback, dropped on a reset), over all streams.
# Beyond either cap the oldest is dropped: should the receiver keep it after all, its range is a hole.
QUARANTINE_CAP = 4 << 20
MAX_QUARANTINED = 64
MAX_FAILS_KEPT = 8  # MP_FAILs remembered per subflow direction, to tell CSUM-001 what the receiver said
# Payload waiting for a mapping that may come later (RFC 6824/8684 §3.3.1: a receiver holds unmapped data for
# a while; the v0 kernel gives up past 64 KiB). Per subflow direction, and over all of them.
MAX_UNPLACED = 256 << 10
MAX_UNPLACED_PIECES = 1024
UNPLACED_CAP = 16 << 20

# Called once per data stream with the connection (None if not yet grouped), the side that sends the
# stream's data (0 = client) and the subflow whose segment created the stream.
WriterFactory = Callable[[Connection | None, int, Subflow], StreamWriter | None]


class Mapping:
    """One DSS mapping (or the MP_CAPABLE implied one). A plain slotted class: one per data segment."""

    __slots__ = ("acc", "acc_next", "checksum", "csum_state", "data_fin", "data_len", "dsn", "end", "frame",
                 "frames", "held", "held_bytes", "high_known", "length", "probe", "released", "ssn",
                 "start")  # fmt: skip

    def __init__(
        self, dsn: int, ssn: int, length: int, data_len: int, data_fin: bool, checksum: int | None, frame: int
    ) -> None:
        self.dsn = dsn  # 64-bit DSN of the first byte
        self.ssn = ssn  # relative subflow sequence number of the first byte, as in the option (32 bits)
        self.length = length  # payload bytes covered (the data-level length minus the DATA_FIN unit)
        self.data_len = data_len  # as carried in the option (for the checksum pseudo-header)
        self.data_fin = data_fin
        self.checksum = checksum
        self.frame = frame
        self.acc: ChecksumAccumulator | None = None
        self.acc_next = 0
        self.csum_state = "pending"  # pending | ok | bad | unverifiable
        self.frames: list[int] = []
        self.start = 0  # ``ssn`` unwrapped to 64 bits (subflows can carry more than 4 GiB)
        self.end = 0  # start + length
        # False: a 32-bit DSN with no IDSN or 64-bit DSN to anchor it. The checksum sums the DSN's high half
        # mod 0xFFFF, so some high half always fits: a failed verification then proves nothing.
        self.high_known = True
        self.held: list[Held] | None = None  # pieces waiting for the checksum's verdict
        self.held_bytes = 0
        self.released = False  # the hold was full: its bytes went to the stream before the verdict
        # A zero-window probe (Linux): one byte mapped at the DSN just below the peer's Data ACK while the
        # payload is the next, unacknowledged byte. Harmless (the receiver drops it as old), never compared.
        self.probe = False


class Held:
    """A piece of a checksummed mapping, kept until the mapping's checksum is decided."""

    __slots__ = ("captured", "data", "frame", "length", "offset", "retrans_end", "seq", "start_in_segment",
                 "stream", "subflow", "time")  # fmt: skip

    def __init__(self, seq: int, stream: DataStream, offset: int, data: bytes, captured: int, length: int,
                 start_in_segment: int, time: float, frame: int, subflow: int, retrans_end: int) -> None:  # fmt: skip
        self.seq = seq  # unwrapped relative subflow sequence number of the first byte
        self.stream = stream
        self.offset = offset
        self.data = data
        self.captured = captured
        self.length = length
        self.start_in_segment = start_in_segment
        self.time = time
        self.frame = frame
        self.subflow = subflow
        self.retrans_end = retrans_end


@dataclass(slots=True)
class Failed:
    """The copy of a mapping whose checksum failed, kept aside until the receiver shows what it did with it."""

    key: int  # Subflow.key(direction) of the sender
    stream: DataStream
    offset: int
    data: bytes
    time: float
    frame: int
    subflow: int


class Unplaced:
    """Subflow bytes no mapping covered yet: a later mapping on the subflow may still cover them."""

    __slots__ = ("after_gap", "data", "frame", "length", "retrans_end", "seq", "time")

    def __init__(self, seq: int, data: bytes, length: int, time: float, frame: int, retrans_end: int,
                 after_gap: bool) -> None:  # fmt: skip
        self.seq = seq  # unwrapped relative subflow sequence number of the first byte
        self.data = data  # the captured bytes (may be shorter than ``length``: snaplen)
        self.length = length
        self.time = time
        self.frame = frame
        self.retrans_end = retrans_end  # relative sequence up to which these bytes were a TCP retransmission
        self.after_gap = after_gap  # the capture lost subflow bytes right before them (a mapping may be there)


@dataclass(slots=True)
class HalfStats:
    """What the reassembler learned about one subflow direction."""

    mapped_bytes: int = 0  # payload bytes placed in the data stream
    retransmitted_bytes: int = 0  # TCP retransmissions on this subflow
    reinjected_bytes: int = 0  # new on this subflow, but the DSN range was already delivered
    unmapped_bytes: int = 0  # payload covered by no mapping
    unmapped_frames: list[int] = field(default_factory=list)
    unmapped_after_gap: bool = False  # some unmapped bytes followed a hole in the captured subflow bytes
    reinjected_frames: list[int] = field(default_factory=list)  # the first MAX_FRAMES_KEPT that carried reinjections
    mappings: int = 0
    checksums_ok: int = 0
    checksums_bad: int = 0
    checksums_unverifiable: int = 0


@dataclass(slots=True)
class SubflowState:
    isn: int | None
    key: int = 0  # Subflow.key(direction)
    isn_inferred: bool = False
    mode: str = "mptcp"  # mptcp | tcp (fallback: offset = rel - 1) | infinite (offset by a fixed delta)
    infinite_delta: int = 0  # dsn - rel for the infinite mapping
    # the recent mappings (the protocol core's index, shared with the endpoint): ``mappings`` and ``starts`` read it
    index: mapindex.MappingIndex[Mapping] = field(default_factory=lambda: mapindex.MappingIndex(MAX_MAPPINGS))
    seq_ref: int | None = None  # highest unwrapped relative sequence number seen
    options_cut: bool = False  # a segment's options were cut by the snaplen: mappings may be unknown
    stream: DataStream | None = None
    max_seq_end: int | None = None  # highest relative sequence end seen, for retransmission detection
    stats: HalfStats = field(default_factory=HalfStats)
    seen_mapping: bool = False
    # TCP Fast Open (H-TFO): the SYN's payload, held until it is known whether it precedes the mapped
    # data (Linux: it ends right before IDSN + 1 and the mappings' numbering starts after it)
    syn_data: bytes | None = None
    syn_len: int = 0
    syn_frame: int = 0
    syn_ts: float = 0.0
    syn_outside: bool = False  # the SYN data precedes IDSN + 1: place it there once the stream exists
    shift_done: bool = False  # the tracker's ssn_shift has been applied to ``isn``
    after_fail: bool = False  # an MP_FAIL on an ACK was seen on this subflow: unmapped data is the fallback's
    keep_failed: bool = False  # the receiver keeps this direction's failed copies (it fell back, §3.7)
    fails: list[tuple[int, int, bool]] = field(default_factory=list)  # the receiver's MP_FAILs: (frame, dsn, RST)
    unplaced: list[Unplaced] = field(default_factory=list)  # payload waiting for a mapping, oldest first
    unplaced_bytes: int = 0
    prev_seq_end: int | None = None  # max_seq_end before the segment being placed (a jump = capture loss)
    seq_gap: bool = False  # the captured subflow bytes jumped forward somewhere: the capture lost some

    @property
    def mappings(self) -> list[Mapping]:
        """The recent mappings, sorted by start."""
        return self.index.items

    @property
    def starts(self) -> list[int]:
        """Their starts, for bisect."""
        return self.index.starts

    def unwrap(self, rel: int, advance: bool = True) -> int:
        """Relative 32-bit sequence number → 64-bit, nearest the highest one seen so far."""
        if self.seq_ref is None:
            self.seq_ref = rel
            return rel
        value = unwrap32(rel, self.seq_ref)
        if advance and value > self.seq_ref:
            self.seq_ref = value
        return value


class Reassembler:
    """Pipeline observer that rebuilds every connection's data streams."""

    def __init__(
        self,
        facts: FactLog | None = None,
        buffer_cap: int = DEFAULT_BUFFER_CAP,
        writer_factory: WriterFactory | None = None,
    ) -> None:
        self.facts = facts  # what reassembly proves (conflicts, checksums, unmapped bytes), for the rule families
        self.buffer_cap = buffer_cap
        self.piece_cap = DEFAULT_PIECE_CAP  # analyzer.limits: set by the pipeline
        self.max_mappings = MAX_MAPPINGS
        self.writer_factory = writer_factory
        self.states: dict[int, SubflowState] = {}  # Subflow.key(direction)
        self.conn_streams: dict[tuple[int, int], DataStream] = {}
        self.loose_streams: list[DataStream] = []
        self.bad_checksums: list[tuple[Subflow, int, Mapping]] = []
        self.conflicting_mappings: list[tuple[Subflow, Mapping, Mapping]] = []
        self.hold_cap = HOLD_CAP
        self._holding: dict[int, tuple[Mapping, SubflowState]] = {}  # id(mapping), oldest first
        self._held_bytes = 0
        self._quarantine: list[Failed] = []  # oldest first
        self._quarantined_bytes = 0
        self._unplaced_total = 0  # bytes waiting for a mapping, over all subflow directions
        self.packet = PacketLevels()  # the current segment's 64-bit DSN (analyzer.datalevels, attached by the pipeline)

    def attach_levels(self, packet: PacketLevels, level: object) -> None:
        """The pipeline's data levels: each mapping's 64-bit DSN is read there, never expanded here."""
        self.packet = packet

    def forget(self, sf: Subflow) -> None:
        """The tracker summarised this (half-open) subflow: drop what is kept for it."""
        for key in (sf.key(0), sf.key(1)):
            state = self.states.pop(key, None)
            if state is not None:
                self._unplaced_total -= state.unplaced_bytes

    # ------------------------------------------------------------------ per segment
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        if sf.connection is None and not sf.mptcp_seen:
            return  # plain TCP: nothing at the MPTCP level
        key = sf.key(direction)
        state = self.states.get(key)
        if state is None:
            if seg.flags & TH_SYN and not seg.payload_len and not _has_mapping(seg):
                return  # a bare SYN places nothing: state starts with the next segment (a SYN flood stays cheap)
            state = self.states[key] = SubflowState(
                isn=sf.halves[direction].isn, key=key, index=mapindex.MappingIndex(self.max_mappings)
            )
            conn = sf.connection
            if conn is not None and conn.fallback:
                state.mode = "tcp"
        if not state.shift_done and not seg.flags & TH_SYN:
            self._apply_ssn_shift(sf, direction, state)
        opts = seg.options
        new_mapping: Mapping | None = None
        if opts is not None and opts.mptcp:
            for opt in opts.mptcp:
                if type(opt) is Dss:
                    if opt.dsn is not None:
                        new_mapping = self._on_dss_mapping(opt, seg, sf, direction, state) or new_mapping
                    if opt.data_ack is not None and seg.window == 0:
                        ack64 = self.packet.known_ack(opt)  # expanded once by the data levels
                        if ack64 is not None:
                            self._zero_window(ack64, sf, direction)
                elif type(opt) is MpCapable and opt.data_len is not None and not seg.flags & TH_SYN:
                    new_mapping = self._on_mpc_data(opt, seg, sf, direction, state) or new_mapping
                elif type(opt) is MpFail:
                    self._on_fail(opt, seg, sf, direction)
        if seg.flags & TH_RST:
            self._drop_failed(sf)
        if seg.flags & TH_SYN:
            if seg.payload_len and state.syn_len == 0 and seg.seq == state.isn:
                # TFO data on a SYN is not part of a mapping (H-TFO); where it belongs is decided later
                state.syn_data = bytes(seg.payload[: seg.captured_payload_len])
                state.syn_len, state.syn_frame, state.syn_ts = seg.payload_len, seg.frame, seg.ts
            return
        if seg.payload_len == 0:
            if seg.flags & TH_FIN and state.mode != "mptcp" and state.isn is not None:
                self._tcp_fin(seg, sf, direction, state)
            return
        if (
            state.mode == "mptcp"
            and not state.seen_mapping
            and (_fell_back(sf) or (state.after_fail and sf.kind == "initial"))
        ):
            state.mode = "tcp"
        if state.isn is None:
            if new_mapping is None:
                return  # capture started mid-mapping: these bytes cannot be placed
            state.isn = (seg.seq - new_mapping.ssn) & MASK32
            state.isn_inferred = True
        rel = state.unwrap((seg.seq - state.isn) & MASK32)
        self._place(seg, sf, direction, state, rel)
        if seg.flags & TH_FIN and state.mode != "mptcp":
            self._tcp_fin(seg, sf, direction, state)

    def _apply_ssn_shift(self, sf: Subflow, direction: int, state: SubflowState) -> None:
        """Once the tracker knows where the mappings' subflow numbering starts (analyzer.tfo), follow it."""
        shift = sf.halves[direction].ssn_shift
        if shift is None:
            return  # not decided yet (no payload or mapping after the SYN so far)
        state.shift_done = True
        if shift and state.isn is not None and not state.isn_inferred and state.syn_len == shift:
            state.isn = (state.isn + shift) & MASK32
            state.syn_outside = state.stream is None
            conn = sf.connection
            if conn is not None and conn.sides[sf.sender(direction)].idsn is not None:
                self._stream_for(state, sf, direction, None)  # places the SYN data if it creates the stream
                state.syn_outside = False
        if not state.syn_outside:
            state.syn_data = None  # placed, mapped like any other bytes, or not placeable (H-TFO)

    def _place_syn_data(self, state: SubflowState, sf: Subflow, stream: DataStream) -> None:
        """Linux TFO: the SYN's data are the stream's first bytes, right before IDSN + 1."""
        data = state.syn_data or b""
        stats = state.stats
        stats.mapped_bytes += state.syn_len
        if data:
            stream.add(0, data, state.syn_ts, state.syn_frame, sf.id, False)
        if len(data) < state.syn_len:
            stream.add_missing(len(data), state.syn_len - len(data), state.syn_ts, state.syn_frame, sf.id, False)
        state.syn_data = None
        state.syn_outside = False

    def _tcp_fin(self, seg: Segment, sf: Subflow, direction: int, state: SubflowState) -> None:
        """After a fallback the TCP FIN plays the DATA_FIN's role: it ends the data stream."""
        assert state.isn is not None
        fin_rel = state.unwrap((seg.seq + seg.payload_len - state.isn) & MASK32, advance=False)
        stream = self._stream_for(state, sf, direction, None)
        if state.mode == "tcp":
            stream.set_fin((fin_rel - 1) & MASK64, seg.frame)
        else:  # after an infinite mapping the subflow maps one to one from the mapping's DSN
            stream.set_fin(stream.offset_of((fin_rel + state.infinite_delta) & MASK64), seg.frame)

    def _on_dss_mapping(
        self, opt: Dss, seg: Segment, sf: Subflow, direction: int, state: SubflowState
    ) -> Mapping | None:
        assert opt.dsn is not None and opt.ssn is not None and opt.data_len is not None
        stream = self._stream_for(state, sf, direction, opt.dsn, hint_wide=opt.dsn64)
        if opt.dsn64:
            dsn = opt.dsn
            stream.high_known = True
        else:  # expanded once by the data levels, near the side's highest DSN mapped (else IDSN + 1)
            packet = self.packet
            dsn = packet.dsn64 if packet.dss is opt and packet.dsn64 is not None else opt.dsn
        high_known = stream.high_known or stream.base_known
        if opt.data_len == 0:  # infinite mapping: the rest of the subflow maps one to one
            state.mode = "infinite"
            state.infinite_delta = dsn - state.unwrap(opt.ssn, advance=False)
            self._keep_failed(sf.key(direction), state)  # the sender fell back: the receiver kept them
            return None
        length = opt.data_len - (1 if opt.data_fin else 0)
        if opt.data_fin:
            stream.set_fin(stream.offset_of(dsn + length), seg.frame)
        if length <= 0:  # DATA_FIN-only mapping: its checksum covers the pseudo-header alone
            if opt.checksum is not None:
                mapping = Mapping(dsn, opt.ssn, 0, opt.data_len, True, opt.checksum, seg.frame)
                mapping.high_known = high_known
                ok = ChecksumAccumulator().verify(dsn, opt.ssn, opt.data_len, opt.checksum)
                mapping.csum_state = self._verdict(ok, mapping, sf, state)
            return None
        mapping = Mapping(dsn, opt.ssn, length, opt.data_len, opt.data_fin, opt.checksum, seg.frame)
        mapping.high_known = high_known
        mapping.probe = (
            length == 1 and not opt.data_fin and stream.zero_window_at == (dsn + 1) & MASK64 == (stream.highest_dsn)
        )
        return self._add_mapping(mapping, sf, state, stream)

    def _zero_window(self, ack: int, sf: Subflow, direction: int) -> None:
        """The receiver of ``1 - direction``'s data closed its window at Data ACK ``ack``: remember where, so
        that the sender's zero-window probe (one byte mapped at ``ack - 1``) is known for what it is."""
        peer = self.states.get(sf.key(1 - direction))
        stream = peer.stream if peer is not None else None
        if stream is None:
            conn = sf.connection
            stream = self.conn_streams.get((id(conn), sf.sender(direction) ^ 1)) if conn is not None else None
        if stream is None:
            return
        stream.zero_window_at = ack & MASK64

    def _on_mpc_data(
        self, opt: MpCapable, seg: Segment, sf: Subflow, direction: int, state: SubflowState
    ) -> Mapping | None:
        """MP_CAPABLE with data (v1): implied mapping DSN = IDSN(client) + 1, relative SSN 1."""
        if opt.sender_key is None or opt.data_len is None or opt.data_len == 0:
            return None
        version = opt.version if opt.version in (0, 1) else 1
        dsn = (idsn_from_key(opt.sender_key, version) + 1) & MASK64
        stream = self._stream_for(state, sf, direction, dsn)
        mapping = Mapping(dsn, 1, opt.data_len, opt.data_len, False, opt.checksum, seg.frame)
        return self._add_mapping(mapping, sf, state, stream)

    def _add_mapping(self, mapping: Mapping, sf: Subflow, state: SubflowState, stream: DataStream) -> Mapping:
        state.seen_mapping = True
        stream.note_dsn(mapping.dsn + mapping.length)
        mapping.start = state.unwrap(mapping.ssn, advance=False)
        mapping.end = mapping.start + mapping.length
        kept, evicted = state.index.add(
            mapping, lambda existing: self.conflicting_mappings.append((sf, existing, mapping))
        )
        if kept is not mapping:
            return kept  # identical copy (retransmission, TSO split)
        state.stats.mappings += 1
        if mapping.checksum is not None:
            mapping.acc = ChecksumAccumulator()
            mapping.acc_next = mapping.start
        if evicted is not None:
            self._retire(evicted, state)
        if state.unplaced:
            self._place_waiting(state, sf, state.key & 1, mapping)
        return mapping

    def _stream_for(
        self, state: SubflowState, sf: Subflow, direction: int, dsn_hint: int | None, hint_wide: bool = True
    ) -> DataStream:
        """The data stream this subflow direction feeds (its connection side's, or a not-yet-grouped one).

        A subflow whose connection is not known yet shares another's stream only on evidence: a 64-bit DSN
        inside or just after that stream's mapped range. A 32-bit DSN (v0, or 'm' clear) or no DSN at all
        proves nothing, so such a subflow keeps a stream of its own.
        """
        if state.stream is not None:
            return state.stream
        conn = sf.connection
        side = sf.sender(direction)
        stream: DataStream | None = None
        if conn is not None:
            key = (id(conn), side)
            stream = self.conn_streams.get(key)
            if stream is None:
                idsn = conn.sides[side].idsn
                if idsn is not None:
                    before = state.syn_len if state.syn_outside else 0  # TFO data precede IDSN + 1
                    stream = self._new_stream((idsn + 1 - before) & MASK64, True, conn, side, sf)
                    if before:
                        self._place_syn_data(state, sf, stream)
                elif state.mode == "tcp":
                    stream = self._new_stream(0, True, conn, side, sf)
                if stream is not None:
                    self.conn_streams[key] = stream
        if stream is None:
            hint = dsn_hint if dsn_hint is not None else 0
            shareable = dsn_hint is not None and hint_wide
            if shareable:
                stream = next((s for s in self.loose_streams if _continues(s, hint)), None)
            if stream is None:
                stream = self._new_stream(hint, False, conn, side, sf)
                if shareable:
                    self.loose_streams.append(stream)
        state.stream = stream
        return stream

    def _new_stream(self, base: int, base_known: bool, conn: Connection | None, side: int, sf: Subflow) -> DataStream:
        writer: StreamWriter | None = None
        if self.writer_factory is not None:
            writer = self.writer_factory(conn, side, sf)
        return DataStream(
            base=base, base_known=base_known, buffer_cap=self.buffer_cap, writer=writer, piece_cap=self.piece_cap
        )

    def _place(self, seg: Segment, sf: Subflow, direction: int, state: SubflowState, rel: int) -> None:
        stats = state.stats
        length = seg.payload_len
        captured = seg.captured_payload_len
        payload = seg.payload
        end = rel + length
        retrans_end = 0
        state.prev_seq_end = state.max_seq_end
        # (the first byte after the SYN is relative 1, or 1 + the SYN's TFO data when the numbering kept it)
        if rel > (state.max_seq_end if state.max_seq_end is not None else 1 + state.syn_len) or state.isn_inferred:
            state.seq_gap = True  # the capture lost subflow bytes here (or before its first segment)
        if state.max_seq_end is not None and rel < state.max_seq_end:
            retrans_end = min(state.max_seq_end - rel, length)
            stats.retransmitted_bytes += retrans_end
        if state.max_seq_end is None or end > state.max_seq_end:
            state.max_seq_end = end
        if state.mode != "mptcp":
            self._place_by_seq(seg, sf, direction, state, rel, 0, retrans_end)
            return
        mappings = state.mappings
        if mappings:
            last = mappings[-1]
            if last.start <= rel and end <= last.end and last.acc is None:
                # Fast path: the newest mapping covers the whole segment (one mapping per segment or a
                # mapping spanning several segments, as Linux sends them).
                stream = state.stream or self._stream_for(state, sf, direction, last.dsn)
                offset = (last.dsn + (rel - last.start) - stream.base) & MASK64
                self._add(stream, offset, payload, captured, length, 0, seg.ts, seg.frame, sf.id, stats, retrans_end,
                          last.probe)  # fmt: skip
                return
        if seg.options is not None and seg.options.truncated:
            # H-SNAP: the capture cut this segment's options, so its mapping (which may also cover
            # later segments) cannot be known; from now on uncovered bytes prove nothing.
            state.options_cut = True
            return
        covered = self._map_range(state, sf, direction, rel, length, payload, captured, seg.ts, seg.frame, retrans_end)
        if covered < length and state.after_fail and mappings and end > mappings[-1].end:
            # After MP_FAIL on an ACK the sender falls back: the first bytes it sends past its last mapping,
            # with or without a DSS, continue that mapping by TCP sequence (the infinite mapping may come later).
            top = mappings[-1]
            state.mode = "infinite"
            state.infinite_delta = top.dsn - top.start
            lo = max(rel, top.end)
            self._place_by_seq(seg, sf, direction, state, lo, lo - rel, retrans_end)
            covered = length
        if covered < length and not state.options_cut:
            self._wait_for_mapping(state, Unplaced(rel, bytes(payload[:captured]), length, seg.ts, seg.frame,
                                                   rel + retrans_end, rel > self._seq_before(state, rel)))  # fmt: skip

    def _map_range(
        self, state: SubflowState, sf: Subflow, direction: int, rel: int, length: int, payload: bytes, captured: int,
        ts: float, frame: int, retrans_end: int, uncovered: list[tuple[int, int]] | None = None,
    ) -> int:  # fmt: skip
        """Place the subflow bytes [rel, rel + length) through the mappings that cover them; returns how many
        were covered, and lists the uncovered ranges in ``uncovered`` (relative sequence numbers)."""
        stats = state.stats
        end = rel + length
        covered = 0
        at = rel  # the mappings are sorted by start: everything below ``at`` is decided
        index = bisect_right(state.starts, rel) - 1
        if index > 0:
            index -= 1  # an earlier, longer (overlapping) mapping may cover rel too
        for mapping in state.mappings[max(index, 0) :]:
            if mapping.start >= end:
                break
            lo = rel if rel > mapping.start else mapping.start
            hi = end if end < mapping.end else mapping.end
            if lo >= hi:
                continue
            covered += hi - lo
            if uncovered is not None and lo > at:
                uncovered.append((at, lo))
            at = max(at, hi)
            start = lo - rel
            stream = state.stream or self._stream_for(state, sf, direction, mapping.dsn)
            offset = stream.offset_of(mapping.dsn + (lo - mapping.start))
            piece = payload[start : hi - rel]
            piece_captured = max(0, min(captured, hi - rel) - start)
            if mapping.acc is not None and mapping.csum_state == "pending" and not mapping.released:
                self._hold(mapping, state, Held(lo, stream, offset, piece, piece_captured, hi - lo, start, ts,
                                                frame, sf.id, retrans_end))  # fmt: skip
                self._checksum(mapping, lo, hi, piece, frame, sf, state)
            else:
                self._add(stream, offset, piece, piece_captured, hi - lo, start, ts, frame, sf.id, stats,
                          retrans_end, mapping.probe)  # fmt: skip
                if mapping.acc is not None:
                    self._checksum(mapping, lo, hi, piece, frame, sf, state)
            if covered >= length:
                break
        if uncovered is not None and at < end:
            uncovered.append((at, end))
        return covered

    # ------------------------------------------------------------------ bytes waiting for their mapping
    @staticmethod
    def _seq_before(state: SubflowState, rel: int) -> int:
        """The highest subflow sequence end seen before a segment at ``rel`` (its own end not yet counted)."""
        return state.prev_seq_end if state.prev_seq_end is not None else rel

    def _wait_for_mapping(self, state: SubflowState, piece: Unplaced) -> None:
        """Bytes no mapping covers yet. RFC 6824/8684 let a mapping come after the data (the v0 kernel sends
        some on later segments or retransmissions, and a capture may have lost the segment that carried one):
        they wait, bounded, and are unmapped only if no mapping covered them by the end."""
        state.unplaced.append(piece)
        state.unplaced_bytes += piece.length
        self._unplaced_total += piece.length
        while state.unplaced and (state.unplaced_bytes > MAX_UNPLACED or len(state.unplaced) > MAX_UNPLACED_PIECES
                                  or self._unplaced_total > UNPLACED_CAP):  # fmt: skip
            self._unmapped(state, state.unplaced.pop(0))

    def _unmapped(self, state: SubflowState, piece: Unplaced) -> None:
        """A waiting piece that no mapping ever covered (or that the bound pushed out)."""
        state.unplaced_bytes -= piece.length
        self._unplaced_total -= piece.length
        stats = state.stats
        stats.unmapped_bytes += piece.length
        stats.unmapped_after_gap = stats.unmapped_after_gap or piece.after_gap
        if len(stats.unmapped_frames) < 20:
            stats.unmapped_frames.append(piece.frame)

    def _place_waiting(self, state: SubflowState, sf: Subflow, direction: int, mapping: Mapping) -> None:
        """A new mapping: place the waiting bytes it covers (the rest keep waiting)."""
        if state.mode != "mptcp":
            return
        kept: list[Unplaced] = []
        for piece in state.unplaced:
            end = piece.seq + piece.length
            if end <= mapping.start or piece.seq >= mapping.end:
                kept.append(piece)
                continue
            state.unplaced_bytes -= piece.length
            self._unplaced_total -= piece.length
            gaps: list[tuple[int, int]] = []
            retrans = max(0, min(piece.retrans_end - piece.seq, piece.length))
            self._map_range(state, sf, direction, piece.seq, piece.length, piece.data, len(piece.data), piece.time,
                            piece.frame, retrans, gaps)  # fmt: skip
            for lo, hi in gaps:
                rest = Unplaced(lo, piece.data[lo - piece.seq : hi - piece.seq], hi - lo, piece.time, piece.frame,
                                piece.retrans_end, piece.after_gap)  # fmt: skip
                kept.append(rest)
                state.unplaced_bytes += rest.length
                self._unplaced_total += rest.length
        state.unplaced = kept

    def _place_by_seq(
        self, seg: Segment, sf: Subflow, direction: int, state: SubflowState, rel: int, start: int, retrans_end: int
    ) -> None:
        """After a fallback the stream base is 0 and offset = relative sequence - 1; after an infinite
        mapping the subflow maps one to one from the mapping's DSN. ``start``: where ``rel`` is in the payload."""
        stream = self._stream_for(state, sf, direction, None)
        offset = (rel - 1) & MASK64 if state.mode == "tcp" else stream.offset_of((rel + state.infinite_delta) & MASK64)
        payload = seg.payload[start:] if start else seg.payload
        captured = max(0, seg.captured_payload_len - start)
        self._add(stream, offset, payload, captured, seg.payload_len - start, start, seg.ts, seg.frame, sf.id,
                  state.stats, retrans_end)  # fmt: skip

    def _add(
        self,
        stream: DataStream,
        offset: int,
        data: bytes,
        captured: int,
        length: int,
        start_in_segment: int,
        time: float,
        frame: int,
        subflow: int,
        stats: HalfStats,
        retrans_end: int,
        probe: bool = False,
    ) -> None:
        stats.mapped_bytes += length
        rtx = retrans_end > start_in_segment
        before = stream.reinjected
        if probe:
            stream.add_probe(offset, length)
            return
        if captured:
            stream.add(offset, data[:captured] if captured < len(data) else data, time, frame, subflow, rtx)
        if captured < length:
            stream.add_missing(offset + captured, length - captured, time, frame, subflow, rtx)
        # A reinjection: bytes that repeat an earlier DSN first carried by another subflow (the stream's
        # owner runs decide, so this count and the reinjection matrix agree; a subflow re-sending its own
        # data, by TCP retransmission or at the data level, is not one).
        reinjected = stream.reinjected - before
        if reinjected:
            stats.reinjected_bytes += reinjected
            _note_frame(stats.reinjected_frames, frame)

    def _checksum(
        self, mapping: Mapping, lo: int, hi: int, piece: bytes, frame: int, sf: Subflow, state: SubflowState
    ) -> None:
        if mapping.csum_state != "pending" or mapping.acc is None:
            return
        if len(mapping.frames) < MAX_CHECKSUM_FRAMES and frame not in mapping.frames:
            mapping.frames.append(frame)
        if lo > mapping.acc_next:
            return  # a later piece before the next expected one: wait for the retransmission
        if hi <= mapping.acc_next:
            return  # already summed
        skip = mapping.acc_next - lo
        if len(piece) < hi - lo:  # payload cut by the capture: cannot verify
            mapping.csum_state = "unverifiable"
            state.stats.checksums_unverifiable += 1
            self._decided(mapping, state)
            return
        mapping.acc.update(piece[skip:])
        mapping.acc_next = hi
        if mapping.held and mapping.acc_next < mapping.end and not self._sum_held(mapping, state):
            return  # a held piece cut by the capture: not verifiable (decided there)
        if mapping.acc_next == mapping.end:
            ok = mapping.acc.verify(mapping.dsn, mapping.ssn, mapping.data_len, mapping.checksum or 0)
            mapping.csum_state = self._verdict(ok, mapping, sf, state)
            self._decided(mapping, state)

    def _sum_held(self, mapping: Mapping, state: SubflowState) -> bool:
        """A gap in the mapping was just filled: sum the pieces already held past it (they arrived early).

        Returns False when one of them was cut by the capture (the mapping is then not verifiable)."""
        assert mapping.acc is not None and mapping.held is not None
        advanced = True
        while advanced and mapping.acc_next < mapping.end:
            advanced = False
            for piece in mapping.held:
                end = piece.seq + piece.length
                if piece.seq <= mapping.acc_next < end:
                    if piece.captured < piece.length:
                        mapping.csum_state = "unverifiable"
                        state.stats.checksums_unverifiable += 1
                        self._decided(mapping, state)
                        return False
                    mapping.acc.update(piece.data[mapping.acc_next - piece.seq : piece.length])
                    mapping.acc_next = end
                    advanced = True
        return True

    def _verdict(self, ok: bool, mapping: Mapping, sf: Subflow, state: SubflowState) -> str:
        """Count a finished checksum. A failure proves nothing when the DSN's high half is not known."""
        stats = state.stats
        if ok:
            stats.checksums_ok += 1
            return "ok"
        if not mapping.high_known:
            stats.checksums_unverifiable += 1
            return "unverifiable"
        stats.checksums_bad += 1
        self.bad_checksums.append((sf, state.key & 1, mapping))
        return "bad"

    # ------------------------------------------------------------------ holding checksummed bytes
    def _hold(self, mapping: Mapping, state: SubflowState, held: Held) -> None:
        """Keep a piece of a mapping whose checksum is open; the hold is bounded (see HOLD_CAP)."""
        if mapping.held is None:
            mapping.held = []
            self._holding[id(mapping)] = (mapping, state)
        mapping.held.append(held)
        mapping.held_bytes += held.captured
        self._held_bytes += held.captured
        while self._held_bytes > self.hold_cap and self._holding:
            oldest, owner = next(iter(self._holding.values()))
            oldest.released = True
            self._release(oldest, owner)

    def _release(self, mapping: Mapping, state: SubflowState) -> None:
        """The mapping's held pieces go to the stream, in the order they arrived."""
        held = self._unhold(mapping)
        for piece in held:
            self._add(piece.stream, piece.offset, piece.data, piece.captured, piece.length, piece.start_in_segment,
                      piece.time, piece.frame, piece.subflow, state.stats, piece.retrans_end)  # fmt: skip

    def _unhold(self, mapping: Mapping) -> list[Held]:
        held = mapping.held or []
        mapping.held = None
        self._held_bytes -= mapping.held_bytes
        mapping.held_bytes = 0
        self._holding.pop(id(mapping), None)
        return held

    def _decided(self, mapping: Mapping, state: SubflowState) -> None:
        """The checksum has its verdict: the held bytes enter the stream, or the failed copy is set aside."""
        if mapping.csum_state != "bad":
            if mapping.held is not None:
                self._release(mapping, state)
            return
        stream = state.stream
        if stream is None:
            return
        offset = stream.offset_of(mapping.dsn)
        if mapping.released:
            stream.note_failed(mapping.length, offset)  # its bytes are in the stream already
            return
        stream.note_failed(mapping.length)
        held = self._unhold(mapping)
        copy = bytearray(mapping.length)
        for piece in held:
            at = (piece.offset - offset) & MASK64
            copy[at : at + piece.captured] = piece.data[: piece.captured]
        last = held[-1] if held else None
        failed = Failed(state.key, stream, offset, bytes(copy), last.time if last else 0.0, mapping.frame,
                        last.subflow if last else state.key >> 1)  # fmt: skip
        if state.keep_failed:
            self._admit(failed, state)
            return
        quarantine = self._quarantine
        quarantine.append(failed)
        self._quarantined_bytes += len(failed.data)
        while quarantine and (len(quarantine) > MAX_QUARANTINED or self._quarantined_bytes > QUARANTINE_CAP):
            self._quarantined_bytes -= len(quarantine.pop(0).data)

    def _admit(self, failed: Failed, state: SubflowState) -> None:
        """The receiver kept a failed copy (fallback after MP_FAIL): it is part of the stream after all."""
        state.stats.mapped_bytes += len(failed.data)
        failed.stream.add_failed(failed.offset, failed.data, failed.time, failed.frame, failed.subflow)

    def _take_failed(self, keys: tuple[int, ...]) -> list[Failed]:
        """Remove and return the failed copies waiting for the given subflow directions."""
        taken = [f for f in self._quarantine if f.key in keys]
        if taken:
            self._quarantine = [f for f in self._quarantine if f.key not in keys]
            self._quarantined_bytes -= sum(len(f.data) for f in taken)
        return taken

    def _keep_failed(self, key: int, state: SubflowState) -> None:
        """From now on the receiver keeps what fails on this subflow direction, and kept what failed so far."""
        state.keep_failed = True
        for failed in self._take_failed((key,)):
            self._admit(failed, state)

    def _drop_failed(self, sf: Subflow) -> None:
        """A RST ends the subflow: the receiver discarded the failed copies, a good one goes on another subflow."""
        if self._quarantine:
            self._take_failed((sf.key(0), sf.key(1)))

    def _on_fail(self, opt: MpFail, seg: Segment, sf: Subflow, direction: int) -> None:
        """MP_FAIL from the receiver of ``1 - direction``'s data: remember it, and on an ACK, the fallback."""
        peer_key = sf.key(1 - direction)
        peer = self.states.get(peer_key)
        on_rst = bool(seg.flags & TH_RST)
        if peer is not None and len(peer.fails) < MAX_FAILS_KEPT:
            peer.fails.append((seg.frame, opt.dsn, on_rst))
        if on_rst:
            return
        # MP_FAIL on an ACK: the single subflow falls back to TCP (both hosts), and the receiver keeps the data
        # that failed (Linux delivers it; the sender answers with an infinite mapping, never a second copy).
        own = self.states.get(sf.key(direction))
        if own is not None:
            own.after_fail = True
        if peer is not None:
            peer.after_fail = True
            self._keep_failed(peer_key, peer)

    def _retire(self, mapping: Mapping, state: SubflowState) -> None:
        """A mapping leaves the bounded window; a checksum still waiting for bytes cannot be verified."""
        if mapping.csum_state == "pending" and mapping.acc is not None:
            mapping.csum_state = "unverifiable"
            state.stats.checksums_unverifiable += 1
        if mapping.held is not None:
            self._release(mapping, state)

    # ------------------------------------------------------------------ end of trace
    def results(self, analysis: Analysis) -> Reassembled:
        """End of capture: publish what the streams prove and return what the report shows (analyzer.results)."""
        streams: dict[int, tuple[StreamSummary, StreamSummary]] = {}
        halves: dict[int, HalfDelivery] = {}
        failures: list[ChecksumFailure] = []
        for mapping, owner in list(self._holding.values()):
            self._retire(mapping, owner)  # end of capture: a checksum still open is not verifiable
        finished: set[int] = set()
        for conn in analysis.connections:
            pair: list[StreamSummary] = []
            for side in (0, 1):
                stream = self._stream_of(conn, side)
                if stream is None:
                    pair.append(StreamSummary())
                    continue
                if id(stream) not in finished:
                    stream.finish()
                    finished.add(id(stream))
                idsn = conn.sides[side].idsn
                if not stream.base_known and idsn is not None and stream.base == (idsn + 1) & MASK64:
                    # Mappings arrived before the key did (third ACK not captured), but the stream
                    # did start at IDSN + 1: its start is known after all.
                    stream.base_known = True
                pair.append(_summary(stream))
                self._report_stream(conn, side, stream)
            if conn.id is not None:
                streams[conn.id] = (pair[0], pair[1])
            for sf in conn.subflows:
                for direction in (0, 1):
                    state = self.states.get(sf.key(direction))
                    if state is not None:
                        halves[state.key] = self._report_subflow(conn, sf, direction, state)
        for sf, direction, mapping in self.bad_checksums:
            failures.append(self._report_checksum(sf, direction, mapping))
        for sf, first, second in self.conflicting_mappings:
            overlap = max(first.start, second.start)
            dsn_first = (first.dsn + overlap - first.start) & MASK64
            dsn_second = (second.dsn + overlap - second.start) & MASK64
            frames = tuple(sorted({first.frame, second.frame}))
            self._publish(MappingsConflict(frames, sf, overlap & MASK32, dsn_first, first.frame, dsn_second,
                                           second.frame))  # fmt: skip
        return Reassembled(streams, halves, tuple(failures))

    def _report_checksum(self, sf: Subflow, direction: int, mapping: Mapping) -> ChecksumFailure:
        """CSUM-001. When the receiver's MP_FAIL names the mapping, the receiver saw the same failure and the
        connection recovered as §3.7 prescribes. What remains unknown is the cause: a sender bug or bytes changed
        on the path (the middlebox the checksum exists to catch, no violation at either end). A verdict that
        rests on what the capture cannot show is a warning."""
        conn_id = sf.connection.id if sf.connection else None
        frames = sorted({mapping.frame, *mapping.frames})
        failure = ChecksumFailure(conn_id, sf.id, mapping.dsn, mapping.data_len, tuple(frames))
        state = self.states.get(sf.key(direction))
        answer = _fail_answer(mapping, state.fails if state is not None else [], frames[0])
        fail_frame, on_rst = answer if answer is not None else (None, False)
        if fail_frame is not None:
            frames = sorted({*frames, fail_frame})
        self._publish(ChecksumFailed(tuple(frames), sf, mapping.checksum or 0, mapping.dsn, mapping.ssn,
                                     mapping.data_len, mapping.length, fail_frame, on_rst))  # fmt: skip
        return failure

    def _report_stream(self, conn: Connection, side: int, stream: DataStream) -> None:
        for conflict in stream.conflicts:
            frames = tuple(sorted({f for f in (conflict.first_frame, conflict.frame) if f is not None}))
            self._publish(StreamConflict(frames, None, conn, side, conflict.offset, conflict.subflow))
        if stream.fin_conflict_at is not None:
            other, other_frame = stream.fin_conflict_at
            frames = tuple(sorted({f for f in (stream.fin_frame, other_frame) if f is not None}))
            self._publish(DataFinMoved(frames, None, conn, side, stream.fin_offset or 0, other))

    def _report_subflow(self, conn: Connection, sf: Subflow, direction: int, state: SubflowState) -> HalfDelivery:
        stats = state.stats
        stream = state.stream
        new_bytes = stream.first_carrier.get(sf.id, 0) if stream is not None else 0
        retransmitted, reinjected = stats.retransmitted_bytes, stats.reinjected_bytes
        while state.unplaced:  # end of capture: no mapping came for these
            self._unmapped(state, state.unplaced.pop(0))
        for mapping in state.mappings:  # end of capture: a checksum still waiting for bytes is not verifiable
            self._retire(mapping, state)
        delivery = HalfDelivery(
            new_bytes, retransmitted, reinjected, stats.unmapped_bytes, stats.mappings,
            (stats.checksums_ok, stats.checksums_bad, stats.checksums_unverifiable),
        )  # fmt: skip
        if stats.unmapped_bytes and state.mode == "mptcp" and not conn.fallback:
            frames = tuple(sorted(set(stats.unmapped_frames)))
            ended = sf.end is not None  # the subflow's end is in the capture: no mapping can follow
            self._publish(UnmappedBytes(frames, sf, direction, stats.unmapped_bytes,
                                             stats.unmapped_after_gap or state.seq_gap, ended))  # fmt: skip
        if stats.reinjected_bytes:
            self._publish(Reinjected(tuple(sorted(set(stats.reinjected_frames))), sf, stats.reinjected_bytes))
        return delivery

    def _publish(self, fact: Fact) -> None:
        if self.facts is not None:
            self.facts.append(fact)

    def _stream_of(self, conn: Connection, side: int) -> DataStream | None:
        stream = self.conn_streams.get((id(conn), side))
        if stream is not None:
            return stream
        for sf in conn.subflows:
            state = self.states.get(sf.key(sf.direction_of(side)))
            if state is not None and state.stream is not None:
                return state.stream
        return None


def _has_mapping(seg: Segment) -> bool:
    return seg.options is not None and any(type(opt) is Dss for opt in seg.options.mptcp)


MAX_FRAMES_KEPT = 8
LOOSE_SLACK = 1 << 26  # a 64-bit DSN up to 64 MiB past a stream's highest mapped DSN continues it (data in flight)


def _continues(stream: DataStream, dsn: int) -> bool:
    """Does a 64-bit ``dsn`` fall inside ``stream``'s mapped range or just after it?"""
    top = stream.highest_dsn if stream.highest_dsn is not None else stream.base
    span = (top - stream.base) & MASK64
    return ((dsn - stream.base) & MASK64) <= span + LOOSE_SLACK


def _note_frame(frames: list[int], frame: int) -> None:
    """Keep the first few frames of an effect: a finding names them, memory stays bounded."""
    if len(frames) < MAX_FRAMES_KEPT and (not frames or frames[-1] != frame):
        frames.append(frame)


def _fail_answer(mapping: Mapping, fails: list[tuple[int, int, bool]], after: int) -> tuple[int, bool] | None:
    """(frame, on a RST) of the receiver's MP_FAIL that names ``mapping`` (its start, as Linux sends, or a
    byte inside it), sent after the mapping's first frame; None if there is none."""
    for frame, dsn, on_rst in fails:
        if frame > after and (dsn - mapping.dsn) & MASK64 < max(mapping.data_len, 1):
            return frame, on_rst
    return None


def _fell_back(sf: Subflow) -> bool:
    """Payload on an initial subflow before any DSS/mapping means the connection fell back (§3.7)."""
    conn = sf.connection
    if conn is None:
        return False
    if conn.fallback:
        return True
    return sf.kind == "initial" and sf.syn_seen and not any(h.dss_packets for h in sf.halves)


def _summary(stream: DataStream) -> StreamSummary:
    # unverified_bad_bytes: bytes that failed their checksum entered the stream unchecked (the hold was full)
    contiguous = stream.base_known and stream.hole_count == 0 and stream.unverified_bad_bytes == 0
    return StreamSummary(
        bytes=stream.delivered,
        sha256=stream.sha256 if contiguous else None,
        complete=stream.complete,
        length=stream.next_offset,
        holes=stream.hole_count,
        hole_bytes=stream.hole_bytes,
        data_fin=stream.fin_offset is not None,
        duplicate_bytes=stream.duplicate_bytes,
        out_of_order=stream.out_of_order,
        hol_wait_total=stream.hol_wait_total,
        hol_wait_max=stream.hol_wait_max,
        hol_blocked=stream.hol_blocked,
        conflicts=stream.conflict_count,
        reinjections=dict(stream.reinjections),
        first_carrier=dict(stream.first_carrier),
        progress=dict(stream.progress),
        checksum_failed_bytes=stream.checksum_failed_bytes,
        checksum_kept_bytes=stream.checksum_kept_bytes,
        reinjection_spans=dict(stream.reinjection_spans),
        hole_list=[(off, length, seen) for (off, length), seen in zip(stream.holes, stream.hole_frames, strict=True)],
    )
