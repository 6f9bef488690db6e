"""The diagnosis (issue 11): a verdict and a timeline per connection, computed from the model.

Real kernel traces where the kernel makes the story (path failure, fallback, loss, clean runs), crafted
traces for what the lab cannot make on demand (refused joins, MP_FAIL, holes, NAT, a one-direction capture).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from pathlib import Path

import jsonschema
import pytest

from analyzer.cli import main
from analyzer.endpoint.builder import ACK, CLIENT_KEY, PSH, RST, SERVER_KEY, SYN, ConnectionBuilder, SubflowBuilder
from analyzer.model import Analysis, Diagnosis, DiagnosisEvent
from analyzer.mptcp import crypto
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DSN64, DSS_MAPPING, AddAddr, Dss, MpFail, MpJoinSyn, MpTcpRst
from analyzer.pipeline import analyze
from analyzer.report.json_out import analysis_to_json

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SCHEMA = json.loads((ROOT / "docs" / "schema" / "mptcp-analyze-1.json").read_text())
MASK64 = (1 << 64) - 1


def diagnosis(analysis: Analysis, conn: int = 1) -> Diagnosis:
    return analysis.diagnoses[conn]


def kinds(d: Diagnosis, kind: str) -> list[DiagnosisEvent]:
    return [e for e in d.events if e.kind == kind]


# ---------------------------------------------------------------------- real kernel traces


def test_path_failure_stall_with_rto_backoff_and_reinjection_during_it() -> None:
    """Path 2 fails ~50 ms into the bulk data for 0.95 s (sidecar); the join's data waits, RTO backs off."""
    sidecar = json.loads((SAMPLES / "path-failure.json").read_text())
    analysis = analyze(str(SAMPLES / "path-failure.pcap"))
    d = diagnosis(analysis)
    (stall,) = kinds(d, "stall")
    assert stall.text.startswith("subflow 2 stalled from ")
    half = analysis.connections[0].subflows[1].halves[0]
    (fact,) = half.stalls
    assert 0.9 <= fact.end - fact.start <= 2.0  # the outage was 0.95 s; the RTO doubles past it
    assert fact.retransmissions >= 2 and fact.backoffs >= 1
    assert fact.start_frame in stall.frames and fact.end_frame in stall.frames
    assert "no ACK progress" in stall.text and "(RTO)" in stall.text
    during = [e for e in kinds(d, "reinjection") if "during its stall" in e.text]
    assert len(during) == 1 and "subflow 2's c→s data were re-sent on subflow 1" in during[0].text
    assert "recovered from a stall" in d.verdict
    # the kernel's own count of retransmitted bytes is what the two reinjections add up to
    streams = analysis.streams[1]
    kernel = sidecar["connections"][0]["kernel"]["client"]["after_acked"]["info"]["bytes_retrans"]
    assert sum(streams[0].reinjections.values()) == kernel


def test_fallback_sample_says_why() -> None:
    d = diagnosis(analyze(str(SAMPLES / "fallback.pcap")))
    (event,) = kinds(d, "fallback")
    assert event.frames == (4,)
    assert "SYN/ACK did not carry MP_CAPABLE" in event.text and "stripped" in event.text
    assert d.verdict.startswith("fell back to TCP")


@pytest.mark.parametrize("name", ["single-subflow", "two-subflows", "add-addr", "ipv6", "checksum", "lossy", "tfo"])
def test_healthy_kernel_traces_have_no_stall_no_refusal_and_a_clean_close(name: str) -> None:
    analysis = analyze(str(SAMPLES / f"{name}.pcap"))
    for d in analysis.diagnoses.values():
        assert not kinds(d, "stall") and not kinds(d, "join-refused") and not kinds(d, "error")
        assert kinds(d, "close"), d
        assert all(e.frames for e in d.events)
        assert [e.t for e in d.events] == sorted(e.t for e in d.events)


def test_two_subflows_verdict_and_join() -> None:
    d = diagnosis(analyze(str(SAMPLES / "two-subflows.pcap")))
    assert d.verdict.startswith("healthy: 2 subflow(s)")
    (join,) = kinds(d, "join")
    assert len(join.frames) == 3 and "10.210.2.1" in join.text


