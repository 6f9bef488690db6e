"""MPC rules: MP_CAPABLE negotiation on the initial subflow (RFC 8684 §3.1).

Each rule has a crafted trace that breaks it (asserting the id, severity and frames) and a legal
trace close to it that must stay quiet.
"""

from __future__ import annotations

import struct
from pathlib import Path

from analyzer.checker.mpc import MpCapableRules
from analyzer.endpoint.builder import ACK, PSH, SYN, ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp.options import MpCapable
from analyzer.pipeline import analyze
from analyzer.rules import RULES

H, A, B, C = 0x01, 0x80, 0x40, 0x20  # MP_CAPABLE flags: HMAC-SHA256, checksum, extensibility, no-join-to-source


def run(sc: ConnectionBuilder, tmp_path: Path) -> Analysis:
    return analyze(sc.write(tmp_path))


def of(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def handshake(
    sc: ConnectionBuilder, syn: int = H, synack: int = H, ack: int | None = H, version: tuple[int, int, int] = (1, 1, 1)
) -> tuple[SubflowBuilder, list[int]]:
    """The initial subflow's three handshake packets with the given flag bytes (``ack=None``: no third ACK)."""
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial(handshake=False)
    frames = [
        sf.raw("c", SYN, [MpCapable(version[0], syn, c.key if version[0] == 0 else None)]),
        sf.raw("s", SYN | ACK, [MpCapable(version[1], synack, s.key)]),
    ]
    if ack is not None:
        frames.append(sf.raw("c", ACK, [MpCapable(version[2], ack, c.key, s.key)]))
    return sf, frames


def mpc_data(
    sc: ConnectionBuilder, sf: SubflowBuilder, payload: bytes, data_len: int | None = None, seq: int | None = None
) -> int:
    """The initiator's first data with MP_CAPABLE (v1 implied mapping), keeping the scenario's DSNs in step."""
    c, s = sc.side("c"), sc.side("s")
    option = MpCapable(1, H, c.key, s.key, len(payload) if data_len is None else data_len)
    if seq is not None:
        return sf.raw("c", ACK | PSH, [option], payload, seq=seq)
    frame = sf.raw("c", ACK | PSH, [option], payload)
    c.dsn += len(payload)
    s.acked = c.dsn
    return frame


def plain_packet_long_before(sc: ConnectionBuilder, seconds: float = 10.0) -> None:
    """An unrelated packet, then a pause: the capture was running well before the next SYN."""
    other = SubflowBuilder(sc, ("10.9.9.9", 5555), ("10.9.9.8", 22), isn={"c": 1, "s": 1}, nxt={"c": 1, "s": 1})
    other.raw("c", SYN)
    sc.wait(seconds)


# ---------------------------------------------------------------------------------------- MPC-001
def test_mpc_001_syn_ack_selects_a_higher_version_than_offered(tmp_path: Path) -> None:
    """§3.1: the responder answers with the proposed version or a lower one, never a higher one."""
    sc = ConnectionBuilder()
    _, frames = handshake(sc, version=(0, 1, 1))
    (finding,) = of(run(sc, tmp_path), "MPC-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, frames[:2])


def test_mpc_001_answering_a_higher_proposal_with_v1_is_fine(tmp_path: Path) -> None:
    """Linux answers a SYN with a version above 1 with v1."""
    sc = ConnectionBuilder()
    handshake(sc, version=(2, 1, 1))
    assert of(run(sc, tmp_path), "MPC-001") == []


# ---------------------------------------------------------------------------------------- MPC-002
def test_mpc_002_third_ack_uses_another_version(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    _, frames = handshake(sc, version=(1, 1, 0))
    (finding,) = of(run(sc, tmp_path), "MPC-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, frames[1:])


def test_mpc_002_matching_versions_are_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    handshake(sc)
    assert of(run(sc, tmp_path), "MPC-002") == []


# ---------------------------------------------------------------------------------------- MPC-003
def test_mpc_003_syn_ack_with_mp_capable_answers_a_plain_syn(tmp_path: Path) -> None:
    """§3.1: a responder only accepts MPTCP that the SYN proposed."""
    sc = ConnectionBuilder()
    plain_packet_long_before(sc)
    s = sc.side("s")
    sf = sc.initial(handshake=False)
    syn = sf.raw("c", SYN)
    synack = sf.raw("s", SYN | ACK, [MpCapable(1, H, s.key)])
    (finding,) = of(run(sc, tmp_path), "MPC-003")
    assert (finding.severity, finding.frames, finding.assumes) == (Severity.ERROR, [syn, synack], ())


def test_mpc_003_is_only_a_warning_when_an_earlier_syn_may_predate_the_capture(tmp_path: Path) -> None:
    """H-LOSS: the capture began just before this SYN; an MP_CAPABLE SYN with the same ISN may have been missed."""
    sc = ConnectionBuilder()
    s = sc.side("s")
    sf = sc.initial(handshake=False)
    syn = sf.raw("c", SYN)
    synack = sf.raw("s", SYN | ACK, [MpCapable(1, H, s.key)])
    (finding,) = of(run(sc, tmp_path), "MPC-003")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [syn, synack])
    assert finding.assumes == ("capture-from-start",)


def test_mpc_003_answering_an_earlier_mp_capable_syn_with_the_same_isn_is_fine(tmp_path: Path) -> None:
    """Linux drops MP_CAPABLE from the third SYN but keeps the ISN; the SYN/ACK may answer an earlier SYN."""
    sc = ConnectionBuilder()
    plain_packet_long_before(sc)
    s = sc.side("s")
    sf = sc.initial(handshake=False)
    for _ in range(2):
        sf.raw("c", SYN, [MpCapable(1, H)], seq=1000)
    sf.raw("c", SYN, seq=1000)
    sf.nxt["c"] = 1001
    sf.raw("s", SYN | ACK, [MpCapable(1, H, s.key)])
    assert of(run(sc, tmp_path), "MPC-003") == []


# ---------------------------------------------------------------------------------------- MPC-004 / MPC-005
def test_mpc_004_third_ack_echoes_another_server_key(tmp_path: Path) -> None:
    """§3.1: the third ACK echoes the key the SYN/ACK carried (reported by the tracker)."""
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN, [MpCapable(1, H)])
    synack = sf.raw("s", SYN | ACK, [MpCapable(1, H, s.key)])
    ack = sf.raw("c", ACK, [MpCapable(1, H, c.key, s.key ^ 1)])
    (finding,) = of(run(sc, tmp_path), "MPC-004")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [synack, ack])


def test_mpc_005_the_client_key_changes_between_third_ack_and_first_data(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf, frames = handshake(sc)
    data = sf.raw("c", ACK | PSH, [MpCapable(1, H, c.key ^ 1, s.key, 5)], b"hello")
    (finding,) = of(run(sc, tmp_path), "MPC-005")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frames[2], data])


