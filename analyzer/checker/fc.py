"""FC family: MP_FASTCLOSE, the abrupt close of a whole MPTCP connection (RFC 8684 §3.5).

A host closes the connection at once by sending MP_FASTCLOSE with the *receiver's* key, either on
an ACK of one subflow (then RSTs on the others, and the receiver answers with a RST) or on a RST
on every subflow (the form Linux uses). Afterwards the sender maps no new data and the receiver
sends nothing but RSTs. The tracker checks the key (FC-001); this family checks where the option
appears, what both hosts do after it, and at the end whether the expected RSTs came.

Ordering evidence (H-REORD): on the subflow that carried the MP_FASTCLOSE, later segments of its
sender are recognised by their TCP sequence numbers; other subflows cannot be ordered against it,
so what happens there is at most a warning, and the receiver gets one round trip before its
segments count as sent after it learned of the close.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from analyzer.checker.base import MASK64, Context, Family, first_mapping
from analyzer.checker.observations import LOSS_NOTE, capture_lost_packets, observations, seq_le, side_name
from analyzer.facts import Fact, FastcloseKeyMismatch
from analyzer.findings import Severity, dsn_ref
from analyzer.ingest.segment import TH_ACK, TH_RST, TH_SYN, Segment
from analyzer.model import Analysis, Connection, Subflow
from analyzer.mptcp.options import MpFastclose
from analyzer.rules import Rule
from analyzer.seqnum import serial_lt

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


@dataclass(slots=True)
class FastClose:
    """The first MP_FASTCLOSE of a connection and what followed it."""

    sf: Subflow
    direction: int  # subflow direction of the sender
    sender: int  # connection side of the sender
    frame: int
    time: float
    seq: int  # TCP sequence number of the segment that carried it
    on_rst: bool
    valid: bool  # the key is the receiver's (so the receiver must act on it)
    max_dsn_end: int | None  # highest DSN end the sender had mapped before
    rst_form: int = 0  # subflows that carried MP_FASTCLOSE on a RST
    ack_form: int = 0  # ... on an ACK
    subflows: set[int] = field(default_factory=set)  # id(sf) that carried one
    reported: set[str] = field(default_factory=set)


class FastCloseRules(Family):
    WANTS = frozenset({MpFastclose})
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("FC-001", E, "§3.5", "MP_FASTCLOSE carries the wrong key",
             "MP_FASTCLOSE must carry the key of the host that receives it (the peer's key from the sender's view); "
             "carrying the sender's own key is the typical bug. Not checked when the keys were not captured."),
        Rule("FC-002", W, "§3.5", "MP_FASTCLOSE on an ACK not followed by RSTs",
             "When MP_FASTCLOSE is sent on an ACK, its sender resets every other subflow and the receiver answers "
             "on that subflow with a RST. Reported when a subflow of the connection that was open saw no RST "
             "afterwards although the capture ran on for the grace period. RSTs on uncaptured paths or lost by "
             "the capture cannot be seen, so this is a warning."),
        Rule("FC-003", W, "§3.5", "Host keeps sending after a valid MP_FASTCLOSE",
             "The receiver of an MP_FASTCLOSE with its own key tears the connection down: it answers with RSTs "
             "and sends no more data or ACKs. One round trip is allowed for segments already in flight."),
        Rule("FC-004", E, "§3.5", "New data mapped after MP_FASTCLOSE",
             "After sending MP_FASTCLOSE a host maps no new data (DSNs beyond what it had mapped before). "
             "Retransmitted mappings are fine. On other subflows than the one carrying the MP_FASTCLOSE the order "
             "cannot be proved from the capture, so there it is a warning."),
        Rule("FC-005", INFO, "§3.5", "Fast-close method",
             "How the connection was fast-closed: ACK-based (MP_FASTCLOSE on an ACK, RSTs on the other subflows) "
             "or RST-based (RST with MP_FASTCLOSE on every subflow, the form Linux uses, often with MP_TCPRST). "
             "RFC 6824 (v0) only defines the ACK form."),
        Rule("FC-006", E, "§3.5", "MP_FASTCLOSE on a SYN or with data",
             "MP_FASTCLOSE closes an established connection: it never appears on a SYN or SYN/ACK. Sent with "
             "payload the data is discarded by the receiver along with the connection; the RFC does not forbid "
             "it in so many words, so that case is a warning."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (FastcloseKeyMismatch,)

    def on_fact(self, fact: Fact) -> None:
        if isinstance(fact, FastcloseKeyMismatch):
            which = " (the sender's own key)" if fact.carried == fact.sender_key else ""
            self.ctx.report(
                "FC-001",
                f"MP_FASTCLOSE carries key {fact.carried:016x}{which}; the receiver's key is {fact.receiver_key:016x}",
                list(fact.frames), fact.subflow,
            )  # fmt: skip

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.obs = observations(ctx)
        self._closes: dict[int, FastClose] = {}  # id(conn) -> first MP_FASTCLOSE

    # ------------------------------------------------------------------ per segment
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        """A segment carrying MP_FASTCLOSE (dispatched by option type)."""
        if seg.options is None:
            return
        for opt in seg.options.mptcp:
            if isinstance(opt, MpFastclose):
                self._on_fastclose(seg, sf, direction, sf.connection, opt)
                return

    def _on_fastclose(self, seg: Segment, sf: Subflow, direction: int, conn: Connection | None,
                      opt: MpFastclose) -> None:  # fmt: skip
        ctx = self.ctx
        flags = seg.flags
        if flags & TH_SYN:
            ctx.report("FC-006", f"MP_FASTCLOSE on a {'SYN/ACK' if flags & TH_ACK else 'SYN'}", seg.frame, sf)
            return
        if seg.payload_len:
            ctx.report(
                "FC-006",
                f"MP_FASTCLOSE on a segment with {seg.payload_len} bytes of payload, which the receiver discards "
                "with the connection",
                seg.frame, sf, severity=W,
            )  # fmt: skip
        if conn is None:
            return
        on_rst = bool(flags & TH_RST)
        close = self._closes.get(id(conn))
        if close is None:
            side = sf.sender(direction)
            receiver_key = conn.sides[1 - side].key
            close = self._closes[id(conn)] = FastClose(
                sf, direction, side, seg.frame, seg.ts, seg.seq, on_rst,
                valid=receiver_key is not None and receiver_key == opt.receiver_key,
                max_dsn_end=ctx.level(conn, side).known_end(),
            )  # fmt: skip
            self.obs.watch(conn, lambda s, f, d: self._after_close(s, f, d, close))
        if id(sf) not in close.subflows:
            close.subflows.add(id(sf))
            if on_rst:
                close.rst_form += 1
            else:
                close.ack_form += 1

    # ------------------------------------------------------------------ after the MP_FASTCLOSE
    def _after_close(self, seg: Segment, sf: Subflow, direction: int, close: FastClose) -> None:
        if seg.frame == close.frame or seg.flags & TH_RST:
            return
        side = sf.sender(direction)
        if side == close.sender:
            if "FC-004" not in close.reported:
                self._new_data(seg, sf, direction, close)
        elif close.valid and "FC-003" not in close.reported and seg.ts >= close.time + self.obs.allowance(sf):
            close.reported.add("FC-003")
            what = f"{seg.payload_len} bytes of data" if seg.payload_len else "an ACK"
            self.ctx.report(
                "FC-003",
                f"the {side_name(side)} received a valid MP_FASTCLOSE (frame {close.frame}) but still sends {what} "
                f"on subflow {sf.id} {seg.ts - close.time:.3f} s later instead of resetting",
                [close.frame, seg.frame], sf,
            )  # fmt: skip

    def _new_data(self, seg: Segment, sf: Subflow, direction: int, close: FastClose) -> None:
        opts = seg.options
        if opts is None or close.max_dsn_end is None or sf.connection is None:
            return
        mapping = first_mapping(self.ctx, seg)
        if mapping is None:
            return
        opt, dsn, length = mapping
        end = (dsn + length - (1 if opt.data_fin else 0)) & MASK64
        if not serial_lt(close.max_dsn_end, end):
            return  # a retransmission of data mapped before (H-RTX)
        same = sf is close.sf and direction == close.direction
        if same and not seq_le(close.seq, seg.seq):
            return  # sent before the MP_FASTCLOSE, captured after it
        close.reported.add("FC-004")
        where = "" if same else f" (on subflow {sf.id}, which cannot be ordered against it)"
        self.ctx.report(
            "FC-004",
            f"the {side_name(close.sender)} maps new data (DSN up to {dsn_ref(end, close.sender)}) after its "
            f"MP_FASTCLOSE of frame {close.frame}, beyond the {dsn_ref(close.max_dsn_end, close.sender)} it had "
            f"mapped before{where}",
            [close.frame, seg.frame], sf, assumes=() if same else ("capture-order",),
        )  # fmt: skip

    # ------------------------------------------------------------------ end of capture
    def finish(self, analysis: Analysis) -> None:
        for conn in analysis.connections:
            close = self._closes.get(id(conn))
            if close is None:
                continue
            self._method(conn, close)
            if not close.on_rst:
                self._missing_resets(conn, close, capture_lost_packets(analysis, conn))

    def _method(self, conn: Connection, close: FastClose) -> None:
        who = side_name(close.sender)
        if close.rst_form and not close.ack_form:
            method = f"RST-based: the {who} sent RST + MP_FASTCLOSE on {close.rst_form} subflow(s)"
            if conn.version == 0:
                method += " (RFC 6824, v0, only defines the ACK-based form)"
        elif close.ack_form and not close.rst_form:
            method = f"ACK-based: the {who} sent MP_FASTCLOSE on an ACK of subflow {close.sf.id}"
        else:
            method = f"mixed: the {who} sent MP_FASTCLOSE on {close.ack_form} ACK(s) and {close.rst_form} RST(s)"
        self.ctx.report("FC-005", f"connection fast-closed, {method}", close.frame, close.sf, conn)

    def _missing_resets(self, conn: Connection, close: FastClose, lossy: bool) -> None:
        """FC-002: after MP_FASTCLOSE on an ACK, every subflow still open should see a RST."""
        if not self.ctx.after_grace(close.time):
            return  # H-END
        missing = []
        for sf in conn.subflows:
            if sf.first_frame > close.frame:
                continue
            rsts = [h.rst_frame for h in sf.halves if h.rst_frame is not None]
            if any(frame > close.frame for frame in rsts):
                continue
            if rsts or all(h.fin_frame is not None and h.fin_frame < close.frame for h in sf.halves):
                continue  # already closed before the MP_FASTCLOSE
            missing.append(sf)
        if not missing:
            return
        names = ", ".join(
            f"{sf.id} (the one carrying it)" if sf is close.sf else str(sf.id) for sf in missing
        )  # fmt: skip
        self.ctx.report(
            "FC-002",
            f"after the {side_name(close.sender)}'s MP_FASTCLOSE on an ACK (frame {close.frame}) no RST was seen on "
            f"subflow(s) {names}" + (LOSS_NOTE if lossy else ""),
            close.frame, close.sf, conn, severity=INFO if lossy else None,
        )  # fmt: skip
