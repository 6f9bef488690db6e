"""Simulated transfers: every clean scenario is byte-exact and looks well-behaved to the analyzer.

For each scenario the simulator's ground truth (what each application wrote and read) must agree,
and ``analyzer.pipeline.analyze`` on the capture must report no error, group every subflow into one
connection, and rebuild both data streams with the same SHA-256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.endpoint.config import SchedulerName
from analyzer.endpoint.network import LinkSpec
from analyzer.endpoint.pcapout import CaptureFormat
from analyzer.endpoint.scenarios import SCENARIOS, scenario_config
from analyzer.endpoint.sim import Action, ActionKind, CapturePoint, SimConfig, SimResult, run
from analyzer.findings import Severity
from analyzer.model import Analysis
from analyzer.pipeline import analyze

# Per scenario: (bytes client → server, bytes server → client, subflows the client completes).
SIZES: dict[str, tuple[int, int, int]] = {
    "two-paths": (300_000, 80_000, 2),
    "add-addr": (300_000, 80_000, 2),
    "path-failure": (800_000, 50_000, 2),
    "backup": (150_000, 40_000, 2),
    "lossy": (300_000, 80_000, 2),
    "fallback": (100_000, 30_000, 1),
    "fastclose": (300_000, 30_000, 2),
    "checksum": (200_000, 50_000, 2),
}


def errors(analysis: Analysis) -> list[str]:
    return [f"{f.rule}: {f.message}" for f in analysis.findings if f.severity >= Severity.ERROR]


def check_trace(result: SimResult, subflows: int | None = None) -> Analysis:
    """The analyzer agrees with the simulator's ground truth and finds nothing wrong."""
    assert result.completed, (result.c2s, result.s2c, result.log[-10:])
    analysis = analyze(str(result.pcap))
    assert errors(analysis) == []
    assert len(analysis.connections) == 1, [c.id for c in analysis.connections]
    conn = analysis.connections[0]
    if subflows is not None:
        assert len(conn.subflows) == result.subflows == subflows
    c2s, s2c = analysis.streams[conn.id]
    assert (c2s.bytes, c2s.sha256) == (result.c2s.sent_bytes, result.c2s.sent_sha256)
    assert (s2c.bytes, s2c.sha256) == (result.s2c.sent_bytes, result.s2c.sent_sha256)
    return analysis


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_is_byte_exact_and_clean(name: str, tmp_path: Path) -> None:
    c2s, s2c, subflows = SIZES[name]
    result = run(scenario_config(name, tmp_path / f"{name}.pcap", c2s_bytes=c2s, s2c_bytes=s2c, seed=7))
    analysis = check_trace(result, subflows)
    conn = analysis.connections[0]
    if name == "fallback":
        assert conn.fallback
    else:
        assert not conn.fallback
    if name == "checksum":
        assert conn.checksum
    if name == "fastclose":
        assert result.client_close == result.server_close == "fastclose"
    else:
        assert result.client_close == "closed" and result.server_close == "closed"


def test_path_failure_reinjects_and_finishes(tmp_path: Path) -> None:
    result = run(scenario_config("path-failure", tmp_path / "pf.pcap", c2s_bytes=800_000, s2c_bytes=50_000, seed=3))
    assert any("SubflowClosed(subflow_id=2" in line for line in result.log if " client " in line)
    assert result.packets_dropped > 0
    check_trace(result)


def test_backup_subflow_only_carries_data_after_the_failure(tmp_path: Path) -> None:
    result = run(scenario_config("backup", tmp_path / "b.pcap", c2s_bytes=150_000, s2c_bytes=40_000))
    analysis = check_trace(result)
    join = next(sf for sf in analysis.connections[0].subflows if sf.kind == "join")
    assert join.backup
    assert join.halves[0].payload_bytes > 0  # it took over


@pytest.mark.parametrize("capture", list(CapturePoint))
def test_every_capture_point_and_format_reads_back(capture: CapturePoint, tmp_path: Path) -> None:
    for fmt in CaptureFormat:
        cfg = scenario_config("lossy", tmp_path / f"t.{fmt.value}", c2s_bytes=80_000, s2c_bytes=20_000,
                              capture=capture, fmt=fmt, seed=3)  # fmt: skip
        check_trace(run(cfg), 2)


