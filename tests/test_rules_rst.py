"""RST family: MP_TCPRST, the reason a subflow was reset (RFC 8684 §3.6).

Each rule has a crafted trace that breaks it and a legal twin that comes as close as possible.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.endpoint.builder import ACK, ConnectionBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp.options import MpTcpRst
from analyzer.pipeline import analyze

MIDDLEBOX, UNSPECIFIED = 0x06, 0x00
TRANSIENT, U_FLAG = 0x01, 0x08


def findings(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def one(analysis: Analysis, rule: str) -> Finding:
    (finding,) = findings(analysis, rule)
    return finding


def reset_trace(
    tmp_path: Path, version: int = 1, options: list[MpTcpRst] | None = None, on_rst: bool = True
) -> tuple[Analysis, int]:
    """A connection with a little data whose server resets the subflow with ``options``."""
    sc = ConnectionBuilder(version=version)
    sf = sc.initial()
    sf.send("c", b"hello")
    sf.ack("s")
    opts = options if options is not None else [MpTcpRst(TRANSIENT, MIDDLEBOX)]
    frame = sf.rst("s", opts) if on_rst else sf.raw("s", ACK, opts)
    return analyze(sc.write(tmp_path)), frame


# RST-001 -------------------------------------------------------------------------------------


def test_rst_001_mp_tcprst_on_a_segment_without_the_rst_flag(tmp_path: Path) -> None:
    """§3.6: MP_TCPRST is carried on a TCP RST; anywhere else it means nothing."""
    analysis, frame = reset_trace(tmp_path, on_rst=False)
    finding = one(analysis, "RST-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_rst_001_mp_tcprst_on_a_rst_is_fine(tmp_path: Path) -> None:
    analysis, _ = reset_trace(tmp_path)
    assert findings(analysis, "RST-001") == []


# RST-002 -------------------------------------------------------------------------------------


def test_rst_002_unregistered_reason_code(tmp_path: Path) -> None:
    """§3.6: the reason codes are 0x00–0x06 (IANA registry); a higher one is unknown."""
    analysis, frame = reset_trace(tmp_path, options=[MpTcpRst(0, 0x07)])
    finding = one(analysis, "RST-002")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])
    assert "0x07" in finding.message


def test_rst_002_highest_registered_reason_is_known(tmp_path: Path) -> None:
    analysis, _ = reset_trace(tmp_path, options=[MpTcpRst(0, MIDDLEBOX)])
    assert findings(analysis, "RST-002") == []


# RST-003 -------------------------------------------------------------------------------------


def test_rst_003_reserved_flag_set(tmp_path: Path) -> None:
    """§3.6: the U, V and W flags are reserved."""
    analysis, frame = reset_trace(tmp_path, options=[MpTcpRst(U_FLAG | TRANSIENT, UNSPECIFIED)])
    finding = one(analysis, "RST-003")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_rst_003_transient_flag_alone_is_fine(tmp_path: Path) -> None:
    analysis, _ = reset_trace(tmp_path, options=[MpTcpRst(TRANSIENT, UNSPECIFIED)])
    assert findings(analysis, "RST-003") == []


# RST-004 -------------------------------------------------------------------------------------


def test_rst_004_mp_tcprst_in_a_v0_connection(tmp_path: Path) -> None:
    """§3.6: MP_TCPRST is an RFC 8684 option; RFC 6824 (v0) has no such thing."""
    analysis, frame = reset_trace(tmp_path, version=0)
    finding = one(analysis, "RST-004")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_rst_004_mp_tcprst_in_a_v1_connection_is_fine(tmp_path: Path) -> None:
    analysis, _ = reset_trace(tmp_path, version=1)
    assert findings(analysis, "RST-004") == []


# RST-005 -------------------------------------------------------------------------------------


def test_rst_005_reset_reason_and_transient_flag_are_reported(tmp_path: Path) -> None:
    """§3.6: the reason and the T flag tell why the subflow went away and whether to retry."""
    analysis, frame = reset_trace(tmp_path, options=[MpTcpRst(TRANSIENT, MIDDLEBOX)])
    finding = one(analysis, "RST-005")
    assert (finding.severity, finding.frames) == (Severity.INFO, [frame])
    assert "Middlebox interference" in finding.message and "transient" in finding.message
    (conn,) = analysis.connections
    assert conn.subflows[0].end == "mp_tcprst"


def test_rst_005_says_whether_a_transient_reset_was_retried(tmp_path: Path) -> None:
    """Catalogue RST-005: the summary tells whether the same address pair is tried again after a transient reset."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"hello")
    sf.ack("s")
    join = sc.join(client_ip="10.0.3.1")
    join.rst("s", [MpTcpRst(TRANSIENT, 0x02)])  # lack of resources, transient
    sc.wait(1)
    sc.join(client_ip="10.0.3.1")  # the client tries the same address pair again
    analysis = analyze(sc.write(tmp_path))
    assert "retried" in one(analysis, "RST-005").message


def test_rst_005_plain_rst_has_no_reason_to_report(tmp_path: Path) -> None:
    analysis, _ = reset_trace(tmp_path, options=[])
    assert findings(analysis, "RST-005") == []


# RST-006 -------------------------------------------------------------------------------------


def test_rst_006_two_mp_tcprst_on_one_rst(tmp_path: Path) -> None:
    """§3.6: one RST gives one reason."""
    analysis, frame = reset_trace(tmp_path, options=[MpTcpRst(0, MIDDLEBOX), MpTcpRst(0, UNSPECIFIED)])
    finding = one(analysis, "RST-006")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_rst_006_a_single_mp_tcprst_is_fine(tmp_path: Path) -> None:
    analysis, _ = reset_trace(tmp_path, options=[MpTcpRst(0, MIDDLEBOX)])
    assert findings(analysis, "RST-006") == []


# Real kernel traces ---------------------------------------------------------------------------

TRACES = sorted((Path(__file__).resolve().parent.parent / "samples").glob("*.pcap")) + sorted(
    (Path(__file__).resolve().parent / "data" / "tcpdump").glob("*.pcap")
)


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_rst_real_traces_raise_no_warning(trace: Path) -> None:
    """Precision: Linux kernel samples and tcpdump's captures (v0, v1, odd captures) are clean."""
    analysis = analyze(str(trace))
    found = [
        (f.rule, f.frames) for f in analysis.findings if f.rule.startswith("RST-") and f.severity >= Severity.WARNING
    ]
    assert found == []
