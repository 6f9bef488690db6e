"""Resizing a line-API widget's scrollable area without relaying out the whole screen."""

from __future__ import annotations

from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.widget import Widget

# The keys of every scrolling row list (packet list, split view): each list implements the actions.
CURSOR_BINDINGS: tuple[Binding, ...] = (
    Binding("up", "cursor(-1)", "Up", show=False),
    Binding("down", "cursor(1)", "Down", show=False),
    Binding("pageup", "page(-1)", "Page up", show=False),
    Binding("pagedown", "page(1)", "Page down", show=False),
    Binding("home", "edge(0)", "First", show=False),
    Binding("end", "edge(1)", "Last", show=False),
)


def scroll_row_into_view(widget: ScrollView, row: int, center: bool = False) -> None:
    """Scroll a one-line-per-row list so ``row`` is visible (``center``: in the middle), without animation."""
    height = max(1, widget.scrollable_content_region.height)
    top = int(widget.scroll_offset.y)
    if center:
        widget.scroll_to(y=max(0, row - height // 2), animate=False, immediate=True)
    elif row < top:
        widget.scroll_to(y=row, animate=False, immediate=True)
    elif row >= top + height:
        widget.scroll_to(y=row - height + 1, animate=False, immediate=True)


def set_virtual_size(widget: ScrollView, size: Size) -> None:
    """Set ``widget.virtual_size``; skip the screen-wide layout when no scrollbar appears or goes.

    Assigning ``virtual_size`` always lays out the screen again (tens of milliseconds), which the
    packet list, hex view and stream view would otherwise pay on every new packet shown.
    """
    old = widget.virtual_size
    if size == old:
        return
    region = widget.scrollable_content_region
    styles = widget.styles
    same_v = styles.overflow_y != "auto" or (old.height > region.height) == (size.height > region.height)
    same_h = styles.overflow_x != "auto" or (old.width > region.width) == (size.width > region.width)
    same_bars = same_v and same_h
    if widget.is_mounted and region.height and same_bars:
        widget.set_reactive(Widget.virtual_size, size)
        widget._scroll_update(size)
        widget.refresh()
    else:
        widget.virtual_size = size


def sync_scrollbars(widget: Widget) -> None:
    """Bring the scrollbars up to date with the virtual size (after changes made without a layout)."""
    if widget.is_mounted:
        widget._scroll_update(widget.virtual_size)
        widget.refresh()
