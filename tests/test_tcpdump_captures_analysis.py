"""Whole-trace analysis of tcpdump's MPTCP test captures (v0 and v1, other kernels, odd captures)."""

from __future__ import annotations

from pathlib import Path

from analyzer.findings import Severity
from analyzer.model import Grouping
from analyzer.pipeline import analyze

DATA = Path(__file__).resolve().parent / "data" / "tcpdump"


def _analyze(name: str):  # type: ignore[no-untyped-def]
    return analyze(str(DATA / f"{name}.pcap"))


def test_v0_connection_groups_its_join_by_token_and_verifies_sha1_hmacs() -> None:
    analysis = _analyze("mptcp-v0")
    (conn,) = analysis.connections
    assert conn.version == 0
    assert conn.checksum is True
    assert [sf.kind for sf in conn.subflows] == ["initial", "join"]
    join = conn.subflows[1]
    assert join.join_token == conn.sides[1].token == 0xE47F0142
    assert join.join_synack_hmac_ok is True and join.join_ack_hmac_ok is True
    assert join.halves[0].address_id == 0 and join.halves[1].address_id == 1


def test_v0_streams_are_rebuilt_and_all_checksums_verify() -> None:
    analysis = _analyze("mptcp-v0")
    (conn,) = analysis.connections
    c2s, s2c = analysis.streams[conn.id]
    assert c2s.complete and s2c.complete
    assert c2s.bytes == 5121 and s2c.bytes == 8561
    assert c2s.sha256 is not None and s2c.sha256 is not None
    checks = [h.checksums for sf in conn.subflows for h in sf.halves]
    assert sum(c[0] for c in checks) == 153  # 151 data mappings and 2 DATA_FIN-only and sum(c[1] for c in checks) == 0
    assert [f for f in analysis.findings if f.severity == Severity.ERROR] == []


def test_v0_announcements_are_recorded() -> None:
    (conn,) = _analyze("mptcp-v0").connections
    assert [(a.kind, a.address_ids, a.address) for a in conn.announcements] == [
        ("add", (1,), "10.1.2.2"),
        ("remove", (0,), None),
    ]


def test_v1_mp_capable_with_data_gives_the_first_mapping() -> None:
    analysis = _analyze("mptcp-v1")
    (conn,) = analysis.connections
    c2s, s2c = analysis.streams[conn.id]
    assert (c2s.bytes, c2s.complete) == (10268, True)
    assert (s2c.bytes, s2c.complete) == (10268, True)
    assert conn.subflows[0].end == "fin"


def test_old_kernel_add_addr_hmac_is_reported_with_the_known_bug() -> None:
    analysis = _analyze("mptcp-aa-v1")
    (finding,) = [f for f in analysis.findings if f.rule == "ADDR-001"]
    assert finding.frames == [13]
    assert "LEFTMOST" in finding.message


def test_malformed_dss_is_a_finding_not_a_crash() -> None:
    analysis = _analyze("mptcp-dss-oobr")
    assert [f.rule for f in analysis.findings if f.severity == Severity.ERROR] == ["DSS-001"]


def test_fastclose_ends_the_subflow_and_carries_the_receivers_key() -> None:
    analysis = _analyze("mptcp-fclose")
    (conn,) = analysis.connections
    assert conn.fastclose_frame == 10 and conn.fastclose_sender == 0
    assert conn.subflows[0].end == "fastclose"
    assert not [f for f in analysis.findings if f.rule == "FC-001"]


def test_tcprst_reason_is_reported_for_a_capture_without_handshake() -> None:
    analysis = _analyze("mptcp-tcprst")
    (conn,) = analysis.connections
    (sf,) = conn.subflows
    assert sf.end == "mp_tcprst" and sf.reset_reason == 0
    assert sf.grouping == Grouping.NONE and sf.role_guessed


def test_echo_capture_without_handshake_lists_both_subflows() -> None:
    analysis = _analyze("mptcp-aa-echo")
    assert sum(len(c.subflows) for c in analysis.connections) == 2
    assert not [f for f in analysis.findings if f.severity == Severity.ERROR]
