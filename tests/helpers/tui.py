"""Waiting for the inspector in pilot-driven tests: the load runs in a worker, and a loaded machine is slow."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

LOAD_POLLS = 3000  # × 20 ms: up to 60 s, so a loaded machine never races the load


async def wait_loaded(pilot: Pilot[Any], loaded: Any) -> None:
    """Poll ``loaded()`` until it is true (bounded), then let every worker finish and the screen settle."""
    for _ in range(LOAD_POLLS):
        if loaded():
            break
        await pilot.pause(0.02)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()