def test_mpc_004_and_005_stay_quiet_when_the_keys_are_consistent(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf, _ = handshake(sc)
    mpc_data(sc, sf, b"hello")
    analysis = run(sc, tmp_path)
    assert of(analysis, "MPC-004") == [] and of(analysis, "MPC-005") == []


# ---------------------------------------------------------------------------------------- MPC-006
def test_mpc_006_third_ack_without_both_keys(tmp_path: Path) -> None:
    """§3.1: the initiator's MP_CAPABLE after the SYN/ACK carries both keys."""
    sc = ConnectionBuilder()
    c = sc.side("c")
    sf, _ = handshake(sc, ack=None)
    frame = sf.raw("c", ACK, [MpCapable(1, H, c.key)])
    (finding,) = of(run(sc, tmp_path), "MPC-006")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_mpc_006_third_ack_with_both_keys_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    handshake(sc)
    assert of(run(sc, tmp_path), "MPC-006") == []


# ---------------------------------------------------------------------------------------- MPC-007
def test_mpc_007_syn_without_any_crypto_algorithm(tmp_path: Path) -> None:
    """§3.1: an MP_CAPABLE names at least one crypto algorithm (v1: H = HMAC-SHA256)."""
    sc = ConnectionBuilder()
    _, frames = handshake(sc, syn=0x00)
    (finding,) = of(run(sc, tmp_path), "MPC-007")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frames[0]])


def test_mpc_007_syn_ack_selects_more_than_one_algorithm(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    _, frames = handshake(sc, syn=H | 0x02, synack=H | 0x02)
    (finding,) = of(run(sc, tmp_path), "MPC-007")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frames[1]])


def test_mpc_007_syn_ack_selects_an_algorithm_the_syn_did_not_offer(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    _, frames = handshake(sc, syn=H, synack=0x02, ack=0x02)
    (finding,) = of(run(sc, tmp_path), "MPC-007")
    assert (finding.severity, finding.frames) == (Severity.ERROR, frames[:2])


def test_mpc_007_selecting_one_of_the_offered_algorithms_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    handshake(sc, syn=H | 0x02, synack=H, ack=H)
    assert of(run(sc, tmp_path), "MPC-007") == []


# ---------------------------------------------------------------------------------------- MPC-008
def test_mpc_008_extensibility_bit_set(tmp_path: Path) -> None:
    """§3.1: B must be 0 in v1; a peer that does not know it ignores the option."""
    sc = ConnectionBuilder()
    _, frames = handshake(sc, syn=H | B)
    (finding,) = of(run(sc, tmp_path), "MPC-008")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frames[0]])


