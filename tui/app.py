"""The MPTCP inspector: a Wireshark-like terminal UI over the analyzer's model.

``mptcp-analyze tui trace.pcap`` calls :func:`run`. The analysis runs in a thread worker
(:meth:`MptcpInspector.load`) that posts progress while the connections pane and the packet list
fill in; filters and searches that must decode packets run in workers too, so every key is
answered at once however large the trace.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from textual import events, on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Label, ProgressBar, Static, Tree
from textual.worker import get_current_worker

from analyzer.ingest.capture import CaptureError
from tui.dissect import Context, dissect
from tui.filter import FilterContext, FilterError, Node, candidates, evaluate, parse
from tui.messages import LoadComplete, LoadFailed, LoadProgress, SearchDone, ViewReady, WorkProgress
from tui.screens.diagnosis import DiagnosisScreen
from tui.screens.findings import FindingsScreen
from tui.screens.follow import FollowScreen
from tui.screens.help import HelpScreen
from tui.screens.plots import PlotsScreen
from tui.screens.prompt import PromptScreen
from tui.session import Cancelled, Progress, Session
from tui.widgets.connections import ALL, ConnectionsTree, Selection
from tui.widgets.detail import DetailTree
from tui.widgets.hexdump import HexView
from tui.widgets.packet_list import TIME_MODES, PacketHeader, PacketList

WIDE = 120  # columns from which the connections pane is shown by default
SIDE_BY_SIDE = 100  # columns from which the connections pane sits beside the packets (below: it takes the screen)
STACK_BELOW = 110  # columns of the packet area below which the detail and hex panes share one place (x switches)
DETAIL_DELAY = 0.03  # seconds the cursor must rest before the detail tree is rebuilt
MAIN_SCREEN_ACTIONS = frozenset({
    "focus_filter", "clear", "goto", "findings", "follow", "plots", "time_mode", "toggle_connections", "search",
    "search_next", "next_finding", "toggle_lower",
})  # fmt: skip
SLOW_PROGRESS_EVERY = 4096  # decoded packets between progress messages of a slow filter/search


class MptcpInspector(App[None]):
    """Inspector for one capture file."""

    CSS_PATH = "inspector.tcss"
    TITLE = "mptcp-analyze"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("slash", "focus_filter", "Filter", key_display="/"),
        Binding("escape", "clear", "Clear", show=False),
        Binding("g", "goto", "Go to"),
        Binding("e", "findings", "Findings"),
        Binding("a", "diagnosis", "Diagnosis", show=False),  # in the help (?); the footer is full at 80 columns
        Binding("s", "follow", "Stream"),
        Binding("p", "plots", "Plots"),
        Binding("t", "time_mode", "Time"),
        Binding("c", "toggle_connections", "Conns"),
        Binding("x", "toggle_lower", "Detail/hex", show=False),
        Binding("ctrl+f", "search", "Search", show=False),
        Binding("n", "search_next(1)", "Next match", show=False),
        Binding("N", "search_next(0)", "Previous match", show=False),
        Binding("right_square_bracket", "next_finding(1)", "Next finding", show=False),
        Binding("left_square_bracket", "next_finding(0)", "Previous finding", show=False),
        Binding("d", "toggle_theme", "Theme", show=False),
    ]

    def __init__(self, path: str, *, spool_cap: int | None = None) -> None:
        super().__init__()
        self.session = Session(path, spool_cap=spool_cap)
        self.selection: Selection = ALL
        self.filter_text = ""
        self.filter_node: Node | None = None
        self.generation = 0
        self.search_term: str | None = None
        self.show_connections: bool | None = None  # None: follow the terminal width
        self.show_hex = False  # which pane the lower area shows when detail and hex are stacked
        self._detail_timer: Timer | None = None
        self._detail_frame: int | None = None
        self._view_is_filtered = False
        self._view_stop = 0
        self._view_slow = False
        self._view_pending = False
        self.load_error: str | None = None

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield ConnectionsTree(id="connections")
            with Vertical(id="main"):
                with Horizontal(id="filter-bar"):
                    yield Label("Filter", id="filter-label")
                    yield Input(placeholder="e.g. subflow == 2 and dss.fin   (? for help)", id="filter-input")
                yield Static("", id="filter-error")
                yield PacketHeader(id="packet-header")
                yield PacketList(self.session, id="packets")
                with Horizontal(id="lower"):
                    yield DetailTree(id="detail")
                    yield HexView(id="hex")
        with Horizontal(id="status"):
            yield Static("", id="status-text")
            yield ProgressBar(id="progress", show_eta=False, show_percentage=True)
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys of the packet screen do nothing (and leave the footer) while another view is open."""
        elsewhere = bool(self.screen_stack) and self.screen is not self.screen_stack[0]
        return not (action in MAIN_SCREEN_ACTIONS and elsewhere)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseEvent):
            self.session.yield_to_ui()  # background threads (load, slow filter, search) pause briefly
        await super().on_event(event)

    @property
    def packets(self) -> PacketList:
        return self.query_one("#packets", PacketList)

    def on_mount(self) -> None:
        self.sub_title = f"{self.session.name} · loading…"
        self._update_header_row()
        self._apply_width(self.size.width)
        self.packets.focus()
        self.load()

    def on_resize(self, event: Resize) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        """Lay the panes out for ``width`` columns so that none is too narrow to read.

        Below SIDE_BY_SIDE the connections pane, when open, takes the whole screen; below STACK_BELOW
        columns of packet area the detail tree and the hex dump take turns (``x``) instead of halving it.
        """
        if not self.screen_stack:
            return
        main = self.screen_stack[0]
        show = self.show_connections if self.show_connections is not None else width >= WIDE
        alone = show and width < SIDE_BY_SIDE
        main.set_class(not show, "-hide-connections")
        main.set_class(alone, "-connections-only")
        main.set_class(width < WIDE, "-narrow")
        pane = 0 if not show or alone else (36 if width < WIDE else 40)
        stacked = width - pane < STACK_BELOW
        main.set_class(stacked, "-stacked")
        main.set_class(stacked and self.show_hex, "-show-hex")
        hex_view = self.query_one(HexView)
        # 16 bytes a line needs 75 columns; give them only when the detail tree keeps room too.
        hex_view.styles.width = "1fr" if stacked else (75 if width - pane >= 150 else 40)
        lower = self.query_one("#lower")
        lower.border_title = ("Hex · x: detail" if self.show_hex else "Detail · x: hex") if stacked else None

    def _update_header_row(self) -> None:
        self.query_one("#packet-header", PacketHeader).update(self.packets.header_text())

    # -- loading ------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="load")
    def load(self) -> None:
        worker = get_current_worker()

        def report(progress: Progress) -> None:
            self.post_message(LoadProgress(progress))

        try:
            self.session.run(report, lambda: worker.is_cancelled)
        except Cancelled:
            return
        except CaptureError as exc:
            self.post_message(LoadFailed(str(exc)))
            return
        self.post_message(LoadComplete())

    @on(LoadProgress)
    def load_progress(self, message: LoadProgress) -> None:
        progress = message.progress
        self.query_one(ConnectionsTree).show(progress.tree)
        bar = self.query_one(ProgressBar)
        if progress.fraction is not None:
            bar.update(total=100, progress=progress.fraction * 100)
        count = progress.packets
        if self._view_is_filtered:
            if not self._view_slow:
                self.refresh_view()
        else:
            self.packets.grow(count)
        self._update_header_row()
        self._status()

    @on(LoadComplete)
    def load_complete(self) -> None:
        session = self.session
        analysis = session.analysis
        assert analysis is not None
        self.query_one(ConnectionsTree).show(session.tree())
        self.query_one(ProgressBar).display = False
        trace = analysis.trace
        duration = (trace.last_time or 0) - (trace.first_time or 0)
        n = len(analysis.connections)
        nf = len(analysis.findings)
        self.sub_title = (
            f"{session.name} · {trace.packets:,} packets · {n} MPTCP conn{'s' if n != 1 else ''} · "
            f"{nf} finding{'s' if nf != 1 else ''} · {duration:.3f} s · {trace.file_format}"
            f"{' (gzip)' if trace.compressed else ''} {'/'.join(trace.link_types)}"
        )
        if self._view_is_filtered:
            self.refresh_view()
        else:
            self.packets.show_all(session.index.count)
        self.packets.refresh()
        self._update_header_row()
        self._status()
        for error in analysis.trace.errors:
            self.notify(error, title="capture problem", severity="warning")
        if session.observer.misaligned:
            self.notify(f"{session.observer.misaligned} frames could not be matched to their file offsets; "
                        "their detail may be wrong", severity="warning")  # fmt: skip

    @on(LoadFailed)
    def load_failed(self, message: LoadFailed) -> None:
        self.load_error = message.error
        self.query_one(ProgressBar).display = False
        self.sub_title = f"{self.session.name} · cannot be read"
        self.query_one("#status-text", Static).update(f"[$error]{message.error}[/]")
        self.notify(message.error, title="cannot read the trace", severity="error", timeout=30)

    def _status(self, extra: str = "") -> None:
        session = self.session
        total = session.index.count
        shown = self.packets.count
        parts = []
        if not session.loaded:
            parts.append(f"loading… {total:,} packets")
        if self._view_is_filtered:
            parts.append(f"{shown:,} of {total:,} shown")
        elif session.loaded:
            parts.append(f"{total:,} packets")
        if self.selection is not ALL and self.selection.subflow_ids:
            parts.append(self.selection.label)
        if self.filter_text:
            parts.append(f"filter: {self.filter_text}")
        if session.analysis is not None and session.analysis.findings:
            n = len(session.analysis.findings)
            parts.append(f"{n} finding{'s' if n != 1 else ''} (e)")
        if extra:
            parts.append(extra)
        self.query_one("#status-text", Static).update(" · ".join(parts))

    # -- the view: connection selection + filter ----------------------------------------------
    @on(ConnectionsTree.Selected)
    def connection_selected(self, message: ConnectionsTree.Selected) -> None:
        self.selection = message.selection
        self.refresh_view()
        if self.screen_stack and self.screen_stack[0].has_class("-connections-only"):
            self.show_connections = False  # the choice is made: back to the packets it selected
            self._apply_width(self.size.width)
            self.packets.focus()

    @on(Input.Submitted, "#filter-input")
    def filter_submitted(self, event: Input.Submitted) -> None:
        self.set_filter(event.value)
        if not self.filter_error:
            self.packets.focus()

    @property
    def filter_error(self) -> str:
        return str(self.query_one("#filter-error", Static).content)

    def set_filter(self, text: str) -> bool:
        """Parse and apply a filter expression; False (and the error shown) if it does not parse."""
        text = text.strip()
        error_line = self.query_one("#filter-error", Static)
        if not text:
            self.filter_node = None
            self.filter_text = ""
        else:
            try:
                node = parse(text)
            except FilterError as exc:
                pointer = " " * (exc.column - 1) + "^"
                error_line.update(f"{pointer} {exc.message}" if exc.column < 40 else f"column {exc.column}: "
                                  f"{exc.message}")  # fmt: skip
                error_line.add_class("-error")
                self.query_one("#filter-input", Input).add_class("-error")
                return False
            self.filter_node = node
            self.filter_text = text
        error_line.update("")
        error_line.remove_class("-error")
        self.query_one("#filter-input", Input).remove_class("-error")
        self.refresh_view()
        return True

    def refresh_view(self) -> None:
        """Recompute which rows are shown (in a worker); the list keeps its frame if it can."""
        self.generation += 1
        node = self.filter_node
        ids = self.selection.subflow_ids
        if node is None and not ids:
            self._view_is_filtered = False
            self._view_slow = False
            self.packets.show_all(self.session.index.count)
            self._status()
            return
        self._view_is_filtered = True
        self._view_slow = node is not None and node.needs_packets
        self._view_pending = True
        self.compute_view(self.generation, node, ids)

    @work(thread=True, exclusive=True, group="view")
    def compute_view(self, generation: int, node: Node | None, ids: tuple[int, ...]) -> None:
        worker = get_current_worker()
        session = self.session
        stop = session.index.count
        mask: npt.NDArray[np.bool_] = np.ones(stop, dtype=bool)
        if ids:
            mask &= session.subflow_rows(ids, stop)
        if node is not None:
            ctx = session.filter_context(stop)
            exact = evaluate(node, ctx)
            if exact is not None:
                mask &= exact
            else:
                rows = candidates(node, ctx)
                rows = rows[mask[rows]]
                keep = self._match_slow(node, ctx, rows, "filter", generation)
                if keep is None:
                    return
                mask[:] = False
                mask[keep] = True
        if worker.is_cancelled:
            return
        self.post_message(ViewReady(generation, np.flatnonzero(mask).astype(np.int64), stop))

    def _match_slow(
        self, node: Node, ctx: FilterContext, rows: npt.NDArray[np.int64], label: str, generation: int
    ) -> npt.NDArray[np.int64] | None:
        """Decode each candidate row and keep those matching ``node`` (None if cancelled)."""
        worker = get_current_worker()
        store = self.session.store
        keep: list[int] = []
        total = len(rows)
        for i, row in enumerate(rows.tolist()):
            if i % 256 == 0:
                self.session.step_aside()
            if i % SLOW_PROGRESS_EVERY == 0:
                if worker.is_cancelled or generation != self.generation:
                    return None
                self.post_message(WorkProgress(label, i, total))
            if node.match(store.read(row + 1), ctx):
                keep.append(row)
        self.post_message(WorkProgress(label, total, total))
        return np.array(keep, dtype=np.int64)

    @on(ViewReady)
    def view_ready(self, message: ViewReady) -> None:
        if message.generation != self.generation:
            return
        self._view_pending = False
        if message.rows is not None:
            self.packets.show_rows(message.rows)
        self._status()

    @on(WorkProgress)
    def work_progress(self, message: WorkProgress) -> None:
        if message.done >= message.total:
            self._status()
        else:
            self._status(f"{message.label}: decoding {message.done:,}/{message.total:,}")

    # -- packet detail ------------------------------------------------------------------------
    @on(PacketList.Highlighted)
    def packet_highlighted(self, message: PacketList.Highlighted) -> None:
        self._detail_frame = message.frame
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(DETAIL_DELAY, self._show_detail)

    @on(PacketList.Chosen)
    def packet_chosen(self, message: PacketList.Chosen) -> None:
        self._detail_frame = message.frame
        self._show_detail()
        self.query_one(DetailTree).focus()

    def _show_detail(self) -> None:
        frame = self._detail_frame
        detail = self.query_one(DetailTree)
        hexview = self.query_one(HexView)
        if frame is None:
            detail.clear()
            hexview.show(b"")
            return
        session = self.session
        packet = session.store.packet(frame)
        ctx = Context(session.subflow(packet.row.subflow), session.index.first_ts or 0.0, session.find_mapping,
                      session.anchors.reference)
        detail.show(dissect(packet, ctx), session.findings_by_frame.get(frame))
        seg = packet.segment
        hexview.show(packet.data, seg.payload_offset if seg is not None else -1)

    @on(Tree.NodeHighlighted, "#detail")
    def field_highlighted(self, event: Tree.NodeHighlighted[tuple[int, int]]) -> None:
        data = event.node.data
        self.query_one(HexView).highlight = data if data is not None else (0, 0)

    # -- jumping ------------------------------------------------------------------------------
    def jump_to_frame(self, frame: int) -> bool:
        """Put the cursor on ``frame``, clearing the filter and selection if they hide it."""
        total = self.session.index.count
        if not 1 <= frame <= total:
            self.notify(f"no frame {frame} (1–{total:,})", severity="error")
            return False
        packets = self.packets
        position = packets.position_of(frame)
        if position is None:
            self.clear_view()
            self.notify(f"frame {frame} was hidden: filter and selection cleared")
            position = packets.position_of(frame)
            if position is None:
                return False
        packets.go_to_position(position)
        packets.focus()
        return True

    def clear_view(self) -> None:
        self.selection = ALL
        self.filter_node = None
        self.filter_text = ""
        self.query_one("#filter-input", Input).value = ""
        self.query_one("#filter-error", Static).update("")
        self.generation += 1
        self._view_is_filtered = False
        self.packets.show_all(self.session.index.count)
        self._status()

    def action_goto(self) -> None:
        total = self.session.index.count

        def check(text: str) -> str | None:
            try:
                frame = int(text)
            except ValueError:
                return f"{text!r} is not a frame number"
            return None if 1 <= frame <= total else f"frames are 1–{total:,}"

        def done(text: str | None) -> None:
            if text:
                self.jump_to_frame(int(text))

        self.push_screen(PromptScreen(f"Go to frame (1–{total:,})", "frame number", check=check), done)

    def action_next_finding(self, forward: int) -> None:
        frames = self.session.finding_frames
        current = self.packets.current_frame or 0
        ordered = frames[frames > current] if forward else frames[frames < current][::-1]
        for frame in ordered.tolist():
            position = self.packets.position_of(int(frame))
            if position is not None:
                self.packets.go_to_position(position)
                return
        self.notify("no further frame with a finding in this view")

    # -- search -------------------------------------------------------------------------------
    def action_search(self) -> None:
        def done(text: str | None) -> None:
            if text:
                self.search_term = text
                self.search(text, True)

        self.push_screen(PromptScreen("Search (filter expression or text in Info)", "e.g. MP_JOIN or dss.fin",
                                      self.search_term or ""), done)  # fmt: skip

    def action_search_next(self, forward: int) -> None:
        if self.search_term:
            self.search(self.search_term, bool(forward))
        else:
            self.action_search()

    @work(thread=True, exclusive=True, group="search")
    def search(self, term: str, forward: bool) -> None:
        packets = self.packets
        session = self.session
        count = packets.count
        start = packets.cursor
        positions = np.arange(start + 1, count) if forward else np.arange(start - 1, -1, -1)
        rows = positions if packets.view is None else packets.view[positions]
        generation = self.generation
        try:
            node: Node | None = parse(term)
        except FilterError:
            node = None
        if node is not None:
            ctx = session.filter_context()
            exact = evaluate(node, ctx)
            if exact is not None:
                hits = rows[exact[rows]]
            else:
                sup = node.superset(ctx)
                hits = self._first_match(rows[sup[rows]], lambda row: node.match(session.store.read(row + 1), ctx),
                                         generation)  # fmt: skip
        else:
            needle = term.lower()
            store = session.store
            hits = self._first_match(rows, lambda row: needle in store.info(store.read(row + 1)).lower(), generation)
        frame = int(hits[0]) + 1 if hits is not None and len(hits) else None
        self.post_message(SearchDone(frame, term, forward))

    def _first_match(self, rows: npt.NDArray[np.int64], test: object, generation: int) -> npt.NDArray[np.int64]:
        worker = get_current_worker()
        assert callable(test)
        total = len(rows)
        for i, row in enumerate(rows.tolist()):
            if i % 256 == 0:
                self.session.step_aside()
            if i % SLOW_PROGRESS_EVERY == 0:
                if worker.is_cancelled:
                    return np.zeros(0, dtype=np.int64)
                self.post_message(WorkProgress("search", i, total))
            if test(row):
                self.post_message(WorkProgress("search", total, total))
                return np.array([row], dtype=np.int64)
        self.post_message(WorkProgress("search", total, total))
        return np.zeros(0, dtype=np.int64)

    @on(SearchDone)
    def search_done(self, message: SearchDone) -> None:
        if message.frame is None:
            where = "after" if message.forward else "before"
            self.notify(f"{message.term!r}: no match {where} the cursor", severity="warning")
            return
        self.jump_to_frame(message.frame)

    # -- other views --------------------------------------------------------------------------
    def _selected_connection_id(self) -> int | None:
        if self.selection.conn_id is not None:
            return self.selection.conn_id
        frame = self.packets.current_frame
        if frame is None:
            return None
        row = self.session.index.row(frame - 1)
        table = self.session.subflow_conn
        return int(table[row.subflow]) or None if row.subflow < len(table) else None

    def _need_loaded(self, what: str) -> bool:
        if not self.session.loaded:
            self.notify(f"{what} is available once the trace has loaded", severity="warning")
            return False
        return True

    def _jump_if_chosen(self, frame: int | None) -> None:
        """A list screen closed: go to the frame it chose (None: it was dismissed)."""
        if frame is not None:
            self.jump_to_frame(frame)

    def action_findings(self) -> None:
        if not self._need_loaded("the findings view"):
            return
        analysis = self.session.analysis
        assert analysis is not None
        self.push_screen(FindingsScreen(analysis.findings, analysis.suppressed_findings), self._jump_if_chosen)

    def action_diagnosis(self) -> None:
        if not self._need_loaded("the diagnosis"):
            return
        analysis = self.session.analysis
        assert analysis is not None
        self.push_screen(DiagnosisScreen(analysis, self._selected_connection_id()), self._jump_if_chosen)

    def action_follow(self) -> None:
        if not self._need_loaded("following a stream"):
            return
        conn_id = self._selected_connection_id()
        conn = self.session.connection(conn_id) if conn_id is not None else None
        if conn is None:
            analysis = self.session.analysis
            conns = analysis.connections if analysis is not None else []
            if not conns:
                self.notify("no MPTCP connection in this trace", severity="warning")
                return
            conn = conns[0]
        analysis = self.session.analysis
        streams = analysis.streams.get(conn.id) if analysis is not None else None
        self.push_screen(FollowScreen(conn, self.session.spool, streams))

    def action_plots(self) -> None:
        if not self._need_loaded("the plots"):
            return
        analysis = self.session.analysis
        assert analysis is not None
        self.push_screen(PlotsScreen(analysis, self.session.plots, self._selected_connection_id()))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_focus_filter(self) -> None:
        self.query_one("#filter-input", Input).focus()

    def action_clear(self) -> None:
        focused = self.focused
        if isinstance(focused, Input):
            self.packets.focus()
            return
        if self._view_is_filtered or self.filter_text:
            self.clear_view()
            self.query_one(ConnectionsTree).move_cursor(self.query_one(ConnectionsTree).root)

    def action_time_mode(self) -> None:
        packets = self.packets
        packets.time_mode = TIME_MODES[(TIME_MODES.index(packets.time_mode) + 1) % len(TIME_MODES)]
        self._update_header_row()

    def action_toggle_lower(self) -> None:
        """Stacked panes: show the hex dump instead of the detail tree, or back."""
        if not self.screen_stack[0].has_class("-stacked"):
            return
        self.show_hex = not self.show_hex
        self._apply_width(self.size.width)

    def action_toggle_connections(self) -> None:
        shown = not self.screen_stack[0].has_class("-hide-connections")
        self.show_connections = not shown
        self._apply_width(self.size.width)
        if self.show_connections:
            self.query_one(ConnectionsTree).focus()
        else:
            self.packets.focus()

    def action_toggle_theme(self) -> None:
        self.theme = "textual-light" if self.current_theme.dark else "textual-dark"

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Findings", "All findings, sortable; Enter jumps to the frame", self.action_findings)
        yield SystemCommand("Follow stream", "Reassembled data of the selected connection", self.action_follow)
        yield SystemCommand("Plots", "DSN, throughput and Data ACK per subflow", self.action_plots)
        yield SystemCommand("Go to frame", "Jump to a frame number", self.action_goto)
        yield SystemCommand("Search", "Find the next packet matching an expression or text", self.action_search)
        yield SystemCommand("Time format", "Relative, absolute (UTC) or delta times", self.action_time_mode)
        yield SystemCommand("Toggle dark/light", "Switch between the dark and light themes", self.action_toggle_theme)
        yield SystemCommand("Clear filter", "Show every packet", self.clear_view)
        yield SystemCommand("Help", "Keys and the filter language", self.action_help)
        presets = {
            "MPTCP packets": "mptcp",
            "Frames with findings": "finding",
            "Handshakes (MP_CAPABLE, MP_JOIN)": "option == MP_CAPABLE or option == MP_JOIN",
            "Address signalling (ADD_ADDR, REMOVE_ADDR)": "option == ADD_ADDR or option == REMOVE_ADDR",
            "DATA_FIN": "dss.fin",
            "Resets and fast closes": "rst or option == MP_FASTCLOSE or option == MP_TCPRST",
        }
        for title, expression in presets.items():
            yield SystemCommand(f"Filter: {title}", expression, lambda e=expression: self._preset(e))

    def _preset(self, expression: str) -> None:
        self.query_one("#filter-input", Input).value = expression
        self.set_filter(expression)

    def on_unmount(self) -> None:
        self.workers.cancel_all()
        self.session.close()


def run(path: str, absolute: bool = False) -> None:
    """Open the inspector on ``path`` (the CLI's ``tui`` command). Exits 2 if the file cannot be read."""
    try:
        app = MptcpInspector(path)
        app.session.store.absolute = absolute
    except CaptureError as exc:
        print(f"mptcp-analyze: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    app.run()
    if app.load_error is not None:
        print(f"mptcp-analyze: error: {app.load_error}", file=sys.stderr)
        raise SystemExit(2)
