"""Snapshots (pytest-textual-snapshot) of the split view on simulated two-vantage-point runs.

Why: the split view must stay readable at 80×24 (the two captures stacked) and use a large terminal
(side by side). The captures come from the seeded simulator, which writes the same bytes for the same
seed. After an intended change, review and accept with ``pytest --snapshot-update``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from analyzer.endpoint.middlebox import MiddleboxEffect, MiddleboxSpec
from analyzer.endpoint.network import LinkSpec
from analyzer.endpoint.sim import CapturePoint, SimConfig, run
from tui.screens.split import CompareInspector, SplitScreen

SnapCompare = Callable[..., bool]


def _pair(root: Path, cfg: SimConfig) -> tuple[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    client = run(replace(cfg, output=root / "client.pcap", capture=CapturePoint.CLIENT))
    server = run(replace(cfg, output=root / "server.pcap", capture=CapturePoint.SERVER))
    return str(client.pcap), str(server.pcap)


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    paths = [LinkSpec(rate=20e6, delay=0.010, loss=0.03), LinkSpec(rate=10e6, delay=0.025, loss=0.03)]
    cfg = SimConfig(output=Path("x"), paths=paths, c2s_bytes=150_000, s2c_bytes=60_000, seed=11)
    return _pair(tmp_path_factory.mktemp("lossy"), cfg)


@pytest.fixture(scope="module")
def boxed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    paths = [LinkSpec(rate=20e6, delay=0.010), LinkSpec(rate=10e6, delay=0.025)]
    box = MiddleboxSpec(frozenset({MiddleboxEffect.SPLIT, MiddleboxEffect.NAT}))
    cfg = SimConfig(output=Path("x"), paths=paths, c2s_bytes=80_000, s2c_bytes=20_000, seed=5, middlebox=box)
    return _pair(tmp_path_factory.mktemp("boxed"), cfg)


def after_load(*keys: str) -> Callable[[Pilot[None]], Any]:
    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, CompareInspector)
        for _ in range(1000):
            if app.loaded:
                break
            await pilot.pause(0.02)
        await app.workers.wait_for_complete()
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.pause(0.1)

    return run_before


def snap(snap_compare: SnapCompare, pair: tuple[str, str], size: tuple[int, int], keys: list[str]) -> bool:
    result: bool = snap_compare(CompareInspector(*pair), terminal_size=size, run_before=after_load(*keys))
    return result


def test_pick_80x24(snap_compare: SnapCompare, lossy: tuple[str, str]) -> None:
    """The matched connections, with their loss and effect counts."""
    assert snap(snap_compare, lossy, (80, 24), [])


def test_split_stacked_80x24(snap_compare: SnapCompare, lossy: tuple[str, str]) -> None:
    """Below 120 columns: A's list above B's, the cursor on the first lost packet (a gap in B's list)."""
    assert snap(snap_compare, lossy, (80, 24), ["enter", "n"])


def test_split_server_direction_80x24(snap_compare: SnapCompare, lossy: tuple[str, str]) -> None:
    """d: the server's direction, whose gaps are in A's list (A is downstream)."""
    assert snap(snap_compare, lossy, (80, 24), ["enter", "d", "n"])


def test_split_side_by_side_200x50(snap_compare: SnapCompare, boxed: tuple[str, str]) -> None:
    """A large terminal: A and B on one line, the NAT mark and a split segment's two pieces."""
    assert snap(snap_compare, boxed, (200, 50), ["enter", "n", "n"])


def test_split_keys_switch_subflow_and_direction(boxed: tuple[str, str]) -> None:
    """s and d reload the rows; n lands on a notable row."""
    import asyncio

    async def scenario() -> None:
        app = CompareInspector(*boxed)
        async with app.run_test(size=(200, 50)) as pilot:
            while not app.loaded:
                await pilot.pause(0.02)
            await pilot.press("enter")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, SplitScreen)
            first = list(screen.rows)
            await pilot.press("s")
            await pilot.pause()
            assert screen.subflow == 1 and screen.rows != first
            await pilot.press("d")
            await pilot.pause()
            assert screen.direction == 1
            await pilot.press("s", "d")
            await pilot.pause()
            assert screen.rows == first
            await pilot.press("n", "n")
            await pilot.pause()
            cursor = screen.query_one("#rows-both").cursor  # type: ignore[attr-defined]
            assert screen.rows[cursor].notable and screen.rows[cursor].kind == "split"
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, SplitScreen)

    asyncio.run(scenario())
