"""FAIL family: MP_FAIL, the signal that data-level integrity was lost on a subflow (RFC 8684 §3.7).

A receiver that finds a DSS checksum failure sends MP_FAIL with the 64-bit DSN of the failed
mapping's start. With several subflows it resets the failing subflow (RST carrying MP_FAIL); with
only one it sends MP_FAIL on an ACK and the peer answers with an infinite mapping, after which
both hosts continue as plain TCP. The family checks the MP_FAIL itself when it is seen, follows the
peer's reaction (infinite mapping, RST, or ordinary mappings going on) while the capture runs,
and decides at the end what never happened.

The tracker reports a malformed MP_FAIL (FAIL-001); the subflow facts (recent mappings, handshake
round trip) come from :class:`analyzer.checker.fallback.Observations`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from analyzer.checker.base import MASK64, Context, Family
from analyzer.checker.observations import (
    LOSS_NOTE,
    FallbackPoint,
    capture_lost_packets,
    live_subflows,
    observations,
    side_name,
)
from analyzer.facts import Fact, OptionMalformed
from analyzer.findings import Severity, dsn_ref
from analyzer.ingest.segment import TH_RST, Segment
from analyzer.model import Analysis, Connection, Subflow
from analyzer.mptcp.options import Dss, MpFail, Subtype
from analyzer.rules import Rule
from analyzer.seqnum import serial_lt

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

# Linux gives the peer TCP_RTO_MAX (120 s) to complete the fallback before it resets the subflow; a
# silent peer is only judged when the capture lasted that long after the MP_FAIL (H-END).
FAIL_TIMEOUT = 120.0


@dataclass(slots=True)
class FailRecord:
    """An MP_FAIL sent on an ACK of a single-subflow connection, waiting for the peer's answer."""

    sf: Subflow
    direction: int  # subflow direction of the MP_FAIL sender
    frame: int
    time: float
    answered: int | None = None  # frame of the peer's infinite mapping or RST
    mapped_on: int | None = None  # frame of a normal mapping the peer sent after it had the MP_FAIL


