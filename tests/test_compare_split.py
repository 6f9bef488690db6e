"""The split view's data side: aligned rows of simulated two-vantage-point runs against the simulator's truth.

The simulator writes the client's and the server's capture of one seeded run and logs every packet the
network dropped and everything its middlebox did; the rows must show exactly those packets as gaps and
exactly those frames as marked, and hold every packet of both captures once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from helpers.captures import frames_of

from analyzer.compare import Comparison, compare
from analyzer.compare.align import Row, aligned_rows, choices, next_notable, summary
from analyzer.endpoint.middlebox import MiddleboxEffect, MiddleboxSpec
from analyzer.endpoint.network import LinkSpec
from analyzer.endpoint.sim import CapturePoint, SimConfig, SimResult, run
from tui.splitview import both_line, frame_width, one_line, side_width

LOSSY = [
    LinkSpec(rate=20e6, delay=0.010, loss=0.03, jitter=0.002, reorder=0.02),
    LinkSpec(rate=10e6, delay=0.025, loss=0.03),
]
CLEAN = [LinkSpec(rate=20e6, delay=0.010), LinkSpec(rate=10e6, delay=0.025)]


def two_points(tmp_path: Path, cfg: SimConfig) -> tuple[Path, Path, SimResult]:
    client = run(replace(cfg, output=tmp_path / "client.pcap", capture=CapturePoint.CLIENT))
    server = run(replace(cfg, output=tmp_path / "server.pcap", capture=CapturePoint.SERVER))
    return client.pcap, server.pcap, client


def lossy(tmp_path: Path, seed: int) -> tuple[Path, Path, SimResult]:
    cfg = SimConfig(output=tmp_path / "x.pcap", paths=LOSSY, c2s_bytes=150_000, s2c_bytes=60_000, seed=seed)
    return two_points(tmp_path, cfg)


def boxed(tmp_path: Path, *effects: MiddleboxEffect, checksum: bool = False) -> tuple[Path, Path, SimResult]:
    cfg = SimConfig(
        output=tmp_path / "x.pcap", paths=CLEAN, c2s_bytes=80_000, s2c_bytes=20_000, seed=5,
        middlebox=MiddleboxSpec(frozenset(effects)), checksum=checksum,
    )  # fmt: skip
    return two_points(tmp_path, cfg)


def all_rows(comparison: Comparison, direction: int) -> list[Row]:
    """Rows of ``direction`` over every matched subflow of every connection."""
    return [
        row
        for choice in choices(comparison)
        for k in choice.subflows
        for row in aligned_rows(_detail(comparison, choice.connection, k), direction)
    ]


def _detail(comparison: Comparison, conn: int, sf: int):  # type: ignore[no-untyped-def]
    detail = comparison.connections[conn].subflows[sf].detail
    assert detail is not None
    return detail


def frames(rows: list[Row], side: str, kind: str | None = None) -> list[int]:
    return sorted(
        p.frame for r in rows if kind is None or r.kind == kind for p in ([r.a] if side == "a" else [r.b]) if p
    )


@pytest.mark.parametrize("seed", [3, 11])
def test_gap_rows_are_exactly_the_dropped_packets(tmp_path: Path, seed: int) -> None:
    client, server, result = lossy(tmp_path, seed)
    comparison = compare(str(client), str(server), keep_packets=True)
    for direction, name, upstream, up_side in ((0, "c2s", client, "a"), (1, "s2c", server, "b")):
        dropped = frames_of(upstream, [d.packet for d in result.drops if d.direction == name])
        assert dropped, f"the run must lose {name} packets for the test to mean anything"
        rows = all_rows(comparison, direction)
        lost = [r for r in rows if r.kind == "lost"]
        assert frames(lost, up_side) == dropped
        down_side = "b" if up_side == "a" else "a"
        assert all(getattr(r, down_side) is None and r.owd_ms is None and r.marks[0] == "lost" for r in lost)
        assert {r.kind for r in rows} == {"pair", "lost"}  # nothing else happened on these paths


@pytest.mark.parametrize("swap", [False, True])
def test_rows_hold_every_packet_of_both_captures_once(tmp_path: Path, swap: bool) -> None:
    client, server, _ = lossy(tmp_path, 3)
    a, b = (server, client) if swap else (client, server)
    comparison = compare(str(a), str(b), keep_packets=True)
    for conn in comparison.connections:
        for sf in conn.subflows:
            assert sf.detail is not None
            for direction in (0, 1):
                work = sf.detail.works[direction]
                rows = aligned_rows(sf.detail, direction)
                assert frames(rows, "a") == sorted(r.frame for r in work.a)
                assert frames(rows, "b") == sorted(r.frame for r in work.b)
                assert sum(1 for r in rows if r.kind == "lost") == (
                    sf.a_to_b.lost if _ab(sf, direction) else sf.b_to_a.lost
                )


def _ab(sf, direction: int) -> bool:  # type: ignore[no-untyped-def]
    return (direction == 0) == (sf.a_is_client_side is not False)


def test_swapped_captures_put_the_gap_on_the_other_side(tmp_path: Path) -> None:
    client, server, result = lossy(tmp_path, 3)
    comparison = compare(str(server), str(client), keep_packets=True)
    dropped = frames_of(client, [d.packet for d in result.drops if d.direction == "c2s"])
    lost = [r for r in all_rows(comparison, 0) if r.kind == "lost"]
    assert frames(lost, "b") == dropped and all(r.a is None for r in lost)


def test_pairs_carry_the_one_way_delay_of_their_path(tmp_path: Path) -> None:
    client, server, _ = lossy(tmp_path, 3)
    comparison = compare(str(client), str(server), keep_packets=True)
    (choice,) = choices(comparison)
    for k, delay_ms in zip(choice.subflows, (10.0, 25.0), strict=True):
        detail = _detail(comparison, choice.connection, k)
        for direction in (0, 1):
            delays = [r.owd_ms for r in aligned_rows(detail, direction) if r.kind == "pair"]
            assert delays and all(d is not None and delay_ms <= d < delay_ms + 100 for d in delays)


def test_reordered_rows_are_the_reordered_count(tmp_path: Path) -> None:
    client, server, _ = lossy(tmp_path, 3)
    comparison = compare(str(client), str(server), keep_packets=True)
    conn = comparison.connections[0]
    marked = sum(1 for r in all_rows(comparison, 0) if "reordered" in r.marks)
    assert marked > 0 and marked == sum(sf.a_to_b.reordered for sf in conn.subflows)


def test_split_segments_are_one_row_per_piece(tmp_path: Path) -> None:
    client, server, result = boxed(tmp_path, MiddleboxEffect.SPLIT)
    rows = all_rows(compare(str(client), str(server), keep_packets=True), 0)
    split = [r for r in rows if r.kind == "split"]
    assert frames(split, "a") == frames_of(client, [x.before for x in result.middlebox_log])
    assert frames(split, "b") == frames_of(server, [p for x in result.middlebox_log for p in x.after])
    for n, row in enumerate(rows):  # the whole on the first piece's row, nothing beside the next pieces
        if row.kind == "split" and row.a is None:
            assert rows[n - 1].kind == "split" and row.owd_ms is None
        if row.kind == "split":
            assert "segment split" in row.marks
    assert Counter(r.kind for r in rows)["split"] == 2 * len(result.middlebox_log)
    assert all(r.kind in ("pair", "split") for r in rows)


def test_stripped_options_are_marked_on_their_rows(tmp_path: Path) -> None:
    client, server, result = boxed(tmp_path, MiddleboxEffect.STRIP_MPTCP)
    comparison = compare(str(client), str(server), keep_packets=True)
    marked = [r for d in (0, 1) for r in all_rows(comparison, d) if any(m.startswith("−") for m in r.marks)]
    assert frames(marked, "a") == frames_of(client, [x.before for x in result.middlebox_log if x.before])
    assert "−MP_CAPABLE" in marked[0].marks and marked[0].a is not None and marked[0].a.options == "MPC"
    assert marked[0].b is not None and marked[0].b.options == ""  # what arrived carried none


def test_modified_payload_is_one_row_with_both_copies(tmp_path: Path) -> None:
    client, server, result = boxed(tmp_path, MiddleboxEffect.CORRUPT, checksum=True)
    rows = all_rows(compare(str(client), str(server), keep_packets=True), 0)
    (modified,) = [r for r in rows if r.kind == "modified"]
    (action,) = result.middlebox_log
    assert modified.a is not None and [modified.a.frame] == frames_of(client, [action.before])
    assert modified.b is not None and [modified.b.frame] == frames_of(server, list(action.after))
    assert "payload modified" in modified.marks and modified.owd_ms is not None


def test_nat_and_sequence_rewriting_are_marked_and_summarised(tmp_path: Path) -> None:
    client, server, _ = boxed(tmp_path, MiddleboxEffect.NAT, MiddleboxEffect.REWRITE_SEQ)
    comparison = compare(str(client), str(server), keep_packets=True)
    conn = comparison.connections[0]
    sf = conn.subflows[0]
    rows = aligned_rows(_detail(comparison, 0, 0), 0)
    assert "NAT" in rows[0].marks and any(m.startswith("seq +") for m in rows[0].marks)
    assert rows[0].a is not None and rows[0].b is not None and rows[0].a.seq == rows[0].b.seq == 0  # ISN-relative
    lines = summary(comparison, conn, sf, 0)
    assert "address_rewritten" in lines[-1] and "sequence_rewritten" in lines[-1]
    assert any(line.startswith("▶c2s A→B") for line in lines)


def test_next_notable_walks_losses_and_effects(tmp_path: Path) -> None:
    client, server, _ = lossy(tmp_path, 11)
    rows = all_rows(compare(str(client), str(server), keep_packets=True), 0)
    seen, position = [], -1
    while (position := next_notable(rows, position)) is not None:  # type: ignore[assignment]
        seen.append(position)
    assert seen == [k for k, r in enumerate(rows) if r.notable] and seen
    assert next_notable(rows, seen[-1], forward=False) == (seen[-2] if len(seen) > 1 else None)


def test_without_keep_packets_nothing_is_kept(tmp_path: Path) -> None:
    client, server, _ = lossy(tmp_path, 3)
    comparison = compare(str(client), str(server))
    assert all(sf.detail is None for c in comparison.connections for sf in c.subflows)
    assert choices(comparison) == []


def test_columns_line_up_whatever_the_row(tmp_path: Path) -> None:
    """The separators stand in the same column on every line, gaps and pieces included."""
    client, server, _ = boxed(tmp_path, MiddleboxEffect.SPLIT)
    rows = all_rows(compare(str(client), str(server), keep_packets=True), 0)
    fw = frame_width(rows)
    width = side_width(fw)
    for row in rows:
        line = both_line(row, fw)
        assert [k for k, ch in enumerate(line) if ch == "│"] == [width + 1, width + 11, 2 * width + 14]
        assert len(one_line(row, fw, "a")) >= width


def test_cli_refuses_stdin_and_json_with_the_split_view(tmp_path: Path) -> None:
    """Bad invocations of the split view: one line, exit 2, no terminal opened."""
    from typer.testing import CliRunner

    from analyzer.cli import app

    runner = CliRunner()
    both = runner.invoke(app, ["compare", "a.pcap", "b.pcap", "--tui", "--json"])
    assert both.exit_code == 2 and "exclude each other" in both.output
    stdin = runner.invoke(app, ["tui", "-", "b.pcap"])
    assert stdin.exit_code == 2 and "not stdin" in stdin.output