def test_mpc_008_assigned_flags_checksum_and_c_are_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    handshake(sc, syn=H | A | C, synack=H | A | C, ack=H | A | C)
    assert of(run(sc, tmp_path), "MPC-008") == []


# ---------------------------------------------------------------------------------------- MPC-009
def test_mpc_009_third_ack_contradicts_the_checksum_decision(tmp_path: Path) -> None:
    """§3.1: checksums are on when either side set A; the third ACK carries that decision."""
    sc = ConnectionBuilder()
    _, frames = handshake(sc, syn=H | A, synack=H, ack=H)
    (finding,) = of(run(sc, tmp_path), "MPC-009")
    assert (finding.severity, finding.frames) == (Severity.ERROR, frames)


def test_mpc_009_third_ack_with_the_negotiated_checksum_flag_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    handshake(sc, syn=H | A, synack=H, ack=H | A)
    assert of(run(sc, tmp_path), "MPC-009") == []


# ---------------------------------------------------------------------------------------- MPC-010
def test_mpc_010_mp_capable_on_a_later_data_segment(tmp_path: Path) -> None:
    """§3.1: only the third ACK and the first data (relative sequence 1) carry MP_CAPABLE."""
    sc = ConnectionBuilder()
    sf, _ = handshake(sc)
    mpc_data(sc, sf, b"hello")
    frame = mpc_data(sc, sf, b"again")
    (finding,) = of(run(sc, tmp_path), "MPC-010")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_mpc_010_mp_capable_long_after_the_responders_data_ack(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf, _ = handshake(sc)
    mpc_data(sc, sf, b"hello")
    established = sf.ack("s")
    sc.wait(1.0)
    frame = mpc_data(sc, sf, b"hello", seq=1001)
    (finding,) = of(run(sc, tmp_path), "MPC-010")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [established, frame])


def timestamp(tsval: int, tsecr: int) -> bytes:
    return b"\x01\x01\x08\x0a" + struct.pack("!II", tsval, tsecr)


def test_mpc_010_timestamps_show_the_initiator_had_received_later_responder_segments(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf, _ = handshake(sc)
    mpc_data(sc, sf, b"hello")
    established = sf.ack("s", extra=[timestamp(200, 10)])
    sf.ack("s", extra=[timestamp(201, 10)])
    sc.wait(1.0)
    option = MpCapable(1, H, c.key, s.key, 5)
    frame = sf.raw("c", ACK | PSH, [option, timestamp(12, 201)], b"hello", seq=1001)
    (finding,) = of(run(sc, tmp_path), "MPC-010")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [established, frame])


def test_mpc_010_a_data_ack_lost_on_the_path_keeps_the_initiator_repeating_mp_capable(tmp_path: Path) -> None:
    """The initiator's timestamp echo shows it never received the responder's DSS: its repeats are legal."""
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf, _ = handshake(sc)
    mpc_data(sc, sf, b"hello")
    sf.ack("s", extra=[timestamp(200, 10)])
    sc.wait(1.0)
    option = MpCapable(1, H, c.key, s.key, 5)
    sf.raw("c", ACK | PSH, [option, timestamp(12, 150)], b"hello", seq=1001)
    assert of(run(sc, tmp_path), "MPC-010") == []


def test_mpc_010_retransmitting_the_first_data_before_the_data_ack_is_fine(tmp_path: Path) -> None:
    """H-RTX, H-REORD: the first data may be repeated until a Data ACK arrives (and one in flight is allowed)."""
    sc = ConnectionBuilder()
    sf, _ = handshake(sc)
    mpc_data(sc, sf, b"hello")
    sc.wait(0.5)
    mpc_data(sc, sf, b"hello", seq=1001)
    sf.ack("s")
    mpc_data(sc, sf, b"hello", seq=1001)
    assert of(run(sc, tmp_path), "MPC-010") == []


# ---------------------------------------------------------------------------------------- MPC-011
def test_mpc_011_third_ack_without_mp_capable_then_mptcp_options(tmp_path: Path) -> None:
    """§3.1: an initiator whose third ACK lacks MP_CAPABLE has fallen back and sends no MPTCP options."""
    sc = ConnectionBuilder()
    sf, frames = handshake(sc, ack=None)
    bare = sf.raw("c", ACK)
    dss = sf.send("c", b"hello")
    (finding,) = of(run(sc, tmp_path), "MPC-011")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frames[1], bare, dss])


