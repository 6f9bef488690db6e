"""Issue 16: a subflow grouped late (handshake not captured, join token unknown so far) is held back from the
later stages and replayed once grouped, so it gets every per-segment rule; the hold is bounded."""

from __future__ import annotations

from pathlib import Path

from analyzer.endpoint.builder import SYN, ConnectionBuilder, ip_tcp
from analyzer.limits import Limits
from analyzer.model import Grouping
from analyzer.mptcp.options import MpFail, MpJoinSyn
from analyzer.pipeline import AnalysisOptions, analyze


def _second_subflow_without_handshake(tmp_path: Path) -> tuple[str, int]:
    """A connection with its handshake, and a second subflow captured without one that sends MP_FAIL on an
    ordinary ACK while both subflows run (FAIL-004: with several subflows the failing one must be reset)."""
    sc = ConnectionBuilder()
    first = sc.initial()
    first.send("c", b"a" * 100)
    first.ack("s")
    second = sc.initial(client_port=40002, handshake=False)
    second.send("c", b"b" * 100)
    second.ack("s")
    frame = second.ack("s", extra=[MpFail(sc.side("c").dsn - 100)])
    first.send("c", b"c" * 100)
    first.ack("s")  # no close: replayed at the end, a rule would see the FINs of later frames (see report)
    return sc.write(tmp_path), frame


def test_a_subflow_grouped_at_the_end_gets_its_per_segment_rules(tmp_path: Path) -> None:
    path, frame = _second_subflow_without_handshake(tmp_path)
    analysis = analyze(path)
    (conn,) = analysis.connections
    late = [sf for sf in conn.subflows if sf.grouping is Grouping.DSN]
    assert len(late) == 1
    found = [f for f in analysis.findings if f.rule == "FAIL-004"]
    assert [(f.frames[0], f.connection, f.subflow) for f in found] == [(frame, conn.id, late[0].id)]


def test_past_the_bound_a_handshake_less_subflow_is_grouped_at_once(tmp_path: Path) -> None:
    path, frame = _second_subflow_without_handshake(tmp_path)
    analysis = analyze(path, AnalysisOptions(limits=Limits(max_ungrouped_segments=2)))
    (conn,) = analysis.connections
    assert any(sf.grouping is Grouping.DSN for sf in conn.subflows)
    assert [f.frames[0] for f in analysis.findings if f.rule == "FAIL-004"] == [frame]
    assert not [f for f in analysis.findings if f.rule == "LIMIT-001"]


def test_a_join_whose_token_stays_unknown_past_the_bound_is_passed_on_and_said(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    join = sc.join()  # its connection's MP_CAPABLE was never captured: grouped by token at the end
    for index in range(6):
        join.send("c", bytes([index]) * 10)
        join.ack("s")
    bounded = analyze(sc.write(tmp_path), AnalysisOptions(limits=Limits(max_ungrouped_segments=3)))
    [message] = [f.message for f in bounded.findings if f.rule == "LIMIT-001"]
    assert "limit max_ungrouped_segments=3 reached" in message and "1 join subflow(s)" in message
    assert any("max_ungrouped_segments" in error for error in bounded.trace.errors)
    (conn,) = bounded.connections
    assert conn.subflows[0].grouping is Grouping.TOKEN
    full = analyze(sc.write(tmp_path, "again.pcap"))
    assert not [f for f in full.findings if f.rule == "LIMIT-001"]


def test_a_summarised_waiting_join_leaves_nothing_held(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    for index in range(30):  # joins naming unknown tokens that never get an answer
        sc.packets.append((sc.time, ip_tcp("10.0.3.1", "10.0.0.2", 20000 + index, 80, index, 0, SYN,
                                             MpJoinSyn(False, 1, 0x1000 + index, index).build())))  # fmt: skip
    analysis = analyze(sc.write(tmp_path), AnalysisOptions(limits=Limits(max_half_open=5)))
    assert len(analysis.connections) == 5
    assert [f for f in analysis.findings if f.rule == "LIMIT-001" and "max_half_open" in f.message]
