"""The inspector's diagnosis view (issue 11: the diagnosis in the report, the JSON and the TUI).

``a`` opens the verdict of each connection and its timeline, the highlighted sentence in full below the
table (never cut), Enter jumps to the sentence's first frame. At 80×24 as well as wide.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers.tui import wait_loaded
from textual.pilot import Pilot
from textual.widgets import DataTable, Static

from analyzer.pipeline import analyze
from tui.app import MptcpInspector
from tui.screens.diagnosis import DiagnosisScreen

TRACE = Path(__file__).resolve().parents[1] / "samples" / "path-failure.pcap"


async def _settle(pilot: Pilot[None], app: MptcpInspector) -> None:
    await wait_loaded(pilot, lambda: app.session.loaded)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_diagnosis_view_shows_the_timeline_and_jumps(size: tuple[int, int]) -> None:
    expected = analyze(str(TRACE)).diagnoses[1]
    stall = next(i for i, e in enumerate(expected.events) if e.kind == "stall")

    async def main() -> None:
        app = MptcpInspector(str(TRACE))
        async with app.run_test(size=size) as pilot:
            await _settle(pilot, app)
            await pilot.press("a")
            screen = app.screen
            assert isinstance(screen, DiagnosisScreen)
            title = str(screen.query_one("#diagnosis-title", Static).content)
            assert f"Connection 1: {expected.verdict}" in title
            table = screen.query_one(DataTable)
            assert table.row_count == len(expected.events)
            for _ in range(stall):
                await pilot.press("down")
            explained = str(screen.query_one("#diagnosis-explain", Static).content)
            assert expected.events[stall].text in explained  # the whole sentence, even at 80 columns
            await pilot.press("enter")
            await pilot.pause(0.1)
            assert not isinstance(app.screen, DiagnosisScreen)
            assert app.packets.current_frame == expected.events[stall].frames[0]

    asyncio.run(main())
