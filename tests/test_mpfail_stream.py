"""MP_FAIL recovery and the rebuilt stream (RFC 8684 §3.7).

With DSS checksums on, a segment changed on the path fails its mapping's checksum at the receiver,
which answers with MP_FAIL. With several subflows it resets the failing one (MP_FAIL on the RST, reason
0x06) and discards the bytes; the sender sends the data again on another subflow, and that good copy is
the stream. On a single subflow it sends MP_FAIL on an ACK, keeps the failed bytes (Linux delivers them)
and both hosts fall back to TCP: the stream continues by TCP sequence from the first segment the sender
sends without a DSS, before the segment that carries the infinite mapping.

Crafted traces (tests/scenario.py) run everywhere; the kernel lab traces (samples/mptcp_lab.py with
``--corrupt``: nftables rewrites 8 payload bytes of one client packet after the DSS checksum was
computed) need root and network namespaces and are skipped with the reason otherwise.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest
from helpers.lab import load_lab

from analyzer.endpoint.builder import ACK, ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis, StreamSummary
from analyzer.mptcp import crypto
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DSN64, DSS_MAPPING, Dss, MpFail, MpTcpRst
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.reassembly import mapper

MASK64 = (1 << 64) - 1
MAP64 = DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64
A, B, C, D, E = (bytes([65 + i]) * (300 + 10 * i) for i in range(5))  # five distinct payloads
BAD_B = b"CORRUPT!" + B[8:]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _rules(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def _errors(analysis: Analysis) -> list[Finding]:
    return [f for f in analysis.findings if f.severity >= Severity.ERROR]


def _c2s(analysis: Analysis) -> StreamSummary:
    (conn,) = analysis.connections
    return analysis.streams[conn.id][0]


def mapped(
    sc: ConnectionBuilder, sf: SubflowBuilder, good: bytes, wire: bytes | None = None, dsn: int | None = None
) -> int:
    """Send ``wire`` (default ``good``) on ``sf`` under a mapping at ``dsn`` (default: the next DSN) whose
    checksum is computed over ``good``, as a sender does before a middlebox changes the bytes."""
    c = sc.side("c")
    at = c.dsn if dsn is None else dsn
    checksum = crypto.dss_checksum(at, sf.rel("c"), len(good), good)
    dss = Dss(MAP64, data_ack=c.acked, dsn=at, ssn=sf.rel("c"), data_len=len(good), checksum=checksum)
    frame = sf.send("c", wire if wire is not None else good, dss=dss)
    if dsn is None:
        c.dsn = (c.dsn + len(good)) & MASK64
    return frame


# ---------------------------------------------------------------------------------------------
# Crafted: MP_FAIL on the RST, the data again on the other subflow


def reset_scenario(split_resend: bool = False) -> tuple[ConnectionBuilder, int, int]:
    """A on the initial subflow, B changed on the way on the join; the server resets the join with MP_FAIL,
    the client sends B again on the initial subflow (in one piece, or cut at other boundaries), then C."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    join = sc.join()
    mapped(sc, sf, A)
    sf.ack("s")
    b_dsn = sc.side("c").dsn
    bad = mapped(sc, join, B, wire=BAD_B)
    fail = join.rst("s", [MpFail(b_dsn), MpTcpRst(0, 0x06)])
    if split_resend:
        mapped(sc, sf, B[:100], dsn=b_dsn)
        mapped(sc, sf, B[100:], dsn=b_dsn + 100)
    else:
        mapped(sc, sf, B, dsn=b_dsn)
    mapped(sc, sf, C)
    sc.side("s").acked = sc.side("c").dsn
    sf.ack("s")
    sc.subflows.remove(join)  # reset: it takes no part in the close
    sc.close(sf)
    return sc, bad, fail


@pytest.mark.parametrize("split_resend", [False, True], ids=["same-boundaries", "other-boundaries"])
def test_reset_the_good_copy_is_the_stream_not_the_failed_one(tmp_path: Path, split_resend: bool) -> None:
    sc, bad, fail = reset_scenario(split_resend)
    analysis = analyze(sc.write(tmp_path))
    c2s = _c2s(analysis)
    assert (c2s.bytes, c2s.sha256, c2s.complete) == (len(A + B + C), _sha(A + B + C), True)
    assert (c2s.checksum_failed_bytes, c2s.checksum_kept_bytes) == (len(B), 0)
    assert _rules(analysis, "DSS-003") == []  # the re-send of a failed copy is not "different bytes"
    (csum,) = _rules(analysis, "CSUM-001")
    assert csum.severity is Severity.WARNING and csum.frames == [bad, fail]
    assert _errors(analysis) == []


