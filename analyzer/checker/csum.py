"""CSUM family: the DSS checksum (RFC 8684 §3.3, §3.3.1, §3.7).

The reassembler verifies every checksum over its whole mapping and reports CSUM-001 (only when
every byte of the mapping was captured: a snaplen-cut mapping is "not verifiable", never wrong).
This family checks that the checksum is *present* exactly when the connection uses checksums, and
whether a failure got the reaction RFC 8684 §3.7 demands.

The DSS family's pass compares, per mapping, the presence of the checksum with the connection's
setting and calls :meth:`ChecksumRules.on_presence` only when they differ (or when the setting is
not decided yet), so a well-behaved trace costs nothing here.

Negotiation: checksums are on when either MP_CAPABLE SYN or SYN/ACK sets A. When that handshake was
not captured (H-MID) the first mapping decides and only consistency is checked (CSUM-006).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import ClassVar

from analyzer.checker.base import GRACE_SECONDS, Context, Family
from analyzer.checker.dss import MASK64, Bus, ConnData, Flow, bus_for, side_name
from analyzer.facts import ChecksumFailed, Fact
from analyzer.findings import Severity, dsn_ref
from analyzer.ingest.segment import Segment
from analyzer.model import Analysis, Connection, Subflow
from analyzer.mptcp.options import Dss
from analyzer.rules import Rule
from analyzer.seqnum import serial_gt

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
MAX_FRAMES = 8
NEAR = 1 << 40  # a DSN this close below a side's highest mapped DSN belongs to that side


class _Presence:
    """Mappings of one subflow direction whose checksum presence is wrong."""

    __slots__ = ("count", "flow", "frames", "present")

    def __init__(self, flow: Flow, present: bool) -> None:
        self.flow = flow
        self.present = present
        self.count = 0
        self.frames: list[int] = []


class ChecksumRules(Family):
    WANTS: ClassVar[frozenset[type] | None] = frozenset()  # driven by the DSS family's pass
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("CSUM-001", E, "§3.3.1", "DSS checksum does not verify",
             "The DSS checksum over the pseudo-header (64-bit DSN, relative SSN, data-level length) and the whole "
             "mapping's payload is wrong. Only evaluated when every byte of the mapping was captured and the DSN's "
             "high half is known (a 64-bit DSN, or the IDSN from the handshake); otherwise the mapping is counted as "
             "not verifiable, since some high half always makes the ones'-complement sum fit. A warning when the "
             "receiver's MP_FAIL names the mapping: the failure is confirmed and recovered from (§3.7), but a "
             "middlebox that changed the bytes on the path violates nothing at either end, and the capture cannot "
             "tell it from a sender bug. The failed copy is never part of the rebuilt stream, unless the receiver "
             "kept it by falling back to TCP (MP_FAIL on an ACK)."),
        Rule("CSUM-002", E, "§3.3", "Checksum missing although negotiated",
             "When either MP_CAPABLE SYN or SYN/ACK set A, every DSS with a mapping (and MP_CAPABLE with data) must "
             "carry the 2-byte checksum; the receiver must reset the subflow otherwise."),
        Rule("CSUM-003", E, "§3.3", "Checksum present although not negotiated",
             "When neither MP_CAPABLE SYN nor SYN/ACK set A, mappings must not carry a checksum (DSS length +2, "
             "MP_CAPABLE with data of length 24); the receiver must reset the subflow otherwise."),
        Rule("CSUM-004", W, "§3.3.1, §3.7", "Infinite mapping with a non-zero checksum",
             "An infinite mapping (data-level length 0) covers no bytes; with checksums in use its checksum field is "
             "0 (Linux writes 0; the exact RFC requirement could not be verified, hence a warning)."),
        Rule("CSUM-005", W, "§3.7", "Checksum failure without a reaction",
             "After a mapping whose checksum fails, the receiver must send MP_FAIL (or reset the subflow) and the "
             "sender falls back with an infinite mapping. Here nothing followed within the grace period and the data "
             "beyond the mapping was data-acknowledged normally. A corruption between the capture point and the "
             "receiver (or in the capture itself) is invisible here, so this is a warning."),
        Rule("CSUM-006", E, "§3.3", "Checksum present on some mappings and absent on others",
             "Checksum use is a property of the connection: all mappings carry it or none does. Checked when the "
             "negotiation itself was not captured (otherwise CSUM-002/CSUM-003 report each mapping)."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (ChecksumFailed,)

    def on_fact(self, fact: Fact) -> None:
        """CSUM-001. When the receiver's MP_FAIL names the mapping, the receiver saw the same failure and the
        connection recovered as §3.7 prescribes. What remains unknown is the cause: a sender bug or bytes changed
        on the path (the middlebox the checksum exists to catch, no violation at either end). A verdict that
        rests on what the capture cannot show is a warning."""
        if not isinstance(fact, ChecksumFailed):
            return
        conn = fact.subflow.connection if fact.subflow is not None else None
        sender = _sender(self.bus, conn, fact.dsn) if conn is not None else None
        message = (
            f"DSS checksum {fact.checksum:#06x} of the mapping DSN "
            f"{fact.dsn if sender is None else dsn_ref(fact.dsn, sender)} (relative SSN {fact.ssn}, "
            f"data-level length {fact.data_len}) does not verify over its {fact.length} payload bytes"
        )
        severity: Severity | None = None
        if fact.mp_fail_frame is not None:
            reaction = (
                "reset the subflow (MP_FAIL on its RST), so the failed copy is left out of the rebuilt stream"
                if fact.on_rst else "fell back to TCP (MP_FAIL on an ACK), keeping the failed bytes (Linux delivers "
                "them), so the rebuilt stream holds them too"
            )  # fmt: skip
            message += (
                f"; the receiver answered with MP_FAIL (frame {fact.mp_fail_frame}) and {reaction}. Either the sender "
                "computed the checksum wrong or the bytes were changed on the path (a middlebox): the capture cannot "
                "tell which, and MPTCP detected and recovered from it"
            )
            severity = Severity.WARNING
        self.ctx.report("CSUM-001", message, list(fact.frames), fact.subflow, severity=severity)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.bus = bus_for(ctx)
        self.bus.presence_hooks.append(self.on_presence)
        self.bus.infinite_hooks.append(self.on_infinite)
        self.wrong: dict[int, _Presence] = {}  # Subflow.key(direction)
        self.mixed: dict[int, tuple[ConnData, list[int], list[int]]] = {}  # id(conn) -> (conn, with, without)

    # ------------------------------------------------------------------ per mapping (only on a difference)
    def on_presence(self, seg: Segment, flow: Flow, present: bool, mpc: bool) -> None:
        cd = flow.cd
        if cd.csum_expect is None:
            conn = flow.conn
            initial = conn.initial_subflow
            if initial is not None and initial.mpc_syn and initial.mpc_synack and conn.checksum is not None:
                cd.csum_expect, cd.csum_negotiated = conn.checksum, True
            else:  # H-MID: the first mapping shows the setting; later ones must agree (CSUM-006)
                cd.csum_expect = present
                self.mixed[id(conn)] = (cd, [seg.frame] if present else [], [] if present else [seg.frame])
            if present is cd.csum_expect:
                return
        if not cd.csum_negotiated:
            _, with_csum, without = self.mixed[id(flow.conn)]
            frames = with_csum if present else without
            if len(frames) < MAX_FRAMES:
                frames.append(seg.frame)
            return
        key = flow.sf.key(flow.direction)
        wrong = self.wrong.get(key)
        if wrong is None:
            wrong = self.wrong[key] = _Presence(flow, present)
        wrong.count += 1
        if len(wrong.frames) < MAX_FRAMES:
            wrong.frames.append(seg.frame)

    def on_infinite(self, seg: Segment, flow: Flow, opt: Dss) -> None:
        if opt.checksum and (flow.cd.csum_expect or flow.conn.checksum):
            self.ctx.report(
                "CSUM-004",
                f"the {side_name(flow.side)}'s infinite mapping carries checksum {opt.checksum:#06x}; with nothing "
                "mapped it is expected to be 0",
                seg.frame, flow.sf,
            )  # fmt: skip

    # ------------------------------------------------------------------ end of trace
    def finish(self, analysis: Analysis) -> None:
        for wrong in self.wrong.values():
            flow = wrong.flow
            sf = flow.sf
            rule = "CSUM-003" if wrong.present else "CSUM-002"
            state = "present although checksums were not negotiated" if wrong.present else (
                "missing although checksums were negotiated")  # fmt: skip
            self.ctx.report(
                rule,
                f"{wrong.count} mapping(s) sent by the {side_name(flow.side)} on subflow {sf.id} have the DSS checksum "
                f"{state} (MP_CAPABLE SYN/SYN-ACK A flag)",
                wrong.frames, sf, flow.conn,
            )  # fmt: skip
        for cd, with_csum, without in self.mixed.values():
            if with_csum and without:
                self.ctx.report(
                    "CSUM-006",
                    f"mappings with a checksum (frame {with_csum[0]}) and without one (frame {without[0]}) on the same "
                    "connection (the MP_CAPABLE negotiation was not captured)",
                    sorted(with_csum[:4] + without[:4]), conn=cd.conn,
                )  # fmt: skip
        self._no_reaction(analysis)

    def _no_reaction(self, analysis: Analysis) -> None:
        """CSUM-005: a checksum failure the receiver ignored."""
        last_time = analysis.trace.last_time or 0.0
        for failure in analysis.checksum_failures:  # published by the reassembly stage, never read from a message
            located = _locate(analysis, failure.connection, failure.subflow)
            if located is None or not failure.frames:
                continue
            conn, sf = located
            cd = self.bus.conns.get(id(conn))
            if cd is None:
                continue
            dsn, length = failure.dsn, failure.data_len
            first, last = failure.frames[0], failure.frames[-1]
            sender = _sender(self.bus, conn, dsn)
            if sender is None:
                continue
            receiver = 1 - sender
            if any(frame > first and side == receiver for frame, side in cd.fail_frames):
                continue
            if any(h.rst_frame is not None and h.rst_frame > first for h in sf.halves):
                continue
            if cd.infinite_frame is not None and cd.infinite_frame > first:
                continue
            if last_time - _time_after(cd, last, last_time) < GRACE_SECONDS:
                continue  # the capture ended too soon for the reaction (H-END)
            acks = self.bus.sides.get(id(conn) * 2 + receiver)
            end = (dsn + length) & MASK64
            if acks is None or acks.max_ack is None or not serial_gt(acks.max_ack, end):
                continue  # data beyond the failed mapping was not data-acknowledged
            self.ctx.report(
                "CSUM-005",
                f"the {side_name(receiver)} neither sent MP_FAIL nor reset subflow {sf.id} after the mapping DSN "
                f"{dsn_ref(dsn, sender)} failed its checksum, and data-acknowledged up to "
                f"{dsn_ref(acks.max_ack, sender)}; the corruption may have happened between the capture point and the "
                "receiver",
                list(failure.frames), sf, conn,
            )  # fmt: skip


def _locate(analysis: Analysis, conn_id: int | None, sf_id: int) -> tuple[Connection, Subflow] | None:
    for conn in analysis.connections:
        if conn_id is not None and conn.id != conn_id:
            continue
        for sf in conn.subflows:
            if sf.id == sf_id:
                return conn, sf
    return None


def _sender(bus: Bus, conn: Connection, dsn: int) -> int | None:
    """Connection side whose data-sequence space holds ``dsn`` (IDSNs are random, so the spaces are far apart)."""
    for side in (0, 1):
        sd = bus.sides.get(id(conn) * 2 + side)
        if sd is not None and sd.ref is not None and ((sd.ref - dsn) & MASK64) < NEAR:
            return side
    return None


def _time_after(cd: ConnData, frame: int, default: float) -> float:
    """A time no earlier than ``frame``'s, from the connection's checkpoints."""
    points = cd.checkpoints
    index = bisect_left(points, (frame, -1.0))
    return points[index][1] if index < len(points) else default
