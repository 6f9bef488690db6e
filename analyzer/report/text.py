"""The human report: a rich rendering of the model that stays readable at 80 columns and in pipes."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from analyzer.findings import Finding, Severity
from analyzer.model import (
    CLIENT,
    SERVER,
    Analysis,
    Connection,
    Diagnosis,
    Side,
    StreamSummary,
    Subflow,
    data_fin_frame,
)

SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
MAX_FINDINGS_SHOWN = 200
MAX_TCP_FLOWS_SHOWN = 20
MASK64 = (1 << 64) - 1
OVERVIEW_FROM = 4  # connections in a trace from which a one-line-per-connection overview comes first
FIRST_FRAMES = 6  # frames listed for a finding (or a collapsed group of findings)
# Room the panel border, the table padding and the "#" column take from the console's width.
SUBFLOW_CELL_MARGIN = 12


def render(analysis: Analysis, console: Console, verbose: bool = False, absolute: bool = False) -> None:
    """``absolute``: DSNs and Data ACKs as on the wire; by default relative to the IDSN (first data byte 1)."""
    console.print(_trace_summary(analysis, console.width))
    if len(analysis.connections) >= OVERVIEW_FROM:
        console.print(_overview(analysis))
    for conn in analysis.connections:
        console.print(_connection_panel(conn, analysis, console.width, absolute))
    if analysis.tcp_flows:
        console.print(_tcp_flows(analysis.tcp_flows))
    console.print(_findings(analysis, verbose, absolute))


def cut_left(text: str, width: int) -> str:
    """Keep the end of a path (its basename) when it does not fit: ``…/traces/run-7/lossy.pcap``."""
    if width <= 1 or len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1 :]


def _trace_summary(analysis: Analysis, width: int) -> RenderableType:
    trace = analysis.trace
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    fmt = trace.file_format + (" (gzip)" if trace.compressed else "")
    room = width - 20 - len(fmt) - 4  # label column (12) and padding, panel border, "  [fmt]"
    grid.add_row("File", Text(f"{cut_left(trace.path, room)}  [{fmt}]", no_wrap=True, overflow="ellipsis"))
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


def _overview(analysis: Analysis) -> RenderableType:
    """One line per connection before the details: a 30-connection trace is read at a glance."""
    table = Table(box=box.SIMPLE_HEAD, title="Connections", title_justify="left", expand=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("client → server")
    table.add_column("sf", justify="right")
    table.add_column("bytes c→s / s→c", justify="right")
    table.add_column("status")
    table.add_column("E/W", justify="right")
    by_conn: Counter[tuple[int | None, Severity]] = Counter((f.connection, f.severity) for f in analysis.findings)
    for conn in analysis.connections:
        streams = analysis.streams.get(conn.id)
        volume = "-" if streams is None else f"{streams[CLIENT].length:,} / {streams[SERVER].length:,}"
        status = "fallback" if conn.fallback else "MPTCP"
        table.add_row(
            str(conn.id),
            _endpoints(conn.client_address or "?", conn.server_address or "?", 10**6),
            str(len(conn.subflows)),
            volume,
            status,
            f"{by_conn[(conn.id, Severity.ERROR)]}/{by_conn[(conn.id, Severity.WARNING)]}",
        )
    return table


def _connection_panel(conn: Connection, analysis: Analysis, width: int = 80, absolute: bool = False) -> RenderableType:
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
            head.add_row(label, _stream_text(stream, analysis))
    acks = _data_ack_text(conn, absolute)
    if acks:
        head.add_row("Data ACKs", acks)
    head.add_row("Close", _close_text(conn))
    parts.append(head)
    diagnosis = analysis.diagnoses.get(conn.id)
    if diagnosis is not None:
        parts.append(_diagnosis(diagnosis))
    parts.append(_subflow_table(conn.subflows, width))
    if streams is not None and any(s.bytes or s.hole_bytes for s in streams):
        parts.append(_statistics(conn, streams))
    if conn.announcements:
        parts.append(_announcements(conn))
    if conn.events:
        events = Table(box=box.SIMPLE_HEAD, title="Events", title_justify="left", expand=False)
        events.add_column("frame", justify="right")
        events.add_column("event")
        for frame, text in conn.events:
            events.add_row(str(frame), _event_text(conn, frame, text, absolute))
        parts.append(events)
    errors = sum(1 for f in analysis.findings if f.connection == conn.id and f.severity == Severity.ERROR)
    title = f"Connection {conn.id}" + (f" · {errors} error(s)" if errors else "")
    return Panel(Group(*parts), title=title, title_align="left", border_style="red" if errors else "blue")


def _diagnosis(diagnosis: Diagnosis) -> RenderableType:
    """The verdict, then the timeline: one sentence per event with its time and frames (wrapped, never cut)."""
    title = Text.assemble(("Diagnosis: ", "bold"), diagnosis.verdict)
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", expand=False, pad_edge=False)
    table.add_column("t (s)", justify="right", no_wrap=True)
    table.add_column("frames", no_wrap=True)
    table.add_column("what happened", overflow="fold")
    for event in diagnosis.events:
        shown = event.frames[:3]
        frames = "#" + ",".join(map(str, shown)) + ("…" if len(event.frames) > len(shown) else "")
        table.add_row(f"{event.t:.3f}", frames, event.text)
    return table


def relative_dsn(conn: Connection, side: int, dsn: int) -> int | None:
    """``dsn`` (64-bit) relative to ``side``'s IDSN, as Wireshark numbers TCP: the first data byte is 1."""
    idsn = conn.sides[side].idsn
    return None if idsn is None else (dsn - idsn) & MASK64