def test_lossy_reinjection_named_with_frames() -> None:
    d = diagnosis(analyze(str(SAMPLES / "lossy.pcap")))
    (event,) = kinds(d, "reinjection")
    assert "re-sent on subflow 2" in event.text and len(event.frames) == 2


# ---------------------------------------------------------------------- crafted


def join_syn(sc: ConnectionBuilder, client_ip: str = "10.0.3.1", address_id: int = 1) -> SubflowBuilder:
    """Only the SYN of a join (correct token): what the responder does next is the test's."""
    server = sc.side("s")
    sf = SubflowBuilder(sc, (client_ip, 41234), (server.ip, sc.server_port),
                        isn={"c": 70000, "s": 90000}, nxt={"c": 70000, "s": 90000})  # fmt: skip
    sc.subflows.append(sf)
    sf.raw("c", SYN, [MpJoinSyn(False, address_id, crypto.token_from_key(server.key, 1), 0xA1A2A3A4)])
    return sf


def test_join_refused_with_mp_tcprst_reason(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"x" * 100)
    sf.ack("s")
    join = join_syn(sc)
    rst = join.raw("s", RST | ACK, [MpTcpRst(0, 0x03)])
    d = diagnosis(analyze(sc.write(tmp_path)))
    (event,) = kinds(d, "join-refused")
    assert rst in event.frames
    assert "refused by the responder" in event.text
    assert "MP_TCPRST reason 0x03, administratively prohibited" in event.text
    assert "join refused (subflow 2)" in d.verdict


