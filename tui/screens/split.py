"""The split view: one connection seen from two captures, packet beside its own copy.

``mptcp-analyze tui A.pcap B.pcap`` (or ``compare A B --tui``) runs :func:`run`. The comparison runs in
a thread worker; the first screen lists the matched connections; Enter opens :class:`SplitScreen`
on one: the summary (clock offset, both directions' loss and delay, the effects) above the aligned
rows of one subflow direction. From 120 columns A and B share a line; below, the two lists are stacked
and move together. The rows come from :mod:`analyzer.compare.align`, their text from :mod:`tui.splitview`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from analyzer.compare import Comparison, compare
from analyzer.compare.align import Choice, Row, aligned_rows, choices, next_notable, summary
from analyzer.ingest.capture import CaptureError
from analyzer.model import DIRECTION_NAMES
from tui.splitview import SIDE_BY_SIDE, both_header, one_header
from tui.widgets.aligned import AlignedList


class SplitScreen(Screen[None]):
    """The aligned rows of one matched connection; s: subflow, d: direction, n/N: next/previous effect or loss."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Connections"),
        Binding("s", "subflow", "Subflow"),
        Binding("d", "direction", "Direction"),
        Binding("n", "notable(1)", "Next effect/loss"),
        Binding("N", "notable(0)", "Previous", key_display="N"),
    ]

    def __init__(self, comparison: Comparison, choice: Choice) -> None:
        super().__init__()
        self.comparison = comparison
        self.choice = choice
        self.subflow = 0  # index into choice.subflows
        self.direction = 0  # 0 = c2s, 1 = s2c in A's roles
        self.rows: list[Row] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="split-summary")
        with Vertical(id="split-wide"):
            yield Static("", id="head-both", classes="split-head")
            yield AlignedList("both", id="rows-both")
        with Vertical(id="split-a", classes="split-pane"):
            yield Static("", id="head-a", classes="split-head")
            yield AlignedList("a", id="rows-a")
        with Vertical(id="split-b", classes="split-pane"):
            yield Static("", id="head-b", classes="split-head")
            yield AlignedList("b", id="rows-b")
        yield Static("", id="split-status")
        yield Footer()

    def on_mount(self) -> None:
        self._layout(self.app.size.width)
        self._load()

    def on_resize(self, event: Resize) -> None:
        self._layout(event.size.width)

    def _layout(self, width: int) -> None:
        stacked = width < SIDE_BY_SIDE
        self.set_class(stacked, "-stacked")
        self._lists()[0].focus()

    def _lists(self) -> list[AlignedList]:
        if self.has_class("-stacked"):
            return [self.query_one("#rows-a", AlignedList), self.query_one("#rows-b", AlignedList)]
        return [self.query_one("#rows-both", AlignedList)]

    def _load(self) -> None:
        """Rows and summary of the current subflow and direction."""
        conn = self.comparison.connections[self.choice.connection]
        sf = conn.subflows[self.choice.subflows[self.subflow]]
        assert sf.detail is not None
        self.rows = aligned_rows(sf.detail, self.direction)
        self.query_one("#split-summary", Static).update(
            "\n".join(summary(self.comparison, conn, sf, self.direction))
        )  # fmt: skip
        for widget in self.query(AlignedList):
            widget.show(self.rows)
        fw = self.query_one("#rows-both", AlignedList).fw
        self.query_one("#head-both", Static).update(both_header(fw))
        self.query_one("#head-a", Static).update(one_header(fw, "a", Path(self.comparison.path_a).name))
        self.query_one("#head-b", Static).update(one_header(fw, "b", Path(self.comparison.path_b).name))
        self.sub_title = (
            f"A {Path(self.comparison.path_a).name} · B {Path(self.comparison.path_b).name} · "
            f"subflow {self.subflow + 1}/{len(self.choice.subflows)} {DIRECTION_NAMES[self.direction]}"
        )
        self._status(0)

    def _status(self, position: int) -> None:
        notable = sum(1 for r in self.rows if r.notable)
        lost = sum(1 for r in self.rows if r.kind == "lost")
        where = f"row {position + 1}/{len(self.rows)}" if self.rows else "no packets in this direction"
        self.query_one("#split-status", Static).update(
            f"{where} · {lost} lost · {notable} rows to look at (n/N) · s subflow · d direction"
        )

    @on(AlignedList.Moved)
    def moved(self, message: AlignedList.Moved) -> None:
        for widget in self.query(AlignedList):
            if widget is not message.source and widget.cursor != message.position:
                widget.go_to(message.position)
        self._status(message.position)

    def action_back(self) -> None:
        self.dismiss(None)

    def action_subflow(self) -> None:
        self.subflow = (self.subflow + 1) % len(self.choice.subflows)
        self._load()

    def action_direction(self) -> None:
        self.direction ^= 1
        self._load()

    def action_notable(self, forward: int) -> None:
        lists = self._lists()
        target = next_notable(self.rows, lists[0].cursor, bool(forward))
        if target is None:
            self.notify("no further loss or effect in this direction", timeout=2)
            return
        for widget in self.query(AlignedList):
            widget.go_to(target, center=True)


