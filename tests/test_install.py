"""`pip install mptcp-analyze` (the README's first command) gives every main use, the inspector included."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_inspector_needs_no_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    core = {dep.split(">")[0].split("=")[0].split("[")[0].strip().lower() for dep in project["dependencies"]}
    assert {"textual", "textual-plotext", "numpy", "rich", "typer", "dpkt"} <= core


def test_the_inspector_imports() -> None:
    from tui.app import run

    assert callable(run)
