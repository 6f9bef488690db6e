"""``plot --kind owd`` (issue 11): one-way delay per subflow and direction, from two vantage points.

The pair comes from ``mptcp-analyze simulate --capture client|server --seed S`` (one run, two captures), the
series must be exactly compare's delays (its min/median/p95/max are compare's ``owd_ms``), and each format is
a valid file. Without ``--peer`` the command says owd needs two captures (exit 2).
"""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzer.cli import register_extensions
from analyzer.compare import compare
from analyzer.compare.owd import owd_figure
from analyzer.compare.packets import percentile
from analyzer.pipeline import AnalysisOptions, analyze

app = register_extensions()  # simulate, lab and endpoint too (main() registers them on demand)

runner = CliRunner()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One simulated run (two paths of 10 ms and 30 ms), captured at the client and at the server."""
    out = tmp_path_factory.mktemp("owd")
    paths = []
    for side in ("client", "server"):
        path = out / f"{side}.pcap"
        args = ["simulate", "--bytes", "150K", "--delay", "10ms,30ms", "--loss", "0.02", "--seed", "7", "-q"]
        result = runner.invoke(app, [*args, "--capture", side, "-o", str(path)])
        assert result.exit_code == 0, result.output
        paths.append(path)
    return paths[0], paths[1]


def test_series_are_compares_delays(pair: tuple[Path, Path]) -> None:
    client, server = pair
    comparison = compare(str(client), str(server))
    first = analyze(str(client), AnalysisOptions(check=False, stats=False)).trace.first_time
    fig = owd_figure(comparison, 1, first)
    subflows = [sf for sf in comparison.connections[0].subflows if sf.b is not None]
    assert len(fig.series) == 2 * len(subflows) >= 4  # every subflow, both directions
    stats = [s for sf in subflows for s in (sf.a_to_b, sf.b_to_a)]
    for series, direction in zip(fig.series, stats, strict=True):
        assert len(series.ys) == direction.matched > 0
        ordered = sorted(series.ys)
        numbers = {"min": ordered[0], "median": _median(ordered), "p95": percentile(ordered, 0.95), "max": ordered[-1]}
        assert {k: round(v, 3) for k, v in numbers.items()} == direction.owd_ms, series.label
        assert series.xs == sorted(series.xs) and series.xs[0] >= 0
    # the paths' delays show: subflow 1 (10 ms) and the join (30 ms), at least the configured delay each way
    assert min(fig.series[0].ys) == pytest.approx(10, abs=0.5)
    assert min(fig.series[2].ys) == pytest.approx(30, abs=0.5)
    assert "c→s (A→B)" in fig.series[0].label and "s→c (B→A)" in fig.series[1].label


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


@pytest.mark.parametrize("suffix", [".svg", ".html", ".png"])
def test_each_format_is_a_valid_file(pair: tuple[Path, Path], tmp_path: Path, suffix: str) -> None:
    client, server = pair
    out = tmp_path / f"owd{suffix}"
    result = runner.invoke(app, ["plot", str(client), "--kind", "owd", "--peer", str(server), "-o", str(out)])
    if suffix == ".png" and importlib.util.find_spec("matplotlib") is None:
        assert result.exit_code == 2 and "matplotlib" in result.output
        return
    assert result.exit_code == 0, result.output
    if suffix == ".png":
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000
    elif suffix == ".svg":
        assert ET.fromstring(out.read_text()).tag.endswith("svg")
    else:
        text = out.read_text()
        assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "subflow 2" in text


def test_owd_needs_two_captures(pair: tuple[Path, Path], tmp_path: Path) -> None:
    client, server = pair
    out = tmp_path / "x.svg"
    result = runner.invoke(app, ["plot", str(client), "--kind", "owd", "-o", str(out)])
    assert result.exit_code == 2 and "needs two captures" in result.output and not out.exists()
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1
    result = runner.invoke(app, ["plot", str(client), "--kind", "rtt", "--peer", str(server), "-o", str(out)])
    assert result.exit_code == 2 and not out.exists()
    args = ["plot", str(client), "--kind", "owd", "--peer", str(server), "-c", "7", "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "no match" in result.output and not out.exists()
