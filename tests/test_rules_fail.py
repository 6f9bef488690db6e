"""FAIL family: MP_FAIL and the fallback it asks for (RFC 8684 §3.7).

Each rule has a crafted trace that breaks it and a legal twin that comes as close as possible.
The usual story: the client's data fails the server's checksum, the server sends MP_FAIL with the
DSN of the failed mapping, and the client falls back with an infinite mapping.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.endpoint.builder import ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DSN64, DSS_MAPPING, Dss, MpFail, MpTcpRst
from analyzer.pipeline import analyze

MASK64 = (1 << 64) - 1
MIDDLEBOX = 0x06


def findings(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def one(analysis: Analysis, rule: str) -> Finding:
    (finding,) = findings(analysis, rule)
    return finding


def failed_mapping(checksum: bool = True) -> tuple[ConnectionBuilder, SubflowBuilder, int]:
    """A connection whose client data the server will declare failed; returns the mapping's DSN."""
    sc = ConnectionBuilder(checksum=checksum)
    sf = sc.initial()
    dsn = sc.side("c").dsn
    sf.send("c", b"hello, checksum")
    return sc, sf, dsn


def send_infinite(sc: ConnectionBuilder, sf: SubflowBuilder, side: str, payload: bytes) -> int:
    me = sc.side(side)
    dss = Dss(DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64, data_ack=me.acked, dsn=me.dsn, ssn=sf.rel(side),
              data_len=0, checksum=0 if sc.checksum else None)  # fmt: skip
    frame = sf.send(side, payload, dss=dss)
    me.dsn = (me.dsn + len(payload)) & MASK64
    sc.side("s" if side == "c" else "c").acked = me.dsn
    return frame


# FAIL-001 (emitted by the tracker) --------------------------------------------------------------


def test_fail_001_mp_fail_of_8_bytes(tmp_path: Path) -> None:
    """§3.7: MP_FAIL carries a full 64-bit DSN: 12 bytes."""
    sc, sf, _ = failed_mapping()
    frame = sf.ack("s", extra=[bytes((30, 8, 0x60, 0, 0, 0, 0, 1))])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FAIL-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_fail_001_mp_fail_of_12_bytes(tmp_path: Path) -> None:
    sc, sf, dsn = failed_mapping()
    sf.ack("s", extra=[MpFail(dsn)])
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FAIL-001") == []


# FAIL-002 ---------------------------------------------------------------------------------------


def test_fail_002_mp_fail_without_checksums(tmp_path: Path) -> None:
    """§3.7: MP_FAIL reports a failure the DSS checksum detects; here no checksum was negotiated."""
    sc, sf, dsn = failed_mapping(checksum=False)
    frame = sf.ack("s", extra=[MpFail(dsn)])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FAIL-002")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_fail_002_mp_fail_with_checksums(tmp_path: Path) -> None:
    sc, sf, dsn = failed_mapping(checksum=True)
    sf.ack("s", extra=[MpFail(dsn)])
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FAIL-002") == []


# FAIL-003 ---------------------------------------------------------------------------------------


def test_fail_003_dsn_inside_the_failed_mapping(tmp_path: Path) -> None:
    """§3.7: MP_FAIL names the start of the mapping that failed (Linux: the mapping's DSN)."""
    sc, sf, dsn = failed_mapping()
    frame = sf.ack("s", extra=[MpFail(dsn + 3)])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FAIL-003")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])
    assert f"inside the mapping that starts at DSN {dsn}" in finding.message


def test_fail_003_dsn_outside_every_mapping(tmp_path: Path) -> None:
    sc, sf, dsn = failed_mapping()
    frame = sf.ack("s", extra=[MpFail(dsn + 1000)])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FAIL-003")
    assert finding.frames == [frame]
    assert "not in any of the 1 mappings" in finding.message


def test_fail_003_dsn_at_the_mapping_start(tmp_path: Path) -> None:
    sc, sf, dsn = failed_mapping()
    sf.ack("s", extra=[MpFail(dsn)])
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FAIL-003") == []


# FAIL-004 ---------------------------------------------------------------------------------------


def two_subflows_with_failure() -> tuple[ConnectionBuilder, SubflowBuilder, int]:
    sc, sf, dsn = failed_mapping()
    join = sc.join()
    join.send("c", b"second path")
    join.ack("s")
    return sc, sf, dsn