def test_ipv6_paths(tmp_path: Path) -> None:
    check_trace(run(scenario_config("add-addr", tmp_path / "v6.pcap", c2s_bytes=150_000, ipv6=True)), 2)


def test_same_seed_gives_the_same_capture_byte_for_byte(tmp_path: Path) -> None:
    digests = []
    for i in range(2):
        cfg = scenario_config("lossy", tmp_path / f"d{i}.pcap", c2s_bytes=100_000, s2c_bytes=10_000, seed=42)
        digests.append(hashlib.sha256(run(cfg).pcap.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    other = scenario_config("lossy", tmp_path / "o.pcap", c2s_bytes=100_000, s2c_bytes=10_000, seed=43)
    assert hashlib.sha256(run(other).pcap.read_bytes()).hexdigest() != digests[0]


def test_link_outage_with_recovery(tmp_path: Path) -> None:
    paths = [LinkSpec(rate=10e6, delay=0.01, outages=((0.05, 0.4),)), LinkSpec(rate=10e6, delay=0.02)]
    cfg = SimConfig(output=tmp_path / "flap.pcap", paths=paths, c2s_bytes=200_000, s2c_bytes=20_000, seed=2)
    check_trace(run(cfg))


@pytest.mark.parametrize("scheduler", list(SchedulerName))
def test_schedulers_all_deliver(scheduler: SchedulerName, tmp_path: Path) -> None:
    cfg = scenario_config("two-paths", tmp_path / "s.pcap", c2s_bytes=150_000, s2c_bytes=20_000, scheduler=scheduler)
    check_trace(run(cfg), 2)


def test_mp_prio_action_marks_the_subflow_backup(tmp_path: Path) -> None:
    cfg = scenario_config("two-paths", tmp_path / "prio.pcap", c2s_bytes=200_000, s2c_bytes=10_000,
                          actions=(Action(0.3, ActionKind.SET_BACKUP, 2),))  # fmt: skip
    result = run(cfg)
    assert any("PriorityChanged(subflow_id=2, backup=True)" in line for line in result.log)
    check_trace(result, 2)


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**31),
    paths=st.integers(1, 3),
    loss=st.sampled_from([0.0, 0.01, 0.03]),
    delay_ms=st.integers(1, 40),
    jitter_ms=st.integers(0, 5),
    reorder=st.sampled_from([0.0, 0.02]),
    rate_mbit=st.sampled_from([2, 10, 50]),
    mtu=st.sampled_from([1280, 1500]),
)
def test_random_networks_never_break_byte_exactness(
    tmp_path: Path, seed: int, paths: int, loss: float, delay_ms: int, jitter_ms: int, reorder: float,
    rate_mbit: int, mtu: int,
) -> None:  # fmt: skip
    links = [
        LinkSpec(rate=rate_mbit * 1e6, delay=delay_ms / 1000 * (i + 1), jitter=jitter_ms / 1000, loss=loss,
                 reorder=reorder, mtu=mtu)
        for i in range(paths)
    ]  # fmt: skip
    cfg = SimConfig(output=tmp_path / f"p{seed}.pcap", paths=links, c2s_bytes=60_000, s2c_bytes=15_000, seed=seed)
    result = run(cfg)
    assert result.completed, result.log[-10:]
    check_trace(result)


def test_issue_example_with_a_large_window_is_clean(tmp_path: Path) -> None:
    """The issue's command line: 1 MiB over 10 ms / 40 ms paths with 1 % loss (retransmissions far behind)."""
    paths = [LinkSpec(delay=0.010, loss=0.01), LinkSpec(delay=0.040, loss=0.01)]
    cfg = SimConfig(output=tmp_path / "big.pcap", paths=paths, c2s_bytes=1 << 20, s2c_bytes=1 << 18, seed=7)
    check_trace(run(cfg), 2)
