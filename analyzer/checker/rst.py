"""RST family: MP_TCPRST (RFC 8684 §3.6)."""

from __future__ import annotations

from typing import ClassVar

from analyzer.checker.base import Context, Family
from analyzer.findings import Severity
from analyzer.ingest.segment import TH_RST, Segment
from analyzer.model import Analysis, Subflow
from analyzer.mptcp.options import REASON_NAMES, MpTcpRst
from analyzer.rules import Rule

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO
MPTCPRST_RESERVED_FLAGS = 0x0E  # U, V, W


class TcpRstRules(Family):
    WANTS = frozenset({MpTcpRst})
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("RST-001", E, "§3.6", "MP_TCPRST without the RST flag",
             "MP_TCPRST is only valid on a segment with the TCP RST flag set; receivers ignore it elsewhere."),
        Rule("RST-002", W, "§3.6", "Unknown MP_TCPRST reason code",
             "Reason codes above 0x06 are not registered (a future IANA registration may make them valid)."),
        Rule("RST-003", W, "§3.6", "Reserved MP_TCPRST flag set",
             "The U, V and W flags of MP_TCPRST are reserved and must be zero."),
        Rule("RST-004", W, "§3.6", "MP_TCPRST in a v0 connection",
             "MP_TCPRST is defined by RFC 8684 (v1) only; RFC 6824 (v0) has no such option."),
        Rule("RST-005", INFO, "§3.6", "Subflow reset with a reason",
             "A subflow was reset with MP_TCPRST; the reason and the transient (T) flag are reported."),
        Rule("RST-006", W, "§3.6", "Several MP_TCPRST options on one RST",
             "A RST should carry at most one MP_TCPRST option."),
    )  # fmt: skip

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        # (subflow, frame, sender side, reason, transient) of each reset, summarised at the end (RST-005)
        self.resets: list[tuple[Subflow, int, int, int, bool]] = []

    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        opts = seg.options
        if opts is None or not opts.mptcp:
            return
        resets = [opt for opt in opts.mptcp if type(opt) is MpTcpRst]
        if not resets:
            return
        ctx = self.ctx
        if not seg.flags & TH_RST:
            ctx.report("RST-001", "MP_TCPRST on a segment without the RST flag (receivers ignore it)", seg.frame, sf)
        if len(resets) > 1:
            ctx.report("RST-006", f"{len(resets)} MP_TCPRST options on one RST", seg.frame, sf)
        for rst in resets:
            if rst.reason not in REASON_NAMES:
                ctx.report("RST-002", f"MP_TCPRST reason {rst.reason:#04x} is not a registered code", seg.frame, sf)
            if rst.flags & MPTCPRST_RESERVED_FLAGS:
                ctx.report("RST-003", f"MP_TCPRST reserved flags set ({rst.flags:#x})", seg.frame, sf)
        conn = sf.connection
        if conn is not None and conn.version == 0:
            ctx.report("RST-004", "MP_TCPRST in a connection that negotiated MPTCP v0", seg.frame, sf)
        if seg.flags & TH_RST:
            rst = resets[0]
            self.resets.append((sf, seg.frame, ctx.side_of(sf, direction), rst.reason, rst.transient))

    def finish(self, analysis: Analysis) -> None:
        for sf, frame, sender, reason, transient in self.resets:
            who = "client" if sender == 0 else "server"
            text = f"the {who} reset subflow {sf.id}: {REASON_NAMES.get(reason, 'unknown reason')}"
            if transient:
                retry = _retry_of(sf)
                text += ", transient (a new subflow may be tried); " + (
                    f"the same address pair was retried by subflow {retry.id} (frame {retry.first_frame})"
                    if retry is not None
                    else "the same address pair was not retried in the capture"
                )
            else:
                text += ", not transient"
            self.ctx.report("RST-005", text, frame, sf)


def _retry_of(sf: Subflow) -> Subflow | None:
    """A later subflow of the same connection between the same two addresses."""
    conn = sf.connection
    if conn is None:
        return None
    return next(
        (
            other
            for other in conn.subflows
            if other.first_frame > sf.first_frame and {other.client_ip, other.server_ip} == {sf.client_ip, sf.server_ip}
        ),
        None,
    )
