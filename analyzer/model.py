"""The analysis model: trace, connections, subflows, announcements.

Everything the report, the JSON output, the checker and the TUI show comes from these objects.
They hold per-flow summaries only (counters, first/last frames, keys), never per-packet lists,
so memory grows with the number of flows and not with the length of the trace.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field

from analyzer.findings import Finding

CLIENT, SERVER = 0, 1  # direction index: 0 = client → server ("c2s"), 1 = server → client ("s2c")
DIRECTION_NAMES = ("c2s", "s2c")


def format_ip(raw: bytes) -> str:
    return str(ipaddress.ip_address(raw))


def format_endpoint(raw: bytes, port: int) -> str:
    """``ip:port`` for IPv4 and ``[ipv6]:port`` for IPv6, as in URLs."""
    ip = format_ip(raw)
    return f"[{ip}]:{port}" if len(raw) == 16 else f"{ip}:{port}"


class Grouping(enum.Enum):
    """How sure we are that a subflow belongs to its connection."""

    HANDSHAKE = "handshake"  # MP_CAPABLE handshake or MP_JOIN token matched to known keys
    KEYS = "keys"  # keys seen after the handshake (MP_CAPABLE third ACK / with data)
    TOKEN = "token"  # joins sharing a token whose keys were never seen
    DSN = "dsn"  # data-sequence continuity with another subflow
    NONE = "none"  # nothing links it; a connection of its own


@dataclass(slots=True)
class HalfFlow:
    """One direction of a subflow."""

    packets: int = 0
    payload_bytes: int = 0  # from IP lengths (what was on the wire)
    captured_bytes: int = 0  # payload actually present in the capture
    isn: int | None = None
    # TCP Fast Open: payload carried on this direction's SYN, and how far the relative subflow sequence
    # numbers of the mappings are shifted past it (Linux: by the SYN data length; None = not decided yet)
    syn_payload: int = 0
    ssn_shift: int | None = None
    fin_frame: int | None = None
    rst_frame: int | None = None
    mss: int | None = None
    wscale: int | None = None
    address_id: int | None = None
    backup: bool = False
    mptcp_packets: int = 0
    dss_packets: int = 0
    # DSN space seen on this direction (64-bit values only), for late grouping and reports.
    dsn_first: int | None = None
    dsn_last: int | None = None
    data_ack_last: int | None = None
    data_fin_frame: int | None = None
    # The reassembly stage's results (analyzer.results.assemble writes them in).
    new_bytes: int = 0  # bytes that were new at the connection level
    retransmitted_bytes: int = 0  # TCP retransmissions on this subflow
    reinjected_bytes: int = 0  # data already sent on another subflow
    unmapped_bytes: int = 0  # payload covered by no DSS mapping
    mappings: int = 0
    checksums: tuple[int, int, int] = (0, 0, 0)  # verified ok, bad, not verifiable
    # The statistics stage's results (analyzer.results.assemble writes them in).
    rtt: dict[str, object] | None = None  # RTT estimate at the capture point (ms), see analyzer.stats
    throughput: dict[int, int] = field(default_factory=dict)  # 100 ms bucket -> payload bytes sent
    stalls: list[Stall] = field(default_factory=list)  # sent data that waited for an ACK past the minimum RTO
    rtt_series: list[tuple[float, float]] = field(default_factory=list)  # (time, RTT s), thinned, for plots

    def ssn_base(self) -> int | None:
        """The TCP sequence number that relative subflow sequence number 0 of the mappings stands for."""
        if self.isn is None:
            return None
        return (self.isn + (self.ssn_shift or 0)) & 0xFFFFFFFF

    def to_json(self) -> dict[str, object]:
        ok, bad, unverifiable = self.checksums
        return {
            "packets": self.packets,
            "bytes": self.payload_bytes,
            "captured_bytes": self.captured_bytes,
            "new_bytes": self.new_bytes,
            "retransmitted_bytes": self.retransmitted_bytes,
            "reinjected_bytes": self.reinjected_bytes,
            "unmapped_bytes": self.unmapped_bytes,
            "mappings": self.mappings,
            "checksums": {"ok": ok, "bad": bad, "unverifiable": unverifiable},
            "rtt": self.rtt,
            "syn_bytes": self.syn_payload,
            "stalls": [stall.to_json() for stall in self.stalls],
        }


@dataclass(frozen=True, slots=True)
class WindowLimit:
    """How long one side's data was held back by its peer's receive window (``analyzer.rwnd``).

    A period starts at the segment that left less than one segment of room below the right edge the peer
    advertised (Data ACK + scaled window) and ends at the ACK that opened the window again; it counts only
    when the sender then sent more new data (it had data waiting). ``active`` runs from the side's first
    to its last new data segment.
    """

    side: int  # the data sender (CLIENT/SERVER of the connection)
    limited: float  # seconds, summed over the periods
    active: float
    periods: int
    frames: tuple[int, ...]  # (filled, opened) frames of the first periods, in order
    start: float | None = None  # when the first period began

    @property
    def share(self) -> float:
        return self.limited / self.active if self.active > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Stall:
    """A time the data this direction sent went unacknowledged for longer than a retransmission timeout.

    ``end_frame`` is the ACK that moved again; None when none came before the subflow's last packet.
    ``backoffs`` counts retransmissions whose gap to the previous one grew by half or more (RTO back-off).
    """

    start: float
    end: float
    start_frame: int
    end_frame: int | None
    retransmissions: int
    backoffs: int
    frames: tuple[int, ...]  # the first retransmissions

    def to_json(self) -> dict[str, object]:
        return {
            "start": self.start,
            "end": self.end,
            "start_frame": self.start_frame,
            "end_frame": self.end_frame,
            "retransmissions": self.retransmissions,
            "backoffs": self.backoffs,
            "frames": list(self.frames),
        }


@dataclass(slots=True)
class Subflow:
    id: int
    client_ip: bytes
    client_port: int
    server_ip: bytes
    server_port: int
    first_frame: int
    first_time: float
    last_frame: int = 0
    last_time: float = 0.0
    kind: str = "unknown"  # "initial" | "join" | "unknown" (handshake not captured) | "tcp"
    # True when the TCP client of this subflow is the MPTCP connection's server (a join the server opened,
    # or a late-captured subflow whose roles were guessed the other way round).
    reversed: bool = False
    syn_seen: bool = False
    synack_seen: bool = False
    role_guessed: bool = False  # client/server decided from ports because no SYN was seen
    halves: tuple[HalfFlow, HalfFlow] = field(default_factory=lambda: (HalfFlow(), HalfFlow()))
    connection: Connection | None = None
    grouping: Grouping = Grouping.NONE
    mptcp_seen: bool = False
    # MP_CAPABLE handshake (initial subflow)
    mpc_syn: bool = False
    mpc_synack: bool = False
    mpc_ack: bool = False
    # MP_JOIN handshake
    join_token: int | None = None
    join_nonces: list[int | None] = field(default_factory=lambda: [None, None])
    join_synack_hmac: int | None = None
    join_ack_hmac: bytes | None = None
    join_frames: list[int] = field(default_factory=list)
    join_synack_hmac_ok: bool | None = None
    join_ack_hmac_ok: bool | None = None
    # the values the keys and nonces give (set with the verdicts, by the tracker; viewers show them, never recompute)
    join_synack_hmac_expected: int | None = None
    join_ack_hmac_expected: bytes | None = None
    # how it ended
    end: str | None = None  # "fin" | "rst" | "mp_tcprst" | "fastclose"
    end_detail: str | None = None
    reset_reason: int | None = None
    reset_transient: bool | None = None
    fastclose_frame: int | None = None
    evicted: bool = False  # summarised past Limits.max_half_open: counted, not listed

    def sender(self, direction: int) -> int:
        """The connection side (CLIENT/SERVER) that sends in ``direction`` of this subflow (0: from its TCP client)."""
        return direction ^ self.reversed

    def direction_of(self, side: int) -> int:
        """The direction of this subflow (its ``halves`` index) in which connection side ``side`` sends."""
        return side ^ self.reversed

    def key(self, direction: int) -> int:
        """A number naming one direction of this subflow, unique in the run: per-direction tables use it."""
        return self.id * 2 + direction

    @property
    def client(self) -> str:
        return format_endpoint(self.client_ip, self.client_port)

    @property
    def server(self) -> str:
        return format_endpoint(self.server_ip, self.server_port)

    @property
    def packets(self) -> int:
        return self.halves[0].packets + self.halves[1].packets

    @property
    def backup(self) -> bool:
        return self.halves[0].backup or self.halves[1].backup

    def to_json(self) -> dict[str, object]:
        c, s = self.halves
        return {
            "id": self.id,
            "client": self.client,
            "server": self.server,
            "kind": self.kind,
            "backup": self.backup,
            "packets": self.packets,
            "first_frame": self.first_frame,
            "last_frame": self.last_frame,
            "end": self.end,
            "end_detail": self.end_detail,
            "reset_reason": self.reset_reason,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "grouping": self.grouping.value,
            "handshake_captured": self.syn_seen,
            "client_address_id": c.address_id,
            "server_address_id": s.address_id,
            "client_backup": c.backup,
            "server_backup": s.backup,
            "client_isn": c.isn,
            "server_isn": s.isn,
            "join_token": _hex(self.join_token, 8),
            "join_hmac_ok": {"synack": self.join_synack_hmac_ok, "ack": self.join_ack_hmac_ok}
            if self.kind == "join"
            else None,
            "c2s": c.to_json(),
            "s2c": s.to_json(),
        }


@dataclass(slots=True)
class Announcement:
    """An ADD_ADDR or REMOVE_ADDR seen on the connection."""

    frame: int
    time: float
    sender: int  # CLIENT or SERVER
    subflow: int
    kind: str  # "add" | "echo" | "remove"
    address_ids: tuple[int, ...]
    address: str | None = None
    port: int | None = None
    hmac: int | None = None
    hmac_ok: bool | None = None
    hmac_expected: int | None = None  # what the two keys give (set with ``hmac_ok``; not in the JSON)

    def to_json(self) -> dict[str, object]:
        return {
            "frame": self.frame,
            "time": self.time,
            "sender": "client" if self.sender == CLIENT else "server",
            "subflow": self.subflow,
            "kind": self.kind,
            "address_ids": list(self.address_ids),
            "address": self.address,
            "port": self.port,
            "hmac": _hex(self.hmac, 16),
            "hmac_ok": self.hmac_ok,
        }


@dataclass(slots=True)
class Side:
    """One host of an MPTCP connection."""

    key: int | None = None
    key_frame: int | None = None
    token: int | None = None  # derived from the key, or taken from a join SYN when the key is unknown
    idsn: int | None = None
    checksum_flag: bool | None = None

    def to_json(self, address: str) -> dict[str, object]:
        return {
            "address": address,
            "key": _hex(self.key, 16),
            "token": _hex(self.token, 8),
            "idsn": _hex(self.idsn, 16),
        }


@dataclass(slots=True)
class Connection:
    id: int
    version: int | None = None
    fallback: bool = False
    fallback_reason: str | None = None
    # why, as a code the diagnosis reasons on: "synack" (SYN/ACK without an acceptable MP_CAPABLE),
    # "infinite-mapping", "no-dss" (data after the handshake carried no DSS: options stripped on the path)
    fallback_cause: str | None = None
    fallback_frame: int | None = None
    fallback_time: float | None = None
    mp_fails: list[tuple[int, float]] = field(default_factory=list)  # (frame, time) of the first MP_FAILs
    # frame -> (side whose stream the DSN numbers, 64-bit DSN) for events whose text names a DSN: the report
    # shows it relative to that side's IDSN (JSON keeps the text, with the absolute value)
    event_dsns: dict[int, tuple[int, int]] = field(default_factory=dict)
    checksum: bool | None = None
    client_ip: bytes = b""
    server_ip: bytes = b""
    sides: tuple[Side, Side] = field(default_factory=lambda: (Side(), Side()))
    subflows: list[Subflow] = field(default_factory=list)
    announcements: list[Announcement] = field(default_factory=list)
    grouping: Grouping = Grouping.HANDSHAKE
    fastclose_frame: int | None = None
    fastclose_sender: int | None = None
    first_frame: int = 0
    events: list[tuple[int, str]] = field(default_factory=list)  # (frame, text): MP_FAIL, fallback, close
    # side -> {100 ms bucket -> Data ACK sent by that side, as an offset into the peer's stream}
    data_ack_progress: list[dict[int, int]] = field(default_factory=lambda: [{}, {}])
    evicted: bool = False  # its only subflow was summarised past Limits.max_half_open
    # per data side whose window could be judged (window scale seen in the handshake): the receive-window limit
    window_limits: list[WindowLimit] = field(default_factory=list)

    MAX_EVENTS = 200

    def note(self, frame: int, text: str) -> None:
        if len(self.events) < self.MAX_EVENTS:
            self.events.append((frame, text))

    @property
    def client_address(self) -> str:
        return format_ip(self.client_ip) if self.client_ip else ""

    @property
    def server_address(self) -> str:
        return format_ip(self.server_ip) if self.server_ip else ""

    @property
    def initial_subflow(self) -> Subflow | None:
        return next((sf for sf in self.subflows if sf.kind == "initial"), None)


@dataclass(slots=True)
class StreamSummary:
    """Reassembled data of one direction (filled by the reassembly stage when it runs)."""

    bytes: int = 0  # bytes rebuilt from the capture (holes excluded)
    sha256: str | None = None  # of those bytes, when they are the stream's contiguous start
    complete: bool = False  # every byte up to the DATA_FIN (or TCP FIN after fallback) was captured
    length: int = 0  # stream length the sender covered, holes included
    holes: int = 0
    hole_bytes: int = 0
    data_fin: bool = False
    duplicate_bytes: int = 0  # bytes seen again (retransmissions and reinjections)
    out_of_order: int = 0  # pieces that arrived ahead of a gap at the data level
    hol_wait_total: float = 0.0  # seconds data waited for an earlier gap (head-of-line blocking)
    hol_wait_max: float = 0.0
    hol_blocked: float = 0.0  # seconds the head of the stream waited for a gap (waits overlapping counted once)
    conflicts: int = 0  # ranges carried twice with different bytes
    reinjections: dict[tuple[int, int], int] = field(default_factory=dict)  # (from sf, to sf) -> bytes
    first_carrier: dict[int, int] = field(default_factory=dict)  # subflow id -> bytes it carried first
    progress: dict[int, int] = field(default_factory=dict)  # 100 ms bucket -> bytes the stream advanced
    checksum_failed_bytes: int = 0  # bytes of mappings whose DSS checksum failed (each failed copy)
    checksum_kept_bytes: int = 0  # of those, bytes the receiver kept after falling back (they are in the stream)
    # (from sf, to sf) -> (first time, first frame, last time, last frame) of the re-sent bytes
    reinjection_spans: dict[tuple[int, int], tuple[float, int, float, int]] = field(default_factory=dict)
    # (offset, length, (frame, time) of the first data captured after it or None), the first 100
    hole_list: list[tuple[int, int, tuple[int, float] | None]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "bytes": self.bytes,
            "sha256": self.sha256,
            "complete": self.complete,
            "length": self.length,
            "holes": self.holes,
            "hole_bytes": self.hole_bytes,
            "data_fin": self.data_fin,
            "duplicate_bytes": self.duplicate_bytes,
            "out_of_order": self.out_of_order,
            "hol_wait": {
                "total_s": round(self.hol_wait_total, 6),
                "max_s": round(self.hol_wait_max, 6),
                "blocked_s": round(self.hol_blocked, 6),
            },
            "conflicts": self.conflicts,
            "reinjections": [
                {"from_subflow": src, "to_subflow": dst, "bytes": n}
                for (src, dst), n in sorted(self.reinjections.items())
            ],
            "subflow_share": {str(sf): n for sf, n in sorted(self.first_carrier.items())},
            "checksum_failed_bytes": self.checksum_failed_bytes,
            "checksum_kept_bytes": self.checksum_kept_bytes,
        }


@dataclass(slots=True)
class TraceSummary:
    path: str
    file_format: str = "unknown"
    compressed: bool = False
    packets: int = 0
    tcp_packets: int = 0
    mptcp_packets: int = 0
    link_types: list[str] = field(default_factory=list)
    first_time: float | None = None
    last_time: float | None = None
    skipped: dict[str, int] = field(default_factory=dict)
    truncated_packets: int = 0  # packets whose payload the snaplen cut
    errors: list[str] = field(default_factory=list)
    snaplen: int | None = None
    assumed: list[str] = field(default_factory=list)  # assumptions the user vouched for (--assume)


@dataclass(slots=True)
class Analysis:
    trace: TraceSummary
    connections: list[Connection]
    tcp_flows: list[Subflow]
    findings: list[Finding]
    streams: dict[int, tuple[StreamSummary, StreamSummary]] = field(default_factory=dict)
    suppressed_findings: dict[str, int] = field(default_factory=dict)
    checksum_failures: list[ChecksumFailure] = field(default_factory=list)  # the reassembly stage's verdicts
    diagnoses: dict[int, Diagnosis] = field(default_factory=dict)  # connection id -> what happened (diagnosis)


@dataclass(frozen=True, slots=True)
class DiagnosisEvent:
    """One sentence of a connection's timeline; ``t`` is seconds since the trace's first packet."""

    t: float
    frames: tuple[int, ...]
    text: str
    kind: str

    def to_json(self) -> dict[str, object]:
        return {"t": round(self.t, 6), "frames": list(self.frames), "text": self.text, "kind": self.kind}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What happened to a connection, in sentences: a verdict and the timeline behind it."""

    verdict: str
    events: tuple[DiagnosisEvent, ...]

    def to_json(self) -> dict[str, object]:
        return {"verdict": self.verdict, "events": [event.to_json() for event in self.events]}


