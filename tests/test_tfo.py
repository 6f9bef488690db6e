"""TCP Fast Open with MPTCP: data in the SYN and the mappings after it (H-TFO).

Why: Linux keeps SYN data outside the MPTCP sequence space (it ends right before IDSN + 1) and
numbers the mappings' relative subflow sequence from the byte after it. Counting from ISN + 1
put every later mapping SYN-length bytes off: the upload rebuilt short, with DSS-004/DSS-005.
The bundled samples/tfo.pcap runs everywhere; the live test makes a fresh trace (root only).
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from helpers.lab import load_lab

from analyzer.findings import Severity
from analyzer.follow import follow
from analyzer.model import Analysis
from analyzer.pipeline import analyze

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
MAPPING_RULES = {"DSS-004", "DSS-005", "DSS-007", "DSS-011"}


def _load_lab() -> ModuleType:
    return load_lab()


def _check(truth: dict[str, Any], analysis: Analysis) -> None:
    """Every stream byte-exact as the kernel's sidecar says, no error, no mapping finding at all."""
    assert len(analysis.connections) == len(truth["connections"])
    for conn, want in zip(analysis.connections, truth["connections"], strict=True):
        for direction, got in zip(("c2s", "s2c"), analysis.streams[conn.id], strict=True):
            assert (got.bytes, got.sha256, got.complete) == (want[direction]["bytes"], want[direction]["sha256"],
                                                             True), (conn.id, direction)  # fmt: skip
    errors = [f for f in analysis.findings if f.severity is Severity.ERROR]
    assert errors == []
    assert [f for f in analysis.findings if f.rule in MAPPING_RULES] == []


def test_sample_is_a_tcp_fast_open_trace() -> None:
    truth = json.loads((SAMPLES / "tfo.json").read_text())
    assert [c["tfo"]["role"] for c in truth["connections"]] == ["cookie", "data-in-syn"]
    assert truth["connections"][1]["tfo"]["client_syn_data_acked"]
    analysis = analyze(str(SAMPLES / "tfo.pcap"))
    halves = [conn.subflows[0].halves[0] for conn in analysis.connections]
    assert [h.syn_payload for h in halves] == [0, 1000]
    assert [h.ssn_shift for h in halves] == [0, 1000]  # Linux numbers the mappings past the SYN data


def test_sample_streams_rebuild_byte_exact_without_mapping_findings() -> None:
    truth = json.loads((SAMPLES / "tfo.json").read_text())
    _check(truth, analyze(str(SAMPLES / "tfo.pcap")))


def test_follow_writes_the_syn_data_first() -> None:
    truth = json.loads((SAMPLES / "tfo.json").read_text())
    want = truth["connections"][1]
    out = io.BytesIO()
    follow(str(SAMPLES / "tfo.pcap"), 2, out, direction="c2s")
    data = out.getvalue()
    sent = _load_lab().DataStream(want["c2s_seed"], want["c2s"]["bytes"]).read(want["c2s"]["bytes"])
    assert data[:1000] == sent[:1000]  # the bytes that rode in the SYN
    assert hashlib.sha256(data).hexdigest() == want["c2s"]["sha256"]


def _live_skip_reason() -> str | None:
    try:
        reason: str | None = _load_lab().lab_unavailable_reason()
    except Exception as exc:  # pragma: no cover - reported as the skip reason
        return f"cannot import analyzer.lab: {exc}"
    return reason


LIVE_REASON = _live_skip_reason()


@pytest.mark.netns
@pytest.mark.skipif(LIVE_REASON is not None, reason=f"needs the netns lab (root, ip, tcpdump, MPTCP): {LIVE_REASON}")
@pytest.mark.parametrize("method", ["sendto", "connect"])
def test_live_tfo_upload_rebuilds_byte_exact(tmp_path: Path, method: str) -> None:
    """A fresh kernel trace: cookie connection, then 300 kB whose first 1,000 bytes ride in the SYN."""
    lab = _load_lab()
    cfg = lab.LabConfig(name=f"tfo-{method}", out_dir=tmp_path, mode="single", tfo=True, tfo_method=method,
                        c2s_bytes=300_000, s2c_bytes=5_000, rate={1: "100mbit"}, timeout=20.0,
                        buffer_kib=65536)  # fmt: skip
    truth = lab.run_lab(cfg)
    assert truth["connections"][1]["tfo"]["server_syn_data"]
    _check(truth, analyze(str(tmp_path / f"tfo-{method}.pcap")))
