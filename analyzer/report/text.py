"""The human report: a rich rendering of the model that stays readable at 80 columns and in pipes."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from analyzer.findings import Severity
from analyzer.model import CLIENT, SERVER, Analysis, Connection, Side, StreamSummary, Subflow, data_fin_frame

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
MAX_FINDINGS_SHOWN = 200
MAX_TCP_FLOWS_SHOWN = 20


def render(analysis: Analysis, console: Console) -> None:
    console.print(_trace_summary(analysis))
    for conn in analysis.connections:
        console.print(_connection_panel(conn, analysis))
    if analysis.tcp_flows:
        console.print(_tcp_flows(analysis.tcp_flows))
    console.print(_findings(analysis))


def _trace_summary(analysis: Analysis) -> RenderableType:
    trace = analysis.trace
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    fmt = trace.file_format + (" (gzip)" if trace.compressed else "")
    grid.add_row("File", f"{trace.path}  [{fmt}]")
    grid.add_row(
        "Packets", f"{trace.packets:,} total, {trace.tcp_packets:,} TCP, {trace.mptcp_packets:,} with MPTCP options"
    )
    if trace.link_types:
        grid.add_row("Link types", ", ".join(trace.link_types))
    if trace.first_time is not None and trace.last_time is not None:
        start = dt.datetime.fromtimestamp(trace.first_time, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        grid.add_row("Time", f"{start}, {trace.last_time - trace.first_time:.3f} s")
    mptcp = [c for c in analysis.connections if not c.fallback]
    grid.add_row(
        "Connections",
        f"{len(mptcp)} MPTCP, {len(analysis.connections) - len(mptcp)} fell back to TCP, "
        f"{len(analysis.tcp_flows)} plain TCP flows",
    )
    if trace.skipped:
        grid.add_row("Not analysed", ", ".join(f"{n:,} {why}" for why, n in trace.skipped.items()))
    if trace.truncated_packets:
        grid.add_row(
            "Snaplen", f"{trace.truncated_packets:,} packets have payload cut by the capture (snaplen {trace.snaplen})"
        )
    for error in trace.errors:
        grid.add_row(Text("Error", style="bold red"), error)
    return Panel(grid, title="mptcp-analyze", title_align="left", box=box.ROUNDED)


def _connection_panel(conn: Connection, analysis: Analysis) -> RenderableType:
    parts: list[RenderableType] = []
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    version = (
        {0: "v0 (RFC 6824)", 1: "v1 (RFC 8684)"}.get(conn.version, "unknown") if conn.version is not None else "unknown"
    )
    status = f"fell back to TCP: {conn.fallback_reason}" if conn.fallback else "MPTCP"
    head.add_row("Version", f"{version}; {status}")
    head.add_row("Checksums", {True: "on", False: "off", None: "unknown"}[conn.checksum])
    head.add_row("Client", _side_text(conn.client_address, conn.sides[CLIENT]))
    head.add_row("Server", _side_text(conn.server_address, conn.sides[SERVER]))
    if conn.grouping.value != "handshake":
        head.add_row("Grouping", _GROUPING_TEXT[conn.grouping.value])
    streams = analysis.streams.get(conn.id)
    if streams is not None:
        for label, stream in zip(("Data c→s", "Data s→c"), streams, strict=True):
            state = "complete" if stream.complete else "incomplete"
            digest = f", sha256 {stream.sha256[:16]}…" if stream.sha256 else ""
            head.add_row(label, f"{stream.bytes:,} bytes ({state}{digest})")
    head.add_row("Close", _close_text(conn))
    parts.append(head)
    parts.append(_subflow_table(conn.subflows))
    if streams is not None and any(s.bytes or s.hole_bytes for s in streams):
        parts.append(_statistics(conn, streams))
    if conn.announcements:
        parts.append(_announcements(conn))
    if conn.events:
        events = Table(box=box.SIMPLE_HEAD, title="Events", title_justify="left", expand=False)
        events.add_column("frame", justify="right")
        events.add_column("event")
        for frame, text in conn.events:
            events.add_row(str(frame), text)
        parts.append(events)
    errors = sum(1 for f in analysis.findings if f.connection == conn.id and f.severity == Severity.ERROR)
    title = f"Connection {conn.id}" + (f" · {errors} error(s)" if errors else "")
    return Panel(Group(*parts), title=title, title_align="left", border_style="red" if errors else "blue")


_GROUPING_TEXT = {
    "keys": "handshake not captured; linked by keys echoed in MP_CAPABLE",
    "token": "MP_CAPABLE not captured; joins grouped by the token they share",
    "dsn": "handshake not captured; linked by data sequence numbers",
    "none": "handshake not captured; nothing links it to other subflows",
}


def _side_text(address: str, side: Side) -> str:
    parts = [address or "?"]
    if side.key is not None:
        parts.append(f"key {side.key:016x}")
    if side.token is not None:
        parts.append(f"token {side.token:08x}")
    return "  ".join(parts)


def _close_text(conn: Connection) -> str:
    parts = []
    for side, name in ((CLIENT, "client"), (SERVER, "server")):
        frame = data_fin_frame(conn, side)
        if frame is not None:
            parts.append(f"DATA_FIN from {name} (frame {frame})")
    if conn.fastclose_frame is not None:
        who = "client" if conn.fastclose_sender == CLIENT else "server"
        parts.append(f"MP_FASTCLOSE from {who} (frame {conn.fastclose_frame})")
    ends = Counter(sf.end or "open" for sf in conn.subflows)
    parts.append("subflows: " + ", ".join(f"{n} {end}" for end, n in sorted(ends.items())))
    return "; ".join(parts)


def _subflow_table(subflows: list[Subflow]) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, title="Subflows", title_justify="left", expand=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("kind")
    table.add_column("client → server", overflow="fold")
    table.add_column("ids", justify="center")
    table.add_column("pkts", justify="right")
    table.add_column("bytes c→s / s→c", justify="right")
    table.add_column("end", overflow="fold")
    for sf in subflows:
        c, s = sf.halves
        ids = f"{_fmt(c.address_id)}/{_fmt(s.address_id)}"
        kind = sf.kind + (" (backup)" if sf.backup else "")
        if sf.kind == "join" and (sf.join_synack_hmac_ok is False or sf.join_ack_hmac_ok is False):
            kind += " [bad HMAC]"
        table.add_row(
            str(sf.id),
            kind,
            f"{sf.client} → {sf.server}",
            ids,
            f"{sf.packets:,}",
            f"{c.payload_bytes:,} / {s.payload_bytes:,}",
            sf.end or ("half-closed" if sf.end_detail else "open"),
        )
    return table


def _statistics(conn: Connection, streams: tuple[StreamSummary, StreamSummary]) -> RenderableType:
    """Who carried the data, what was sent twice, and how long data waited for a gap."""
    table = Table(box=box.SIMPLE_HEAD, title="Data statistics", title_justify="left", expand=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("share c→s", justify="right")
    table.add_column("share s→c", justify="right")
    table.add_column("TCP rtx", justify="right")
    table.add_column("reinjected", justify="right")
    table.add_column("RTT ms", justify="right")
    totals = [max(1, s.length) for s in streams]
    for sf in conn.subflows:
        sides = [sf.halves[side ^ sf.reversed] for side in (CLIENT, SERVER)]
        shares = [streams[side].first_carrier.get(sf.id, 0) / totals[side] for side in (CLIENT, SERVER)]
        rtx = sum(h.retransmitted_bytes for h in sf.halves)
        reinjected = sum(h.reinjected_bytes for h in sf.halves)
        rtt = sides[0].rtt if sides[0].rtt else sides[1].rtt
        table.add_row(
            str(sf.id), f"{shares[0]:.0%}", f"{shares[1]:.0%}", f"{rtx:,}", f"{reinjected:,}",
            f"{rtt['srtt_ms']}" if rtt else "-",
        )  # fmt: skip
    notes = []
    for label, stream in zip(("c→s", "s→c"), streams, strict=True):
        bits = []
        if stream.out_of_order:
            bits.append(
                f"{stream.out_of_order} out-of-order arrivals, head-of-line wait {stream.hol_wait_total * 1000:.1f} ms "
                f"(max {stream.hol_wait_max * 1000:.1f} ms)"
            )
        for (src, dst), n in sorted(stream.reinjections.items()):
            bits.append(f"{n:,} bytes of subflow {src} reinjected on subflow {dst}")
        if stream.holes:
            bits.append(f"{stream.holes} hole(s), {stream.hole_bytes:,} bytes not in the capture")
        if bits:
            notes.append(f"{label}: " + "; ".join(bits))
    if notes:
        table.caption = "\n".join(notes)
        table.caption_justify = "left"
    return table


def _announcements(conn: Connection) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, title="Address announcements", title_justify="left", expand=False)
    table.add_column("frame", justify="right")
    table.add_column("from")
    table.add_column("what")
    table.add_column("id", justify="right")
    table.add_column("address", overflow="fold")
    table.add_column("HMAC")
    for ann in conn.announcements:
        address = ann.address or ""
        if ann.port:
            address += f" port {ann.port}"
        hmac = {True: "ok", False: "WRONG", None: "-"}[ann.hmac_ok]
        what = {"add": "ADD_ADDR", "echo": "ADD_ADDR echo", "remove": "REMOVE_ADDR"}[ann.kind]
        table.add_row(
            str(ann.frame), "client" if ann.sender == CLIENT else "server", what,
            ",".join(map(str, ann.address_ids)), address, hmac,
        )  # fmt: skip
    return table


def _tcp_flows(flows: list[Subflow]) -> RenderableType:
    table = Table(box=box.SIMPLE_HEAD, title=f"Plain TCP flows ({len(flows)})", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("client → server", overflow="fold")
    table.add_column("pkts", justify="right")
    table.add_column("bytes c→s / s→c", justify="right")
    table.add_column("end")
    for sf in flows[:MAX_TCP_FLOWS_SHOWN]:
        c, s = sf.halves
        table.add_row(
            str(sf.id), f"{sf.client} → {sf.server}", f"{sf.packets:,}",
            f"{c.payload_bytes:,} / {s.payload_bytes:,}", sf.end or "open",
        )  # fmt: skip
    if len(flows) > MAX_TCP_FLOWS_SHOWN:
        table.caption = f"… and {len(flows) - MAX_TCP_FLOWS_SHOWN} more (see --json)"
    return table


def _findings(analysis: Analysis) -> RenderableType:
    findings = analysis.findings
    counts = Counter(f.severity for f in findings)
    summary = ", ".join(
        f"{counts.get(sev, 0)} {sev.label}(s)" for sev in (Severity.ERROR, Severity.WARNING, Severity.INFO)
    )
    if not findings:
        return Text("Findings: none", style="green")
    table = Table(box=box.SIMPLE_HEAD, title=f"Findings: {summary}", title_justify="left", expand=False)
    table.add_column("sev")
    table.add_column("rule")
    table.add_column("conn/sf", justify="right")
    table.add_column("frames", overflow="fold")
    table.add_column("what", overflow="fold", ratio=1)
    for finding in findings[:MAX_FINDINGS_SHOWN]:
        where = f"{_fmt(finding.connection)}/{_fmt(finding.subflow)}"
        frames = ",".join(map(str, finding.frames[:6])) + ("…" if len(finding.frames) > 6 else "")
        table.add_row(
            Text(finding.severity.label, style=SEVERITY_STYLE[finding.severity]),
            finding.rule, where, frames, finding.message,
        )  # fmt: skip
    captions = []
    if len(findings) > MAX_FINDINGS_SHOWN:
        captions.append(f"{len(findings) - MAX_FINDINGS_SHOWN} more findings in --json")
    if analysis.suppressed_findings:
        captions.append(
            "repeats not recorded: " + ", ".join(f"{rule} ×{n}" for rule, n in analysis.suppressed_findings.items())
        )
    if captions:
        table.caption = "; ".join(captions)
    return table


def _fmt(value: int | None) -> str:
    return "-" if value is None else str(value)
