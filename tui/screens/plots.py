"""Plots of one connection (textual-plotext): DSN vs time, throughput and Data ACK per subflow."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane
from textual_plotext import PlotextPlot

from analyzer.model import Analysis, Connection
from analyzer.stats import BUCKET
from tui.collect import PlotCollector

MIB = 1 << 20
MAX_POINTS = 300


def rebucket(
    series: dict[int, int], max_points: int, reduce: Callable[[int, int], int] = operator.add
) -> list[tuple[float, int, float]]:
    """(start time, combined value, bin width in s) of a 100 ms bucket series, at most ``max_points`` bins."""
    if not series:
        return []
    first, last = min(series), max(series)
    width = max(1, -(-(last - first + 1) // max_points))
    out: dict[int, int] = {}
    for bucket, value in series.items():
        slot = (bucket - first) // width
        out[slot] = reduce(out[slot], value) if slot in out else value
    return [((first + slot * width) * BUCKET, value, width * BUCKET) for slot, value in sorted(out.items())]


class PlotsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("right_square_bracket", "connection(1)", "Next conn"),
        Binding("left_square_bracket", "connection(-1)", "Prev conn"),
    ]

    def __init__(self, analysis: Analysis, plots: PlotCollector, conn_id: int | None) -> None:
        super().__init__()
        self.analysis = analysis
        self.plots = plots
        conns = [c for c in analysis.connections if c.subflows]
        self.connections = conns
        ids = [c.id for c in conns]
        self.position = ids.index(conn_id) if conn_id in ids else 0

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="plots-title")
        with TabbedContent(id="plots-tabs"):
            with TabPane("DSN vs time", id="tab-dsn"):
                yield PlotextPlot(id="plot-dsn")
            with TabPane("Throughput", id="tab-throughput"):
                yield PlotextPlot(id="plot-throughput")
            with TabPane("Data ACK", id="tab-ack"):
                yield PlotextPlot(id="plot-ack")
        yield Footer()

    def on_mount(self) -> None:
        self.draw()

    @property
    def conn(self) -> Connection | None:
        return self.connections[self.position] if self.connections else None

    def action_connection(self, step: int) -> None:
        if self.connections:
            self.position = (self.position + step) % len(self.connections)
            self.draw()

    def draw(self) -> None:
        conn = self.conn
        title = self.query_one("#plots-title", Static)
        dsn = self.query_one("#plot-dsn", PlotextPlot)
        thr = self.query_one("#plot-throughput", PlotextPlot)
        ack = self.query_one("#plot-ack", PlotextPlot)
        for plot in (dsn, thr, ack):
            plot.plt.clear_data()
            plot.plt.clear_figure()
        if conn is None:
            title.update("No MPTCP connection to plot")
            for plot in (dsn, thr, ack):
                plot.refresh()
            return
        title.update(
            f"Connection {conn.id} ({self.position + 1} of {len(self.connections)}; [ ] to change) — "
            "DSN relative to the sender's IDSN (or first value); × marks reinjections"
        )
        self._draw_dsn(conn, dsn)
        self._draw_throughput(conn, thr)
        self._draw_ack(conn, ack)
        for plot in (dsn, thr, ack):
            plot.refresh()

    def _base(self, conn: Connection, side: int, values: list[float]) -> float:
        idsn = conn.sides[side].idsn
        if idsn is not None:
            return float(idsn)
        return min(values) if values else 0.0

    def _draw_dsn(self, conn: Connection, widget: PlotextPlot) -> None:
        plt = widget.plt
        plt.title("Data sequence number vs time")
        plt.xlabel("time (s)")
        plt.ylabel("MiB")
        drawn = False
        for sf in conn.subflows:
            for direction in (0, 1):
                series = self.plots.series.get((sf.id, direction))
                if series is None or not series.dsn.t:
                    continue
                side = sf.sender(direction)
                t, v = series.dsn.points()
                base = self._base(conn, side, v)
                arrow = "→" if side == 0 else "←"
                plt.scatter(t, [(x - base) / MIB for x in v], label=f"sf{sf.id} {arrow}", marker="dot")
                drawn = True
                if series.reinjections.t:
                    rt, rv = series.reinjections.points()
                    plt.scatter(rt, [(x - base) / MIB for x in rv], label=f"sf{sf.id} reinjected", marker="x",
                                color="red")  # fmt: skip
        if not drawn:
            plt.title("Data sequence number vs time — no DSS mappings in this connection")

    def _t0(self) -> float:
        first = self.analysis.trace.first_time
        return first if first is not None else 0.0

    def _draw_throughput(self, conn: Connection, widget: PlotextPlot) -> None:
        plt = widget.plt
        plt.title("Throughput per subflow")
        plt.xlabel("time (s)")
        plt.ylabel("Mbit/s")
        t0 = self._t0()
        for sf in conn.subflows:
            for direction in (0, 1):
                points = rebucket(sf.halves[direction].throughput, max_points=MAX_POINTS)
                if not points or not any(v for _t, v, _w in points):
                    continue
                side = sf.sender(direction)
                arrow = "→" if side == 0 else "←"
                plt.plot([t - t0 for t, _v, _w in points], [v * 8 / w / 1e6 for _t, v, w in points],
                         label=f"sf{sf.id} {arrow}")  # fmt: skip

    def _draw_ack(self, conn: Connection, widget: PlotextPlot) -> None:
        plt = widget.plt
        plt.title("Data ACK progress (bytes of the peer's data acknowledged)")
        plt.xlabel("time (s)")
        plt.ylabel("MiB")
        t0 = self._t0()
        names = ("client acks server data", "server acks client data")
        for side in (0, 1):
            progress = conn.data_ack_progress[side] if len(conn.data_ack_progress) > side else {}
            points = rebucket(progress, max_points=MAX_POINTS, reduce=max)
            if points:
                plt.plot([t - t0 for t, _v, _w in points], [v / MIB for _t, v, _w in points], label=names[side])

    def action_close(self) -> None:
        self.dismiss(None)
