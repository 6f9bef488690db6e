"""DSS family: data sequence mappings (RFC 8684 §3.3, §3.3.1), and the sequence-space bookkeeping
that the DACK, CSUM and CLOSE families share.

One pass per segment serves four families. :class:`DssRules` is the only one of them the checker
calls per segment; it keeps a :class:`Flow` per subflow direction (relative TCP sequence numbers,
which subflow bytes mappings cover, capture holes) and a :class:`SideData` per connection side
(64-bit DSNs mapped, DATA_FIN, highest Data ACK sent, the receive window the peer advertised), all
held by a :class:`Bus` shared through the checker's :class:`~analyzer.checker.base.Context`. The
other families subscribe to the bus events they need (a Data ACK changed, a DATA_FIN, a subflow
FIN, a checksum presence that differs from the connection's setting) and decide at ``finish``.

Sequence arithmetic: DSNs are 64-bit serial numbers and every comparison is modulo 2^64 (a stream
may cross 2^64: DSS-015); subflow sequence numbers are unwrapped to 64 bits per subflow direction
near the highest one seen. Monotonic properties are judged per subflow in TCP-sequence order,
never across subflows by capture time (H-REORD).

Hazards: coverage rules (DSS-005, DSS-006, DSS-011) need the subflow's ISN from its SYN (H-MID);
a subflow grouped only at the end of the trace was never followed, so rules that need all of a
host's mappings or Data ACKs skip its connection (:meth:`Bus.followed`). A jump in a subflow's
sequence numbers, or a TCP ACK beyond every byte seen, is a capture loss (H-LOSS): its size is
counted per host, a finding the lost bytes can explain is dropped and any other is lowered to a
warning; options cut by the snaplen hide mappings, so rules that need them all are skipped (H-SNAP).
Identical repeated mappings (TSO copies, retransmissions) are skipped (H-TSO, H-RTX); SYN payload
(TCP Fast Open) is outside every mapping (H-TFO).

The tracker reports DSS-001 (length vs flags); the reassembler reports DSS-002, DSS-003, DSS-004
and DSS-012. They are listed here with their catalogue text and the same severities.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from analyzer.checker.base import GRACE_SECONDS, Context, Family
from analyzer.facts import Fact, MappingsConflict, OptionMalformed, Reinjected, StreamConflict, UnmappedBytes
from analyzer.findings import Severity, dsn_ref
from analyzer.ingest.segment import TH_FIN, TH_SYN, Segment
from analyzer.model import CLIENT, Analysis, Connection, Subflow
from analyzer.mptcp.options import (
    DSS_ACK,
    DSS_ACK64,
    DSS_DATA_FIN,
    DSS_DSN64,
    DSS_MAPPING,
    Dss,
    MpCapable,
    MpFail,
    MpJoinAck,
    Subtype,
)
from analyzer.rules import Rule
from analyzer.seqnum import serial_gt, unwrap32

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
TWO32 = 1 << 32
TWO64 = 1 << 64
HALF32 = 1 << 31
HALF64 = 1 << 63
# A 32-bit DSN or Data ACK this far from its reference cannot be expanded with confidence: no TCP
# receive window exceeds 2^30 bytes (RFC 7323), so a legitimate value is always nearer than that.
AMBIGUOUS_DISTANCE = 1 << 30
MSL_SECONDS = 120.0  # RFC 8684 §3.3.1: 32-bit DSNs must not wrap within the maximum segment lifetime
# H-REORD: captures on several interfaces ("any") interleave packets of different subflows with
# small timestamp disorder; an event that "should have come first" may show up this much later.
REORDER_WINDOW = 0.05
MAX_UNCOVERED = 16  # unmapped byte ranges remembered per subflow direction (DSS-005)
MAX_HOLES = 1024  # unmapped DSN ranges per side before giving up on hole detection (CLOSE-006)
MAX_PENDING = 32
MAX_FRAMES = 8  # frames listed in an aggregated finding
CHECKPOINT_EVERY = 0.1  # seconds between (frame, time) checkpoints of a checksum connection (CSUM-005)

BUS_KEY = "dss.bus"


def side_name(side: int) -> str:
    return "client" if side == CLIENT else "server"


# --------------------------------------------------------------------------------------------- state
class ConnData:
    """Per connection: the checksum setting mappings must follow, and events CSUM-005 looks for."""

    __slots__ = ("checkpoints", "conn", "csum_expect", "csum_negotiated", "fail_frames", "infinite_frame")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.csum_expect: bool | None = None  # checksum present on every mapping (None: not decided yet)
        self.csum_negotiated = False  # decided by the captured MP_CAPABLE SYN and SYN/ACK (else inferred)
        self.infinite_frame: int | None = None  # first infinite mapping on the connection
        self.fail_frames: list[tuple[int, int]] = []  # (frame, sender side) of MP_FAIL options
        self.checkpoints: list[tuple[int, float]] = []  # (frame, time) of checksum connections, CHECKPOINT_EVERY


class SideData:
    """What one host (connection side) did in its own data-sequence space."""

    __slots__ = (
        "acks_sent",
        "base",
        "conn",
        "cut",
        "data_end",
        "edge",
        "edge_partial",
        "fin_ack_frame",
        "fin_ack_sf",
        "fin_ack_time",
        "fin_dsn",
        "fin_frame",
        "fin_sf",
        "fin_time",
        "first_map_frame",
        "first_map_time",
        "gap",
        "holes",
        "holes_lost",
        "infinite_frame",
        "lost",
        "lowest",
        "lowest_frame",
        "max_ack",
        "rate32",
        "ref",
        "side",
        "tfo",
        "watch",
        "win_confirmed",
        "win_count",
        "win_excess",
        "win_pending",
        "wrap_reported",
    )  # fmt: skip

    def __init__(self, conn: Connection, side: int) -> None:
        self.conn = conn
        self.side = side
        idsn = conn.sides[side].idsn
        self.base: int | None = None if idsn is None else (idsn + 1) & MASK64  # DSN of the first data byte
        self.ref: int | None = None  # highest DSN end mapped (exclusive, counts the DATA_FIN unit)
        self.data_end: int | None = None  # highest end of mapped payload (without the DATA_FIN unit)
        self.first_map_frame: int | None = None
        self.first_map_time = 0.0
        self.lowest: int | None = None  # lowest mapped DSN as a signed offset from ``base``
        self.lowest_frame = 0
        self.holes: list[tuple[int, int]] = []  # offsets from ``base`` below ``ref`` never mapped (CLOSE-006)
        self.holes_lost = False  # too fragmented to keep: hole detection is off
        self.fin_dsn: int | None = None
        self.fin_frame = 0
        self.fin_time = 0.0
        self.fin_sf = 0
        self.fin_ack_frame: int | None = None  # first Data ACK from the peer covering the DATA_FIN
        self.fin_ack_time = 0.0
        self.fin_ack_sf = 0
        self.max_ack: int | None = None  # highest Data ACK this side sent (acknowledges the peer's data)
        self.acks_sent = False
        self.edge: int | None = None  # right edge of the receive window the peer advertised for this data
        self.edge_partial = False  # the peer acked on a subflow whose window scale is unknown
        self.win_pending: list[tuple[int, int, int, float]] = []  # (data end, edge, frame, time), DSS-014
        self.win_confirmed: list[int] = []
        self.win_count = 0
        self.win_excess = 0
        self.gap = False  # some subflow of this side lost bytes in the capture (H-LOSS)
        self.lost = 0  # how many subflow bytes of this side the capture is known to have missed
        self.cut = False  # the snaplen cut the options of some segment of this side: mappings unknown (H-SNAP)
        self.tfo = False  # this side sent data on a SYN (H-TFO)
        self.wrap_reported = False
        self.rate32: list[tuple[float, int]] = []  # (time, DSN) checkpoints of 32-bit mappings (DSS-013)
        self.infinite_frame: int | None = None
        self.watch = False  # a family wants to see the peer's Data ACKs of this side's data

    def base_now(self) -> int | None:
        """``base``, filled in once the key is known (keys can arrive after the first segments)."""
        if self.base is None:
            idsn = self.conn.sides[self.side].idsn
            if idsn is not None:
                self.base = (idsn + 1) & MASK64
        return self.base

    def map_range(self, lo: int, hi: int, ref_offset: int | None) -> None:
        """Offsets [lo, hi) were mapped; ``ref_offset`` is the highest mapped offset before this one.

        Only the holes below the highest mapped offset are kept: in-order mappings cost nothing.
        """
        holes = self.holes
        if ref_offset is None:
            if lo > 0:
                holes.append((0, lo))
            return
        if lo > ref_offset:  # a jump forward: the range between was not mapped (yet)
            if len(holes) < MAX_HOLES:
                holes.append((ref_offset, lo))
            else:
                self.holes_lost = True
            return
        if not holes or (lo >= holes[-1][1] and hi <= ref_offset):
            return
        kept = []
        for start, end in holes:  # a retransmission, reinjection or late mapping filling a hole
            if end <= lo or start >= hi:
                kept.append((start, end))
                continue
            if start < lo:
                kept.append((start, lo))
            if end > hi:
                kept.append((hi, end))
        self.holes = kept

    def first_hole(self, upto: int) -> tuple[int, int] | None:
        """The first range of offsets below ``upto`` that no mapping covered, or None."""
        for start, end in self.holes:
            if start < upto:
                return start, min(end, upto)
        return None


class Flow:
    """One direction of one subflow, in relative TCP sequence numbers unwrapped to 64 bits."""

    __slots__ = (
        "ack", "ack_value", "ack_wide", "cd", "conn", "covered", "dack", "dack_last", "dack_seq", "dack_tcp_ack",
        "dack_tsval", "direction", "fin_rel", "gap", "guessed", "isn", "keyed", "map_dsn", "map_end", "map_start",
        "max_end", "peer", "sd", "sf", "shift", "shifted", "side", "track", "uncovered", "win",
    )  # fmt: skip

    def __init__(self, sf: Subflow, direction: int, conn: Connection, bus: Bus, seg: Segment) -> None:
        self.sf = sf
        self.direction = direction
        self.conn = conn
        self.side = sf.sender(direction)
        self.sd = bus.side(conn, self.side)
        self.peer = bus.side(conn, 1 - self.side)
        self.cd = bus.conn(conn)
        isn = sf.halves[direction].isn
        # Coverage rules need the real ISN (H-MID); without it the first segment stands in for it.
        self.track = isn is not None
        self.isn = isn if isn is not None else (seg.seq - 1) & MASK32
        self.gap = isn is None  # bytes before the capture started are unknown
        if isn is None:
            self.sd.gap = True
            self.sd.lost = TWO64  # how much of this side the capture missed is unknown
        self.max_end = 1  # highest relative sequence end seen (the SYN is relative 0)
        self.covered = 1  # highest relative sequence end covered by a mapping
        # (start, end, frame, after a capture gap) payload sent without a mapping
        self.uncovered: list[tuple[int, int, int, bool]] = []
        self.map_start = -1  # the newest mapping, to skip its copies quickly
        self.map_end = -1
        self.map_dsn = 0
        self.fin_rel: int | None = None
        self.ack_value = -1  # the last Data ACK as carried, and its width flag
        self.ack_wide = 0
        self.ack: int | None = None  # the last Data ACK on this flow, 64-bit
        self.win = -1  # the last TCP window with it
        self.dack: object = None  # the DACK family's per-side state, cached here
        self.shift = -2  # window scale of this sender's windows: -2 not decided yet, -1 unknown
        self.dack_last: int | None = None  # DACK-002: last Data ACK on a new segment
        self.dack_seq: int | None = None  # its TCP sequence number, ACK and TSval (to prove a later segment)
        self.dack_tcp_ack: int | None = None
        self.dack_tsval: int | None = None
        self.keyed = False  # DACK-007: the sender has had the chance to learn the peer's key
        self.guessed = sf.client_port if sf.role_guessed else 0  # client port, while the roles are only guessed
        self.shifted = False  # the tracker's TFO ssn_shift has been applied to ``isn`` (analyzer.tfo)

    def lose(self, count: int) -> None:
        """The capture missed ``count`` bytes of this flow (a sequence jump, or a TCP ACK beyond them)."""
        self.gap = self.sd.gap = True
        self.sd.lost += count

    def unwrap(self, rel32: int) -> int:
        """A 32-bit relative sequence number as 64 bits, nearest the highest one seen."""
        return unwrap32(rel32, self.max_end)


AckHook = Callable[[Segment, Flow, int, bool], None]
WatchHook = Callable[[Segment, Flow, int], None]
DataFinHook = Callable[[Segment, Flow, int, int, int], None]
FinHook = Callable[[Segment, Flow], None]
PresenceHook = Callable[[Segment, Flow, bool, bool], None]
InfiniteHook = Callable[[Segment, Flow, Dss], None]
FlagsHook = Callable[[Segment, Flow, Dss], None]


class Bus:
    """State and events shared by the DSS, DACK, CSUM and CLOSE families of one checker."""

    def __init__(self) -> None:
        self.flows: dict[int, Flow] = {}  # Subflow.key(direction)
        # Directions that sent only a bare SYN while grouped: followed from the start, but no Flow is built
        # until they send more (a half-open connection stays cheap).
        self.syn_only: set[int] = set()
        self.sides: dict[int, SideData] = {}  # id(conn) * 2 + side
        self.conns: dict[int, ConnData] = {}  # id(conn)
        self.key_acks: dict[int, tuple[int, int | None, bool]] = {}  # subflow id -> (frame, TSval, carried data)
        self.ack_hooks: list[AckHook] = []  # every change of a flow's Data ACK
        self.watch_hooks: list[WatchHook] = []  # Data ACKs of a side whose ``watch`` is set
        self.data_fin_hooks: list[DataFinHook] = []
        self.fin_hooks: list[FinHook] = []  # subflow FIN on a segment with MPTCP options
        self.presence_hooks: list[PresenceHook] = []  # checksum presence differs from the expected one
        self.infinite_hooks: list[InfiniteHook] = []
        self.flags_hooks: list[FlagsHook] = []  # DSS flags that contradict each other

    def side(self, conn: Connection, side: int) -> SideData:
        key = id(conn) * 2 + side
        data = self.sides.get(key)
        if data is None:
            data = self.sides[key] = SideData(conn, side)
        return data

    def conn(self, conn: Connection) -> ConnData:
        data = self.conns.get(id(conn))
        if data is None:
            data = self.conns[id(conn)] = ConnData(conn)
        return data

    def followed(self, conn: Connection, side: int) -> bool:
        """Whether every subflow on which ``side`` sent segments was followed here from the start.

        A subflow grouped only at the end of the trace (handshake not captured) was never seen by this
        bus, so what it carried (mappings, Data ACKs, windows) is unknown to the rules (H-MID, H-POINT).
        """
        flows = self.flows
        for sf in conn.subflows:
            direction = sf.direction_of(side)
            half = sf.halves[direction]
            if half.mptcp_packets or half.payload_bytes:
                key = sf.key(direction)
                flow = flows.get(key)
                if flow is None and key in self.syn_only:
                    continue
                if flow is None or flow.conn is not conn:
                    return False
        return True

    def flows_of(self, conn: Connection, side: int) -> list[Flow]:
        result = []
        for sf in conn.subflows:
            flow = self.flows.get(sf.key(sf.direction_of(side)))
            if flow is not None and flow.conn is conn:
                result.append(flow)
        return result


def bus_for(ctx: Context) -> Bus:
    """The bus of this checker run, kept in the context's shared state."""
    bus = ctx.shared.get(BUS_KEY)
    if not isinstance(bus, Bus):
        bus = ctx.shared[BUS_KEY] = Bus()
    return bus


