"""The text report as a kernel engineer reads it: at 80 and 120 columns, piped, numbers that mean what they say."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dpkt
import pytest
from helpers.captures import merge_captures, truncate_capture

from analyzer.cli import main
from analyzer.findings import Finding, Severity
from analyzer.report.text import collapse, cut_left, finding_order
from analyzer.stats import RttEstimate

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
ENDPOINT = re.compile(r"(\[[0-9a-f:]+\]|\d+\.\d+\.\d+\.\d+):\d+")


def report(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], columns: int, *args: str) -> str:
    monkeypatch.setenv("COLUMNS", str(columns))
    with pytest.raises(SystemExit) as exit_info:
        main([*args])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


def endpoints_of(path: Path) -> set[str]:
    """Every ip:port of the capture's TCP packets, read with dpkt (independent of our decoder)."""
    out = set()
    with path.open("rb") as fh:
        for _, buf in dpkt.pcap.Reader(fh):
            ip = dpkt.sll2.SLL2(buf).data if len(buf) > 20 and buf[0] == 0x08 else None
            ip = ip if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) else _ip_of(buf)
            if ip is None or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            for raw, port in ((ip.src, ip.data.sport), (ip.dst, ip.data.dport)):
                text = dpkt.utils.inet_to_str(raw)
                out.add(f"[{text}]:{port}" if ":" in text else f"{text}:{port}")
    return out


def _ip_of(buf: bytes) -> dpkt.ip.IP | dpkt.ip6.IP6 | None:
    for cls in (dpkt.sll2.SLL2, dpkt.sll.SLL):
        try:
            data = cls(buf).data
        except (dpkt.UnpackError, ValueError):
            continue
        if isinstance(data, dpkt.ip.IP | dpkt.ip6.IP6):
            return data
    return None


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("sample", ["ipv6.pcap", "two-subflows.pcap", "multi-conn.pcap"])
def test_addresses_never_break(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], columns: int, sample: str
) -> None:
    out = report(monkeypatch, capsys, columns, str(SAMPLES / sample))
    assert max(len(line) for line in out.splitlines()) <= columns
    shown = {m.group(0) for m in ENDPOINT.finditer(out)}
    subflow_ends = endpoints_of(SAMPLES / sample)
    # every subflow endpoint printed is a whole endpoint of the capture: none was cut or wrapped
    assert shown, out
    assert shown <= subflow_ends, shown - subflow_ends
    assert len(shown) >= 3  # both ends of at least the initial subflow and a join's client


def test_long_path_is_cut_at_the_left(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    deep = tmp_path.joinpath(*(["a-rather-long-directory-name"] * 5))
    deep.mkdir(parents=True)
    trace = deep / "basename-that-matters.pcap"
    shutil.copy(SAMPLES / "single-subflow.pcap", trace)
    out = report(monkeypatch, capsys, 80, str(trace))
    file_line = next(line for line in out.splitlines() if "File" in line)
    assert "basename-that-matters.pcap" in file_line
    assert "…" in file_line
    assert cut_left("abcdef", 4) == "…def" and cut_left("abc", 4) == "abc"


def test_findings_sorted_errors_first_then_frame_and_collapsed() -> None:
    findings = [
        Finding("DSS-012", Severity.INFO, "reinjected", [5]),
        Finding("DSS-004", Severity.ERROR, "unmapped", [40]),
        Finding("DACK-002", Severity.WARNING, "late", [3]),
        Finding("DSS-004", Severity.ERROR, "unmapped", [12]),
        Finding("DSS-004", Severity.ERROR, "unmapped", [90]),
    ]
    ordered = sorted(findings, key=finding_order)
    assert [f.rule for f in ordered] == ["DSS-004"] * 3 + ["DACK-002", "DSS-012"]
    assert [f.frames[0] for f in ordered[:3]] == [12, 40, 90]
    groups = collapse(findings)
    assert [(f.rule, n, frames) for f, n, frames in groups] == [
        ("DSS-004", 3, [12, 40, 90]),
        ("DACK-002", 1, [3]),
        ("DSS-012", 1, [5]),
    ]


@pytest.mark.parametrize("columns", [80, 120])
def test_one_line_per_finding_unless_verbose(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], columns: int
) -> None:
    trace = str(SAMPLES / "lossy.pcap")
    short = report(monkeypatch, capsys, columns, trace)
    section = short[short.index("Findings:") :].splitlines()
    rows = [line for line in section if line.split()[:1] in (["error"], ["warning"], ["info"])]
    assert rows and all(len(line) <= columns for line in section)
    assert len(section) == len(rows) + 2  # heading, one line each, the note
    full = report(monkeypatch, capsys, columns, "-v", trace)
    full_section = full[full.index("Findings:") :]
    assert len(full_section.splitlines()) > len(section)  # messages in full wrap onto more lines


