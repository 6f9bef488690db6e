"""`compare`: two vantage points of one simulated run; loss, delay and orientation against the simulator's truth."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from helpers.captures import frames_of
from typer.testing import CliRunner

from analyzer.cli import register_extensions
from analyzer.compare import compare
from analyzer.compare.json_out import SCHEMA, comparison_to_json
from analyzer.endpoint.network import LinkSpec
from analyzer.endpoint.sim import CapturePoint, SimConfig, SimResult, run

app = register_extensions()  # simulate, lab and endpoint too (main() registers them on demand)

LOSSY = [
    LinkSpec(rate=20e6, delay=0.010, loss=0.03, jitter=0.002, reorder=0.02),
    LinkSpec(rate=10e6, delay=0.025, loss=0.03),
]


def two_points(tmp_path: Path, seed: int, **changes: object) -> tuple[Path, Path, SimResult]:
    """The client's and the server's capture of one run (same seed, same configuration)."""
    base = SimConfig(output=tmp_path / "client.pcap", paths=LOSSY, c2s_bytes=150_000, s2c_bytes=60_000, seed=seed)
    base = replace(base, **changes)  # type: ignore[arg-type]
    client = run(replace(base, capture=CapturePoint.CLIENT))
    server = run(replace(base, output=tmp_path / "server.pcap", capture=CapturePoint.SERVER))
    assert client.drops == server.drops  # one run, two vantage points
    return client.pcap, server.pcap, client


def lost_frames(report: dict[str, object], key: str) -> list[int]:
    return sorted(f for c in report["connections"] for sf in c["subflows"] for f in sf[key]["lost_frames"])  # type: ignore[index, union-attr]


@pytest.mark.parametrize("seed", [3, 11])
def test_client_to_server_losses_are_exactly_the_dropped_packets(tmp_path: Path, seed: int) -> None:
    client, server, result = two_points(tmp_path, seed)
    dropped = [d.packet for d in result.drops if d.direction == "c2s"]
    assert dropped, "the run must lose something for the test to mean anything"
    report = comparison_to_json(compare(str(client), str(server)))
    assert lost_frames(report, "a_to_b") == frames_of(client, dropped)


@pytest.mark.parametrize("seed", [3, 11])
def test_server_to_client_losses_are_exactly_the_dropped_packets(tmp_path: Path, seed: int) -> None:
    client, server, result = two_points(tmp_path, seed)
    dropped = [d.packet for d in result.drops if d.direction == "s2c"]
    assert dropped
    report = comparison_to_json(compare(str(client), str(server)))
    assert lost_frames(report, "b_to_a") == frames_of(server, dropped)


def test_swapped_captures_swap_the_directions(tmp_path: Path) -> None:
    client, server, result = two_points(tmp_path, 3)
    report = comparison_to_json(compare(str(server), str(client)))
    dropped = [d.packet for d in result.drops if d.direction == "c2s"]
    assert lost_frames(report, "b_to_a") == frames_of(client, dropped)
    assert all(sf["a_to_b_is"] == "s2c" for c in report["connections"] for sf in c["subflows"])


def test_one_way_delays_follow_the_paths(tmp_path: Path) -> None:
    client, server, _ = two_points(tmp_path, 3)
    report = comparison_to_json(compare(str(client), str(server)))
    assert report["schema"] == SCHEMA
    assert abs(report["clock_offset_s"]) < 1e-4  # the simulator's two captures share one clock
    (conn,) = report["connections"]
    assert conn["match"] == "keys"
    first, second = conn["subflows"]
    for sf, delay_ms in ((first, 10.0), (second, 25.0)):
        for key in ("a_to_b", "b_to_a"):
            owd = sf[key]["owd_ms"]
            # propagation plus at least one serialisation; queueing only adds
            assert delay_ms <= owd["min"] < delay_ms + 2
            assert owd["min"] <= owd["median"] <= owd["p95"] <= owd["max"] < delay_ms + 100
        assert sf["middlebox"] == []


def test_clock_offset_is_estimated(tmp_path: Path) -> None:
    """Shift every timestamp of B by 2.5 s: the offset is found and the delays do not change."""
    import dpkt

    client, server, _ = two_points(tmp_path, 3)
    shifted = tmp_path / "shifted.pcap"
    with server.open("rb") as src, shifted.open("wb") as dst:
        writer = dpkt.pcap.Writer(dst, linktype=101, snaplen=65535)
        for ts, data in dpkt.pcap.Reader(src):
            writer.writepkt(data, ts=ts + 2.5)
    plain = comparison_to_json(compare(str(client), str(server)))
    moved = comparison_to_json(compare(str(client), str(shifted)))
    assert moved["clock_offset_s"] == pytest.approx(2.5, abs=1e-4)
    for x, y in zip(plain["connections"][0]["subflows"], moved["connections"][0]["subflows"], strict=True):
        for key in ("a_to_b", "b_to_a"):
            assert x[key]["lost_frames"] == y[key]["lost_frames"]
            assert y[key]["owd_ms"]["median"] == pytest.approx(x[key]["owd_ms"]["median"], abs=0.01)


def test_cli_json_and_text(tmp_path: Path) -> None:
    client, server, _ = two_points(tmp_path, 3)
    runner = CliRunner()
    result = runner.invoke(app, ["compare", str(client), str(server), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["schema"] == "mptcp-analyze-compare/1"
    result = runner.invoke(app, ["compare", str(client), str(server)])
    assert result.exit_code == 0
    assert "matched by keys" in result.output and "A→B (c2s)" in result.output
    result = runner.invoke(app, ["compare", str(client), str(tmp_path / "missing.pcap")])
    assert result.exit_code == 2


def test_simulate_cli_two_vantage_points_and_a_middlebox(tmp_path: Path) -> None:
    """`simulate --capture client|server` with one seed: compare's losses add up to what the summary says."""
    import re

    runner = CliRunner()
    summaries = []
    for side in ("client", "server"):
        args = ["simulate", "--bytes", "120K", "--loss", "0.03", "--seed", "4", "--middlebox", "nat"]
        result = runner.invoke(app, [*args, "--capture", side, "-o", str(tmp_path / f"{side}.pcap")])
        assert result.exit_code == 0, result.output
        summaries.append(result.output)
    dropped = {int(m.group(1)) for text in summaries if (m := re.search(r"(\d+) dropped by the network", text))}
    assert len(dropped) == 1 and dropped.pop() > 0  # one run seen from both ends
    counts = re.search(r"(\d+) dropped by the network", summaries[0])
    assert counts is not None
    result = runner.invoke(app, ["compare", str(tmp_path / "client.pcap"), str(tmp_path / "server.pcap"), "--json"])
    report = json.loads(result.output)
    lost = sum(sf[k]["lost"] for c in report["connections"] for sf in c["subflows"] for k in ("a_to_b", "b_to_a"))
    assert lost == int(counts.group(1))
    result = runner.invoke(app, ["compare", str(tmp_path / "client.pcap"), str(tmp_path / "server.pcap")])
    assert "address_rewritten" in result.output and "198.51.100.1" in result.output
    result = runner.invoke(app, ["simulate", "--middlebox", "teleport", "-o", str(tmp_path / "x.pcap")])
    assert result.exit_code == 2


