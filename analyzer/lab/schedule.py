"""The timed events of a run, counted from the moment the client starts its bulk data.

Path failures (``--link-down``) and path-manager changes (``--pm-event``) run on one timeline in a thread
while the traffic flows. Whatever happens, no path is left down: a stop request or a failure only skips
ahead to the pending "up" events.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from analyzer.lab.config import LabError, PmAction
from analyzer.lab.middlebox import set_path
from analyzer.lab.netns import Lab
from analyzer.lab.pm import apply_pm_event


@dataclass
class Timeline:
    """What happened, for the sidecar: link events, path-manager events, and the first failure if any."""

    link_log: list[dict[str, Any]] = field(default_factory=list)
    pm_log: list[dict[str, Any]] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)


def _stamp(t0: float, planned: float) -> dict[str, Any]:
    return {"planned_s": planned, "at_s": round(time.monotonic() - t0, 4), "epoch": round(time.time(), 6)}


def run_timeline(lab: Lab, t0: float, stop: threading.Event, out: Timeline) -> None:
    """Run every event on time (seconds after ``t0``); always leaves paths up."""
    cfg = lab.cfg
    events: list[tuple[float, int, str, int | PmAction]] = []
    events += [(start, 0, "down", p) for p, start, _ in cfg.link_down]
    events += [(end, 1, "up", p) for p, _, end in cfg.link_down]
    events += [(at, 2, "pm", action) for action, at in cfg.pm_events]
    events.sort(key=lambda e: (e[0], e[1]))
    down: set[int] = set()
    try:
        for at, _, kind, arg in events:
            if kind == "up":
                if arg not in down:
                    continue
                time.sleep(max(0.0, t0 + at - time.monotonic()))
            elif stop.wait(max(0.0, t0 + at - time.monotonic())):
                continue  # a stop request skips what is left, except bringing paths back up
            if kind == "pm":
                assert isinstance(arg, str)
                command = apply_pm_event(lab, arg)
                out.pm_log.append({"action": arg, "command": command, **_stamp(t0, at)})
                continue
            assert isinstance(arg, int)
            set_path(lab, arg, kind == "up")
            (down.discard if kind == "up" else down.add)(arg)
            out.link_log.append({"path": arg, "state": kind, **_stamp(t0, at)})
    except BaseException as exc:  # reported by the traffic run; make sure nothing stays down
        out.failures.append(exc)
        for path in sorted(down):
            with contextlib.suppress(LabError, subprocess.SubprocessError):
                set_path(lab, path, True)
