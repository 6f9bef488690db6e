"""FC family: MP_FASTCLOSE, the abrupt close of the whole connection (RFC 8684 §3.5).

Each rule has a crafted trace that breaks it and a legal twin that comes as close as possible.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.endpoint.builder import ACK, CLIENT_KEY, SERVER_KEY, SYN, ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp.options import MpCapable, MpFastclose, MpTcpRst
from analyzer.pipeline import analyze


def findings(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def one(analysis: Analysis, rule: str) -> Finding:
    (finding,) = findings(analysis, rule)
    return finding


def established(version: int = 1) -> tuple[ConnectionBuilder, SubflowBuilder]:
    sc = ConnectionBuilder(version=version)
    sf = sc.initial()
    sf.send("c", b"hello")
    sf.ack("s")
    sf.send("s", b"world")
    sf.ack("c")
    return sc, sf


def fastclose_on_ack(sc: ConnectionBuilder, sf: SubflowBuilder, key: int = SERVER_KEY) -> int:
    """The client fast-closes on an ACK, carrying (by default) the server's key, as it should."""
    return sf.raw("c", ACK, [MpFastclose(key)])


# FC-001 (emitted by the tracker) ----------------------------------------------------------------


def test_fc_001_fastclose_carrying_the_senders_own_key(tmp_path: Path) -> None:
    """§3.5: MP_FASTCLOSE carries the key of the host that receives it."""
    sc, sf = established()
    frame = fastclose_on_ack(sc, sf, key=CLIENT_KEY)
    sf.rst("s")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])
    assert "the sender's own key" in finding.message


def test_fc_001_fastclose_carrying_the_receivers_key(tmp_path: Path) -> None:
    sc, sf = established()
    fastclose_on_ack(sc, sf)
    sf.rst("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FC-001") == []


# FC-002 -----------------------------------------------------------------------------------------


def test_fc_002_fastclose_on_an_ack_answered_by_no_rst(tmp_path: Path) -> None:
    """§3.5: the receiver answers an MP_FASTCLOSE on an ACK with a RST on that subflow."""
    sc, sf = established()
    frame = fastclose_on_ack(sc, sf)
    sc.wait(1.5)
    fastclose_on_ack(sc, sf)  # retransmitted after an RTO, still no answer
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-002")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_fc_002_fastclose_answered_by_a_rst(tmp_path: Path) -> None:
    sc, sf = established()
    fastclose_on_ack(sc, sf)
    sf.rst("s")
    sc.wait(1.5)
    fastclose_on_ack(sc, sf)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FC-002") == []


def test_fc_002_is_only_info_when_the_capture_lost_packets(tmp_path: Path) -> None:
    """H-LOSS: the RST may be among the packets the capture dropped."""
    sc, sf = established()
    sf.send("s", b"lost by the capture")
    sc.packets.pop()
    sf.send("s", b"seen")
    frame = fastclose_on_ack(sc, sf)
    sc.wait(1.5)
    fastclose_on_ack(sc, sf)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-002")
    assert (finding.severity, finding.frames) == (Severity.INFO, [frame])


def test_fc_002_other_subflows_must_be_reset_by_the_sender(tmp_path: Path) -> None:
    """§3.5: with the ACK form, the sender resets every other subflow itself."""
    sc, sf = established()
    join = sc.join()
    frame = fastclose_on_ack(sc, sf)
    sf.rst("s")
    sc.wait(1.5)
    join.ack("c")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-002")
    assert finding.frames == [frame]
    assert "subflow(s) 2" in finding.message


def test_fc_002_is_not_judged_when_the_capture_ends_at_once(tmp_path: Path) -> None:
    """H-END: the RST may simply come after the capture stopped."""
    sc, sf = established()
    fastclose_on_ack(sc, sf)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FC-002") == []


# FC-003 -----------------------------------------------------------------------------------------


def test_fc_003_receiver_keeps_sending_data_after_a_valid_fastclose(tmp_path: Path) -> None:
    """§3.5: the receiver of a valid MP_FASTCLOSE tears the connection down instead of going on."""
    sc, sf = established()
    frame = fastclose_on_ack(sc, sf)
    sc.wait(0.5)
    data = sf.send("s", b"still talking")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-003")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame, data])


def test_fc_003_segments_in_flight_and_the_rst_answer_are_fine(tmp_path: Path) -> None:
    """H-REORD: a segment sent before the MP_FASTCLOSE arrived is not the receiver's fault."""
    sc, sf = established()
    fastclose_on_ack(sc, sf)
    sf.send("s", b"crossing")  # 1 ms later: within one round trip
    sf.rst("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FC-003") == []


