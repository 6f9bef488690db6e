"""The diagnosis view (``a``): what happened to each connection, in sentences, each naming its frames.

The same verdicts and timelines as the report and the JSON (``Analysis.diagnoses``). The table keeps one
row per sentence; the highlighted sentence is printed in full underneath (never cut), and Enter jumps to
its first frame.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from analyzer.model import Analysis, DiagnosisEvent


class DiagnosisScreen(Screen[int | None]):
    """Dismisses with the frame to jump to (Enter), or None (Escape)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Back")]

    def __init__(self, analysis: Analysis, first: int | None = None) -> None:
        super().__init__()
        self.analysis = analysis
        conns = sorted(analysis.diagnoses)
        if first in conns:  # the selected connection first, then the others in order
            conns.remove(first)
            conns.insert(0, first)
        self.rows: list[tuple[int, DiagnosisEvent]] = [
            (cid, event) for cid in conns for event in analysis.diagnoses[cid].events
        ]
        self.conns = conns

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="diagnosis-body"):
            yield Static(id="diagnosis-title")
            yield DataTable(id="diagnosis-table", cursor_type="row", zebra_stripes=True)
            yield Static(id="diagnosis-explain")
        yield Footer()

    def on_mount(self) -> None:
        title = Text()  # Text, not markup: a sentence may hold "[fd00::1]:80"
        for n, cid in enumerate(self.conns):
            title.append(("\n" if n else "") + f"Connection {cid}", style="bold")
            title.append(f": {self.analysis.diagnoses[cid].verdict}")
        self.query_one("#diagnosis-title", Static).update(
            title if self.conns else Text("No MPTCP connection in this trace: nothing to diagnose.")
        )
        table = self.query_one(DataTable)
        table.add_columns("Conn", "t (s)", "Frames", "What happened")
        for cid, event in self.rows:
            frames = ",".join(map(str, event.frames[:3])) + ("…" if len(event.frames) > 3 else "")
            table.add_row(str(cid), f"{event.t:.3f}", frames, Text(event.text))
        self._explain(0)
        table.focus()

    def _explain(self, row: int) -> None:
        if not 0 <= row < len(self.rows):
            self.query_one("#diagnosis-explain", Static).update("")
            return
        cid, event = self.rows[row]
        frames = ", ".join(map(str, event.frames))
        text = Text.assemble(
            (f"Connection {cid}", "bold"), f" at {event.t:.3f} s — {event.text}\n",
            (f"frames {frames} · Enter: go to frame {event.frames[0] if event.frames else '-'}", "dim"),
        )  # fmt: skip
        self.query_one("#diagnosis-explain", Static).update(text)

    @on(DataTable.RowHighlighted)
    def highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._explain(event.cursor_row)

    @on(DataTable.RowSelected)
    def selected(self, event: DataTable.RowSelected) -> None:
        _, item = self.rows[event.cursor_row]
        if item.frames:
            self.dismiss(item.frames[0])

    def action_close(self) -> None:
        self.dismiss(None)