def test_rtt_quantiles_are_close_to_the_exact_ones() -> None:
    rtt = RttEstimate()
    samples = [0.001 * (1 + i % 50) for i in range(1000)] + [0.5]  # one outlier
    for sample in samples:
        rtt.add(sample)
    ordered = sorted(samples)
    assert rtt.quantile(0.5) == pytest.approx(ordered[500], rel=0.03)
    assert rtt.quantile(0.95) == pytest.approx(ordered[950], rel=0.03)
    assert rtt.quantile(1.0) == 0.5 and rtt.quantile(0.0) == pytest.approx(0.001, rel=0.03)
    doc = rtt.to_json()
    assert doc is not None and {"min_ms", "median_ms", "p95_ms", "max_ms", "srtt_ms"} <= set(doc)


def test_rtt_column_shows_min_median_p95(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = report(monkeypatch, capsys, 120, str(SAMPLES / "lossy.pcap"))
    assert "RTT ms min/med/p95" in out
    assert re.search(r"\s[\d.]+/[\d.]+/[\d.]+\s", out)


def test_head_of_line_share_never_exceeds_the_connection(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for sample in ("lossy.pcap", "ipv6.pcap", "multi-conn.pcap"):
        out = " ".join(report(monkeypatch, capsys, 200, str(SAMPLES / sample)).replace("│", " ").split())
        shares = [int(m) for m in re.findall(r"head blocked (\d+)% of the connection's time", out)]
        assert shares, sample
        assert all(0 <= share <= 100 for share in shares), (sample, shares)


def test_stream_cut_by_snaplen_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cut = tmp_path / "cut.pcap"
    truncate_capture(SAMPLES / "two-subflows.pcap", cut, 128)
    out = report(monkeypatch, capsys, 120, str(cut))
    assert re.search(r"[\d,]+ bytes by DSN, payload cut by snaplen 128", out), out


def test_overview_first_when_there_are_many_connections(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    merged = tmp_path / "many.pcap"
    merge_captures([SAMPLES / name for name in ("multi-conn.pcap", "lossy.pcap", "checksum.pcap")], merged)
    text = report(monkeypatch, capsys, 80, str(merged))
    overview = text.index("Connections\n") if "Connections\n" in text else text.index("Connections")
    assert overview < text.index("Connection 1")
    rows = [ln for ln in text[overview : text.index("Connection 1")].splitlines() if re.match(r"\s*\d+\s", ln)]
    assert len(rows) == 5
    assert all("MPTCP" in row for row in rows)
    single = report(monkeypatch, capsys, 80, str(SAMPLES / "lossy.pcap"))
    assert "E/W" not in single  # one connection: no overview


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code in (0, None)
    assert re.fullmatch(r"mptcp-analyze \S+\n", capsys.readouterr().out)


def test_check_prints_each_input_error_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "missing.pcap"
    monkeypatch.setenv("COLUMNS", "60")
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(SAMPLES / "single-subflow.pcap"), str(missing)])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    both = captured.out + captured.err
    assert both.count("no such file") == 1, both
    assert captured.err.startswith("mptcp-analyze: error:") and len(captured.err.splitlines()) == 1