@dataclass(frozen=True, slots=True)
class ChecksumFailure:
    """A mapping whose DSS checksum did not verify: the fact CSUM-001 reports and CSUM-005 reasons about."""

    connection: int | None
    subflow: int
    dsn: int  # 64-bit
    data_len: int  # data-level length
    frames: tuple[int, ...]


def data_fin_frame(conn: Connection, side: int) -> int | None:
    """First frame on which ``side`` (CLIENT/SERVER of the connection) sent a DATA_FIN."""
    frames = [frame for sf in conn.subflows if (frame := sf.halves[sf.direction_of(side)].data_fin_frame) is not None]
    return min(frames) if frames else None


def subflow_established(sf: Subflow) -> bool:
    """Did the subflow's handshake complete (or was it captured already running)?

    A join completes only when its SYN/ACK carried MP_JOIN, the initiator sent its third ACK with the HMAC,
    no HMAC failed, and data-level traffic followed that was not cut short by a reset (RFC 8684 §3.2: the
    responder confirms the join with its first ACK). A join refused with a (MP_TCP)RST does not count.
    """
    c, s = sf.halves
    if not sf.syn_seen:
        return c.packets > 0 and s.packets > 0  # captured after the handshake: it was running
    if not sf.synack_seen:
        return False
    if sf.kind != "join":
        return True
    if sf.join_synack_hmac is None or sf.join_ack_hmac is None:
        return False
    if sf.join_synack_hmac_ok is False or sf.join_ack_hmac_ok is False:
        return False
    if s.dss_packets or s.payload_bytes:
        return True  # the responder went on: it accepted the join
    return bool(c.dss_packets or c.payload_bytes) and sf.end not in ("rst", "mp_tcprst")


def _hex(value: int | None, width: int) -> str | None:
    return None if value is None else f"{value:0{width}x}"