def test_fc_003_fastclose_with_the_wrong_key_need_not_be_obeyed(tmp_path: Path) -> None:
    sc, sf = established()
    fastclose_on_ack(sc, sf, key=CLIENT_KEY)
    sc.wait(0.5)
    sf.send("s", b"not for me")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FC-003") == []


# FC-004 -----------------------------------------------------------------------------------------


def test_fc_004_sender_maps_new_data_after_its_fastclose(tmp_path: Path) -> None:
    """§3.5: after MP_FASTCLOSE its sender has closed the connection and maps no new data."""
    sc, sf = established()
    frame = fastclose_on_ack(sc, sf)
    data = sf.send("c", b"new data")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-004")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame, data])


def test_fc_004_retransmitting_old_data_after_fastclose_is_not_new_data(tmp_path: Path) -> None:
    sc, sf = established()
    start_seq = sf.nxt["c"]
    original = sc.auto_dss("c", sf.rel("c"), b"old data")
    sf.raw("c", ACK, [original], b"old data")
    fastclose_on_ack(sc, sf)
    sf.raw("c", ACK, [original], b"old data", seq=start_seq)  # the same mapping, retransmitted
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FC-004") == []


def test_fc_004_on_another_subflow_the_order_is_unproven(tmp_path: Path) -> None:
    """H-REORD: across subflows the capture cannot prove the data was sent after the MP_FASTCLOSE."""
    sc, sf = established()
    join = sc.join()
    frame = fastclose_on_ack(sc, sf)
    data = join.send("c", b"new data")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-004")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame, data])


# FC-005 -----------------------------------------------------------------------------------------


def test_fc_005_ack_based_fastclose(tmp_path: Path) -> None:
    """§3.5: option A, MP_FASTCLOSE on an ACK and RSTs."""
    sc, sf = established()
    frame = fastclose_on_ack(sc, sf)
    sf.rst("s")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-005")
    assert (finding.severity, finding.frames) == (Severity.INFO, [frame])
    assert "ACK-based" in finding.message


def test_fc_005_rst_based_fastclose_on_every_subflow(tmp_path: Path) -> None:
    """§3.5: option R, RST + MP_FASTCLOSE on every subflow (Linux adds MP_TCPRST)."""
    sc, sf = established()
    join = sc.join()
    first = sf.rst("c", [MpFastclose(SERVER_KEY), MpTcpRst(0, 0)])
    join.rst("c", [MpFastclose(SERVER_KEY), MpTcpRst(0, 0)])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-005")
    assert finding.frames == [first]
    assert "RST-based" in finding.message and "2 subflow(s)" in finding.message
    assert findings(analysis, "FC-002") == [] and findings(analysis, "FC-003") == []


def test_fc_005_rst_based_fastclose_in_v0_is_noted(tmp_path: Path) -> None:
    """RFC 6824 only knows the ACK form."""
    sc, sf = established(version=0)
    sf.rst("c", [MpFastclose(SERVER_KEY)])
    analysis = analyze(sc.write(tmp_path))
    assert "v0" in one(analysis, "FC-005").message


def test_fc_005_no_fastclose_no_method(tmp_path: Path) -> None:
    sc, _ = established()
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FC-005") == []


# FC-006 -----------------------------------------------------------------------------------------


def test_fc_006_fastclose_on_a_syn(tmp_path: Path) -> None:
    """§3.5: MP_FASTCLOSE closes an established connection; a SYN has nothing to close."""
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    frame = sf.raw("c", SYN, [MpCapable(1, 0x01), MpFastclose(SERVER_KEY)])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-006")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_fc_006_fastclose_with_payload_is_a_warning(tmp_path: Path) -> None:
    sc, sf = established()
    frame = sf.raw("c", ACK, [MpFastclose(SERVER_KEY)], b"last words")
    sf.rst("s")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "FC-006")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_fc_006_fastclose_on_a_pure_ack(tmp_path: Path) -> None:
    sc, sf = established()
    fastclose_on_ack(sc, sf)
    sf.rst("s")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "FC-006") == []


# Real kernel traces ---------------------------------------------------------------------------

TRACES = sorted((Path(__file__).resolve().parent.parent / "samples").glob("*.pcap")) + sorted(
    (Path(__file__).resolve().parent / "data" / "tcpdump").glob("*.pcap")
)


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_fc_real_traces_raise_no_warning(trace: Path) -> None:
    """Precision: Linux kernel samples and tcpdump's captures (v0, v1, odd captures) are clean."""
    analysis = analyze(str(trace))
    found = [
        (f.rule, f.frames) for f in analysis.findings if f.rule.startswith("FC-") and f.severity >= Severity.WARNING
    ]
    assert found == []