def test_join_without_synack(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sc.initial()
    join_syn(sc)
    d = diagnosis(analyze(sc.write(tmp_path)))
    (event,) = kinds(d, "join-refused")
    assert "got no SYN/ACK" in event.text


def test_completed_join_is_not_refused(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sc.initial()
    join = sc.join()
    join.send("c", b"data")
    d = diagnosis(analyze(sc.write(tmp_path)))
    assert kinds(d, "join") and not kinds(d, "join-refused")


def test_mp_fail_after_checksum_failure_then_infinite_mapping(tmp_path: Path) -> None:
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    dsn = sc.side("c").dsn
    good = sc.auto_dss("c", sf.rel("c"), b"hello, checksum")
    assert good.checksum is not None
    bad = sf.send("c", b"hello, checksum", dss=dataclasses.replace(good, checksum=good.checksum ^ 0x5A5A))
    fail = sf.ack("s", extra=[MpFail(dsn)])
    me = sc.side("c")
    infinite = Dss(DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64, data_ack=me.acked, dsn=me.dsn, ssn=sf.rel("c"),
                   data_len=0, checksum=0)  # fmt: skip
    fallback = sf.send("c", b"plain from now on", dss=infinite)
    analysis = analyze(sc.write(tmp_path))
    d = diagnosis(analysis)
    (event,) = kinds(d, "fallback")
    assert {fallback, fail, bad} <= set(event.frames)
    assert f"MP_FAIL at frame {fail}" in event.text and f"checksum failure at frame {bad}" in event.text
    assert "infinite mapping" in event.text
    assert analysis.connections[0].fallback_cause == "infinite-mapping"
    assert "fell back to TCP (infinite mapping)" in d.verdict


def holed_trace(tmp_path: Path, acked: bool) -> str:
    """Three client segments, the middle one missing from the capture; the server's Data ACK covers it or not."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"a" * 100)
    after_first = sc.side("c").dsn
    sf.send("c", b"b" * 100)
    missing = len(sc.packets) - 1
    sf.send("c", b"c" * 100)
    if acked:
        sf.ack("s")
    else:
        sf.send("s", b"", dss=Dss(DSS_ACK | DSS_ACK64, data_ack=after_first))
    del sc.packets[missing]
    return sc.write(tmp_path)


def test_hole_acknowledged_by_data_ack_is_capture_loss(tmp_path: Path) -> None:
    d = diagnosis(analyze(holed_trace(tmp_path, acked=True)))
    (event,) = kinds(d, "incomplete")
    assert "1 hole(s), 100 bytes" in event.text and "capture loss, not network loss" in event.text


def test_hole_never_acknowledged_is_not_called_capture_loss(tmp_path: Path) -> None:
    d = diagnosis(analyze(holed_trace(tmp_path, acked=False)))
    (event,) = kinds(d, "incomplete")
    assert "never acknowledged" in event.text and "capture loss" not in event.text


def stalled_trace(both_directions: bool = True) -> ConnectionBuilder:
    """Data unacknowledged for 1 s, retransmitted after 0.3 s and again 0.6 s later (the RTO doubled)."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"a" * 100)
    sf.ack("s")
    seq = sf.nxt["c"]
    dss = sc.auto_dss("c", sf.rel("c"), b"b" * 100)
    sf.raw("c", ACK | PSH, [dss], b"b" * 100)
    sc.wait(0.3)
    sf.raw("c", ACK | PSH, [dss], b"b" * 100, seq=seq)
    sc.wait(0.6)
    sf.raw("c", ACK | PSH, [dss], b"b" * 100, seq=seq)
    sc.wait(0.1)
    sf.ack("s")
    if not both_directions:
        client_port = sf.client[1]
        sc.packets = [(ts, p) for ts, p in sc.packets if int.from_bytes(p[20:22], "big") == client_port]
    return sc


def test_crafted_stall_with_one_backoff(tmp_path: Path) -> None:
    analysis = analyze(stalled_trace().write(tmp_path))
    (stall,) = analysis.connections[0].subflows[0].halves[0].stalls
    assert (stall.retransmissions, stall.backoffs) == (2, 1)
    assert stall.end_frame is not None and 0.99 < stall.end - stall.start < 1.01
    (event,) = kinds(diagnosis(analysis), "stall")
    assert "no ACK progress for 1,0" in event.text and "2 retransmission(s)" in event.text


def test_no_stall_without_the_other_direction(tmp_path: Path) -> None:
    """Without any ACK from the peer in the capture a wait proves nothing: no stall is claimed."""
    analysis = analyze(stalled_trace(both_directions=False).write(tmp_path))
    assert all(not h.stalls for c in analysis.connections for sf in c.subflows for h in sf.halves)


def test_nat_announced_address_differs_from_join_source(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    ip = ipaddress.ip_address("10.0.3.1")
    announce = AddAddr(1, ip, None, hmac=crypto.add_addr_hmac(CLIENT_KEY, SERVER_KEY, 1, ip, None))
    frame = sf.ack("c", extra=[announce])
    join = sc.join(client_ip="192.0.2.77", client_addr_id=1)
    join.send("c", b"data")
    d = diagnosis(analyze(sc.write(tmp_path)))
    (event,) = kinds(d, "nat")
    assert frame in event.frames and "10.0.3.1" in event.text and "192.0.2.77" in event.text


# ---------------------------------------------------------------------- outputs


@pytest.mark.parametrize("name", sorted(p.stem for p in SAMPLES.glob("*.pcap")))
def test_json_diagnosis_matches_the_schema(name: str) -> None:
    doc = analysis_to_json(analyze(str(SAMPLES / f"{name}.pcap")))
    jsonschema.validate(doc, SCHEMA)
    assert all(conn["diagnosis"]["verdict"] for conn in doc["connections"])


def test_schema_rejects_a_diagnosis_event_without_frames() -> None:
    doc = analysis_to_json(analyze(str(SAMPLES / "fallback.pcap")))
    doc["connections"][0]["diagnosis"]["events"][0]["frames"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


@pytest.mark.parametrize("columns", [80, 120])
def test_text_report_has_a_diagnosis_section(
    columns: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    with pytest.raises(SystemExit) as exit_info:
        main([str(SAMPLES / "path-failure.pcap")])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "Diagnosis: subflow 2 recovered from a stall" in out
    assert "subflow 2 stalled from" in " ".join(out.split())
    assert max(len(line) for line in out.splitlines()) <= columns


@pytest.mark.parametrize(("wait", "stalled"), [(0.25, False), (0.5, True)])
def test_a_wait_without_retransmission_needs_twice_the_floor(tmp_path: Path, wait: float, stalled: bool) -> None:
    """A 250 ms wait with no retransmission may be a delayed ACK (Linux: up to 200 ms); 500 ms is a stall."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    for _ in range(40):  # an RTT of 1 ms, so the floor is the minimum RTO
        sf.send("c", b"a" * 100)
        sf.ack("s")
    sf.send("c", b"a" * 100)
    sc.wait(wait)
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert bool(analysis.connections[0].subflows[0].halves[0].stalls) is stalled
    assert bool(kinds(diagnosis(analysis), "stall")) is stalled