def test_reset_reinjection_counts_agree(tmp_path: Path) -> None:
    """The failed copy is not part of the stream, so its re-send is the first good copy: every count agrees."""
    sc, _, _ = reset_scenario()
    analysis = analyze(sc.write(tmp_path))
    (conn,) = analysis.connections
    c2s = analysis.streams[conn.id][0]
    per_subflow = {sf.id: sf.halves[0].reinjected_bytes for sf in conn.subflows}
    assert sum(c2s.reinjections.values()) == sum(per_subflow.values()) == 0
    assert c2s.first_carrier == {conn.subflows[0].id: len(A + B + C)}


def test_without_a_reaction_the_failed_copy_stays_out(tmp_path: Path) -> None:
    """No MP_FAIL and no good copy: the failed bytes are a hole, the stream is not complete (never invented)."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    mapped(sc, sf, A)
    mapped(sc, sf, B, wire=BAD_B)
    mapped(sc, sf, C)
    sc.side("s").acked = sc.side("c").dsn
    sf.ack("s")
    sc.close(sf)
    c2s = _c2s(analyze(sc.write(tmp_path)))
    assert (c2s.bytes, c2s.holes, c2s.hole_bytes, c2s.complete, c2s.sha256) == (len(A + C), 1, len(B), False, None)
    assert c2s.checksum_failed_bytes == len(B)


def test_a_mapping_over_several_segments_is_held_until_its_checksum_verifies(tmp_path: Path) -> None:
    """The failed mapping covers two segments and only the second was changed: neither enters the stream."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    join = sc.join()
    mapped(sc, sf, A)
    c = sc.side("c")
    b_dsn = c.dsn
    dss = Dss(MAP64, data_ack=c.acked, dsn=b_dsn, ssn=join.rel("c"), data_len=len(B),
              checksum=crypto.dss_checksum(b_dsn, join.rel("c"), len(B), B))  # fmt: skip
    join.send("c", B[:150], dss=dss)
    join.send("c", b"CORRUPT!" + B[158:], dss=sc.ack_only_dss("c"))
    c.dsn += len(B)
    join.rst("s", [MpFail(b_dsn), MpTcpRst(0, 0x06)])
    mapped(sc, sf, B + C, dsn=b_dsn)
    c.dsn = b_dsn + len(B + C)
    sc.side("s").acked = c.dsn
    sf.ack("s")
    sc.subflows.remove(join)
    sc.close(sf)
    analysis = analyze(sc.write(tmp_path))
    c2s = _c2s(analysis)
    assert (c2s.sha256, c2s.complete, c2s.conflicts) == (_sha(A + B + C), True, 0)
    assert _errors(analysis) == []


def test_a_held_mapping_verifies_when_its_gap_is_filled(tmp_path: Path) -> None:
    """The middle segment of a three-segment mapping is captured last (sent again): the pieces held after
    the gap are summed when it is filled, so the checksum is verified and the bytes enter the stream."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    c = sc.side("c")
    payload = A + B + C
    dss = Dss(MAP64, data_ack=c.acked, dsn=c.dsn, ssn=sf.rel("c"), data_len=len(payload),
              checksum=crypto.dss_checksum(c.dsn, sf.rel("c"), len(payload), payload))  # fmt: skip
    c.dsn += len(payload)
    start = sf.nxt["c"]
    sf.send("c", A, dss=dss)
    sf.nxt["c"] += len(B)  # B is lost before the capture point
    sf.send("c", C, dss=sc.ack_only_dss("c"))
    sf.raw("c", ACK, [sc.ack_only_dss("c")], B, seq=start + len(A))  # its retransmission
    sc.side("s").acked = c.dsn
    sf.ack("s")
    sc.close(sf)
    analysis = analyze(sc.write(tmp_path))
    c2s = _c2s(analysis)
    assert (c2s.sha256, c2s.complete) == (_sha(payload), True)
    assert analysis.connections[0].subflows[0].halves[0].checksums == (2, 0, 0)  # and the DATA_FIN's


def test_beyond_the_hold_cap_a_failure_withholds_the_sha256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The hold is bounded: past the cap bytes enter unverified, and if their mapping then fails the stream
    says so (no SHA-256, not complete) instead of reporting a hash of a copy the receiver threw away."""
    monkeypatch.setattr(mapper, "HOLD_CAP", 100)
    sc, _, _ = reset_scenario()
    analysis = analyze(sc.write(tmp_path))
    c2s = _c2s(analysis)
    assert (c2s.sha256, c2s.complete, c2s.checksum_failed_bytes) == (None, False, len(B))
    assert _rules(analysis, "DSS-003") == []  # the known-bad copy is never compared


# ---------------------------------------------------------------------------------------------
# Crafted: MP_FAIL on an ACK, fallback with an infinite mapping


