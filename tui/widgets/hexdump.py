"""Hex dump of the selected packet, with the selected field's bytes highlighted."""

from __future__ import annotations

from typing import ClassVar

from rich.segment import Segment
from textual import events
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.widgets.virtual import set_virtual_size


def bytes_per_line(width: int) -> int:
    """16 bytes a line when there is room (offset, hex, ASCII: 4n + 6 columns), else 8, else 4."""
    for n in (16, 8):
        if width >= 4 * n + 6 + (1 if n == 16 else 0):
            return n
    return 4


class HexView(ScrollView, can_focus=True):
    """Offset, hex and ASCII columns; ``highlight`` is a byte range ``(start, end)``."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"hex-view--offset", "hex-view--highlight", "hex-view--payload"}

    highlight: reactive[tuple[int, int]] = reactive((0, 0))

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.data = b""
        self.payload_start = -1

    def show(self, data: bytes, payload_start: int = -1) -> None:
        self.data = data
        self.payload_start = payload_start
        self.highlight = (0, 0)
        self._update_size()
        self.scroll_to(y=0, animate=False, immediate=True)
        self.refresh()

    def _per_line(self) -> int:
        return bytes_per_line(self.scrollable_content_region.width or self.size.width)

    def _update_size(self) -> None:
        per = self._per_line()
        set_virtual_size(self, Size(self.size.width, (len(self.data) + per - 1) // per))

    def on_resize(self, event: events.Resize) -> None:
        self._update_size()

    def watch_highlight(self, value: tuple[int, int]) -> None:
        start, end = value
        if end > start:
            per = self._per_line()
            first, last = start // per, (end - 1) // per
            top = int(self.scroll_offset.y)
            height = max(1, self.scrollable_content_region.height)
            if first < top or last >= top + height:
                self.scroll_to(y=max(0, first - 1), animate=False, immediate=True)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        per = self._per_line()
        line = int(self.scroll_offset.y) + y
        start = line * per
        data = self.data
        if start >= len(data):
            return Strip.blank(width, base)
        chunk = data[start : start + per]
        lo, hi = self.highlight
        hl = base + self.get_component_rich_style("hex-view--highlight", partial=True)
        off_style = base + self.get_component_rich_style("hex-view--offset", partial=True)
        pay = base + self.get_component_rich_style("hex-view--payload", partial=True)
        segments = [Segment(f"{start:04x} ", off_style)]
        ascii_parts: list[Segment] = []
        for i, byte in enumerate(chunk):
            pos = start + i
            style = hl if lo <= pos < hi else (pay if 0 <= self.payload_start <= pos else base)
            sep = " " if not (per == 16 and i == 8) else "  "
            segments.append(Segment(sep if i else "", base))
            segments.append(Segment(f"{byte:02x}", style))
            ascii_parts.append(Segment(chr(byte) if 32 <= byte < 127 else ".", style))
        pad = (per - len(chunk)) * 3 + (1 if per == 16 and len(chunk) <= 8 else 0)
        segments.append(Segment(" " * (pad + 1) + " ", base))
        segments.extend(ascii_parts)
        return Strip(segments).adjust_cell_length(width, base)