def test_bad_input_is_one_line_never_a_traceback(tmp_path: Path) -> None:
    client, server, sim = two_points(tmp_path, 3)
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"\x00not a capture at all" * 10)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(client.read_bytes()[: client.stat().st_size // 2 + 7])  # ends inside a record
    runner = CliRunner()
    for args in ([str(garbage), str(server)], [str(client), str(garbage)], ["-", str(server)]):
        result = runner.invoke(app, ["compare", *args])
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    result = runner.invoke(app, ["compare", str(cut), str(server), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert any("A:" in error for error in report["errors"])  # the damage is named
    # the server's packets after the cut are not called lost: the A capture simply ended
    lost = sum(sf["b_to_a"]["lost"] for sf in report["connections"][0]["subflows"])
    assert lost <= sum(d.direction == "s2c" for d in sim.drops)


def test_a_capture_compared_with_itself_shows_nothing(tmp_path: Path) -> None:
    client, _, _ = two_points(tmp_path, 3)
    report = comparison_to_json(compare(str(client), str(client)))
    for sf in report["connections"][0]["subflows"]:
        assert sf["middlebox"] == []
        for key in ("a_to_b", "b_to_a"):
            assert sf[key]["lost"] == sf[key]["reordered"] == sf[key]["unmatched_downstream"] == 0
            assert sf[key]["owd_ms"]["max"] == 0


def test_reordering_only_where_the_path_reorders(tmp_path: Path) -> None:
    paths = [LinkSpec(rate=20e6, delay=0.010, reorder=0.05), LinkSpec(rate=10e6, delay=0.025)]
    client, server, _ = two_points(tmp_path, 6, paths=paths)
    report = comparison_to_json(compare(str(client), str(server)))
    reorders, steady = report["connections"][0]["subflows"]
    assert reorders["a_to_b"]["reordered"] > 0 and reorders["a_to_b"]["lost"] == 0
    assert steady["a_to_b"]["reordered"] == steady["b_to_a"]["reordered"] == 0
    # a held-back packet arrives reorder_delay late: the p95..max delay shows it, the minimum does not
    assert reorders["a_to_b"]["owd_ms"]["max"] >= 10.0 + 4.0 > reorders["a_to_b"]["owd_ms"]["min"]
