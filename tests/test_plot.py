"""``mptcp-analyze plot`` (issue 11): files written for every kind and format, series that match the analysis."""

from __future__ import annotations

import csv
import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzer import cli
from analyzer.model import Analysis
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.plot import KINDS, PlotCollector, figure
from analyzer.stats import BUCKET, Thinned

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
TRACE = SAMPLES / "two-subflows.pcap"
SIDECAR = json.loads((SAMPLES / "two-subflows.json").read_text())["connections"][0]
runner = CliRunner()


@pytest.fixture(scope="module")
def analysed() -> tuple[Analysis, PlotCollector]:
    collector = PlotCollector()
    return analyze(str(TRACE), AnalysisOptions(observers=[collector])), collector


def plot(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, ["plot", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("suffix", [".svg", ".html"])
def test_every_kind_writes_a_valid_file(tmp_path: Path, kind: str, suffix: str) -> None:
    out = tmp_path / f"plot{suffix}"
    code, output = plot(str(SAMPLES / "path-failure.pcap"), "--kind", kind, "-o", str(out))
    assert code == 0, output
    text = out.read_text()
    if suffix == ".svg":
        root = ET.fromstring(text)
        assert root.tag.endswith("svg")
        ns = "{http://www.w3.org/2000/svg}"
        drawn = root.findall(f".//{ns}polyline") or root.findall(f".//{ns}circle")  # the built-in writer
        # matplotlib (when installed) draws series as groups of paths named after their artists
        artists = [g.get("id", "") for g in root.iter(f"{ns}g")]
        assert drawn or any(a.startswith(("line2d_", "PathCollection_")) for a in artists)
    else:
        assert text.startswith("<!DOCTYPE html>") and "<svg" in text and "addEventListener('wheel'" in text


def test_png_with_matplotlib_or_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    code, output = plot(str(TRACE), "--kind", "throughput", "-o", str(out))
    if importlib.util.find_spec("matplotlib") is not None:
        assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 1000
    else:
        assert code == 2 and "matplotlib" in output and not out.exists()


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    assert plot(str(TRACE), "--kind", "owd", "-o", str(tmp_path / "x.svg"))[0] == 2
    code, _ = plot(str(TRACE), "--connection", "9", "-o", str(tmp_path / "x.svg"))
    assert code == 2 and not (tmp_path / "x.svg").exists()
    assert plot(str(TRACE), "-o", str(tmp_path / "x.pdf"))[0] == 2


def test_throughput_series_add_up_to_the_bytes_sent(analysed: tuple[Analysis, PlotCollector]) -> None:
    analysis, collector = analysed
    fig = figure(analysis, "throughput", collector=collector)
    conn = analysis.connections[0]
    for sf, series in zip(conn.subflows, fig.series, strict=True):
        sent = sum(ys * BUCKET * 1e6 / 8 for ys in series.ys)
        assert round(sent) == sf.halves[0 ^ sf.reversed].payload_bytes


def test_data_ack_series_ends_at_the_stream_length(analysed: tuple[Analysis, PlotCollector]) -> None:
    analysis, collector = analysed
    c2s, s2c = figure(analysis, "data-ack", collector=collector).series
    assert max(c2s.ys) == SIDECAR["c2s"]["bytes"] + 2 and max(s2c.ys) == SIDECAR["s2c"]["bytes"] + 2


def test_sequence_graph_points_are_the_exported_mappings(
    tmp_path: Path, analysed: tuple[Analysis, PlotCollector]
) -> None:
    """The same mappings as the per-packet export writes (a separate code path), per subflow."""
    analysis, collector = analysed
    fig = figure(analysis, "dsn", collector=collector)
    out = tmp_path / "rows.csv"
    assert runner.invoke(cli.app, ["report", str(TRACE), "--csv", str(out)]).exit_code == 0
    with out.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["direction"] == "c2s" and r["data_len"] not in ("", "0")]
    t0 = analysis.trace.first_time or 0.0
    for sf in analysis.connections[0].subflows:
        [series] = [s for s in fig.series if s.label == f"subflow {sf.id}"]
        expected = sorted((round(float(r["time"]) - t0, 5), int(r["dsn_relative"])) for r in rows
                          if r["subflow"] == str(sf.id))  # fmt: skip
        got = sorted((round(x, 5), int(y)) for x, y in zip(series.xs, series.ys, strict=True))
        assert got == expected and got
    ack = next(s for s in fig.series if s.label == "Data ACK")
    window = next(s for s in fig.series if s.label == "receive window")
    assert max(ack.ys) == SIDECAR["c2s"]["bytes"] + 2
    assert all(w >= a for a, w in zip(ack.ys, window.ys, strict=True))


def test_rtt_series_are_the_samples(analysed: tuple[Analysis, PlotCollector]) -> None:
    analysis, collector = analysed
    fig = figure(analysis, "rtt", collector=collector)
    for sf, series in zip(analysis.connections[0].subflows, fig.series, strict=True):
        rtt = sf.halves[0 ^ sf.reversed].rtt
        assert rtt is not None and len(series.ys) == rtt["samples"]
        assert min(series.ys) == pytest.approx(rtt["min_ms"], abs=1e-3)


def test_thinned_series_stay_bounded_and_span_the_trace() -> None:
    series = Thinned(limit=8)
    for i in range(10_000):
        series.add(float(i), float(i))
    assert len(series.points) < 8
    assert series.points[0][0] == 0 and series.points[-1][0] > 5_000
