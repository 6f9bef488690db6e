"""Follow stream: a connection's reassembled data, both directions coloured; ASCII or hex; save."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.segment import Segment
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Size
from textual.reactive import reactive
from textual.screen import Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Header, Static

from analyzer.model import Connection, StreamSummary
from tui.collect import Chunk, FollowSpool
from tui.flows import human_bytes
from tui.screens.prompt import PromptScreen
from tui.widgets.virtual import set_virtual_size

DISPLAY_LIMIT = 256 << 10  # bytes shown (saving writes everything)
MAX_CHUNKS = 20000  # pieces shown (a capture cut by a snaplen gives many tiny pieces and gaps)
SIDES = {"both": (0, 1), "c2s": (0,), "s2c": (1,)}
SHORT_SHA = 16  # hex digits of the SHA-256 shown when the full one does not fit


def stream_state(summary: StreamSummary | None, room: int) -> str:
    """One direction's verdict: complete or not, its holes, its SHA-256 (full when ``room`` allows)."""
    if summary is None:
        return "not reassembled"
    if summary.holes:
        plural = "s" if summary.holes != 1 else ""
        state = f"incomplete: {summary.holes:,} hole{plural} ({human_bytes(summary.hole_bytes)})"
    elif summary.complete:
        state = "complete"
    else:
        state = "incomplete: no DATA_FIN seen"
    if summary.sha256 is None:
        return f"{state} · no SHA-256"
    full = f"{state} · SHA-256 {summary.sha256}"
    return full if len(full) <= room else f"{state} · SHA-256 {summary.sha256[:SHORT_SHA]}…"


def ascii_lines(chunks: list[Chunk], width: int = 0) -> list[tuple[int, str]]:
    """(side, text) lines: printable ASCII kept, other bytes as '.', split at newlines."""
    lines: list[tuple[int, str]] = []
    for chunk in chunks:
        if chunk.missing:
            lines.append((chunk.side, f"[… {chunk.missing} bytes not captured …]"))
            continue
        text = "".join(chr(b) if 32 <= b < 127 or b == 10 else "." for b in chunk.data)
        parts = text.split("\n")
        if parts and parts[-1] == "":
            parts.pop()
        for part in parts:
            if width > 0 and len(part) > width:
                lines.extend((chunk.side, part[i : i + width]) for i in range(0, len(part), width))
            else:
                lines.append((chunk.side, part))
    return lines


def hex_lines(chunks: list[Chunk], per: int = 16) -> list[tuple[int, str]]:
    lines: list[tuple[int, str]] = []
    for chunk in chunks:
        if chunk.missing:
            lines.append((chunk.side, f"{chunk.offset:08x}  [… {chunk.missing} bytes not captured …]"))
            continue
        data = chunk.data
        for i in range(0, len(data), per):
            piece = data[i : i + per]
            hexed = " ".join(f"{b:02x}" for b in piece)
            text = "".join(chr(b) if 32 <= b < 127 else "." for b in piece)
            lines.append((chunk.side, f"{chunk.offset + i:08x}  {hexed:<{per * 3 - 1}}  {text}"))
    return lines


class StreamView(ScrollView, can_focus=True):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"stream-view--c2s", "stream-view--s2c"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.lines: list[tuple[int, str]] = []

    def set_lines(self, lines: list[tuple[int, str]]) -> None:
        self.lines = lines
        width = max((len(text) for _side, text in lines[:5000]), default=0)
        set_virtual_size(self, Size(max(width, self.size.width), len(lines)))
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        index = int(self.scroll_offset.y) + y
        if index >= len(self.lines):
            return Strip.blank(width, base)
        side, text = self.lines[index]
        style = base + self.get_component_rich_style("stream-view--c2s" if side == 0 else "stream-view--s2c",
                                                     partial=True)  # fmt: skip
        x = int(self.scroll_offset.x)
        return Strip([Segment(text[x : x + width], style)]).adjust_cell_length(width, base)


class FollowScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back"),
        Binding("x", "toggle_hex", "ASCII/hex"),
        Binding("v", "cycle_direction", "Direction"),
        Binding("w", "save", "Save"),
    ]

    hex_mode: reactive[bool] = reactive(False)
    direction: reactive[str] = reactive("both")

    def __init__(
        self, conn: Connection, spool: FollowSpool, streams: tuple[StreamSummary, StreamSummary] | None = None
    ) -> None:
        super().__init__()
        self.conn = conn
        self.spool = spool
        self.streams = streams

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="follow-body"):
            yield Static(id="follow-title")
            yield StreamView(id="follow-stream")
        yield Footer()

    def on_mount(self) -> None:
        self.refill()
        self.query_one(StreamView).focus()

    def on_resize(self, event: events.Resize) -> None:
        self.refill()

    def watch_hex_mode(self) -> None:
        if self.is_mounted:
            self.refill()

    def watch_direction(self) -> None:
        if self.is_mounted:
            self.refill()

    def refill(self) -> None:
        conn = self.conn
        streams = self.spool.streams_of(conn)
        totals = [sum(s.nbytes for s in streams if s.side == side) for side in (0, 1)]
        truncated = any(s.truncated for s in streams)
        chunks = self.spool.chunks(conn, SIDES[self.direction], DISPLAY_LIMIT, MAX_CHUNKS)
        view = self.query_one(StreamView)
        width = max(20, view.scrollable_content_region.width or 78)
        lines = hex_lines(chunks) if self.hex_mode else ascii_lines(chunks, width)
        shown = sum(len(c.data) for c in chunks)
        client = conn.client_address or "client"
        server = conn.server_address or "server"
        room = max(20, self.size.width - 2)
        heads = []
        for side, colour, src, dst in ((0, "$success", client, server), (1, "$warning", server, client)):
            head = f"{src} → {dst} {human_bytes(totals[side])}"
            summary = self.streams[side] if self.streams is not None else None
            heads.append(f"[{colour}]{head}[/] · {stream_state(summary, room - len(head) - 3)}")
        title = (
            f"Connection {conn.id}\n" + "\n".join(heads) + f"\n{'hex' if self.hex_mode else 'ASCII'} · {self.direction}"
        )
        if shown >= DISPLAY_LIMIT or len(chunks) >= MAX_CHUNKS:
            title += f" · first {human_bytes(shown)} shown (w saves all)"
        if truncated:
            title += " · [$error]spool cap reached: stream truncated[/]"
        if not chunks:
            title += " · no reassembled data"
        self.query_one("#follow-title", Static).update(title)
        view.set_lines(lines)

    def action_toggle_hex(self) -> None:
        self.hex_mode = not self.hex_mode

    def action_cycle_direction(self) -> None:
        order = list(SIDES)
        self.direction = order[(order.index(self.direction) + 1) % len(order)]

    def action_save(self) -> None:
        default = f"conn{self.conn.id}-{self.direction}.bin"

        def check(text: str) -> str | None:
            if not text:
                return "give a file name"
            parent = Path(text).expanduser().parent
            return None if parent.is_dir() else f"no such directory: {parent}"

        def done(path: str | None) -> None:
            if path:
                self.save_to(Path(path).expanduser())

        self.app.push_screen(PromptScreen("Save stream to file", default, default, check), done)

    def save_to(self, path: Path) -> int:
        try:
            with path.open("wb") as out:
                written = self.spool.write_to(self.conn, SIDES[self.direction], out)
        except OSError as exc:
            self.notify(f"cannot save: {exc.strerror or exc}", severity="error")
            return 0
        self.notify(f"saved {human_bytes(written)} to {path}")
        return written

    def action_close(self) -> None:
        self.dismiss(None)