def fallback_scenario() -> tuple[ConnectionBuilder, int]:
    """Single subflow: B changed on the way; MP_FAIL on an ACK; C still mapped (in flight), D without any
    option (the fallback point), E with the infinite mapping, then the TCP FINs close the stream."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    c, s = sc.side("c"), sc.side("s")
    mapped(sc, sf, A)
    sf.ack("s")
    b_dsn = c.dsn
    mapped(sc, sf, B, wire=BAD_B)
    s.acked = c.dsn
    sf.ack("s", extra=[MpFail(b_dsn)])
    mapped(sc, sf, C)
    s.acked = c.dsn
    sf.ack("s")
    d_frame = sf.send("c", D, options=[])
    c.dsn += len(D)
    infinite = Dss(MAP64, data_ack=c.acked, dsn=c.dsn, ssn=sf.rel("c"), data_len=0, checksum=0)
    sf.send("c", E, dss=infinite)
    c.dsn += len(E)
    sf.send("s", b"", options=[], flags=ACK)
    sf.fin("c", options=[])
    sf.send("s", b"", options=[], flags=ACK)
    sf.fin("s", options=[])
    sf.send("c", b"", options=[], flags=ACK)
    return sc, d_frame


def test_fallback_keeps_the_failed_copy_and_continues_by_tcp_sequence(tmp_path: Path) -> None:
    sc, _ = fallback_scenario()
    analysis = analyze(sc.write(tmp_path))
    c2s = _c2s(analysis)
    stream = A + BAD_B + C + D + E  # what the receiver's application got
    assert (c2s.bytes, c2s.sha256, c2s.complete, c2s.holes) == (len(stream), _sha(stream), True, 0)
    assert (c2s.checksum_failed_bytes, c2s.checksum_kept_bytes) == (len(B), len(B))
    (csum,) = _rules(analysis, "CSUM-001")
    assert csum.severity is Severity.WARNING
    assert _rules(analysis, "FALLBACK-006") == [] and _errors(analysis) == []


def test_fallback_follow_writes_every_byte_at_its_offset(tmp_path: Path) -> None:
    """follow's writer gets the same bytes, the segment without a DSS included, at their offsets."""
    sc, _ = fallback_scenario()
    written: dict[int, bytes] = {}

    class Collect:
        def write(self, offset: int, time: float, data: bytes) -> None:
            written[offset] = data

        def hole(self, offset: int, length: int) -> None:
            raise AssertionError(f"hole at {offset} ({length} bytes)")

    analyze(sc.write(tmp_path), AnalysisOptions(stream_writer=lambda conn, side, sf: Collect() if side == 0 else None))
    joined = b"".join(written[offset] for offset in sorted(written))
    assert joined == A + BAD_B + C + D + E
    assert sorted(written)[-1] == len(A + BAD_B + C + D)  # E right after D, not shifted


