"""``follow``: raw output never joins the two sides of a hole silently; one file per direction; --pcap."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers.captures import truncate_capture

from analyzer.cli import main
from analyzer.pipeline import analyze

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["follow", *args])
    code = exit_info.value.code
    return (0 if code is None else int(code)), capsys.readouterr().err


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_raw_both_directions_refuses_one_blob(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run(capsys, str(SAMPLES / "lossy.pcap"), "-c", "1")
    assert code == 2 and "undelimited" in err and len(err.strip().splitlines()) == 1


def test_raw_both_directions_writes_one_file_each(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    streams = analyze(str(SAMPLES / "lossy.pcap")).streams[1]
    code, _ = run(capsys, str(SAMPLES / "lossy.pcap"), "-c", "1", "-o", str(tmp_path / "data.bin"))
    assert code == 0
    assert sha(tmp_path / "data.c2s.bin") == streams[0].sha256
    assert sha(tmp_path / "data.s2c.bin") == streams[1].sha256


def test_existing_output_is_never_overwritten_without_force(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "up.bin"
    target.write_bytes(b"keep me")
    code, err = run(capsys, str(SAMPLES / "lossy.pcap"), "-c", "1", "-d", "c2s", "-o", str(target))
    assert code == 2 and "--force" in err and target.read_bytes() == b"keep me"
    code, _ = run(capsys, str(SAMPLES / "lossy.pcap"), "-c", "1", "-d", "c2s", "-o", str(target), "--force")
    assert code == 0 and target.stat().st_size == 80_000


@pytest.fixture()
def cut(tmp_path: Path) -> Path:
    """two-subflows cut at 100 bytes per packet: most payload is a hole."""
    path = tmp_path / "cut.pcap"
    truncate_capture(SAMPLES / "two-subflows.pcap", path, 100)
    return path


def test_raw_stops_at_the_first_hole_by_default(capsys: pytest.CaptureFixture[str], cut: Path, tmp_path: Path) -> None:
    out = tmp_path / "c2s.bin"
    code, err = run(capsys, str(cut), "-c", "1", "-d", "c2s", "-o", str(out))
    assert code == 1
    assert "stopped at stream offset" in err and "--fill-holes" in err
    offset = int(err.split("stopped at stream offset ")[1].split(":")[0])
    assert out.stat().st_size == offset


def test_fill_holes_writes_zeros_and_lists_them(capsys: pytest.CaptureFixture[str], cut: Path, tmp_path: Path) -> None:
    stream = analyze(str(cut)).streams[1][0]
    out = tmp_path / "c2s.bin"
    code, err = run(capsys, str(cut), "-c", "1", "-d", "c2s", "-o", str(out), "--fill-holes")
    assert code == 0
    data = out.read_bytes()
    assert len(data) == stream.length  # every byte of the stream at its own offset
    holes = [line.split() for line in err.splitlines() if line.startswith("hole c2s")]
    assert holes and sum(int(h[-1]) for h in holes) == stream.hole_bytes
    first_offset, first_length = int(holes[0][3]), int(holes[0][5])
    assert data[first_offset : first_offset + first_length] == bytes(first_length)


def test_allow_holes_joins_only_the_captured_bytes(
    capsys: pytest.CaptureFixture[str], cut: Path, tmp_path: Path
) -> None:
    stream = analyze(str(cut)).streams[1][0]
    out = tmp_path / "c2s.bin"
    code, _ = run(capsys, str(cut), "-c", "1", "-d", "c2s", "-o", str(out), "--allow-holes")
    assert code == 0 and out.stat().st_size == stream.bytes


def test_pcap_holds_exactly_one_connection(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = analyze(str(SAMPLES / "multi-conn.pcap"))
    wanted = next(c for c in source.connections if c.id == 2)
    out = tmp_path / "conn2.pcap"
    code, err = run(capsys, str(SAMPLES / "multi-conn.pcap"), "-c", "2", "--pcap", str(out))
    assert code == 0 and "packets written" in err
    again = analyze(str(out))
    assert len(again.connections) == 1 and not again.tcp_flows
    [conn] = again.connections
    assert [sf.packets for sf in conn.subflows] == [sf.packets for sf in wanted.subflows]
    assert again.trace.packets == sum(sf.packets for sf in wanted.subflows)
    assert [s.sha256 for s in again.streams[conn.id]] == [s.sha256 for s in source.streams[2]]
    assert (conn.sides[0].key, conn.sides[1].key) == (wanted.sides[0].key, wanted.sides[1].key)


def test_pcap_keeps_original_lengths_of_a_cut_capture(
    capsys: pytest.CaptureFixture[str], cut: Path, tmp_path: Path
) -> None:
    out = tmp_path / "conn.pcap"
    code, _ = run(capsys, str(cut), "-c", "1", "--pcap", str(out))
    assert code == 0
    before, after = analyze(str(cut)), analyze(str(out))
    assert [s.length for s in after.streams[1]] == [s.length for s in before.streams[1]]
    assert after.trace.truncated_packets == before.trace.truncated_packets
