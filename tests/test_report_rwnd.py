"""Diagnosis: "the receive window limited throughput N % of the time" (issue 11), from the capture only.

A simulated receiver with a 24 kB connection-level buffer on paths whose bandwidth-delay product is larger
holds the sender back; with the default 4 MiB buffer nothing does. The claim needs the window scale, so
without the handshakes in the capture the analysis stays silent instead of guessing the scale.
"""

from __future__ import annotations

from pathlib import Path

import dpkt
import pytest

from analyzer.endpoint.network import LinkSpec
from analyzer.endpoint.sim import SimConfig, run
from analyzer.model import CLIENT
from analyzer.pipeline import analyze

PATHS = [LinkSpec(rate=20e6, delay=0.010), LinkSpec(rate=10e6, delay=0.025)]


def simulate(tmp_path: Path, buffer: int) -> tuple[Path, float]:
    cfg = SimConfig(
        output=tmp_path / f"rwnd-{buffer}.pcap",
        paths=PATHS,
        c2s_bytes=600_000,
        s2c_bytes=20_000,
        seed=3,
        receive_buffer=buffer,
    )
    result = run(cfg)
    analysis = analyze(str(result.pcap))
    return result.pcap, (analysis.trace.last_time or 0.0) - (analysis.trace.first_time or 0.0)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    return simulate(tmp_path_factory.mktemp("rwnd"), 24_000)


def test_a_small_receive_window_limits_and_is_said(small: tuple[Path, float], tmp_path: Path) -> None:
    path, duration = small
    _, unlimited_duration = simulate(tmp_path, 4 << 20)
    assert duration > 1.5 * unlimited_duration  # the window really held the transfer back
    analysis = analyze(str(path))
    (conn,) = analysis.connections
    limit = next(w for w in conn.window_limits if w.side == CLIENT)
    assert limit.share > 0.8 and limit.periods > 10
    diagnosis = analysis.diagnoses[conn.id]
    (event,) = [e for e in diagnosis.events if e.kind == "window"]
    share = round(limit.share * 100)
    assert event.text.startswith(f"the receive window limited throughput {share} % of the time (c→s)")
    assert event.frames and set(event.frames) <= set(limit.frames)
    assert "c→s receive-window limited" in diagnosis.verdict
    # the frames named are a data segment that filled the window, then the ACK that opened it
    filled, opened = limit.frames[:2]
    assert filled < opened


def test_a_large_window_is_not_blamed(tmp_path: Path) -> None:
    path, _ = simulate(tmp_path, 4 << 20)
    analysis = analyze(str(path))
    (conn,) = analysis.connections
    assert all(w.share < 0.05 for w in conn.window_limits)
    assert not [e for e in analysis.diagnoses[conn.id].events if e.kind == "window"]


def test_silent_without_the_handshakes(small: tuple[Path, float], tmp_path: Path) -> None:
    """No SYN captured: the window scale is unknown, so no window is read (no claim on a guessed scale)."""
    path, _ = small
    cut = tmp_path / "no-syn.pcap"
    with path.open("rb") as src, cut.open("wb") as dst:
        reader = dpkt.pcap.Reader(src)
        writer = dpkt.pcap.Writer(dst, linktype=reader.datalink(), snaplen=65535)
        for ts, data in reader:
            ip = dpkt.ip.IP(data)
            if isinstance(ip.data, dpkt.tcp.TCP) and ip.data.flags & dpkt.tcp.TH_SYN:
                continue
            writer.writepkt(data, ts=ts)
    analysis = analyze(str(cut))
    assert analysis.connections and all(not conn.window_limits for conn in analysis.connections)
    assert not [e for d in analysis.diagnoses.values() for e in d.events if e.kind == "window"]


def test_real_kernel_trace_window_full() -> None:
    """samples/multi-conn.pcap (Linux): connection 2's client sent up to exactly the right edge its server had
    advertised (frame 72: DSN end = Data ACK + 64 << 10) and waited 17 ms for frame 121 to open the window."""
    analysis = analyze(str(Path(__file__).resolve().parents[1] / "samples" / "multi-conn.pcap"))
    conn = analysis.connections[1]
    limit = next(w for w in conn.window_limits if w.side == CLIENT)
    assert limit.frames[:2] == (72, 121) and limit.periods == 1
    assert 0.015 < limit.limited < 0.020
    assert any(e.kind == "window" and e.frames == (72, 121) for e in analysis.diagnoses[conn.id].events)
    # one full window for 17 ms of a 70 kB transfer is said, but is not what the connection's verdict is about
    verdict = analysis.diagnoses[conn.id].verdict
    assert "receive-window limited" not in verdict and verdict.startswith("healthy"), verdict