def test_fallback_without_the_mp_fail_in_the_capture(tmp_path: Path) -> None:
    """The infinite mapping alone shows the sender fell back: the failed copy was kept."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    c = sc.side("c")
    mapped(sc, sf, A)
    mapped(sc, sf, B, wire=BAD_B)
    infinite = Dss(MAP64, data_ack=c.acked, dsn=c.dsn, ssn=sf.rel("c"), data_len=0, checksum=0)
    sf.send("c", C, dss=infinite)
    c.dsn += len(C)
    sf.fin("c", options=[])
    sf.fin("s", options=[])
    c2s = _c2s(analyze(sc.write(tmp_path)))
    assert (c2s.sha256, c2s.complete, c2s.checksum_kept_bytes) == (_sha(A + BAD_B + C), True, len(B))


def test_a_data_level_resend_on_the_only_subflow_is_no_reinjection() -> None:
    """Real capture (tcpdump's test suite), one subflow: 32 bytes sent again at the data level on the same
    subflow are no "data already sent on another subflow" (DSS-012); the count and the matrix agree."""
    analysis = analyze(str(Path(__file__).parent / "data" / "tcpdump" / "mptcp-aa-v1.pcap"))
    (conn,) = analysis.connections
    assert len(conn.subflows) == 1
    assert [h.reinjected_bytes for h in conn.subflows[0].halves] == [0, 0]
    assert _rules(analysis, "DSS-012") == []
    assert analysis.streams[conn.id][1].duplicate_bytes == 32  # still seen as duplicates


# ---------------------------------------------------------------------------------------------
# Kernel lab traces


def _skip_reason() -> str | None:
    try:
        lab = load_lab()
    except Exception as exc:  # pragma: no cover - reported as the skip reason
        return f"cannot import samples/mptcp_lab.py: {exc}"
    reason: str | None = lab.lab_unavailable_reason()
    if reason is None and shutil.which("nft") is None:
        reason = "nft (nftables) not installed: --corrupt rewrites the payload with an nftables rule"
    if reason is None and shutil.which("tc") is None:
        reason = "tc (iproute2) not installed: the paths are paced with tbf"
    return reason


REASON = _skip_reason()
LAB_SKIP = pytest.mark.skipif(
    REASON is not None, reason=f"needs the netns lab (root, ip, tcpdump, nft, MPTCP): {REASON}"
)


def _lab(tmp_path: Path, name: str, **params: Any) -> tuple[dict[str, Any], Analysis]:
    lab = load_lab()
    cfg = lab.LabConfig(name=name, out_dir=tmp_path, timeout=20.0, buffer_kib=65536, checksum=True, **params)
    truth: dict[str, Any] = lab.run_lab(cfg)
    return truth, analyze(str(tmp_path / f"{name}.pcap"))


@pytest.mark.netns
@LAB_SKIP
def test_lab_reset_and_reinjection_rebuild_what_the_server_received(tmp_path: Path) -> None:
    """Path 2's 3rd data packet is rewritten: the server resets the join (MP_FAIL + MP_TCPRST) and the
    client sends the data again on the initial subflow."""
    truth, analysis = _lab(tmp_path, "mpfail-reset", mode="subflow", c2s_bytes=120_000, s2c_bytes=2_000,
                           rate={1: "20mbit", 2: "20mbit"}, corrupt={2: 3})  # fmt: skip
    assert truth["lab"]["corrupt"]["mib"]["server"].get("MPFailTx") == 1
    (expected,) = truth["connections"]
    (conn,) = analysis.connections
    c2s, s2c = analysis.streams[conn.id]
    assert (c2s.sha256, c2s.complete) == (expected["c2s"]["sha256"], True)
    assert (s2c.sha256, s2c.complete) == (expected["s2c"]["sha256"], True)
    assert c2s.checksum_failed_bytes > 0 and c2s.checksum_kept_bytes == 0
    assert _rules(analysis, "DSS-003") == [] and _errors(analysis) == []
    (csum,) = _rules(analysis, "CSUM-001")
    assert csum.severity is Severity.WARNING
    assert [sf.end for sf in conn.subflows] == ["fin", "mp_tcprst"]
    per_subflow = sum(h.reinjected_bytes for sf in conn.subflows for h in sf.halves)
    assert per_subflow == sum(c2s.reinjections.values()) + sum(s2c.reinjections.values())


@pytest.mark.netns
@LAB_SKIP
def test_lab_infinite_mapping_rebuilds_what_the_server_received(tmp_path: Path) -> None:
    """Single subflow: MP_FAIL on an ACK, the kernel falls back (infinite mapping) and delivers the changed
    bytes; the stream continues by TCP sequence from the first segment without a DSS."""
    truth, analysis = _lab(tmp_path, "mpfail-infinite", mode="single", c2s_bytes=150_000, s2c_bytes=2_000,
                           rate={1: "20mbit"}, corrupt={1: 5})  # fmt: skip
    (expected,) = truth["connections"]
    assert expected["c2s_sent"]["sha256"] != expected["c2s"]["sha256"]  # the application got the changed bytes
    (conn,) = analysis.connections
    assert conn.fallback
    c2s, s2c = analysis.streams[conn.id]
    assert (c2s.bytes, c2s.sha256, c2s.complete, c2s.holes) == (expected["c2s"]["bytes"], expected["c2s"]["sha256"],
                                                                True, 0)  # fmt: skip
    assert (s2c.sha256, s2c.complete) == (expected["s2c"]["sha256"], True)
    assert c2s.checksum_kept_bytes == c2s.checksum_failed_bytes > 0
    assert _rules(analysis, "FALLBACK-006") == [] and _errors(analysis) == []
    assert conn.subflows[0].halves[0].unmapped_bytes == 0


def test_data_in_flight_at_an_mp_fail_fallback_on_the_only_subflow_is_no_fallback_006(tmp_path: Path) -> None:
    """Seen on the kernel under load: C was mapped and in flight when the MP_FAIL arrived and the receiver had
    not Data-ACKed it when D (no DSS: the fallback point) went out. On the connection's only subflow that data
    is in sequence and TCP delivers it (§3.7), so there is nothing unacknowledged to warn about."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    c, s = sc.side("c"), sc.side("s")
    mapped(sc, sf, A)
    sf.ack("s")
    b_dsn = c.dsn
    mapped(sc, sf, B, wire=BAD_B)
    s.acked = b_dsn
    sf.ack("s", extra=[MpFail(b_dsn)])
    mapped(sc, sf, C)  # in flight: never Data-ACKed before the fallback point
    sf.send("c", D, options=[])
    c.dsn += len(D)
    infinite = Dss(MAP64, data_ack=c.acked, dsn=c.dsn, ssn=sf.rel("c"), data_len=0, checksum=0)
    sf.send("c", E, dss=infinite)
    analysis = analyze(sc.write(tmp_path))
    assert _rules(analysis, "FALLBACK-006") == [] and _errors(analysis) == []
