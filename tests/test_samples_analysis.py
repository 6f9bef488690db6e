"""The analysis of every bundled kernel sample agrees with the ground truth its generator recorded.

Each sample's sidecar JSON says what the Linux kernel saw: which connections existed, whether they
used MPTCP, how many subflows each had, and the SHA-256 of the bytes each side sent. A real kernel
trace must also produce zero error findings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.findings import Severity
from analyzer.model import Analysis, Connection
from analyzer.pipeline import analyze
from analyzer.report.json_out import analysis_to_json

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
SIDECARS = sorted(SAMPLES.glob("*.json"))


def _load(sidecar: Path) -> tuple[dict[str, Any], Analysis]:
    truth = json.loads(sidecar.read_text())
    return truth, analyze(str(sidecar.with_suffix(".pcap")))


def _find(analysis: Analysis, client: str, server: str) -> Connection:
    for conn in analysis.connections:
        initial = conn.initial_subflow or conn.subflows[0]
        if initial.client == client and initial.server == server:
            return conn
    raise AssertionError(f"no connection {client} → {server} in {[c.id for c in analysis.connections]}")


def test_there_are_samples() -> None:
    assert len(SIDECARS) >= 6


def _reset_after_mp_fail(truth: dict[str, Any]) -> int:
    """Subflows the server reset after a DSS checksum failure (lab --corrupt): the kernel no longer lists them."""
    return int(truth["lab"].get("corrupt", {}).get("mib", {}).get("server", {}).get("MPRstTx", 0))


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda p: p.stem)
def test_connections_and_subflows_match_the_kernel(sidecar: Path) -> None:
    truth, analysis = _load(sidecar)
    reset = _reset_after_mp_fail(truth)
    assert len(analysis.connections) == len(truth["connections"])
    assert analysis.tcp_flows == []
    for expected in truth["connections"]:
        conn = _find(analysis, expected["client"], expected["server"])
        assert conn.fallback is (not expected["mptcp"])
        if expected["mptcp"]:
            assert len(conn.subflows) == expected["subflows"] + reset
            assert conn.version == 1
            assert conn.sides[0].key is not None and conn.sides[1].key is not None
            assert {sf.kind for sf in conn.subflows} <= {"initial", "join"}
            assert all(sf.grouping.value == "handshake" for sf in conn.subflows)
            assert all(sf.join_synack_hmac_ok and sf.join_ack_hmac_ok for sf in conn.subflows if sf.kind == "join")
            assert sorted(sf.end for sf in conn.subflows) == ["fin"] * expected["subflows"] + ["mp_tcprst"] * reset


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda p: p.stem)
def test_rebuilt_streams_equal_what_each_side_sent(sidecar: Path) -> None:
    truth, analysis = _load(sidecar)
    for expected in truth["connections"]:
        conn = _find(analysis, expected["client"], expected["server"])
        c2s, s2c = analysis.streams[conn.id]
        assert (c2s.bytes, c2s.sha256, c2s.complete) == (expected["c2s"]["bytes"], expected["c2s"]["sha256"], True)
        assert (s2c.bytes, s2c.sha256, s2c.complete) == (expected["s2c"]["bytes"], expected["s2c"]["sha256"], True)


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda p: p.stem)
def test_kernel_traces_have_no_error_findings(sidecar: Path) -> None:
    _, analysis = _load(sidecar)
    errors = [f for f in analysis.findings if f.severity >= Severity.ERROR]
    assert errors == []
    assert analysis.trace.errors == []


@pytest.mark.parametrize("sidecar", SIDECARS, ids=lambda p: p.stem)
def test_tokens_match_the_kernel(sidecar: Path) -> None:
    truth, analysis = _load(sidecar)
    for expected in truth["connections"]:
        kernel = expected.get("kernel") or {}
        token = (kernel.get("client") or {}).get("token")
        if not expected["mptcp"] or token is None:
            continue
        conn = _find(analysis, expected["client"], expected["server"])
        assert f"{conn.sides[0].token:08x}" == token


def test_checksum_sample_verifies_every_dss_checksum() -> None:
    _, analysis = _load(SAMPLES / "checksum.json")
    (conn,) = analysis.connections
    assert conn.checksum is True
    ok = sum(h.checksums[0] for sf in conn.subflows for h in sf.halves)
    bad = sum(h.checksums[1] for sf in conn.subflows for h in sf.halves)
    assert ok > 50 and bad == 0


def test_add_addr_sample_verifies_the_announcement_and_its_echo() -> None:
    _, analysis = _load(SAMPLES / "add-addr.json")
    (conn,) = analysis.connections
    kinds = [(a.kind, a.address, a.hmac_ok) for a in conn.announcements]
    assert ("add", "10.210.2.2", True) in kinds
    assert any(kind == "echo" and address == "10.210.2.2" for kind, address, _ in kinds)


def test_json_contract_fields_are_present() -> None:
    _, analysis = _load(SAMPLES / "two-subflows.json")
    doc = json.loads(json.dumps(analysis_to_json(analysis)))
    assert doc["schema"] == "mptcp-analyze/1"
    assert {"path", "packets", "link_types", "first_time", "last_time", "errors"} <= doc["trace"].keys()
    conn = doc["connections"][0]
    assert {"id", "version", "fallback", "checksum", "client", "server", "subflows", "streams"} <= conn.keys()
    assert {"address", "key", "token"} <= conn["client"].keys()
    assert len(conn["client"]["key"]) == 16 and len(conn["client"]["token"]) == 8
    sub = conn["subflows"][0]
    assert {"id", "client", "server", "kind", "backup", "packets", "first_frame", "last_frame", "end"} <= sub.keys()
    assert sub["first_frame"] >= 1
    for direction in ("c2s", "s2c"):
        assert {"bytes", "sha256", "complete"} <= conn["streams"][direction].keys()


def test_ipv6_endpoints_are_bracketed() -> None:
    _, analysis = _load(SAMPLES / "ipv6.json")
    (conn,) = analysis.connections
    assert conn.subflows[0].client.startswith("[fd00:210:")
    assert "]:" in conn.subflows[0].server