class MpFailRules(Family):
    WANTS = frozenset({MpFail})
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("FAIL-001", E, "§3.7", "MP_FAIL length is not 12",
             "MP_FAIL carries a 64-bit DSN and is always 12 bytes. This keeps its own id although OPT-002 covers "
             "lengths in general. Options cut by the snaplen are not reported."),
        Rule("FAIL-002", W, "§3.7", "MP_FAIL on a connection without checksums",
             "MP_FAIL reports a loss of data-level integrity, which a receiver normally detects with the DSS "
             "checksum; this connection negotiated no checksums. The RFC does not list every trigger, so this is "
             "suspicious rather than wrong."),
        Rule("FAIL-003", W, "§3.7", "MP_FAIL DSN is not the start of a peer mapping",
             "The MP_FAIL DSN should be the (64-bit) start of the mapping that failed, one the peer sent on that "
             "subflow (Linux sends the mapping start). Mappings older than the ones kept, or lost by the capture, "
             "cannot be checked."),
        Rule("FAIL-004", W, "§3.7", "MP_FAIL on an ACK while several subflows are established",
             "With more than one subflow the failing subflow is reset: MP_FAIL rides on the RST. MP_FAIL on an "
             "ordinary segment asks for a fallback, which is only possible with a single subflow."),
        Rule("FAIL-005", W, "§3.7", "MP_FAIL not answered by an infinite mapping or a RST",
             "After MP_FAIL on an ACK of a single-subflow connection the peer must fall back with an infinite "
             "mapping (or reset the subflow). Reported when the peer went on sending ordinary mappings after it "
             "had the MP_FAIL (one round trip allowed), or when the capture ran on for the 120 s Linux waits "
             "without any answer."),
        Rule("FAIL-006", E, "§3.7", "Data mappings continue after the MP_FAIL / infinite-mapping exchange",
             "Once MP_FAIL was answered by an infinite mapping the subflow is plain TCP in both directions; "
             "ordinary DSS mappings (data-level length > 0) must not follow. Segments in flight are not "
             "reported: the host that sent the infinite mapping is judged by its sequence numbers, the other by "
             "its acknowledgment of it (or one round trip)."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (OptionMalformed,)

    def on_fact(self, fact: Fact) -> None:
        if isinstance(fact, OptionMalformed) and fact.option.subtype == Subtype.MP_FAIL:
            self.ctx.report("FAIL-001", fact.describe(), list(fact.frames), fact.subflow)

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.obs = observations(ctx)
        self._failed: dict[int, list[FailRecord]] = {}  # id(conn) -> MP_FAILs on an ACK, single subflow
        self._fail_seen: set[int] = set()  # id(conn) with any MP_FAIL
        self._exchanges: dict[int, list[FallbackPoint]] = {}  # id(conn) -> after the answering infinite mapping
        self._seen: set[tuple[int, int, int, bool]] = set()  # (id(conn), side, dsn, on RST) already judged
        self._no_checksum: set[int] = set()  # id(conn) reported for FAIL-002

    # ------------------------------------------------------------------ per segment
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        """A segment carrying MP_FAIL (dispatched by option type)."""
        conn = sf.connection
        if conn is None or seg.options is None:
            return
        for opt in seg.options.mptcp:
            if isinstance(opt, MpFail):
                self._on_fail(seg, sf, direction, conn, opt)

    def _follow(self, conn: Connection) -> Callable[[Segment, Subflow, int], None]:
        """Watcher for every segment of ``conn`` after its first MP_FAIL: the answer, then the exchange."""

        def watcher(seg: Segment, sf: Subflow, direction: int) -> None:
            dss: Dss | None = None
            opts = seg.options
            if opts is not None:
                for opt in opts.mptcp:
                    if type(opt) is Dss:
                        dss = opt
                        break
            waiting = self._failed.get(id(conn))
            if waiting:
                self._follow_answer(seg, sf, direction, waiting, dss)
            if dss is not None and dss.data_len is not None:
                if dss.data_len == 0:
                    self._on_infinite(seg, sf, direction, conn)
                elif id(conn) in self._exchanges and not seg.flags & TH_RST:
                    self._after_exchange(seg, sf, direction, self._exchanges[id(conn)])

        return watcher

    # ------------------------------------------------------------------ the MP_FAIL itself
    def _on_fail(self, seg: Segment, sf: Subflow, direction: int, conn: Connection, opt: MpFail) -> None:
        ctx = self.ctx
        side = sf.sender(direction)
        on_rst = bool(seg.flags & TH_RST)
        if id(conn) not in self._fail_seen:
            self._fail_seen.add(id(conn))
            self.obs.watch(conn, self._follow(conn))
        marker = (id(conn), side, opt.dsn, on_rst)
        if marker in self._seen:
            return  # the same MP_FAIL again
        self._seen.add(marker)
        who = side_name(side)
        if conn.checksum is False and id(conn) not in self._no_checksum:
            self._no_checksum.add(id(conn))
            ctx.report(
                "FAIL-002",
                f"the {who} sent MP_FAIL (DSN {dsn_ref(opt.dsn, 1 - side)}) on a connection that negotiated no DSS "
                "checksums, the usual way of detecting the failure it reports",
                seg.frame, sf,
            )  # fmt: skip
        self._check_dsn(seg, sf, direction, opt)
        if on_rst:
            return
        live = live_subflows(conn)
        if len(live) > 1:
            ctx.report(
                "FAIL-004",
                f"the {who} sent MP_FAIL on an ordinary segment of subflow {sf.id} while {len(live)} subflows were "
                "established; with several subflows the failing one is reset (RST carrying MP_FAIL)",
                seg.frame, sf,
            )  # fmt: skip
            return
        self._failed.setdefault(id(conn), []).append(FailRecord(sf, direction, seg.frame, seg.ts))

    def _check_dsn(self, seg: Segment, sf: Subflow, direction: int, opt: MpFail) -> None:
        log = self.obs.peek(sf, 1 - direction)
        if log is None or not log.recent:
            return  # H-MID / H-LOSS: no mapping of the peer is known on this subflow
        dsn = opt.dsn
        inside = None
        oldest = None
        for mapping, start in log.recent:
            if start is None or mapping.data_len is None:
                continue
            if start == dsn:
                return
            if oldest is None:
                oldest = start
            if serial_lt(start, dsn) and (dsn - start) & MASK64 < mapping.data_len:
                inside = start
        if oldest is None:
            return
        if inside is None and len(log.recent) == log.recent.maxlen and serial_lt(dsn, oldest):
            return  # older than the mappings kept: cannot be judged
        sender = 1 - (sf.sender(direction))  # whose data the MP_FAIL names
        where = (
            f"inside the mapping that starts at DSN {dsn_ref(inside, sender)}" if inside is not None
            else f"not in any of the {len(log.recent)} mappings the peer sent on subflow {sf.id}"
        )  # fmt: skip
        self.ctx.report(
            "FAIL-003",
            f"MP_FAIL names DSN {dsn_ref(dsn, sender)}, {where}; it should name the start of the failed mapping",
            seg.frame, sf,
        )  # fmt: skip

    # ------------------------------------------------------------------ the peer's answer
    def _follow_answer(self, seg: Segment, sf: Subflow, direction: int, waiting: list[FailRecord],
                       dss: Dss | None) -> None:  # fmt: skip
        for record in waiting:
            if record.answered is not None or record.sf is not sf or direction == record.direction:
                continue
            if seg.flags & TH_RST or (dss is not None and dss.data_len == 0):
                record.answered = seg.frame
            elif (
                record.mapped_on is None and dss is not None and dss.data_len
                and seg.ts >= record.time + self.obs.allowance(sf)
            ):  # fmt: skip
                record.mapped_on = seg.frame

    def _on_infinite(self, seg: Segment, sf: Subflow, direction: int, conn: Connection) -> None:
        if id(conn) in self._exchanges:
            return
        end = (seg.seq + seg.payload_len) & 0xFFFFFFFF
        who = side_name(sf.sender(direction))
        reason = f"after MP_FAIL the {who} answered with an infinite mapping (frame {seg.frame})"
        receiver = FallbackPoint(sf, 1 - direction, "infinite", seg.frame, reason, "FAIL-006")
        if seg.payload_len:
            receiver.ack_from = end
        else:
            receiver.time_from = seg.ts + self.obs.allowance(sf)
        sender = FallbackPoint(sf, direction, "infinite", seg.frame, reason, "FAIL-006", seq_from=seg.seq)
        self._exchanges[id(conn)] = [sender, receiver]

    def _after_exchange(self, seg: Segment, sf: Subflow, direction: int, points: list[FallbackPoint]) -> None:
        for point in points:
            if point.reported or point.sf is not sf or point.direction != direction or not point.covers(seg):
                continue
            for each in points:
                each.reported = True  # one finding per connection
            self.ctx.report(
                "FAIL-006",
                f"{point.reason}, yet the {side_name(sf.sender(direction))} still sends an ordinary DSS mapping "
                f"on subflow {sf.id}",
                [point.frame, seg.frame], sf,
            )  # fmt: skip
            return

    # ------------------------------------------------------------------ end of capture
    def finish(self, analysis: Analysis) -> None:
        end = self.ctx.last_time
        for records in self._failed.values():
            for record in records:
                if record.answered is not None:
                    continue
                peer = side_name(record.sf.sender(1 - record.direction))
                if record.mapped_on is not None:
                    message = (
                        f"the {peer} answered the MP_FAIL of frame {record.frame} neither with an infinite mapping "
                        f"nor with a RST, and kept sending ordinary mappings (frame {record.mapped_on})"
                    )
                    frames = [record.frame, record.mapped_on]
                elif end - record.time >= FAIL_TIMEOUT:
                    message = (
                        f"the {peer} never answered the MP_FAIL of frame {record.frame} with an infinite mapping or "
                        f"a RST in the {end - record.time:.0f} s the capture ran on"
                    )
                    frames = [record.frame]
                else:
                    continue  # H-END: the answer may simply come after the capture
                conn = record.sf.connection
                if conn is not None and capture_lost_packets(analysis, conn):
                    self.ctx.report("FAIL-005", message + LOSS_NOTE, frames, record.sf, severity=INFO)
                else:
                    self.ctx.report("FAIL-005", message, frames, record.sf)