def test_mpc_011_mp_capable_with_data_can_stand_in_for_the_third_ack(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf, _ = handshake(sc, ack=None)
    sf.raw("c", ACK)
    mpc_data(sc, sf, b"hello")
    sf.ack("s")
    sf.send("c", b"more")
    assert of(run(sc, tmp_path), "MPC-011") == []


# ---------------------------------------------------------------------------------------- MPC-012
def test_mpc_012_data_level_length_shorter_than_the_payload(tmp_path: Path) -> None:
    """§3.1: the implied mapping of MP_CAPABLE with data covers at least the segment's payload."""
    sc = ConnectionBuilder()
    sf, _ = handshake(sc)
    frame = mpc_data(sc, sf, b"hello", data_len=3)
    (finding,) = of(run(sc, tmp_path), "MPC-012")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_mpc_012_a_longer_data_level_length_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf, _ = handshake(sc)
    mpc_data(sc, sf, b"hello", data_len=8)
    assert of(run(sc, tmp_path), "MPC-012") == []


# ---------------------------------------------------------------------------------------- MPC-013
def test_mpc_013_a_zero_key(tmp_path: Path) -> None:
    sc = ConnectionBuilder(server_key=0)
    _, frames = handshake(sc)
    (finding,) = of(run(sc, tmp_path), "MPC-013")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frames[1]])


def test_mpc_013_nonzero_keys_are_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    handshake(sc)
    assert of(run(sc, tmp_path), "MPC-013") == []


# ---------------------------------------------------------------------------------------- MPC-014
def test_mpc_014_syn_retried_without_mp_capable(tmp_path: Path) -> None:
    """§3.1 (Linux): after two unanswered MP_CAPABLE SYNs the client retries without MPTCP."""
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    first = sf.raw("c", SYN, [MpCapable(1, H)], seq=1000)
    sf.raw("c", SYN, [MpCapable(1, H)], seq=1000)
    plain = sf.raw("c", SYN, seq=1000)
    (finding,) = of(run(sc, tmp_path), "MPC-014")
    assert (finding.severity, finding.frames) == (Severity.INFO, [first, plain])


def test_mpc_014_retransmitting_the_mp_capable_syn_is_quiet(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    for _ in range(3):
        sf.raw("c", SYN, [MpCapable(1, H)], seq=1000)
    assert of(run(sc, tmp_path), "MPC-014") == []


# ---------------------------------------------------------------------------------------- MPC-015
def test_mpc_015_responder_sends_mp_capable_after_its_syn_ack(tmp_path: Path) -> None:
    """§3.1: the responder's only MP_CAPABLE is on its SYN/ACK."""
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf, _ = handshake(sc)
    frame = sf.raw("s", ACK, [MpCapable(1, H, s.key, c.key)])
    (finding,) = of(run(sc, tmp_path), "MPC-015")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_mpc_015_syn_ack_mp_capable_of_the_wrong_length(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN, [MpCapable(1, H)])
    frame = sf.raw("s", SYN | ACK, [MpCapable(1, H, s.key, c.key)])
    (finding,) = of(run(sc, tmp_path), "MPC-015")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_mpc_015_retransmitted_syn_ack_is_fine(tmp_path: Path) -> None:
    """H-RTX."""
    sc = ConnectionBuilder()
    s = sc.side("s")
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN, [MpCapable(1, H)])
    sf.raw("s", SYN | ACK, [MpCapable(1, H, s.key)], seq=5000)
    sf.raw("s", SYN | ACK, [MpCapable(1, H, s.key)], seq=5000)
    assert of(run(sc, tmp_path), "MPC-015") == []


def test_mpc_rules_stay_quiet_on_a_kernel_like_connection(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf, _ = handshake(sc)
    mpc_data(sc, sf, b"hello")
    sf.ack("s")
    sf.send("c", b"world")
    sf.send("s", b"reply")
    sf.ack("c")
    sc.close()
    analysis = run(sc, tmp_path)
    assert [f for f in analysis.findings if f.rule.startswith("MPC-")] == []
    assert not [f for f in analysis.findings if f.severity >= Severity.WARNING]


def test_every_mpc_rule_of_the_catalogue_is_registered_with_its_severity() -> None:
    """Rules are data: the catalogue's ids and severities, each with an RFC section and an explanation."""
    expected = {
        "MPC-001": Severity.ERROR,
        "MPC-002": Severity.ERROR,
        "MPC-003": Severity.ERROR,
        "MPC-004": Severity.ERROR,
        "MPC-005": Severity.ERROR,
        "MPC-006": Severity.ERROR,
        "MPC-007": Severity.ERROR,
        "MPC-008": Severity.WARNING,
        "MPC-009": Severity.ERROR,
        "MPC-010": Severity.WARNING,
        "MPC-011": Severity.WARNING,
        "MPC-012": Severity.ERROR,
        "MPC-013": Severity.WARNING,
        "MPC-014": Severity.INFO,
        "MPC-015": Severity.ERROR,
    }
    assert {rule.id: rule.severity for rule in MpCapableRules.RULES} == expected
    for rule in MpCapableRules.RULES:
        assert RULES[rule.id] == rule and rule.section and rule.title and rule.description
