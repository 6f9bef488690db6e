"""The split view's list: aligned rows of one subflow direction, both captures on a line or one of them.

A line-API :class:`ScrollView` like the packet list: lines are built only when they scroll into view.
Two lists (one per capture) share a cursor when stacked; the screen keeps them in step.
"""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from textual import events
from textual.binding import BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from analyzer.compare.align import Row
from tui.splitview import both_line, frame_width, one_line
from tui.widgets.virtual import CURSOR_BINDINGS, scroll_row_into_view, set_virtual_size

STYLED = ("lost", "modified", "split", "coalesced", "uncaptured", "extra")


class AlignedList(ScrollView, can_focus=True):
    """Rows of the split view; ``side`` is "both" (A │ B on a line), "a" or "b"."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *CURSOR_BINDINGS,
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "aligned--cursor",
        "aligned--marked",
        *(f"aligned--{kind}" for kind in STYLED),
    }

    cursor: reactive[int] = reactive(0, repaint=False)

    class Moved(Message):
        """The cursor moved (the other list follows)."""

        def __init__(self, source: AlignedList, position: int) -> None:
            super().__init__()
            self.source = source
            self.position = position

    def __init__(self, side: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.side = side
        self.rows: list[Row] = []
        self.fw = 5

    def show(self, rows: list[Row]) -> None:
        self.rows = rows
        self.fw = frame_width(rows)
        set_virtual_size(self, Size(self.size.width, len(rows)))
        self.cursor = 0
        self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        set_virtual_size(self, Size(self.size.width, len(self.rows)))

    # -- movement -----------------------------------------------------------------------------
    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, max(0, len(self.rows) - 1)))

    def watch_cursor(self, old: int, new: int) -> None:
        self.refresh_line(old - int(self.scroll_offset.y))
        self.refresh_line(new - int(self.scroll_offset.y))
        self.post_message(self.Moved(self, new))

    def go_to(self, position: int, center: bool = False) -> None:
        self.cursor = position
        scroll_row_into_view(self, self.cursor, center)
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        self.go_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.go_to(self.cursor + direction * max(1, self.scrollable_content_region.height))

    def action_edge(self, end: int) -> None:
        self.go_to(len(self.rows) - 1 if end else 0)

    def on_click(self, event: events.Click) -> None:
        position = int(self.scroll_offset.y) + event.y
        if 0 <= position < len(self.rows):
            self.cursor = position

    # -- rendering ----------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        position = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if position >= len(self.rows):
            return Strip.blank(width, base)
        row = self.rows[position]
        style = base
        if row.kind in STYLED:
            style += self.get_component_rich_style(f"aligned--{row.kind}", partial=True)
        elif row.marks:
            style += self.get_component_rich_style("aligned--marked", partial=True)
        if position == self.cursor:
            style += self.get_component_rich_style("aligned--cursor", partial=True)
        text = both_line(row, self.fw) if self.side == "both" else one_line(row, self.fw, self.side)
        return Strip([Segment(text, style)]).adjust_cell_length(width, style)