# Contradictory DSS flag combinations, indexed by the low five flag bits; the families that own the
# rules (DSS-009/010 here, CLOSE-001 in close) judge them.
FIN_WITHOUT_MAPPING, WIDTH_WITHOUT_FIELD, EMPTY = "DATA_FIN without a mapping", "width flag without field", "empty"


def _odd_flags(flags: int) -> tuple[str, ...]:
    odd = []
    if flags & DSS_DATA_FIN and not flags & DSS_MAPPING:
        odd.append(FIN_WITHOUT_MAPPING)
    if (flags & DSS_ACK64 and not flags & DSS_ACK) or (flags & DSS_DSN64 and not flags & DSS_MAPPING):
        odd.append(WIDTH_WITHOUT_FIELD)
    if not flags & (DSS_ACK | DSS_MAPPING):
        odd.append(EMPTY)
    return tuple(odd)


ODD_FLAGS = tuple(_odd_flags(flags) for flags in range(32))


# --------------------------------------------------------------------------------------------- family
class DssRules(Family):
    # Called for every segment: this family is the only one that wants the DSS carried by nearly every segment,
    # and an unconditional hook is cheaper for the checker than dispatching on the option type.
    WANTS = None
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("DSS-001", E, "§3.3", "DSS length disagrees with its flags",
             "A DSS option's length must equal 4 + Data ACK size (0, 4 or 8) + mapping size (0, or DSN size + 6), "
             "plus 2 for the checksum, which only exists with a mapping. Reported while parsing; an option cut by the "
             "snaplen is not malformed."),
        Rule("DSS-002", E, "§3.3.1", "Conflicting mappings on one subflow",
             "The same subflow bytes are mapped to two different data sequence numbers (or a mapping with the same "
             "start changes its length). Identical repeats (retransmissions, TSO copies) are fine."),
        Rule("DSS-003", E, "§3.3.1, §3.3.6", "Same DSN carried with different bytes",
             "A data-sequence range was sent twice (TCP retransmission or reinjection on another subflow) with "
             "different payload. Only captured bytes are compared."),
        Rule("DSS-004", E, "§3.3.1", "Payload not covered by any mapping",
             "Every payload byte on an MPTCP subflow (before fallback) must be covered by a DSS mapping or the "
             "MP_CAPABLE implied mapping. A mapping may come before or after its bytes on the same subflow, so bytes "
             "are unmapped only if no mapping covered them by the end of the capture. Lowered to a warning when the "
             "capture lost bytes of that subflow (a lost segment may have carried the mapping) or ended before "
             "the subflow did."),
        Rule("DSS-005", W, "§3.3.1", "Mapping sent after the bytes it maps",
             "A mapping first appears after some of the subflow bytes it covers were already sent without any "
             "mapping. RFC 8684 lets a receiver hold unmapped data for a while, but Linux rejects a mapping that does "
             "not cover the next expected byte, so such a sender does not interoperate with Linux. Not reported for v0 "
             "(RFC 6824 receivers hold such data) nor when the capture lost the bytes before them."),
        Rule("DSS-006", W, "§3.3.1", "Mapped bytes never sent",
             "A mapping covers subflow bytes that were never sent before the subflow was reset, and the receiver "
             "never acknowledged that data-level range. Data lost on an uncaptured path cannot be told apart, so "
             "this is only checked when every subflow was captured from its SYN."),
        Rule("DSS-007", E, "§3.1, §3.3.1", "First mapping does not start at IDSN + 1",
             "A host's data starts at its IDSN + 1 (the IDSN is derived from its key). The lowest DSN it maps must be "
             "exactly that. Lowered to a warning when the capture may have missed the first data (capture loss, a "
             "subflow not captured from its SYN)."),
        Rule("DSS-008", E, "§3.3.1, §3.3.3", "Mapping with relative subflow sequence number 0",
             "Relative subflow sequence number 0 is the SYN; it never maps data. Only a DATA_FIN-only mapping "
             "(data-level length 1, DATA_FIN set) uses 0."),
        Rule("DSS-009", W, "§3.3", "DSS width flag without its field",
             "The 'a' flag (8-byte Data ACK) is set without 'A', or 'm' (8-byte DSN) without 'M': the flag describes "
             "a field that is not there."),
        Rule("DSS-010", W, "§3.3", "DSS carries neither a Data ACK nor a mapping",
             "A DSS option with neither A nor M (length 4) carries no information."),
        Rule("DSS-011", E, "§3.3.1", "Mapping does not match the segment's bytes",
             "The payload of the segment carrying a mapping starts before the mapping and no earlier mapping covers "
             "those first bytes, or a mapping reaches beyond the subflow's FIN (bytes that can never be sent). "
             "Lowered to a warning when a capture loss or a retransmission precedes the segment."),
        Rule("DSS-012", INFO, "§3.3.1", "Reinjection",
             "Data already sent on one subflow was sent again on another (legal; reported for insight)."),
        Rule("DSS-013", W, "§3.3", "32-bit sequence value cannot be expanded reliably",
             "A 32-bit DSN or Data ACK lies 2^30 or more from the value it must be expanded near (no receive window "
             "is that large), or 32-bit DSNs are used by a host that moves more than 2^31 bytes within the 2-minute "
             "maximum segment lifetime, where RFC 8684 requires 64-bit DSNs."),
        Rule("DSS-014", W, "§3.3.1, §3.3.4", "Data mapped beyond the receive window",
             "Data was mapped beyond the connection-level window the peer advertised (the largest Data ACK + scaled "
             "TCP window seen on any subflow). A 1-byte window probe is fine. Needs every subflow's handshake for "
             "the window scale."),
        Rule("DSS-015", INFO, "§3.3.1", "Data sequence numbers wrap at 2^64",
             "A mapping crosses 2^64: the IDSN is a hash output and may lie near the top of the space. This is legal; "
             "stream offsets count from IDSN + 1 modulo 2^64."),
        Rule("DSS-016", E, "§3.3.3", "Data mapped at or beyond the DATA_FIN",
             "A host's DATA_FIN occupies the data sequence number after its last data byte. Mapping data at or "
             "beyond it (before or after the DATA_FIN was sent) is a violation. Retransmitting data below it is fine."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (OptionMalformed, MappingsConflict, StreamConflict, UnmappedBytes,
                                               Reinjected)  # fmt: skip

    def on_fact(self, fact: Fact) -> None:
        """The tracker's malformed DSS options; what reassembly proved about mappings and the streams."""
        frames, sf = list(fact.frames), fact.subflow
        if isinstance(fact, OptionMalformed):
            if fact.option.subtype == Subtype.DSS:
                self.ctx.report("DSS-001", fact.describe(), frames, sf)
        elif isinstance(fact, MappingsConflict):
            self.ctx.report(
                "DSS-002",
                f"subflow byte {fact.subflow_byte} (relative) is mapped to DSN {fact.first_dsn} by frame "
                f"{fact.first_frame} and to DSN {fact.second_dsn} by frame {fact.second_frame}",
                frames, sf,
            )  # fmt: skip
        elif isinstance(fact, StreamConflict):
            name = "client → server" if fact.side == 0 else "server → client"
            self.ctx.sink.add(
                "DSS-003",
                f"{name} data at stream offset {fact.offset} was sent again (subflow {fact.subflow_id}) with "
                "different bytes",
                frames, fact.connection.id, fact.subflow_id,
            )  # fmt: skip
        elif isinstance(fact, UnmappedBytes) and sf is not None:
            who = "client" if fact.direction == 0 else "server"
            # Proven only when no mapping can be missing: the capture lost none of the subflow's bytes (a lost
            # segment may have carried the mapping) and it saw the subflow end (a mapping may follow its data).
            assumes = (*(("no-capture-loss",) if fact.after_gap else ()),
                       *(() if fact.ended else ("subflow-end-captured",)))  # fmt: skip
            because = {"no-capture-loss": "the capture lost some of the subflow's bytes, which may have carried "
                                          "the mapping",
                       "subflow-end-captured": "the capture ended before the subflow did, and a mapping may "
                                               "follow the bytes it maps"}  # fmt: skip
            self.ctx.report(
                "DSS-004",
                f"{fact.count} payload bytes sent by the {who} on subflow {sf.id} are covered by no DSS mapping"
                + "".join(f" ({because[a]})" for a in assumes),
                frames, sf, assumes=assumes,
            )  # fmt: skip
        elif isinstance(fact, Reinjected) and sf is not None:
            self.ctx.report(
                "DSS-012",
                f"subflow {sf.id} carried {fact.count} bytes of data already sent on another subflow (reinjection)",
                frames, sf,
            )  # fmt: skip

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.bus = bus_for(ctx)
        self.flows = self.bus.flows
        self.bus.flags_hooks.append(self._odd_flags)

    # ------------------------------------------------------------------ per segment
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        opts = seg.options
        if opts is None:
            return
        if not opts.mptcp or opts.truncated:
            if opts.truncated:  # H-SNAP: options cut by the snaplen may have held a mapping
                self._options_cut(sf, direction)
            if not opts.mptcp:
                return
        flow = self.flows.get(sf.key(direction))
        if flow is None and seg.flags & TH_SYN and not seg.payload_len:
            if sf.connection is not None:
                self.bus.syn_only.add(sf.key(direction))
            return  # a bare SYN: the Flow is built by the next segment (see Bus.syn_only)
        if flow is None or (flow.guessed and flow.guessed != sf.client_port):
            # (A subflow, once grouped, stays in its connection; only a guessed client/server role can flip.)
            if sf.connection is None:
                return  # not grouped yet (capture started mid-connection): nothing to relate it to
            if flow is not None:  # the roles were swapped: start this subflow's bookkeeping afresh
                self.flows.pop(sf.key(1 - direction), None)
            flow = self.flows[sf.key(direction)] = Flow(sf, direction, sf.connection, self.bus, seg)
            self.bus.syn_only.discard(sf.key(direction))
        flags = seg.flags
        if flags & TH_SYN:
            if seg.payload_len:  # TCP Fast Open data: before and outside every mapping (H-TFO)
                flow.sd.tfo = True
                flow.max_end = flow.covered = 1 + seg.payload_len
            return
        if not flow.shifted:
            self._apply_ssn_shift(flow)
        plen = seg.payload_len
        # Relative sequence number, unwrapped to 64 bits near the highest one seen (serial arithmetic).
        top = flow.max_end
        rel = (seg.seq - flow.isn - top) & MASK32
        rel = top + rel if rel < HALF32 else top + rel - TWO32
        for opt in opts.mptcp:
            kind = type(opt)
            if kind is Dss:
                dss: Dss = opt  # type: ignore[assignment]
                dss_flags = dss.flags
                if ODD_FLAGS[dss_flags & 0x1F]:
                    for hook in self.bus.flags_hooks:
                        hook(seg, flow, dss)
                if dss_flags & DSS_MAPPING:
                    self._dss_mapping(seg, flow, dss, rel, plen)
                if dss_flags & DSS_ACK and (
                    dss.data_ack != flow.ack_value or dss_flags & DSS_ACK64 != flow.ack_wide or seg.window != flow.win
                ):
                    self._data_ack(seg, flow, dss, rel, plen)
            elif kind is MpCapable:
                self._mp_capable(seg, flow, opt, rel, plen)  # type: ignore[arg-type]
            elif kind is MpFail:
                flow.cd.fail_frames.append((seg.frame, flow.side))
            elif kind is MpJoinAck and sf.id not in self.bus.key_acks:
                self.bus.key_acks[sf.id] = (seg.frame, _tsval(seg), bool(plen))
        if plen:
            if rel == flow.max_end and rel + plen <= flow.covered and not flags & TH_FIN:
                flow.max_end = rel + plen  # the common case: the next bytes, already mapped
            else:
                self._advance(seg, flow, rel, plen, flags)
        elif flags & TH_FIN:
            self._advance(seg, flow, rel, plen, flags)
        elif rel > flow.max_end:  # a pure ACK beyond every byte seen: the capture lost data (H-LOSS)
            flow.lose(rel - flow.max_end)
            flow.max_end = rel

    @staticmethod
    def _apply_ssn_shift(flow: Flow) -> None:
        """TFO: when the sender numbers its mappings from after the SYN data, so do the relative sequences."""
        shift = flow.sf.halves[flow.direction].ssn_shift
        if shift is None:
            return  # not decided yet (no payload or mapping after the SYN so far)
        flow.shifted = True
        if shift and flow.track and flow.max_end == 1 + shift:
            flow.isn = (flow.isn + shift) & MASK32
            flow.max_end = flow.covered = 1

    def _options_cut(self, sf: Subflow, direction: int) -> None:
        """Mappings the capture cut off count like lost packets (H-SNAP is H-LOSS for the mapping rules)."""
        conn = sf.connection
        if conn is not None:
            side = self.bus.side(conn, sf.sender(direction))
            side.gap = side.cut = True
            flow = self.flows.get(sf.key(direction))
            if flow is not None:
                flow.gap = True

    def _mp_capable(self, seg: Segment, flow: Flow, opt: MpCapable, rel: int, plen: int) -> None:
        if opt.receiver_key is not None and flow.sf.id not in self.bus.key_acks:
            self.bus.key_acks[flow.sf.id] = (seg.frame, _tsval(seg), opt.data_len is not None)
        if not opt.data_len:
            return
        # MP_CAPABLE with data (v1): implied mapping DSN = IDSN + 1, relative subflow sequence 1.
        sd = flow.sd
        base = sd.base_now()
        if base is None:
            return
        cd = flow.cd
        if (opt.checksum is not None) is not cd.csum_expect:
            for presence in self.bus.presence_hooks:
                presence(seg, flow, opt.checksum is not None, True)
        self._map(seg, flow, base, 1, opt.data_len, False, rel, plen)

    def _dss_mapping(self, seg: Segment, flow: Flow, opt: Dss, rel: int, plen: int) -> None:
        dsn: int = opt.dsn  # type: ignore[assignment]
        dll: int = opt.data_len  # type: ignore[assignment]
        ssn: int = opt.ssn  # type: ignore[assignment]
        flags = opt.flags
        if not flags & DSS_DSN64:
            dsn = self._published_dsn(seg, flow, opt)
        expect = flow.cd.csum_expect
        if (opt.checksum is not None) is not expect:
            for presence in self.bus.presence_hooks:
                presence(seg, flow, opt.checksum is not None, False)
        if expect:  # checksum connection: remember when frames were seen (CSUM-005 waits a grace period)
            points = flow.cd.checkpoints
            if not points or seg.ts - points[-1][1] >= CHECKPOINT_EVERY:
                points.append((seg.frame, seg.ts))
        if dll == 0:
            self._infinite(seg, flow, opt)
            return
        sd = flow.sd
        if ssn == 0 or flags & DSS_DATA_FIN or dsn != sd.ref or sd.fin_dsn is not None or dsn + dll > MASK64:
            self._map(seg, flow, dsn, ssn, dll, bool(flags & DSS_DATA_FIN), rel, plen)
            return
        # Fast path: this side's next mapping, right after the previous one, no DATA_FIN involved.
        end = dsn + dll
        sd.ref = sd.data_end = end
        edge = sd.edge
        if edge is not None and 1 < ((end - edge) & MASK64) < HALF64:
            self._window_candidate(sd, end, edge, seg)
        if flow.track and not flow.conn.fallback:
            top = flow.map_end
            if ssn == top & MASK32 and rel >= top and flow.fin_rel is None and not flow.uncovered:
                flow.map_start = top  # and the next bytes of the subflow, too
                flow.map_end = top = top + dll
                flow.map_dsn = dsn
                if top > flow.covered:
                    flow.covered = top
            else:
                self._cover(seg, flow, ssn, dll, dsn, rel, plen)

    def _infinite(self, seg: Segment, flow: Flow, opt: Dss) -> None:
        """Infinite mapping (§3.7): the rest of the subflow maps one to one; mapping rules stop."""
        cd, sd = flow.cd, flow.sd
        if cd.infinite_frame is None:
            cd.infinite_frame = seg.frame
        if sd.infinite_frame is None:
            sd.infinite_frame = seg.frame
        for infinite in self.bus.infinite_hooks:
            infinite(seg, flow, opt)

    def _published_dsn(self, seg: Segment, flow: Flow, opt: Dss) -> int:
        """This 32-bit DSN as 64 bits, as the data levels expanded it, judged for ambiguity (DSS-013).

        The reference is the side's highest DSN mapped, else IDSN + 1 (``DataLevel.reference``); without
        either (H-MID) the first value stands in for itself and nothing can be judged.
        """
        value: int = opt.dsn  # type: ignore[assignment]
        packet = self.ctx.packet
        if packet.dss is not opt or packet.dsn64 is None:
            return value  # a second DSS in one segment (malformed): not expanded
        ref = packet.dsn_ref
        if ref is None:
            return packet.dsn64  # H-MID: the first value seen is its own reference
        sd = flow.sd
        distance = (value - ref) & MASK32
        distance = min(distance, TWO32 - distance)
        if distance >= AMBIGUOUS_DISTANCE:
            self.ctx.report(
                "DSS-013",
                f"the {side_name(flow.side)}'s 32-bit DSN {value} lies {distance} from the expected position "
                f"{ref & MASK32} (low 32 bits of {ref}); its 64-bit value is ambiguous",
                seg.frame, flow.sf,
            )  # fmt: skip
        dsn = packet.dsn64
        # 32-bit DSNs on a fast connection: more than 2^31 bytes within the MSL makes them ambiguous.
        points = sd.rate32
        now = seg.ts
        if not points or now - points[-1][0] >= MSL_SECONDS / 12:
            points.append((now, dsn))
        while len(points) > 1 and now - points[0][0] > MSL_SECONDS:
            del points[0]
        if (
            points
            and not sd.wrap_reported
            and ((dsn - points[0][1]) & MASK64) >= HALF32
            and serial_gt(dsn, points[0][1])
        ):
            sd.wrap_reported = True
            self.ctx.report(
                "DSS-013",
                f"the {side_name(flow.side)} sends 32-bit DSNs although it mapped {(dsn - points[0][1]) & MASK64} "
                f"bytes within {now - points[0][0]:.1f} s; the low 32 bits repeat within the maximum segment "
                "lifetime, so 64-bit DSNs are required",
                seg.frame, flow.sf,
            )  # fmt: skip
        return dsn

    def _map(self, seg: Segment, flow: Flow, dsn: int, ssn: int, dll: int, fin: bool, rel: int, plen: int) -> None:
        """A mapping of ``dll`` data-level units at ``dsn`` (the last one is the DATA_FIN if ``fin``)."""
        sd = flow.sd
        if ssn == 0 and not (fin and (dll == 1 or plen == 0)):
            # (A DATA_FIN without payload and with another length is CLOSE-002.)
            self.ctx.report(
                "DSS-008",
                f"the {side_name(flow.side)}'s mapping DSN {dsn_ref(dsn, flow.side)} (data-level length {dll}"
                f"{', DATA_FIN' if fin else ''}) has relative subflow sequence number 0; relative 0 is the SYN, only "
                "a DATA_FIN-only mapping (length 1, DATA_FIN set) may use it",
                seg.frame, flow.sf,
            )  # fmt: skip
        units = dll - 1 if fin else dll
        end = dsn + dll
        if end > TWO64 and not sd.wrap_reported:
            self._wrap(seg, flow, dsn, dll)
        end &= MASK64
        ref = sd.ref
        if sd.first_map_frame is None:
            sd.first_map_frame = seg.frame
            sd.first_map_time = seg.ts
        base = sd.base if sd.base is not None else sd.base_now()
        if base is not None:
            offset = (dsn - base) & MASK64
            signed = offset - TWO64 if offset >= HALF64 else offset
            if sd.lowest is None or signed < sd.lowest:
                sd.lowest = signed
                sd.lowest_frame = seg.frame
            if signed >= 0:
                ref_offset = None if ref is None else (ref - base) & MASK64
                sd.map_range(offset, offset + dll, ref_offset if ref_offset is None or ref_offset < HALF64 else 0)
        if ref is None or serial_gt(end, ref):
            sd.ref = end
        data_end = (dsn + units) & MASK64
        if fin:
            fin_dsn = (end - 1) & MASK64
            if sd.fin_dsn is None:
                sd.fin_dsn = fin_dsn
                sd.fin_frame, sd.fin_time, sd.fin_sf = seg.frame, seg.ts, flow.sf.id
                if sd.data_end is not None and serial_gt(sd.data_end, fin_dsn):
                    self.ctx.report(
                        "DSS-016",
                        f"the {side_name(flow.side)}'s DATA_FIN is at DSN {dsn_ref(fin_dsn, flow.side)}, but it had "
                        f"already mapped data up to DSN {dsn_ref(sd.data_end - 1, flow.side)}",
                        seg.frame, flow.sf,
                    )  # fmt: skip
            for data_fin in self.bus.data_fin_hooks:
                data_fin(seg, flow, fin_dsn, ssn, dll)
        if not units:
            return
        if not fin and sd.fin_dsn is not None and serial_gt(data_end, sd.fin_dsn):
            self.ctx.report(
                "DSS-016",
                f"the {side_name(flow.side)} maps data DSN {dsn_ref(dsn, flow.side)}–"
                f"{dsn_ref(data_end - 1, flow.side)} after its DATA_FIN at DSN {dsn_ref(sd.fin_dsn, flow.side)} "
                f"(frame {sd.fin_frame}); nothing may follow the DATA_FIN",
                [seg.frame, sd.fin_frame], flow.sf,
            )  # fmt: skip
        if sd.data_end is None or serial_gt(data_end, sd.data_end):
            sd.data_end = data_end
        edge = sd.edge
        if edge is not None and 1 < ((data_end - edge) & MASK64) < HALF64:
            self._window_candidate(sd, data_end, edge, seg)
        if ssn and flow.track and not flow.conn.fallback:
            self._cover(seg, flow, ssn, units, dsn, rel, plen)

    def _wrap(self, seg: Segment, flow: Flow, dsn: int, dll: int) -> None:
        sd = flow.sd
        sd.wrap_reported = True
        self.ctx.report(
            "DSS-015",
            f"the {side_name(flow.side)}'s mapping DSN {dsn_ref(dsn, flow.side)} (data-level length {dll}) crosses "
            "2^64; data sequence "
            "numbers continue from 0 (stream offsets count from IDSN + 1 modulo 2^64)",
            seg.frame, flow.sf,
        )  # fmt: skip

    def _cover(self, seg: Segment, flow: Flow, ssn: int, units: int, dsn: int, rel: int, plen: int) -> None:
        """Subflow-level coverage: DSS-011 (segment starts before its mapping, mapping beyond FIN), DSS-005."""
        start = flow.unwrap(ssn)
        end = start + units
        if start == flow.map_start and end == flow.map_end:
            return  # a copy of the newest mapping (TSO split, retransmission)
        if plen and rel < start:
            lo = max(rel, flow.covered)
            hi = min(start, rel + plen)
            if lo < hi:
                in_order = rel == flow.max_end and not flow.gap
                self.ctx.report(
                    "DSS-011",
                    f"the segment's payload starts at relative subflow sequence {rel & MASK32} but its mapping starts "
                    f"at {ssn}, and no earlier mapping covers bytes {lo & MASK32}–{(hi - 1) & MASK32}"
                    + ("" if in_order else " (a retransmission or capture loss precedes it, so an uncaptured mapping "
                                            "may exist)"),
                    seg.frame, flow.sf, assumes=() if in_order else ("no-capture-loss",),
                )  # fmt: skip
        if flow.uncovered:
            self._late_mapping(seg, flow, start, end, ssn)
        if flow.fin_rel is not None and end > flow.fin_rel:
            self._beyond_fin(seg, flow, start, end)
        if end > flow.covered:
            flow.covered = end
        flow.map_start, flow.map_end, flow.map_dsn = start, end, dsn

    def _late_mapping(self, seg: Segment, flow: Flow, start: int, end: int, ssn: int) -> None:
        kept: list[tuple[int, int, int, bool]] = []
        late: list[tuple[int, int, int]] = []
        for lo, hi, frame, after_gap in flow.uncovered:
            if hi <= start or lo >= end:
                kept.append((lo, hi, frame, after_gap))
                continue
            if not (after_gap and start < lo):
                # (bytes right after a capture gap, mapped by a mapping that also covers the gap: it may well have
                # ridden on the lost segment, the capture proves nothing late)
                late.append((max(lo, start), min(hi, end), frame))
            if lo < start:
                kept.append((lo, start, frame, after_gap))
            if hi > end:
                kept.append((end, hi, frame, False))
        flow.uncovered = kept
        if not late or flow.conn.version == 0:
            # RFC 6824 (v0) receivers hold unmapped data until its mapping arrives (the multipath-tcp.org kernel
            # up to 64 KiB), and that kernel sends some mappings after their data: legal, nothing to say.
            return
        first = late[0][0]
        count = sum(hi - lo for lo, hi, _ in late)
        self.ctx.report(
            "DSS-005",
            f"the mapping at relative subflow sequence {ssn} arrives after {count} of its bytes (from relative "
            f"{first & MASK32}) were sent without a mapping; Linux discards such data",
            [*[frame for _, _, frame in late][:MAX_FRAMES], seg.frame], flow.sf,
        )  # fmt: skip

    def _beyond_fin(self, seg: Segment, flow: Flow, start: int, end: int) -> None:
        fin = flow.fin_rel
        assert fin is not None
        self.ctx.report(
            "DSS-011",
            f"the {side_name(flow.side)}'s mapping covers relative subflow bytes {start & MASK32}–"
            f"{(end - 1) & MASK32}, beyond its subflow FIN at relative {fin & MASK32}: those bytes can never be sent",
            seg.frame, flow.sf,
        )  # fmt: skip

    def _advance(self, seg: Segment, flow: Flow, rel: int, plen: int, flags: int) -> None:
        end = rel + plen
        top = flow.max_end
        if rel > top:
            flow.lose(rel - top)
        if end > top:
            if plen and flow.track:
                lo = max(rel, top, flow.covered)
                if end > lo and not flow.conn.fallback:
                    uncovered = flow.uncovered
                    if uncovered and uncovered[-1][1] == lo:
                        uncovered[-1] = (uncovered[-1][0], end, uncovered[-1][2], uncovered[-1][3])
                    elif len(uncovered) < MAX_UNCOVERED:
                        uncovered.append((lo, end, seg.frame, rel > top))
            flow.max_end = end
        if flags & TH_FIN:
            if flow.fin_rel is None:
                flow.fin_rel = end
                if flow.track and flow.covered > end and flow.map_end > end and not flow.conn.fallback:
                    self._beyond_fin(seg, flow, flow.map_start, flow.map_end)
                for fin_hook in self.bus.fin_hooks:
                    fin_hook(seg, flow)
            if end + 1 > flow.max_end:
                flow.max_end = end + 1

    # ------------------------------------------------------------------ Data ACK and window
    def _data_ack(self, seg: Segment, flow: Flow, opt: Dss, rel: int, plen: int) -> None:
        value: int = opt.data_ack  # type: ignore[assignment]
        ack64 = opt.flags & DSS_ACK64
        if value != flow.ack_value or ack64 != flow.ack_wide:  # (the caller skips a repeat with the same window)
            flow.ack_value, flow.ack_wide = value, ack64
            reverse = self.flows.get(flow.sf.key(1 - flow.direction))
            if reverse is not None and reverse.track:
                beyond = (seg.ack - reverse.isn - reverse.max_end) & MASK32
                if 0 < beyond < HALF32:  # a TCP ACK for bytes the capture never showed (H-LOSS)
                    reverse.lose(beyond)
                    reverse.max_end += beyond
            ack = value if ack64 else self._published_ack(seg, flow, opt)
            flow.ack = ack
            if ack is not None:
                sd = flow.sd
                sd.acks_sent = True
                if sd.max_ack is None or serial_gt(ack, sd.max_ack):
                    sd.max_ack = ack
                bus = self.bus
                if bus.ack_hooks:
                    is_new = rel + plen > flow.max_end if plen else rel >= flow.max_end
                    for hook in bus.ack_hooks:
                        hook(seg, flow, ack, is_new)
                if flow.peer.watch:
                    for watch in bus.watch_hooks:
                        watch(seg, flow, ack)
        flow.win = seg.window
        current_ack = flow.ack
        if current_ack is None:
            return
        shift = flow.shift
        if shift < 0:
            if shift == -2:
                shift = flow.shift = _window_shift(flow)
            if shift < 0:
                flow.peer.edge_partial = True
                return
        peer = flow.peer
        edge = (current_ack + (seg.window << shift)) & MASK64
        current = peer.edge
        if current is None or 0 < ((edge - current) & MASK64) < HALF64:
            peer.edge = edge
            if peer.win_pending:
                self._window_update(peer, edge, seg.ts)

    def _published_ack(self, seg: Segment, flow: Flow, opt: Dss) -> int | None:
        """This 32-bit Data ACK as the data levels expanded it (near the peer's highest DSN mapped), judged."""
        value: int = opt.data_ack  # type: ignore[assignment]
        packet = self.ctx.packet
        ref = packet.ack_ref
        if packet.dss is not opt or ref is None:
            return None
        distance = (value - ref) & MASK32
        distance = min(distance, TWO32 - distance)
        if distance >= AMBIGUOUS_DISTANCE:
            self.ctx.report(
                "DSS-013",
                f"the {side_name(flow.side)}'s 32-bit Data ACK {value} lies {distance} from the peer's highest mapped "
                f"DSN (low 32 bits {ref & MASK32}); its 64-bit value is ambiguous",
                seg.frame, flow.sf,
            )  # fmt: skip
        return packet.ack64

    def _window_candidate(self, sd: SideData, data_end: int, edge: int, seg: Segment) -> None:
        self._window_expire(sd, seg.ts)
        if len(sd.win_pending) < MAX_PENDING:
            sd.win_pending.append((data_end, edge, seg.frame, seg.ts))
        else:
            self._confirm_window(sd, data_end, edge, seg.frame)

    def _window_update(self, sd: SideData, edge: int, now: float) -> None:
        """A larger window arrived: candidates it covers within the reordering allowance were fine."""
        kept = []
        for data_end, old_edge, frame, time in sd.win_pending:
            if now - time > REORDER_WINDOW:
                self._confirm_window(sd, data_end, old_edge, frame)
            elif not 1 < ((data_end - edge) & MASK64) < HALF64:
                continue
            else:
                kept.append((data_end, old_edge, frame, time))
        sd.win_pending = kept

    def _window_expire(self, sd: SideData, now: float) -> None:
        pending = sd.win_pending
        while pending and now - pending[0][3] > REORDER_WINDOW:
            data_end, edge, frame, _ = pending.pop(0)
            self._confirm_window(sd, data_end, edge, frame)

    @staticmethod
    def _confirm_window(sd: SideData, data_end: int, edge: int, frame: int) -> None:
        sd.win_count += 1
        excess = (data_end - edge) & MASK64
        if excess > sd.win_excess:
            sd.win_excess = excess
        if len(sd.win_confirmed) < MAX_FRAMES:
            sd.win_confirmed.append(frame)

    # ------------------------------------------------------------------ flag sanity
    def _odd_flags(self, seg: Segment, flow: Flow, opt: Dss) -> None:
        odd = ODD_FLAGS[opt.flags & 0x1F]
        if WIDTH_WITHOUT_FIELD in odd:
            what = []
            if opt.flags & DSS_ACK64 and not opt.flags & DSS_ACK:
                what.append("'a' (8-byte Data ACK) without 'A'")
            if opt.flags & DSS_DSN64 and not opt.flags & DSS_MAPPING:
                what.append("'m' (8-byte DSN) without 'M'")
            self.ctx.report("DSS-009", f"DSS flags {opt.flags:#04x}: {' and '.join(what)}", seg.frame, flow.sf)
        if EMPTY in odd:
            self.ctx.report(
                "DSS-010", f"DSS flags {opt.flags:#04x}: neither a Data ACK (A) nor a mapping (M)", seg.frame, flow.sf
            )

    # ------------------------------------------------------------------ end of trace
    def finish(self, analysis: Analysis) -> None:
        bus = self.bus
        last_time = analysis.trace.last_time or 0.0
        flows_of: dict[int, list[Flow]] = {}  # one pass over the flows, not one per connection
        for flow in bus.flows.values():
            if flow.conn is not None:
                flows_of.setdefault(id(flow.conn), []).append(flow)
        for conn in analysis.connections:
            for side in (0, 1):
                sd = bus.sides.get(id(conn) * 2 + side)
                if sd is None:
                    continue
                self._first_mapping(conn, sd)
                self._window_report(conn, sd)
            self._unsent_mappings(conn, last_time, flows_of.get(id(conn), []))

    def _first_mapping(self, conn: Connection, sd: SideData) -> None:
        """DSS-007: the lowest DSN a host mapped must be its IDSN + 1."""
        if sd.lowest is None or sd.lowest == 0 or sd.tfo or sd.base is None or not self.ctx.handshake_seen(conn):
            return
        if not self.bus.followed(conn, sd.side):
            return  # data on a subflow grouped only at the end may hold the first mapping
        who = side_name(sd.side)
        if sd.lowest < 0:
            self.ctx.report(
                "DSS-007",
                f"the {who} maps DSN {dsn_ref(sd.base + sd.lowest, sd.side)}, {-sd.lowest} below its IDSN + 1 = "
                f"{dsn_ref(sd.base, sd.side)} "
                "(derived from its key); no data precedes IDSN + 1",
                sd.lowest_frame, conn=conn,
            )  # fmt: skip
            return
        if sd.cut or sd.lowest <= sd.lost:
            return  # the capture lost (or cut the mappings of) at least that much of this host's data
        assumes = self.ctx.unproven(conn, capture_gap=sd.gap, keys=False)  # the keys were checked above
        certain = not assumes
        self.ctx.report(
            "DSS-007",
            f"the {who}'s first mapped DSN is {dsn_ref(sd.base + sd.lowest, sd.side)}, {sd.lowest} above its "
            f"IDSN + 1 = {dsn_ref(sd.base, sd.side)} (derived from its key)"
            + ("" if certain else "; the capture may have missed the first data (capture loss or a subflow not "
                                  "captured from its SYN)"),
            sd.lowest_frame, conn=conn, assumes=assumes,
        )  # fmt: skip

    def _window_report(self, conn: Connection, sd: SideData) -> None:
        """DSS-014, decided at the end so a window update captured slightly late can still cover the data."""
        for data_end, edge, frame, _ in sd.win_pending:
            self._confirm_window(sd, data_end, edge, frame)
        sd.win_pending = []
        peer = self.bus.sides.get(id(conn) * 2 + 1 - sd.side)
        if not sd.win_count or sd.edge_partial or (peer is not None and peer.cut) or not self.ctx.fully_captured(conn):
            return
        if not self.bus.followed(conn, 1 - sd.side):
            return  # window updates on a subflow grouped only at the end were not seen
        self.ctx.report(
            "DSS-014",
            f"the {side_name(sd.side)} mapped data beyond the receive window the {side_name(1 - sd.side)} advertised "
            f"({sd.win_count} time(s), by up to {sd.win_excess} bytes beyond Data ACK + scaled window)",
            sd.win_confirmed, conn=conn,
        )  # fmt: skip

    def _unsent_mappings(self, conn: Connection, last_time: float, flows: list[Flow]) -> None:
        """DSS-006: mapped subflow bytes never sent before the subflow was reset, and never data-acked."""
        if conn.fallback or conn.fastclose_frame is not None or not self.ctx.fully_captured(conn):
            return
        for flow in flows:
            if not flow.track or flow.map_end <= flow.max_end or flow.fin_rel is not None:
                continue
            sf = flow.sf
            if all(half.rst_frame is None for half in sf.halves) or last_time - sf.last_time < GRACE_SECONDS:
                continue  # still open at the end of the capture (H-END), or closed by FIN (DSS-011)
            unsent_from = max(flow.max_end, flow.map_start)
            lo = (flow.map_dsn + unsent_from - flow.map_start) & MASK64
            hi = (flow.map_dsn + flow.map_end - flow.map_start) & MASK64
            acked = flow.peer.max_ack
            if acked is not None and not serial_gt(hi, acked):
                continue  # the receiver got those bytes after all (another subflow, or lost by the capture)
            self.ctx.report(
                "DSS-006",
                f"subflow {sf.id} was reset with relative bytes {unsent_from & MASK32}–{(flow.map_end - 1) & MASK32} "
                f"mapped (DSN {dsn_ref(lo, flow.side)}–{dsn_ref(hi - 1, flow.side)}) but never sent, and the "
                "receiver never acknowledged them",
                [sf.halves[0].rst_frame or sf.halves[1].rst_frame or sf.last_frame], sf,
            )  # fmt: skip


def _window_shift(flow: Flow) -> int:
    """The window scale of this sender's windows, or -1 when the handshake was not captured."""
    sf = flow.sf
    if not (sf.syn_seen and sf.synack_seen):
        return -1
    mine = sf.halves[flow.direction].wscale
    other = sf.halves[1 - flow.direction].wscale
    if mine is None or other is None:
        return 0  # window scaling is only on when both SYNs carry the option
    return min(mine, 14)


def _tsval(seg: Segment) -> int | None:
    opts = seg.options
    if opts is None or opts.timestamp is None:
        return None
    return opts.timestamp[0]


__all__ = ["Bus", "ConnData", "DssRules", "Flow", "SideData", "bus_for", "side_name"]
