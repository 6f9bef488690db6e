"""Every finding names at least one frame: a finding the user cannot click to is not actionable."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.pipeline import analyze

ROOT = Path(__file__).resolve().parents[1]
TRACES = sorted((ROOT / "samples").glob("*.pcap")) + sorted((ROOT / "tests" / "data" / "tcpdump").glob("*.pcap"))


def test_there_are_traces_to_check() -> None:
    assert len(TRACES) >= 15


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_every_finding_names_a_frame(trace: Path) -> None:
    analysis = analyze(str(trace))
    unclickable = [(f.rule, f.message) for f in analysis.findings if not f.frames]
    assert unclickable == []
    assert all(1 <= frame <= analysis.trace.packets for f in analysis.findings for frame in f.frames)