def _event_text(conn: Connection, frame: int, text: str, absolute: bool) -> str:
    """The event's DSN relative to the IDSN (the absolute value stays in JSON and with --absolute)."""
    known = conn.event_dsns.get(frame)
    if absolute or known is None:
        return text
    side, dsn = known
    relative = relative_dsn(conn, side, dsn)
    token = f"DSN {dsn}"
    if relative is None or token not in text:
        return text
    return text.replace(token, f"DSN {relative:,} (relative)")


def _data_ack_text(conn: Connection, absolute: bool) -> str:
    """The highest Data ACK each side sent: relative (N bytes and a DATA_FIN acked read N + 2) or absolute."""
    parts = []
    for side, label in ((SERVER, "c→s"), (CLIENT, "s→c")):  # the server acknowledges the client's data
        series = conn.data_ack_progress[side]
        idsn = conn.sides[1 - side].idsn
        if not series or idsn is None:
            continue
        offset = max(series.values())
        value = (idsn + 1 + offset) & MASK64 if absolute else offset + 1
        parts.append(f"{label} up to {value:,}" if not absolute else f"{label} up to {value}")
    if not parts:
        return ""
    return "; ".join(parts) + ("" if absolute else " (relative to the IDSN; --absolute for raw)")


_GROUPING_TEXT = {
    "keys": "handshake not captured; linked by keys echoed in MP_CAPABLE",
    "token": "MP_CAPABLE not captured; joins grouped by the token they share",
    "dsn": "handshake not captured; linked by data sequence numbers",
    "none": "handshake not captured; nothing links it to other subflows",
}


def _stream_text(stream: StreamSummary, analysis: Analysis) -> str:
    """What the sender covered by DSN first; what the capture kept, and why it kept less, after."""
    digest = f", sha256 {stream.sha256[:16]}…" if stream.sha256 else ""
    if stream.complete:
        return f"{stream.bytes:,} bytes (complete{digest})"
    if stream.length > stream.bytes and analysis.trace.truncated_packets:
        return (
            f"{stream.length:,} bytes by DSN, payload cut by snaplen {analysis.trace.snaplen} "
            f"({stream.bytes:,} captured{digest})"
        )
    if stream.holes:
        return (
            f"{stream.length:,} bytes by DSN, {stream.bytes:,} captured, {stream.holes} hole(s) of "
            f"{stream.hole_bytes:,} bytes{digest}"
        )
    return f"{stream.bytes:,} bytes (incomplete: no DATA_FIN seen{digest})"


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


