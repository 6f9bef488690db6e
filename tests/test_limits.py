"""Resource limits (analyzer.limits) and hostile structures: every bound is configurable, hit on purpose
here, reported (LIMIT-001 + a trace error naming it), and memory stays bounded (tracemalloc, no timings)."""

from __future__ import annotations

import gc
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from analyzer.endpoint.builder import ACK, SYN, ConnectionBuilder
from analyzer.limits import Limits
from analyzer.model import Analysis
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DSN64, DSS_MAPPING, Dss, MpCapable
from analyzer.pipeline import AnalysisOptions, analyze
from tests.helpers.damage import assert_sound
from tests.helpers.pcapgen import ipv4_tcp

ROOT = Path(__file__).resolve().parents[1]
SERVER = "10.210.255.1"


def _syn(index: int) -> bytes:
    """The SYN of a distinct client (address, port) offering MPTCP v1."""
    host, port = divmod(index, 60000)
    src = f"10.210.{(host >> 8) & 0xFF}.{(host & 0xFF) + 1}"
    return ipv4_tcp(src, SERVER, 1024 + port, 443, index * 7919, 0, SYN, MpCapable(1, 0x01, None).build())


def _flood(sc: ConnectionBuilder, count: int, first: int = 0) -> None:
    """``count`` SYNs at the scenario's current time (the clock of its own exchange does not move)."""
    for index in range(first, first + count):
        sc.packets.append((sc.time, _syn(index)))


def _run(path: str, **limits: int) -> Analysis:
    return analyze(path, AnalysisOptions(limits=Limits(**limits)))  # type: ignore[arg-type]


def _limit_findings(analysis: Analysis, name: str) -> list[str]:
    return [f.message for f in analysis.findings if f.rule == "LIMIT-001" and f"limit {name}=" in f.message]


def _peak_bytes(path: str, **limits: int) -> tuple[int, Analysis]:
    gc.collect()
    tracemalloc.start()
    try:
        analysis = _run(path, **limits)
        return tracemalloc.get_traced_memory()[1], analysis
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------------------------- the dataclass
def test_limits_parse_names_and_reject_nonsense() -> None:
    limits = Limits.parse(["max_flows=10", "max-half-open=0x20", "max_mappings=1_000"])
    assert (limits.max_flows, limits.max_half_open, limits.max_mappings) == (10, 32, 1000)
    for bad in (["nope=1"], ["max_flows"], ["max_flows=ten"], ["max_flows=0"]):
        with pytest.raises(ValueError):
            Limits.parse(bad)
    with pytest.raises(AttributeError):
        limits.max_flows = 3  # type: ignore[misc]  # frozen


def test_a_bad_limit_on_the_command_line_is_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "report", "--limit", "max_flowz=3", str(ROOT / "samples/fallback.pcap")],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown limit" in proc.stderr and "Traceback" not in proc.stderr


