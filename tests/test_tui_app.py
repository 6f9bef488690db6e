"""Pilot-driven tests of the inspector: loading, navigation, filters, jumps, follow, go-to, search.

Why: the inspector is keyboard-first; these tests press the keys a user presses and check what
the app then shows, on real captures.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from helpers.tui import wait_loaded
from textual.pilot import Pilot
from textual.widgets import Input, Static

from tui.app import MptcpInspector
from tui.index import OPT_MP_JOIN
from tui.screens.findings import FindingsScreen
from tui.screens.follow import FollowScreen, StreamView
from tui.screens.plots import PlotsScreen
from tui.screens.prompt import PromptScreen
from tui.widgets.connections import ConnectionsTree
from tui.widgets.detail import DetailTree
from tui.widgets.hexdump import HexView

REPO = Path(__file__).resolve().parent.parent
TCPDUMP = REPO / "tests" / "data" / "tcpdump"
V0 = TCPDUMP / "mptcp-v0.pcap"  # 264 frames, one v0 connection, two subflows, no findings
AA_V1 = TCPDUMP / "mptcp-aa-v1.pcap"  # 24 frames; frame 13 carries an ADD_ADDR with a wrong HMAC


async def settle(pilot: Pilot[None]) -> None:
    """Wait until the trace is loaded and every worker (filter, search) is done."""
    app = pilot.app
    assert isinstance(app, MptcpInspector)
    await wait_loaded(pilot, lambda: app.session.loaded)
    await app.workers.wait_for_complete()
    await pilot.pause()


def drive(path: Path, body: Callable[[MptcpInspector, Pilot[None]], Awaitable[None]],
          size: tuple[int, int] = (120, 40)) -> None:  # fmt: skip
    async def main() -> None:
        app = MptcpInspector(str(path))
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            await body(app, pilot)

    asyncio.run(main())


def test_loads_connections_and_every_frame() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        assert app.packets.count == 264
        tree = app.query_one(ConnectionsTree)
        conn = tree.root.children[0]
        assert "#1 MPTCP v0" in str(conn.label)
        assert [child.data.subflow_ids for child in conn.children if child.data] == [(1,), (2,)]
        assert "264 packets" in str(app.sub_title)
        assert app.packets.current_frame == 1
        assert "Frame 1" in str(app.query_one(DetailTree).root.children[0].label)

    drive(V0, body)


def test_keyboard_navigation() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        packets = app.packets
        await pilot.press("down", "down", "down")
        assert packets.current_frame == 4
        await pilot.press("end")
        assert packets.current_frame == 264
        await pilot.press("home", "pagedown")
        assert packets.current_frame == 1 + packets.scrollable_content_region.height
        await pilot.press("up")
        assert packets.current_frame == packets.scrollable_content_region.height
        await pilot.pause(0.1)
        detail = app.query_one(DetailTree)
        assert f"Frame {packets.current_frame}" in str(detail.root.children[0].label)

    drive(V0, body)


def test_enter_opens_the_detail_and_a_field_lights_its_bytes() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        await pilot.press("down", "down", "down", "enter")  # frame 4: ADD_ADDR + DSS
        await pilot.pause(0.1)
        detail = app.query_one(DetailTree)
        assert app.focused is detail
        labels = []

        def walk(node) -> None:  # type: ignore[no-untyped-def]
            labels.append((str(node.label), node))
            for child in node.children:
                walk(child)

        walk(detail.root)
        dsn = next(node for label, node in labels if label.startswith("Data sequence number"))
        assert any("Relative to the sender's IDSN: 1" in str(c.label) for c in dsn.children)
        checksum = next(node for label, node in labels if label.startswith("Checksum: 0x082f"))
        assert "[correct]" in str(checksum.children[0].label)
        detail.select_node(dsn)
        detail.move_cursor(dsn)
        await pilot.pause()
        assert app.query_one(HexView).highlight == (82, 86)

    drive(V0, body)


def test_filter_narrows_the_list_and_bad_filter_explains() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"option == MP_JOIN", "enter")
        await settle(pilot)
        packets = app.packets
        assert packets.count == 3
        for position in range(packets.count):
            assert app.session.index.row(packets.row_at(position)).opts & OPT_MP_JOIN
        assert "3 of 264 shown" in str(app.query_one("#status-text", Static).content)
        # A typo keeps the current view and says where the problem is.
        filter_input = app.query_one("#filter-input", Input)
        filter_input.value = "subflw == 2"
        await pilot.press("slash", "enter")
        await settle(pilot)
        assert "unknown field 'subflw'; did you mean 'subflow'?" in app.filter_error
        assert packets.count == 3
        # Escape (outside the input) clears the filter.
        await pilot.press("escape", "escape")
        await settle(pilot)
        assert packets.count == 264

    drive(V0, body)


def test_selecting_a_subflow_filters_the_list() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        tree = app.query_one(ConnectionsTree)
        subflow2 = tree.root.children[0].children[1]
        tree.select_node(subflow2)
        await pilot.pause()
        await settle(pilot)
        packets = app.packets
        assert 0 < packets.count < 264
        assert {app.session.index.row(packets.row_at(p)).subflow for p in range(packets.count)} == {2}

    drive(V0, body)


def test_go_to_frame_and_its_errors() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        await pilot.press("g")
        assert isinstance(app.screen, PromptScreen)
        await pilot.press(*"999", "enter")
        assert isinstance(app.screen, PromptScreen)
        assert "frames are 1–264" in str(app.screen.query_one("#prompt-error", Static).content)
        app.screen.query_one(Input).value = ""
        await pilot.press(*"200", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, PromptScreen)
        assert app.packets.current_frame == 200

    drive(V0, body)


def test_go_to_a_frame_hidden_by_the_filter_clears_the_filter() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        app.set_filter("subflow == 2")
        await settle(pilot)
        assert app.jump_to_frame(1)
        await settle(pilot)
        assert app.packets.count == 264 and app.packets.current_frame == 1 and app.filter_text == ""

    drive(V0, body)


def test_finding_enter_jumps_to_its_frame() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        assert app.packets.current_frame == 1
        await pilot.press("e")
        screen = app.screen
        assert isinstance(screen, FindingsScreen)
        await pilot.press("r")  # sort by rule: ADDR-001, the ADD_ADDR HMAC error, comes first
        explanation = str(screen.query_one("#findings-explain", Static).content)
        assert "ADDR-001" in explanation and "§3.4.1" in explanation
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert not isinstance(app.screen, FindingsScreen)
        assert app.packets.current_frame == 13
        detail = app.query_one(DetailTree)
        assert "Findings on this frame" in str(detail.root.children[0].label)

    drive(AA_V1, body)


def test_next_finding_key() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        await pilot.press("right_square_bracket")
        assert app.packets.current_frame == 13  # ADDR-001
        await pilot.press("right_square_bracket")
        assert app.packets.current_frame == 22  # CLOSE-004

    drive(AA_V1, body)


def test_follow_view_toggles_and_saves(tmp_path: Path) -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        await pilot.press("s")
        screen = app.screen
        assert isinstance(screen, FollowScreen)
        view = screen.query_one(StreamView)
        assert view.lines
        sides = {side for side, _text in view.lines}
        assert sides == {0, 1}
        await pilot.press("x")
        assert screen.hex_mode and view.lines[0][1].startswith("00000000  ")
        await pilot.press("v")  # client → server only
        assert screen.direction == "c2s" and {side for side, _ in view.lines} == {0}
        out = tmp_path / "c2s.bin"
        written = screen.save_to(out)
        analysis = app.session.analysis
        assert analysis is not None
        summary = analysis.streams[1][0]
        assert written == summary.bytes == out.stat().st_size
        if summary.sha256:
            assert hashlib.sha256(out.read_bytes()).hexdigest() == summary.sha256
        await pilot.press("escape")
        assert not isinstance(app.screen, FollowScreen)

    drive(V0, body)


def test_search_finds_text_and_expressions() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        await pilot.press("ctrl+f", *"MP_JOIN SYN/ACK", "enter")
        await settle(pilot)
        first = app.packets.current_frame
        assert first is not None
        assert "MP_JOIN SYN/ACK" in app.session.store.packet(first).summary()
        await pilot.press("home")
        app.search_term = "dss.fin"
        await pilot.press("n")
        await settle(pilot)
        frame = app.packets.current_frame
        assert frame is not None and app.session.index.row(frame - 1).dss & 0x10

    drive(V0, body)


def test_plots_help_theme_and_time_modes() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        await pilot.press("p")
        assert isinstance(app.screen, PlotsScreen)
        await pilot.press("escape", "question_mark")
        assert app.screen.__class__.__name__ == "HelpScreen"
        await pilot.press("escape", "d")
        assert not app.current_theme.dark
        header = app.query_one("#packet-header", Static)
        await pilot.press("t")
        assert "Time (UTC)" in str(header.content)
        await pilot.press("t")
        assert "Δ Time" in str(header.content)

    drive(V0, body)


def test_small_terminal_hides_the_connections_pane_until_asked() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        tree = app.query_one(ConnectionsTree)
        assert not tree.display
        await pilot.press("c")
        assert tree.display and app.focused is tree

    drive(V0, body, size=(80, 24))


def test_narrow_terminal_stacks_detail_and_hex_and_x_switches() -> None:
    """At 80 columns the detail tree and the hex dump each get the full width, one at a time."""

    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        detail, hexview = app.query_one(DetailTree), app.query_one(HexView)
        await pilot.press("down", "down", "down")
        await pilot.pause()
        assert detail.display and not hexview.display and detail.size.width >= 78
        await pilot.press("x")
        await pilot.pause()
        assert hexview.display and not detail.display and hexview.size.width >= 75
        assert app.query_one("#lower").border_title == "Hex · x: detail"
        await pilot.press("x")
        await pilot.pause()
        assert detail.display and not hexview.display

    drive(V0, body, size=(80, 24))


def test_wide_terminal_keeps_detail_and_hex_side_by_side() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        detail, hexview = app.query_one(DetailTree), app.query_one(HexView)
        await pilot.press("x")  # no effect when both fit
        await pilot.pause()
        assert detail.display and hexview.display and hexview.outer_size.width == 75
        assert app.query_one("#lower").border_title is None

    drive(V0, body, size=(200, 50))


def test_narrow_connections_pane_takes_the_screen_until_a_choice() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        tree, packets = app.query_one(ConnectionsTree), app.packets
        await pilot.press("c")
        await pilot.pause()
        assert tree.display and tree.size.width == 80 and not app.query_one("#main").display
        await pilot.press("down", "enter")  # the first connection
        await settle(pilot)
        assert not tree.display and app.query_one("#main").display and app.focused is packets
        assert app.selection.conn_id == 1

    drive(V0, body, size=(80, 24))


def test_follow_view_says_complete_sha256_and_holes() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        await pilot.press("s")
        screen = app.screen
        assert isinstance(screen, FollowScreen)
        title = str(screen.query_one("#follow-title", Static).content)
        analysis = app.session.analysis
        assert analysis is not None
        for summary in analysis.streams[1]:
            if summary.sha256:
                assert summary.sha256[:16] in title
        assert ("complete" in title) and ("hole" in title) == any(s.holes for s in analysis.streams[1])

    drive(V0, body, size=(80, 24))


def test_unreadable_file_is_a_clean_error(tmp_path: Path) -> None:
    from analyzer.ingest.capture import CaptureError

    with pytest.raises(CaptureError, match="no such file"):
        MptcpInspector(str(tmp_path / "missing.pcap"))
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"this is not a capture file at all")

    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        assert app.load_error is not None and "not a pcap or pcapng file" in app.load_error

    async def main() -> None:
        app = MptcpInspector(str(junk))
        async with app.run_test() as pilot:
            for _ in range(100):
                if app.load_error:
                    break
                await pilot.pause(0.02)
            await body(app, pilot)

    asyncio.run(main())


def test_command_palette_offers_the_views() -> None:
    async def body(app: MptcpInspector, pilot: Pilot[None]) -> None:
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert {"Findings", "Follow stream", "Plots", "Go to frame", "Filter: MPTCP packets"} <= titles
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Go to frame")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert isinstance(app.screen, PromptScreen)

    drive(V0, body)


def test_run_reports_a_missing_file_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tui.app import run

    with pytest.raises(SystemExit) as info:
        run(str(tmp_path / "missing.pcap"))
    assert info.value.code == 2
    assert "no such file" in capsys.readouterr().err
