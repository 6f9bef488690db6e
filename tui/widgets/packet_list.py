"""The virtualised packet list: one line per frame, materialised only when it scrolls into view.

The list is a line-API :class:`~textual.scroll_view.ScrollView` over a *view*: all rows of the
packet index, or a numpy array of the rows a filter kept. :meth:`render_line` reads the index row,
asks the packet store for the decoded packet (cached) and builds a :class:`Strip`; nothing is held
per packet, so a million rows cost the same as a hundred.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from rich.segment import Segment
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Static

from tui.describe import row_kind, tcp_flags
from tui.session import Session
from tui.widgets.virtual import CURSOR_BINDINGS, scroll_row_into_view, set_virtual_size

TIME_MODES = ("relative", "absolute", "delta")
KINDS = ("capable", "join", "dss", "addr", "prio", "reset", "malformed", "control", "tcp", "other")


@dataclass(slots=True, frozen=True)
class Layout:
    frame: int
    time: int
    subflow: int = 4
    direction: int = 1
    flags: int = 4
    marker: int = 1

    def header(self, time_mode: str) -> str:
        time_label = {"relative": "Time", "absolute": "Time (UTC)", "delta": "Δ Time"}[time_mode]
        return (
            f"{'No.':>{self.frame}} {time_label:<{self.time}} {'SF':>{self.subflow}} {'':{self.direction}} "
            f"{'Flags':<{self.flags}} {'':{self.marker}} Info"
        )


def time_width(mode: str) -> int:
    return {"relative": 11, "absolute": 15, "delta": 10}[mode]


class PacketHeader(Static):
    """Column titles above the packet list."""


class PacketList(ScrollView, can_focus=True):
    """All frames, or those a filter kept; ↑↓ PgUp PgDn Home End move, Enter opens the detail."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *CURSOR_BINDINGS,
        Binding("enter", "choose", "Detail", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "packet-list--cursor",
        "packet-list--marker",
        "packet-list--marker-error",
        *(f"packet-list--{kind}" for kind in KINDS),
    }

    cursor: reactive[int] = reactive(0, repaint=False)
    time_mode: reactive[str] = reactive("relative")

    class Highlighted(Message):
        """The cursor moved to another frame."""

        def __init__(self, frame: int | None) -> None:
            super().__init__()
            self.frame = frame

    class Chosen(Message):
        """Enter on a frame."""

        def __init__(self, frame: int) -> None:
            super().__init__()
            self.frame = frame

    def __init__(self, session: Session, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.session = session
        self.view: npt.NDArray[np.int64] | None = None  # rows shown; None = every row of the index
        self._shown = 0  # rows of the index shown when view is None
        self._last_frame: int | None = None

    # -- the view -----------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return self._shown if self.view is None else len(self.view)

    def row_at(self, position: int) -> int:
        """Index row shown at list position ``position``."""
        return position if self.view is None else int(self.view[position])

    def position_of(self, frame: int) -> int | None:
        """List position of ``frame``, or None if the view does not show it."""
        row = frame - 1
        if self.view is None:
            return row if 0 <= row < self._shown else None
        i = int(np.searchsorted(self.view, row))
        return i if i < len(self.view) and int(self.view[i]) == row else None

    def nearest_position(self, frame: int) -> int:
        row = frame - 1
        if self.view is None:
            return max(0, min(row, self._shown - 1))
        i = int(np.searchsorted(self.view, row))
        return max(0, min(i, len(self.view) - 1))

    @property
    def current_frame(self) -> int | None:
        if self.count == 0:
            return None
        return self.row_at(min(self.cursor, self.count - 1)) + 1

    def show_all(self, rows: int) -> None:
        """Show rows ``[0, rows)`` of the index (no filter)."""
        keep = self.current_frame
        self.view = None
        self._shown = rows
        self._after_view_change(keep)

    def show_rows(self, view: npt.NDArray[np.int64]) -> None:
        keep = self.current_frame
        self.view = view
        self._after_view_change(keep)

    def grow(self, rows: int) -> None:
        """More rows were loaded (unfiltered view)."""
        if self.view is None and rows != self._shown:
            old = self._shown
            self._shown = rows
            self._update_size()
            top = int(self.scroll_offset.y)
            if old < top + self.size.height:  # new rows may be on screen
                self.refresh()
            if old == 0 and rows:
                self._emit()

    def _after_view_change(self, keep: int | None) -> None:
        self._update_size()
        if self.count:
            target = self.nearest_position(keep) if keep is not None else 0
            self.cursor = target
            self.scroll_to_cursor(center=True)
        else:
            self.cursor = 0
        self.refresh()
        self._emit()

    def _update_size(self) -> None:
        set_virtual_size(self, Size(self.size.width, self.count))

    def on_resize(self, event: events.Resize) -> None:
        self._update_size()

    # -- movement -----------------------------------------------------------------------------
    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, max(0, self.count - 1)))

    def watch_cursor(self, old: int, new: int) -> None:
        # Only the two rows whose highlight changed are painted again (scrolling repaints the rest).
        self.refresh_line(old)
        self.refresh_line(new)
        self._emit()

    def watch_time_mode(self) -> None:
        self.refresh()

    def _emit(self) -> None:
        frame = self.current_frame
        if frame != self._last_frame:
            self._last_frame = frame
            self.post_message(self.Highlighted(frame))

    def scroll_to_cursor(self, center: bool = False) -> None:
        scroll_row_into_view(self, self.cursor, center)

    def go_to_position(self, position: int, center: bool = True) -> None:
        self.cursor = position
        self.scroll_to_cursor(center=center)

    def action_cursor(self, delta: int) -> None:
        self.cursor += delta
        self.scroll_to_cursor()

    def action_page(self, direction: int) -> None:
        height = max(1, self.scrollable_content_region.height)
        self.cursor += direction * height
        self.scroll_to(y=int(self.scroll_offset.y) + direction * height, animate=False, immediate=True)
        self.scroll_to_cursor()

    def action_edge(self, end: int) -> None:
        self.cursor = self.count - 1 if end else 0
        self.scroll_to_cursor()

    def action_choose(self) -> None:
        frame = self.current_frame
        if frame is not None:
            self.post_message(self.Chosen(frame))

    def on_click(self, event: events.Click) -> None:
        position = int(self.scroll_offset.y) + event.y
        if 0 <= position < self.count:
            self.cursor = position

    # -- rendering ----------------------------------------------------------------------------
    def columns(self) -> Layout:
        total = max(self.session.index.count, 1)
        return Layout(frame=max(4, len(str(total))), time=time_width(self.time_mode))

    def format_time(self, row: int, position: int) -> str:
        index = self.session.index
        ts = index.ts(row)
        mode = self.time_mode
        if mode == "absolute":
            return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")
        if mode == "delta":
            prev = index.ts(self.row_at(position - 1)) if position > 0 else ts
            return f"{ts - prev:.6f}"
        return f"{ts - (index.first_ts or 0.0):.6f}"

    def render_line(self, y: int) -> Strip:
        position = int(self.scroll_offset.y) + y
        width = self.scrollable_content_region.width
        base = self.rich_style
        if position >= self.count:
            return Strip.blank(width, base)
        row_index = self.row_at(position)
        session = self.session
        row = session.index.row(row_index)
        packet = session.store.packet(row.frame)
        lay = self.columns()
        kind = row_kind(row)
        style = base + self.get_component_rich_style(f"packet-list--{kind}", partial=True)
        if position == self.cursor:
            style += self.get_component_rich_style("packet-list--cursor", partial=True)
        findings = session.findings_by_frame.get(row.frame)
        marker = " "
        marker_style = style
        if findings:
            worst = max(f.severity for f in findings)
            marker = "!" if worst >= 3 else "?" if worst == 2 else "i"
            name = "packet-list--marker-error" if worst >= 3 else "packet-list--marker"
            marker_style = style + self.get_component_rich_style(name, partial=True)
        arrow = ("→" if row.direction == 0 else "←") if row.is_tcp else " "
        subflow = str(row.subflow) if row.subflow else ""
        flags = tcp_flags(row.flags) if row.is_tcp else ""
        left = (
            f"{row.frame:>{lay.frame}} {self.format_time(row_index, position):<{lay.time}} "
            f"{subflow:>{lay.subflow}} {arrow} {flags:<{lay.flags}} "
        )
        info = session.store.info(packet)
        segments = [Segment(left, style), Segment(marker, marker_style), Segment(" " + info, style)]
        return Strip(segments).adjust_cell_length(width, style)

    def header_text(self) -> str:
        return self.columns().header(self.time_mode)