class CompareInspector(App[None]):
    """Two captures of the same traffic: pick a matched connection, see it from both sides."""

    CSS_PATH = "../split.tcss"
    TITLE = "mptcp-analyze compare"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("q", "quit", "Quit")]

    def __init__(self, path_a: str, path_b: str) -> None:
        super().__init__()
        self.path_a, self.path_b = path_a, path_b
        self.comparison: Comparison | None = None
        self.choices: list[Choice] = []
        self.load_error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(f"comparing {Path(self.path_a).name} and {Path(self.path_b).name}…", id="pick-summary")
        yield OptionList(id="pick")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"A {Path(self.path_a).name} · B {Path(self.path_b).name}"
        self.run_compare()

    @work(thread=True, exclusive=True, group="compare")
    def run_compare(self) -> None:
        try:
            result = compare(self.path_a, self.path_b, keep_packets=True)
        except CaptureError as exc:
            self.call_from_thread(self._failed, str(exc))
            return
        self.call_from_thread(self._loaded, result)

    @property
    def loaded(self) -> bool:
        return self.comparison is not None or self.load_error is not None

    def _failed(self, error: str) -> None:
        self.load_error = error
        self.query_one("#pick-summary", Static).update(f"cannot compare: {error}")
        self.notify(error, title="cannot read a capture", severity="error", timeout=30)

    def _loaded(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self.choices = choices(comparison)
        offset = comparison.clock_offset_s
        clock = "unknown" if offset is None else f"{offset * 1e3:+.3f} ms"
        lines = [
            f"A {Path(comparison.path_a).name}",
            f"B {Path(comparison.path_b).name}",
            f"clock offset B−A {clock} · {len(self.choices)} matched connection"
            f"{'s' if len(self.choices) != 1 else ''}"
            + (f" · {len(comparison.unmatched_b)} of B unmatched" if comparison.unmatched_b else ""),
        ]
        lines.extend(f"capture problem: {e}" for e in comparison.errors)
        if not self.choices:
            lines.append("no connection of A was seen in B: nothing to align")
        else:
            lines.append("Enter: open the connection side by side")
        self.query_one("#pick-summary", Static).update("\n".join(lines))
        picker = self.query_one("#pick", OptionList)
        picker.add_options([Option(c.label, id=str(n)) for n, c in enumerate(self.choices)])
        picker.highlighted = 0 if self.choices else None
        picker.focus()

    @on(OptionList.OptionSelected, "#pick")
    def picked(self, event: OptionList.OptionSelected) -> None:
        if self.comparison is None:
            return
        self.push_screen(SplitScreen(self.comparison, self.choices[event.option_index]))


def run(path_a: str, path_b: str) -> None:
    """Open the split view on two captures (the CLI's ``tui A B``). Exits 2 if either cannot be read."""
    app = CompareInspector(path_a, path_b)
    app.run()
    if app.load_error is not None:
        print(f"mptcp-analyze: error: {app.load_error}", file=sys.stderr)
        raise SystemExit(2)
