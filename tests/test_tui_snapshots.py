"""Snapshots (pytest-textual-snapshot) of each inspector screen on a bundled capture.

Why: layout regressions (a pane that vanishes at 80×24, a column that no longer fits) are visible
only on screen. After an intended change, review and accept with ``pytest --snapshot-update``.
The captures are the vendored tcpdump ones, which do not change when samples/ is regenerated;
new analyzer rules that add findings to them change these snapshots on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from helpers.tui import wait_loaded
from textual.pilot import Pilot

from tui.app import MptcpInspector

REPO = Path(__file__).resolve().parent.parent
TCPDUMP = REPO / "tests" / "data" / "tcpdump"
V0 = TCPDUMP / "mptcp-v0.pcap"
AA_V1 = TCPDUMP / "mptcp-aa-v1.pcap"

SnapCompare = Callable[..., bool]


def after_load(*keys: str) -> Callable[[Pilot[None]], Any]:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, MptcpInspector)
        await wait_loaded(pilot, lambda: app.session.loaded)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)

    return run_before


def snap(snap_compare: SnapCompare, path: Path, size: tuple[int, int], keys: Iterable[str] = ()) -> bool:
    result: bool = snap_compare(MptcpInspector(str(path)), terminal_size=size, run_before=after_load(*keys))
    return result


class TestMainScreen:
    def test_main_80x24(self, snap_compare: SnapCompare) -> None:
        """Packet list, detail and hex at 80×24; the connections pane is hidden."""
        assert snap(snap_compare, V0, (80, 24), ["down", "down", "down"])

    def test_main_120x40(self, snap_compare: SnapCompare) -> None:
        """Connections pane, packet list, detail tree with a field selected and its bytes lit in the hex dump."""
        assert snap(snap_compare, V0, (120, 40), ["down", "down", "down", "enter", *["down"] * 12])

    def test_finding_marker_and_filter_120x40(self, snap_compare: SnapCompare) -> None:
        """A frame with a finding (marker and findings node) in a filtered list."""
        keys = ["slash", *"mptcp and frame > 5", "enter", "right_square_bracket"]
        assert snap(snap_compare, AA_V1, (120, 40), keys)

    def test_hex_pane_80x24(self, snap_compare: SnapCompare) -> None:
        """Too narrow for both: x swaps the detail tree for a full-width hex dump."""
        assert snap(snap_compare, V0, (80, 24), ["down", "down", "down", "x"])

    def test_connections_pane_80x24(self, snap_compare: SnapCompare) -> None:
        """Below 100 columns the connections pane takes the whole screen, every subflow readable."""
        assert snap(snap_compare, AA_V1, (80, 24), ["c"])

    def test_main_200x50(self, snap_compare: SnapCompare) -> None:
        """A large terminal: connections, packets, detail and a 16-byte hex dump side by side."""
        assert snap(snap_compare, V0, (200, 50), ["down", "down", "down", "enter", *["down"] * 12])

    def test_bad_filter_80x24(self, snap_compare: SnapCompare) -> None:
        """A bad expression leaves the list alone and points at the problem."""
        assert snap(snap_compare, V0, (80, 24), ["slash", *"subflow == 2 and dss.fn", "enter"])


class TestOtherScreens:
    def test_findings_80x24(self, snap_compare: SnapCompare) -> None:
        """Findings table sorted by severity, with the rule's explanation and RFC section."""
        assert snap(snap_compare, AA_V1, (80, 24), ["e", "v"])

    def test_follow_80x24(self, snap_compare: SnapCompare) -> None:
        """Follow stream in hex, both directions coloured."""
        assert snap(snap_compare, V0, (80, 24), ["s", "x"])

    def test_follow_200x50(self, snap_compare: SnapCompare) -> None:
        """Follow stream with each direction's full SHA-256 and completeness."""
        assert snap(snap_compare, V0, (200, 50), ["s"])

    def test_plots_120x40(self, snap_compare: SnapCompare) -> None:
        """The DSN vs time plot of the connection, per subflow."""
        assert snap(snap_compare, V0, (120, 40), ["p"])

    def test_help_80x24(self, snap_compare: SnapCompare) -> None:
        """Help: keys and the filter language."""
        assert snap(snap_compare, V0, (80, 24), ["question_mark"])

    def test_light_theme_80x24(self, snap_compare: SnapCompare) -> None:
        """The light theme."""
        assert snap(snap_compare, V0, (80, 24), ["d", "down"])


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_main_screen_fits(size: tuple[int, int], snap_compare: SnapCompare) -> None:
    """The sample with two subflows and an ADD_ADDR, at both sizes."""
    assert snap(snap_compare, TCPDUMP / "mptcp-aa-v1.pcap", size, ["down", "down"])
