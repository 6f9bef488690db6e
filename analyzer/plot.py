"""``plot``: the pictures mptcptrace and mptcpanalyzer users ask for, outside the TUI.

* ``dsn``: the sequence graph per subflow (tcptrace/xplot style): each mapping's relative DSN over time,
  with the peer's Data ACK and the right edge of its receive window;
* ``throughput``: wire payload per subflow, in Mbit/s over 100 ms buckets;
* ``data-ack``: Data ACK progress of each direction;
* ``rtt``: RTT samples per subflow at the capture point.

The data comes from the model (throughput, Data ACK progress, RTT samples) and, for the sequence graph,
from :class:`PlotCollector`, an observer that keeps a thinned list of mapping and ACK points (bounded
memory). :func:`figure` turns them into plain series (tested against the analysis); rendering is
matplotlib for PNG/SVG, and a self-contained HTML page (inline SVG, wheel zoom, drag to pan) with no
dependency. The DSN axis is relative to the sender's IDSN (the first data byte is 1).
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path

from analyzer.ingest.segment import TH_ACK, Segment
from analyzer.model import CLIENT, Analysis, Connection, Subflow
from analyzer.mptcp.datalevel import PacketLevels
from analyzer.mptcp.options import Dss
from analyzer.stats import BUCKET, Thinned

KINDS = ("dsn", "throughput", "data-ack", "rtt")
MASK64 = (1 << 64) - 1
POINTS_PER_FLOW = 20_000  # mapping / ACK points kept per subflow direction before thinning
ARROWS = ("c→s", "s→c")


@dataclass(slots=True)
class Series:
    label: str
    xs: list[float]
    ys: list[float]
    style: str = "line"  # "line" | "points" | "step"


@dataclass(slots=True)
class Figure:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)


@dataclass(slots=True)
class _Flow:
    mappings: Thinned = field(default_factory=lambda: Thinned(POINTS_PER_FLOW))  # (t, index into raw)
    raw_dsn: list[tuple[int, int]] = field(default_factory=list)  # (64-bit dsn, data_len)
    acks: Thinned = field(default_factory=lambda: Thinned(POINTS_PER_FLOW))
    raw_ack: list[tuple[int, int]] = field(default_factory=list)  # (64-bit data ack, window bytes)


class PlotCollector:
    """Pipeline observer: the DSS mappings and Data ACKs of every subflow direction, thinned.

    The values are the 64-bit ones the data levels published (analyzer.datalevels), as the checker and
    the CSV see them; a 32-bit Data ACK they could not expand (nothing known of the peer's data yet) is
    left out rather than drawn at a guessed height.
    """

    def __init__(self) -> None:
        self.flows: dict[int, _Flow] = {}  # Subflow.key(direction)
        self.packet = PacketLevels()

    def attach_levels(self, packet: PacketLevels, level: object) -> None:
        self.packet = packet

    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        if seg.options is None or not seg.options.mptcp:
            return
        for opt in seg.options.mptcp:
            if type(opt) is not Dss:
                continue
            flow = self.flows.get(sf.key(direction))
            if flow is None:
                flow = self.flows[sf.key(direction)] = _Flow()
            packet = self.packet
            mine = packet.dss is opt  # (a second DSS in one segment is malformed: only its 64-bit values count)
            if opt.dsn is not None and opt.data_len:
                dsn = packet.dsn64 if mine else (opt.dsn if opt.dsn64 else None)
                if dsn is not None:
                    flow.raw_dsn.append((dsn, opt.data_len))
                    flow.mappings.add(seg.ts, len(flow.raw_dsn) - 1)
                    _trim(flow.mappings, flow.raw_dsn)
            if opt.data_ack is not None and seg.flags & TH_ACK:
                # None: a 32-bit Data ACK nothing could expand yet (no IDSN, no data of the peer seen): not drawn,
                # as the CSV leaves it empty and the checker does not judge it.
                ack = packet.ack64 if mine else (opt.data_ack if opt.ack64 else None)
                if ack is not None:
                    scale = sf.halves[direction].wscale or 0
                    flow.raw_ack.append((ack, seg.window << scale))
                    flow.acks.add(seg.ts, len(flow.raw_ack) - 1)
                    _trim(flow.acks, flow.raw_ack)

    def finish(self, analysis: Analysis) -> None:
        return None


def _trim(points: Thinned, raw: list[tuple[int, int]]) -> None:
    """Keep ``raw`` as long as the thinned points that index it (compacted when the points are thinned)."""
    if len(raw) < 2 * points.limit:
        return
    kept = [raw[int(i)] for _, i in points.points]
    raw[:] = kept
    points.points = [(t, float(n)) for n, (t, _) in enumerate(points.points)]


def figure(
    analysis: Analysis, kind: str, connection: int = 1, direction: int = CLIENT, collector: PlotCollector | None = None
) -> Figure:
    """The series of one plot of one connection (``direction``: CLIENT = c→s data)."""
    conn = next((c for c in analysis.connections if c.id == connection), None)
    if conn is None:
        raise ValueError(f"no connection {connection} (the trace has {len(analysis.connections)})")
    t0 = analysis.trace.first_time or 0.0
    arrow = ARROWS[direction]
    if kind == "throughput":
        fig = Figure(f"Connection {conn.id}: throughput {arrow} per subflow", "time (s)", "Mbit/s")
        for sf in conn.subflows:
            half = sf.halves[sf.direction_of(direction)]
            buckets = sorted(half.throughput.items())
            xs = [b * BUCKET - t0 for b, _ in buckets]
            fig.series.append(Series(f"subflow {sf.id}", xs, [n * 8 / BUCKET / 1e6 for _, n in buckets], "step"))
        return fig
    if kind == "data-ack":
        fig = Figure(f"Connection {conn.id}: Data ACK progress", "time (s)", "relative Data ACK")
        for data_side, acking in ((0, 1), (1, 0)):
            series = sorted(conn.data_ack_progress[acking].items())
            fig.series.append(
                Series(f"{ARROWS[data_side]} acked", [b * BUCKET - t0 for b, _ in series], [v + 1 for _, v in series])
            )
        return fig
    if kind == "rtt":
        fig = Figure(f"Connection {conn.id}: RTT {arrow} per subflow (capture point)", "time (s)", "RTT (ms)")
        for sf in conn.subflows:
            points = sf.halves[sf.direction_of(direction)].rtt_series
            fig.series.append(
                Series(f"subflow {sf.id}", [t - t0 for t, _ in points], [v * 1000 for _, v in points], "points")
            )
        return fig
    if kind == "dsn":
        return _sequence_graph(conn, direction, t0, collector or PlotCollector())
    raise ValueError(f"unknown plot kind {kind!r} (one of {', '.join(KINDS)})")


def _sequence_graph(conn: Connection, direction: int, t0: float, collector: PlotCollector) -> Figure:
    fig = Figure(f"Connection {conn.id}: sequence graph {ARROWS[direction]}", "time (s)", "relative DSN")
    idsn = conn.sides[direction].idsn
    acks: list[tuple[float, int, int]] = []  # (t, relative ack, window)
    relative = _Relative(idsn)
    for sf in conn.subflows:
        flow = collector.flows.get(sf.key(sf.direction_of(direction)))
        xs: list[float] = []
        ys: list[float] = []
        if flow is not None:
            for t, index in flow.mappings.points:
                dsn, _ = flow.raw_dsn[int(index)]
                xs.append(t - t0)
                ys.append(relative(dsn))
        fig.series.append(Series(f"subflow {sf.id}", xs, ys, "points"))
        back = collector.flows.get(sf.key(1 - sf.direction_of(direction)))
        if back is not None:
            for t, index in back.acks.points:
                ack, window = back.raw_ack[int(index)]
                acks.append((t - t0, int(relative(ack)), window))
    acks.sort()
    fig.series.append(Series("Data ACK", [t for t, _, _ in acks], [a for _, a, _ in acks], "step"))
    fig.series.append(Series("receive window", [t for t, _, _ in acks], [a + w for _, a, w in acks], "step"))
    return fig


class _Relative:
    """64-bit values relative to the IDSN, or without one to the first value (which then is 1)."""

    def __init__(self, idsn: int | None) -> None:
        self.base = idsn

    def __call__(self, value: int) -> float:
        if self.base is None:
            self.base = (value - 1) & MASK64
        return float((value - self.base) & MASK64)


# ---------------------------------------------------------------------- rendering


def render(fig: Figure, path: Path) -> None:
    """Write ``fig`` as PNG or SVG (matplotlib) or self-contained HTML, chosen by the file's suffix."""
    suffix = path.suffix.lower()
    if suffix == ".html":
        path.write_text(_html(fig), encoding="utf-8")
        return
    if suffix not in (".png", ".svg"):
        raise ValueError(f"{path}: the plot's file must end in .png, .svg or .html")
    try:
        import matplotlib
    except ImportError:
        if suffix == ".svg":
            path.write_text(_svg(fig), encoding="utf-8")
            return
        raise RuntimeError("PNG plots need matplotlib: pip install 'mptcp-analyze[plot]' (or use .svg/.html)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure_, axes = plt.subplots(figsize=(10, 6), dpi=100)
    for series in fig.series:
        if series.style == "points":
            axes.plot(series.xs, series.ys, ".", markersize=3, label=series.label)
        elif series.style == "step":
            axes.step(series.xs, series.ys, where="post", label=series.label)
        else:
            axes.plot(series.xs, series.ys, label=series.label)
    axes.set(title=fig.title, xlabel=fig.xlabel, ylabel=fig.ylabel)
    axes.grid(True, alpha=0.3)
    if fig.series:
        axes.legend(loc="best", fontsize="small")
    figure_.tight_layout()
    figure_.savefig(path, format=suffix[1:])
    plt.close(figure_)


COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
WIDTH, HEIGHT, MARGIN = 960, 540, 60


def _svg(fig: Figure) -> str:
    """A plain SVG line/point chart: axes with min/max labels, one colour per series, a legend."""
    xs = [x for s in fig.series for x in s.xs] or [0.0, 1.0]
    ys = [y for s in fig.series for y in s.ys] or [0.0, 1.0]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1

    def px(x: float, y: float) -> str:
        sx = MARGIN + (x - x0) / (x1 - x0) * (WIDTH - 2 * MARGIN)
        sy = HEIGHT - MARGIN - (y - y0) / (y1 - y0) * (HEIGHT - 2 * MARGIN)
        return f"{sx:.1f},{sy:.1f}"

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="plot" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{WIDTH / 2}" y="20" text-anchor="middle" font-size="15">{html.escape(fig.title)}</text>',
        f'<line x1="{MARGIN}" y1="{HEIGHT - MARGIN}" x2="{WIDTH - MARGIN}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{HEIGHT - MARGIN}" stroke="black"/>',
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 15}" text-anchor="middle">{html.escape(fig.xlabel)}</text>',
        f'<text x="15" y="{HEIGHT / 2}" transform="rotate(-90 15 {HEIGHT / 2})" text-anchor="middle">'
        f"{html.escape(fig.ylabel)}</text>",
        f'<text x="{MARGIN}" y="{HEIGHT - MARGIN + 15}">{x0:.3g}</text>',
        f'<text x="{WIDTH - MARGIN}" y="{HEIGHT - MARGIN + 15}" text-anchor="end">{x1:.3g}</text>',
        f'<text x="{MARGIN - 5}" y="{HEIGHT - MARGIN}" text-anchor="end">{y0:.4g}</text>',
        f'<text x="{MARGIN - 5}" y="{MARGIN}" text-anchor="end">{y1:.4g}</text>',
    ]
    for n, series in enumerate(fig.series):
        colour = COLOURS[n % len(COLOURS)]
        label = html.escape(series.label)
        if series.style == "points":
            dots = "".join(
                f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="1.5"/>'
                for p in (px(x, y) for x, y in zip(series.xs, series.ys, strict=True))
            )
            out.append(f'<g fill="{colour}" data-series="{label}">{dots}</g>')
        elif series.xs:
            points = []
            for i, (x, y) in enumerate(zip(series.xs, series.ys, strict=True)):
                if series.style == "step" and i:
                    points.append(px(x, series.ys[i - 1]))
                points.append(px(x, y))
            out.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.2" data-series="{label}" '
                f'points="{" ".join(points)}"/>'
            )
        out.append(f'<text x="{WIDTH - MARGIN + 5 - 160}" y="{MARGIN + 15 * n}" fill="{colour}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)


_ZOOM_SCRIPT = """
const svg = document.getElementById('plot');
let box = svg.viewBox.baseVal, drag = null;
svg.addEventListener('wheel', e => { e.preventDefault();
  const k = e.deltaY < 0 ? 0.8 : 1.25, r = svg.getBoundingClientRect();
  const mx = box.x + (e.clientX - r.left) / r.width * box.width;
  const my = box.y + (e.clientY - r.top) / r.height * box.height;
  box.x = mx - (mx - box.x) * k; box.y = my - (my - box.y) * k; box.width *= k; box.height *= k; });
svg.addEventListener('mousedown', e => { drag = [e.clientX, e.clientY]; });
window.addEventListener('mouseup', () => { drag = null; });
window.addEventListener('mousemove', e => { if (!drag) return; const r = svg.getBoundingClientRect();
  box.x -= (e.clientX - drag[0]) / r.width * box.width; box.y -= (e.clientY - drag[1]) / r.height * box.height;
  drag = [e.clientX, e.clientY]; });
svg.addEventListener('dblclick', () => { box.x = 0; box.y = 0; box.width = WIDTH; box.height = HEIGHT; });
""".replace("WIDTH", str(WIDTH)).replace("HEIGHT", str(HEIGHT))


def _html(fig: Figure) -> str:
    """One self-contained page: the SVG inline and a few lines of script for zoom (wheel) and pan (drag)."""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f"{html.escape(fig.title)}</title></head>\n<body>\n{_svg(fig)}\n"
        "<p>Wheel: zoom · drag: pan · double-click: reset</p>\n"
        f"<script>{_ZOOM_SCRIPT}</script>\n</body></html>\n"
    )