def test_fail_004_mp_fail_on_an_ack_with_two_subflows(tmp_path: Path) -> None:
    """§3.7: with several subflows the failing subflow is reset (RST + MP_FAIL), not fallen back."""
    sc, sf, dsn = two_subflows_with_failure()
    frame = sf.ack("s", extra=[MpFail(dsn)])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FAIL-004")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_fail_004_mp_fail_on_a_rst_with_two_subflows(tmp_path: Path) -> None:
    sc, sf, dsn = two_subflows_with_failure()
    sf.rst("s", [MpFail(dsn), MpTcpRst(0, MIDDLEBOX)])
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FAIL-004") == []
    assert findings(analysis, "FAIL-005") == []


# FAIL-005 ---------------------------------------------------------------------------------------


def test_fail_005_peer_keeps_mapping_data_instead_of_falling_back(tmp_path: Path) -> None:
    """§3.7: the peer answers MP_FAIL on its single subflow with an infinite mapping."""
    sc, sf, dsn = failed_mapping()
    frame = sf.ack("s", extra=[MpFail(dsn)])
    sc.wait(0.5)
    data = sf.send("c", b"business as usual")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FAIL-005")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame, data])


def test_fail_005_peer_answers_with_an_infinite_mapping(tmp_path: Path) -> None:
    sc, sf, dsn = failed_mapping()
    sf.ack("s", extra=[MpFail(dsn)])
    sc.wait(0.5)
    send_infinite(sc, sf, "c", b"plain from now on")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FAIL-005") == []


def test_fail_005_silence_is_not_judged_before_the_linux_timeout(tmp_path: Path) -> None:
    """H-END: a peer with nothing to send answers with the next data or resets after 120 s."""
    sc, sf, dsn = failed_mapping()
    sf.ack("s", extra=[MpFail(dsn)])
    sc.wait(10)
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FAIL-005") == []


def test_fail_005_silence_after_the_linux_timeout(tmp_path: Path) -> None:
    sc, sf, dsn = failed_mapping()
    frame = sf.ack("s", extra=[MpFail(dsn)])
    sc.wait(130)
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert one(analysis, "FAIL-005").frames == [frame]


# FAIL-006 ---------------------------------------------------------------------------------------


def test_fail_006_mappings_continue_after_the_infinite_mapping(tmp_path: Path) -> None:
    """§3.7: after MP_FAIL and the infinite mapping the subflow is plain TCP in both directions."""
    sc, sf, dsn = failed_mapping()
    sf.ack("s", extra=[MpFail(dsn)])
    infinite = send_infinite(sc, sf, "c", b"plain from now on")
    data = sf.send("c", b"mapped again")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FAIL-006")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [infinite, data])
    assert findings(analysis, "FALLBACK-002") == []


def test_fail_006_the_mp_fail_sender_maps_data_after_it_acknowledged_the_infinite_mapping(tmp_path: Path) -> None:
    sc, sf, dsn = failed_mapping()
    sf.ack("s", extra=[MpFail(dsn)])
    infinite = send_infinite(sc, sf, "c", b"plain from now on")
    data = sf.send("s", b"mapped reply")
    analysis = analyze(sc.write(tmp_path))
    assert one(analysis, "FAIL-006").frames == [infinite, data]


def test_fail_006_plain_tcp_after_the_exchange(tmp_path: Path) -> None:
    sc, sf, dsn = failed_mapping()
    sf.ack("s", extra=[MpFail(dsn)])
    send_infinite(sc, sf, "c", b"plain from now on")
    sf.send("s", b"plain reply", options=[])
    sf.send("c", b"plain data", options=[])
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FAIL-006") == []
    assert findings(analysis, "FALLBACK-002") == []


# Real kernel traces ---------------------------------------------------------------------------

TRACES = sorted((Path(__file__).resolve().parent.parent / "samples").glob("*.pcap")) + sorted(
    (Path(__file__).resolve().parent / "data" / "tcpdump").glob("*.pcap")
)


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_fail_real_traces_raise_no_warning(trace: Path) -> None:
    """Precision: Linux kernel samples and tcpdump's captures (v0, v1, odd captures) are clean."""
    analysis = analyze(str(trace))
    found = [
        (f.rule, f.frames) for f in analysis.findings if f.rule.startswith("FAIL-") and f.severity >= Severity.WARNING
    ]
    assert found == []