def _endpoints(client: str, server: str, room: int) -> Text:
    """``client → server`` on one line when it fits, else one endpoint per line: an address never breaks."""
    if len(client) + len(server) + 3 <= room:
        return Text(f"{client} → {server}", no_wrap=True)
    return Text(f"{client} →\n  {server}", no_wrap=True)


def _subflow_table(subflows: list[Subflow], width: int = 80) -> RenderableType:
    """Two lines per subflow: the endpoints, then kind, address ids, packets, bytes and how it ended."""
    table = Table(box=box.SIMPLE_HEAD, title="Subflows", title_justify="left", expand=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("client → server / kind · address ids · packets · bytes c→s / s→c · end")
    room = max(20, width - SUBFLOW_CELL_MARGIN)
    for sf in subflows:
        c, s = sf.halves
        kind = sf.kind + (" (backup)" if sf.backup else "")
        if sf.kind == "join" and (sf.join_synack_hmac_ok is False or sf.join_ack_hmac_ok is False):
            kind += " [bad HMAC]"
        end = sf.end or ("half-closed" if sf.end_detail else "open")
        facts = (
            f"{kind} · ids {_fmt(c.address_id)}/{_fmt(s.address_id)} · {sf.packets:,} pkts · "
            f"{c.payload_bytes:,} / {s.payload_bytes:,} B · {end}"
        )
        cell = _endpoints(sf.client, sf.server, room)
        cell.append("\n")
        cell.append(Text(facts, style="dim"))
        table.add_row(str(sf.id), cell)
    return table


def _statistics(conn: Connection, streams: tuple[StreamSummary, StreamSummary]) -> RenderableType:
    """Who carried the data, what was sent twice, and how long data waited for a gap."""
    table = Table(box=box.SIMPLE_HEAD, title="Data statistics", title_justify="left", expand=False, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("share c→s", justify="right")
    table.add_column("share s→c", justify="right")
    table.add_column("TCP rtx", justify="right")
    table.add_column("reinjected", justify="right")
    table.add_column("RTT ms min/med/p95", justify="right")
    totals = [max(1, s.length) for s in streams]
    for sf in conn.subflows:
        sides = [sf.halves[sf.direction_of(side)] for side in (CLIENT, SERVER)]
        shares = [streams[side].first_carrier.get(sf.id, 0) / totals[side] for side in (CLIENT, SERVER)]
        rtx = sum(h.retransmitted_bytes for h in sf.halves)
        reinjected = sum(h.reinjected_bytes for h in sf.halves)
        rtt = sides[0].rtt if sides[0].rtt else sides[1].rtt
        table.add_row(
            str(sf.id), f"{shares[0]:.0%}", f"{shares[1]:.0%}", f"{rtx:,}", f"{reinjected:,}", _rtt_text(rtt),
        )  # fmt: skip
    duration = _duration(conn)
    notes = []
    for label, stream in zip(("c→s", "s→c"), streams, strict=True):
        bits = []
        if stream.out_of_order:
            share = f", head blocked {stream.hol_blocked / duration:.0%} of the connection's time" if duration else ""
            bits.append(
                f"{stream.out_of_order} out-of-order arrivals; longest head-of-line wait "
                f"{stream.hol_wait_max * 1000:.1f} ms{share}"
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


def _rtt_text(rtt: dict[str, object] | None) -> str:
    """Min, median and 95th percentile: the smoothed value at the end says little about the whole trace."""
    if not rtt:
        return "-"
    return "/".join(_ms(rtt.get(key)) for key in ("min_ms", "median_ms", "p95_ms"))


def _ms(value: object) -> str:
    """Three significant digits: a veth RTT of 0.045 ms is not 0.0."""
    if not isinstance(value, int | float):
        return "?"
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _duration(conn: Connection) -> float:
    if not conn.subflows:
        return 0.0
    return max(sf.last_time for sf in conn.subflows) - min(sf.first_time for sf in conn.subflows)


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


def finding_order(finding: Finding) -> tuple[int, int, str]:
    """Errors first, then warnings, then notes; within a severity, by first frame."""
    first = finding.frames[0] if finding.frames else 1 << 62
    return (-int(finding.severity), first, finding.rule)


def collapse(findings: list[Finding]) -> list[tuple[Finding, int, list[int]]]:
    """One entry per (rule, connection): the first finding, how many there were, and their first frames."""
    groups: dict[tuple[str, int | None], tuple[Finding, list[Finding]]] = {}
    for finding in sorted(findings, key=finding_order):
        key = (finding.rule, finding.connection)
        if key in groups:
            groups[key][1].append(finding)
        else:
            groups[key] = (finding, [finding])
    out = []
    for first, members in groups.values():
        frames = sorted({frame for f in members for frame in f.frames})
        out.append((first, len(members), frames))
    return sorted(out, key=lambda entry: finding_order(entry[0]))


def _findings(analysis: Analysis, verbose: bool = False, absolute: bool = False) -> RenderableType:
    """One line per finding (repeats of a rule collapsed, the message cut at the edge); --verbose: all, in full.

    DSNs and Data ACKs in the messages are relative to their side's IDSN unless ``absolute`` (JSON: absolute).
    """
    findings = analysis.findings
    idsns = {} if absolute else {c.id: (c.sides[CLIENT].idsn, c.sides[SERVER].idsn) for c in analysis.connections}
    counts = Counter(f.severity for f in findings)
    summary = ", ".join(
        f"{counts.get(sev, 0)} {sev.label}(s)" for sev in (Severity.ERROR, Severity.WARNING, Severity.INFO)
    )
    if not findings:
        return Text("Findings: none", style="green")
    entries = [(f, 1, list(f.frames)) for f in sorted(findings, key=finding_order)] if verbose else collapse(findings)
    lines: list[RenderableType] = [Text(f"Findings: {summary}", style="bold")]
    relative = False
    for finding, count, frames in entries[:MAX_FINDINGS_SHOWN]:
        message = finding.text(idsns.get(finding.connection) if finding.connection is not None else None)
        relative = relative or message != finding.message
        lines.append(_finding_line(finding, count, frames, verbose, message))
    notes = []
    if relative:
        notes.append("DSNs relative to the IDSN (--absolute for raw)")
    if not verbose and len(entries) < len(findings):
        notes.append("repeats of a rule collapsed (×N); --verbose lists each finding in full")
    elif not verbose:
        notes.append("--verbose prints each message in full")
    if len(entries) > MAX_FINDINGS_SHOWN:
        notes.append(f"{len(entries) - MAX_FINDINGS_SHOWN} more in --json")
    if analysis.suppressed_findings:
        notes.append(
            "repeats not recorded: " + ", ".join(f"{rule} ×{n}" for rule, n in analysis.suppressed_findings.items())
        )
    lines.append(Text("; ".join(notes), style="dim"))
    return Group(*lines)


def _finding_line(finding: Finding, count: int, frames: list[int], verbose: bool, message: str) -> Text:
    """``error  DSS-004   1/2  #12,14  ×3: message``: severity, rule, connection/subflow, frames, what."""
    line = Text(no_wrap=not verbose, overflow="ellipsis")
    line.append(f"{finding.severity.label:<7}", style=SEVERITY_STYLE[finding.severity])
    shown = frames if verbose else frames[:FIRST_FRAMES]
    listed = ",".join(map(str, shown)) + ("…" if len(frames) > len(shown) else "")
    where = f"{_fmt(finding.connection)}/{_fmt(finding.subflow)}"
    line.append(f" {finding.rule:<11} {where:>5} #{listed or '-'}  ")
    line.append(message if count == 1 else f"×{count}: {message}")
    return line


def _fmt(value: int | None) -> str:
    return "-" if value is None else str(value)