def test_the_limit_reaches_the_command_line_and_is_named_in_the_report(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    _flood(sc, 30)
    path = sc.write(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "check", "--no-expect", "--fail-on", "warning", "--limit",
         "max_half_open=10", "-v", path],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "LIMIT-001" in proc.stdout and "max_half_open=10" in proc.stdout


# ----------------------------------------------------------------------------------------- many connections
def test_a_syn_flood_is_summarised_past_max_half_open_and_memory_stays_bounded(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    _flood(sc, 4000)
    path = sc.write(tmp_path)
    _run(str(ROOT / "samples/two-subflows.pcap"))  # imports every stage first: only the analysis is measured
    bounded, analysis = _peak_bytes(path, max_half_open=200)
    assert len(analysis.connections) == 200  # the newest 200 SYNs are still listed
    assert analysis.connections[0].first_frame == 3801
    [message] = _limit_findings(analysis, "max_half_open")
    assert "3800 flows that sent only a SYN" in message and any("max_half_open" in e for e in analysis.trace.errors)
    unbounded, full = _peak_bytes(path)
    assert len(full.connections) == 4000 and not _limit_findings(full, "max_half_open")
    assert bounded < unbounded / 4, (bounded, unbounded)


def test_summarising_a_flood_leaves_the_real_connections_analysis_unchanged(tmp_path: Path) -> None:
    """Flood SYNs interleaved with a real exchange: evicting them changes nothing about the real one."""

    def build(flood: bool) -> str:
        sc = ConnectionBuilder()
        sf = sc.initial()
        for number in range(40):
            if flood:
                _flood(sc, 50, first=number * 50)
            sf.send("c", bytes([number]) * 100)
            sf.ack("s")
        sc.close()
        return sc.write(tmp_path, f"mixed-{flood}.pcap")

    clean = _run(build(False))
    flooded = _run(build(True), max_half_open=20)
    assert _limit_findings(flooded, "max_half_open")
    real = [c for c in flooded.connections if c.subflows[0].packets > 1]
    assert len(real) == 1 and len(clean.connections) == 1
    assert flooded.streams[real[0].id][0].sha256 == clean.streams[clean.connections[0].id][0].sha256
    assert flooded.streams[real[0].id][0].bytes == 4000
    rules = sorted((f.rule, f.message) for f in flooded.findings if f.connection == real[0].id)
    assert rules == sorted((f.rule, f.message) for f in clean.findings if f.connection == clean.connections[0].id)


def test_max_connections_stops_new_flows_and_the_tracked_ones_go_on(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    _flood(sc, 300)
    sf.send("c", b"x" * 500)  # the first connection keeps being analysed after the limit
    sf.ack("s")
    path = sc.write(tmp_path)
    analysis = _run(path, max_connections=100)
    assert len(analysis.connections) == 100
    [message] = _limit_findings(analysis, "max_connections")
    assert "packets of new flows were counted but not analysed" in message
    assert analysis.streams[analysis.connections[0].id][0].bytes == 500
    flows = _run(path, max_flows=50)
    assert len(flows.connections) == 50 and _limit_findings(flows, "max_flows")


@pytest.mark.skipif(not __import__("os").environ.get("MPTCP_ANALYZE_SLOW"), reason="set MPTCP_ANALYZE_SLOW=1 (minutes)")
def test_one_hundred_thousand_connections_with_the_default_limits(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    _flood(sc, 100_000)
    analysis = _run(sc.write(tmp_path))
    assert len(analysis.connections) + sum(1 for _ in _limit_findings(analysis, "max_half_open")) >= 1
    assert_sound(analysis)


# ----------------------------------------------------------------------------------------- data streams
def _tiny_out_of_order(tmp_path: Path, pieces: int) -> str:
    """One connection whose first data byte never arrives, then ``pieces`` one-byte mapped segments after it."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    client = sc.side("c")
    base_dsn, base_rel = client.dsn, sf.rel("c")
    for index in range(1, pieces + 1):
        dss = Dss(DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64, data_ack=client.acked,
                  dsn=base_dsn + index, ssn=base_rel + index, data_len=1)  # fmt: skip
        sf.raw("c", ACK, [dss], b"z", seq=(sf.isn["c"] + base_rel + index) & 0xFFFFFFFF)
    return sc.write(tmp_path)


def test_millions_of_tiny_out_of_order_segments_hit_the_piece_cap(tmp_path: Path) -> None:
    """Scaled down for CI: 3,000 one-byte pieces behind a gap that never fills, cap 300 pieces."""
    path = _tiny_out_of_order(tmp_path, 3000)
    _run(str(ROOT / "samples/two-subflows.pcap"))  # imports first
    peak, analysis = _peak_bytes(path, max_out_of_order_pieces=300)
    assert_sound(analysis)
    assert _limit_findings(analysis, "max_out_of_order_bytes")
    assert any("max_out_of_order_pieces=300" in e for e in analysis.trace.errors)
    stream = analysis.streams[analysis.connections[0].id][0]
    assert stream.holes >= 1 and not stream.complete
    unbounded, _ = _peak_bytes(path)
    assert peak < unbounded * 0.8 and peak < 40 << 20, (peak, unbounded)


def test_a_gap_that_never_fills_is_a_hole_not_a_hang(tmp_path: Path) -> None:
    analysis = _run(_tiny_out_of_order(tmp_path, 50))
    assert_sound(analysis)
    stream = analysis.streams[analysis.connections[0].id][0]
    assert stream.holes == 1 and stream.hole_bytes == 1 and not stream.complete
    assert not _limit_findings(analysis, "max_out_of_order_bytes")  # the end of the trace, not a cap, closed it


def test_mappings_announcing_huge_lengths_cost_nothing_extra(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    client = sc.side("c")
    for index in range(150):  # 150 mappings of 65,535 bytes, 10 bytes each actually sent
        rel = sf.rel("c")
        dss = Dss(DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64, data_ack=client.acked,
                  dsn=client.dsn + index * 65535, ssn=rel, data_len=65535)  # fmt: skip
        sf.raw("c", ACK, [dss], b"q" * 10)
    peak, analysis = _peak_bytes(sc.write(tmp_path), max_mappings=32)
    assert_sound(analysis)
    assert peak < 8 << 20, peak


# ----------------------------------------------------------------------------------------- capture records
def _pcap(records: list[tuple[int, int, int, int, bytes]], snaplen: int = 65535) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 101)
    for sec, usec, caplen, origlen, data in records:
        out += struct.pack("<IIII", sec, usec, caplen, origlen) + data
    return out


def _packets(count: int) -> list[bytes]:
    sc = ConnectionBuilder()
    sf = sc.initial()
    for number in range(count):
        sf.send("c", bytes([number]) * 20)
    return [packet for _, packet in sc.packets]


def test_hostile_records_are_bounded_and_reported(tmp_path: Path) -> None:
    packets = _packets(6)
    first = packets[0]
    cases = {
        "caplen-above-snaplen": _pcap([(1, 0, len(p), len(p), p) for p in packets], snaplen=40),
        "huge-record": _pcap([(1, 0, len(first), len(first), first), (1, 1, 0xFFFFFF00, 0xFFFFFF00, b"")]),
        "zero-length": _pcap([(1, i, 0, 60, b"") for i in range(5)] + [(2, 0, len(packets[0]), 60, packets[0])]),
        "time-goes-back": _pcap([(100 - i, 0, len(p), len(p), p) for i, p in enumerate(packets)]),
    }  # fmt: skip
    for name, data in cases.items():
        path = tmp_path / f"{name}.pcap"
        path.write_bytes(data)
        assert_sound(_run(str(path), max_record_bytes=4096))
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "check", "--no-expect", *(str(tmp_path / f"{n}.pcap") for n in cases)],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
    huge = _run(str(tmp_path / "huge-record.pcap"), max_record_bytes=4096)
    assert huge.trace.packets == 1 and any("limit max_record_bytes=4096" in e for e in huge.trace.errors)
    above = _run(str(tmp_path / "caplen-above-snaplen.pcap"))
    assert above.trace.packets == len(packets) and len(above.connections) == 1  # the bytes are there: they are used
    zero = _run(str(tmp_path / "zero-length.pcap"))
    assert zero.trace.packets == 6
