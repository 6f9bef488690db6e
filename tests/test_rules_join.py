"""JOIN rules: MP_JOIN subflows (RFC 8684 §3.2).

Each rule has a crafted trace that breaks it (asserting the id, severity and frames) and a legal
trace close to it that must stay quiet.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from pathlib import Path

from analyzer.checker.join import JoinRules
from analyzer.endpoint.builder import ACK, PSH, SYN, ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp import crypto
from analyzer.mptcp.options import (
    DSS_ACK,
    DSS_ACK64,
    DSS_DSN64,
    DSS_MAPPING,
    AddAddr,
    Dss,
    MpCapable,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpTcpRst,
)
from analyzer.pipeline import analyze
from analyzer.rules import RULES

NONCE_C, NONCE_S = 0xA1A2A3A4, 0xB1B2B3B4


def run(sc: ConnectionBuilder, tmp_path: Path) -> Analysis:
    return analyze(sc.write(tmp_path))


def of(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def timestamp(tsval: int, tsecr: int) -> bytes:
    """A TCP timestamp option (RFC 7323), NOP-aligned."""
    return b"\x01\x01\x08\x0a" + struct.pack("!II", tsval, tsecr)


@dataclass
class Join:
    sf: SubflowBuilder
    frames: dict[str, int] = field(default_factory=dict)


def join(
    sc: ConnectionBuilder,
    *,
    client_ip: str = "10.0.3.1",
    server: tuple[str, int] | None = None,
    client_id: int = 1,
    server_id: int = 0,
    backup: tuple[bool, bool] = (False, False),
    token: int | None = None,
    bad_synack_hmac: bool = False,
    bad_ack_hmac: bool = False,
    synack: bool = True,
    third_ack: bool = True,
    fourth_ack: bool = True,
    synack_ts: int | None = None,
) -> Join:
    """A join opened by the client, written packet by packet so a test can leave out or break any step."""
    c, s = sc.side("c"), sc.side("s")
    v = sc.version
    sf = SubflowBuilder(
        sc, (client_ip, sc._port()), server or (s.ip, sc.server_port),
        isn={"c": 70000, "s": 90000}, nxt={"c": 70000, "s": 90000},
    )  # fmt: skip
    sc.subflows.append(sf)
    j = Join(sf)
    token = crypto.token_from_key(s.key, v) if token is None else token
    j.frames["syn"] = sf.raw("c", SYN, [MpJoinSyn(backup[0], client_id, token, NONCE_C)])
    if not synack:
        return j
    thmac = crypto.join_synack_truncated_hmac(s.key, c.key, NONCE_S, NONCE_C, v) ^ int(bad_synack_hmac)
    extra = [timestamp(synack_ts, 0)] if synack_ts is not None else []
    j.frames["synack"] = sf.raw("s", SYN | ACK, [MpJoinSynAck(backup[1], server_id, thmac, NONCE_S), *extra])
    if not third_ack:
        return j
    hmac = bytearray(crypto.join_ack_hmac(c.key, s.key, NONCE_C, NONCE_S, v))
    hmac[0] ^= int(bad_ack_hmac)
    j.frames["ack"] = sf.raw("c", ACK, [MpJoinAck(bytes(hmac))])
    if fourth_ack:
        j.frames["fourth"] = sf.ack("s")
    return j


def infinite_mapping(sc: ConnectionBuilder, sf: SubflowBuilder, side: str) -> int:
    """A DSS with data-level length 0: the sender falls back to TCP (§3.7)."""
    me = sc.side(side)
    dss = Dss(
        DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64, data_ack=me.acked, dsn=me.dsn, ssn=sf.rel(side), data_len=0
    )
    return sf.raw(side, ACK, [dss])


def established(sc: ConnectionBuilder) -> SubflowBuilder:
    sf = sc.initial()
    sf.send("c", b"hello")
    sf.ack("s")
    return sf


# ---------------------------------------------------------------------------------------- JOIN-001
def test_join_001_accepted_join_whose_token_belongs_to_no_captured_connection_is_info(tmp_path: Path) -> None:
    """H-MID: the connection's MP_CAPABLE handshake is simply not in the capture, so nothing can be judged."""
    sc = ConnectionBuilder()
    j = join(sc)
    (finding,) = of(run(sc, tmp_path), "JOIN-001")
    assert (finding.severity, finding.frames) == (Severity.INFO, [j.frames["syn"], j.frames["synack"]])


def test_join_001_accepted_join_with_a_wrong_token_whose_hmac_proves_the_connection(tmp_path: Path) -> None:
    """§3.2: a responder refuses a join whose token it does not know; this one accepted a wrong token."""
    sc = ConnectionBuilder()
    established(sc)
    right = crypto.token_from_key(sc.side("s").key)
    j = join(sc, token=right ^ 0xFFFF)
    (finding,) = of(run(sc, tmp_path), "JOIN-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [j.frames["syn"], j.frames["synack"]])


def test_join_001_a_join_with_the_right_token_is_quiet(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    join(sc)
    assert of(run(sc, tmp_path), "JOIN-001") == []


# ---------------------------------------------------------------------------------------- JOIN-002 / 003
def test_join_002_wrong_syn_ack_hmac(tmp_path: Path) -> None:
    """§3.2: the SYN/ACK carries the leftmost 64 bits of HMAC(Key-B‖Key-A, R-B‖R-A) (tracker)."""
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, bad_synack_hmac=True, third_ack=False)
    (finding,) = of(run(sc, tmp_path), "JOIN-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [j.frames["syn"], j.frames["synack"]])


def test_join_003_wrong_third_ack_hmac(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, bad_ack_hmac=True, fourth_ack=False)
    (finding,) = of(run(sc, tmp_path), "JOIN-003")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [j.frames[k] for k in ("syn", "synack", "ack")])


def test_join_002_and_003_are_quiet_with_correct_hmacs(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    join(sc)
    analysis = run(sc, tmp_path)
    assert of(analysis, "JOIN-002") == [] and of(analysis, "JOIN-003") == []


# ---------------------------------------------------------------------------------------- JOIN-004
def test_join_004_initiator_completes_the_handshake_after_a_bad_syn_ack_hmac(tmp_path: Path) -> None:
    """§3.2: after a wrong SYN/ACK HMAC the initiator resets the subflow instead of sending the third ACK."""
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, bad_synack_hmac=True, fourth_ack=False)
    (finding,) = of(run(sc, tmp_path), "JOIN-004")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [j.frames["synack"], j.frames["ack"]])


def test_join_004_initiator_resets_after_a_bad_syn_ack_hmac(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, bad_synack_hmac=True, third_ack=False)
    j.sf.rst("c", [MpTcpRst(0, 0x01)])
    analysis = run(sc, tmp_path)
    assert of(analysis, "JOIN-004") == [] and len(of(analysis, "JOIN-002")) == 1


def test_join_004_responder_acknowledges_a_bad_third_ack_hmac(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, bad_ack_hmac=True)
    (finding,) = of(run(sc, tmp_path), "JOIN-004")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [j.frames["ack"], j.frames["fourth"]])


def test_join_004_responder_resets_after_a_bad_third_ack_hmac(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, bad_ack_hmac=True, fourth_ack=False)
    j.sf.rst("s", [MpTcpRst(0, 0x01)])
    assert of(run(sc, tmp_path), "JOIN-004") == []


# ---------------------------------------------------------------------------------------- JOIN-005
def test_join_005_initiator_sends_data_before_the_fourth_ack(tmp_path: Path) -> None:
    """§3.2: the initiator waits for the responder's ACK of its third ACK before sending data.

    The fourth ACK shows up after the data (it does not acknowledge it): wherever the capture ran, the data
    left the initiator before the fourth ACK reached it.
    """
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, fourth_ack=False)
    data = j.sf.send("c", b"early")
    fourth = j.sf.raw("s", ACK, [sc.ack_only_dss("s")], ack=70001)
    (finding,) = of(run(sc, tmp_path), "JOIN-005")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [j.frames["ack"], data, fourth])


def test_join_005_is_only_a_warning_when_the_fourth_ack_may_have_been_lost_by_the_capture(tmp_path: Path) -> None:
    """H-LOSS: the responder's first captured ACK already covers the data, so a fourth ACK may be missing."""
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, fourth_ack=False)
    data = j.sf.send("c", b"early")
    j.sf.ack("s")
    (finding,) = of(run(sc, tmp_path), "JOIN-005")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [j.frames["ack"], data])


def test_join_005_third_ack_carrying_data(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, third_ack=False)
    c, s = sc.side("c"), sc.side("s")
    ack = j.sf.raw("c", ACK | PSH, [MpJoinAck(crypto.join_ack_hmac(c.key, s.key, NONCE_C, NONCE_S))], b"early")
    (finding,) = of(run(sc, tmp_path), "JOIN-005")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [ack])


def test_join_005_data_after_the_fourth_ack_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc)
    j.sf.send("c", b"on time")
    j.sf.ack("s")
    assert of(run(sc, tmp_path), "JOIN-005") == []


def test_join_005_a_newer_timestamp_echo_shows_the_fourth_ack_was_only_lost_by_the_capture(tmp_path: Path) -> None:
    """H-LOSS: the initiator echoes a TSval newer than the SYN/ACK's, so it received a later responder segment."""
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, fourth_ack=False, synack_ts=100)
    j.sf.send("c", b"data", extra=[timestamp(500, 105)])
    assert of(run(sc, tmp_path), "JOIN-005") == []


# ---------------------------------------------------------------------------------------- JOIN-006
def test_join_006_data_without_dss_after_a_syn_ack_without_mp_join(tmp_path: Path) -> None:
    """§3.2, §3.7: a join subflow never falls back to TCP; without MP_JOIN it must be reset."""
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, synack=False)
    synack = j.sf.raw("s", SYN | ACK)
    j.sf.raw("c", ACK)
    data = j.sf.raw("c", ACK | PSH, payload=b"plain tcp")
    (finding,) = of(run(sc, tmp_path), "JOIN-006")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [j.frames["syn"], synack, data])


def test_join_006_data_without_dss_after_a_third_ack_without_mp_join(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, third_ack=False)
    bare = j.sf.raw("c", ACK)
    data = j.sf.raw("c", ACK | PSH, payload=b"plain tcp")
    (finding,) = of(run(sc, tmp_path), "JOIN-006")
    assert finding.frames == [j.frames["syn"], bare, data]


def test_join_006_resetting_the_join_instead_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, synack=False)
    j.sf.raw("s", SYN | ACK)
    j.sf.rst("c")
    assert of(run(sc, tmp_path), "JOIN-006") == []


# ---------------------------------------------------------------------------------------- JOIN-007
def test_join_007_join_accepted_after_an_infinite_mapping(tmp_path: Path) -> None:
    """§3.7: a connection that fell back to TCP opens and accepts no new subflows."""
    sc = ConnectionBuilder()
    sf = established(sc)
    fallback = infinite_mapping(sc, sf, "s")
    sc.wait(2.0)
    j = join(sc)
    findings = of(run(sc, tmp_path), "JOIN-007")
    assert [(f.severity, f.frames) for f in findings] == [
        (Severity.ERROR, [fallback, j.frames["syn"], j.frames["synack"]])
    ]


def test_join_007_only_sending_the_syn_after_the_fallback_is_a_warning(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = established(sc)
    fallback = infinite_mapping(sc, sf, "c")
    j = join(sc, synack=False)
    j.sf.rst("s")
    (finding,) = of(run(sc, tmp_path), "JOIN-007")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [fallback, j.frames["syn"]])


def test_join_007_a_join_before_the_fallback_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = established(sc)
    join(sc)
    infinite_mapping(sc, sf, "s")
    assert of(run(sc, tmp_path), "JOIN-007") == []


def test_join_007_a_fallback_the_initiator_may_not_have_received_yet_is_not_judged(tmp_path: Path) -> None:
    """H-REORD: the server's infinite mapping was still in flight when the client sent the join SYN."""
    sc = ConnectionBuilder()
    sf = established(sc)
    infinite_mapping(sc, sf, "s")
    j = join(sc, synack=False)
    j.sf.rst("s", [MpTcpRst(0, 0x01)])
    assert of(run(sc, tmp_path), "JOIN-007") == []


def test_join_007_accepting_a_join_right_after_the_peers_fallback_is_not_judged(tmp_path: Path) -> None:
    """H-REORD: the client fell back and opened a join at once (a warning for the client); the server may
    not have received the infinite mapping when it accepted the join, so the acceptance is no error."""
    sc = ConnectionBuilder()
    sf = established(sc)
    fallback = infinite_mapping(sc, sf, "c")
    j = join(sc)
    findings = of(run(sc, tmp_path), "JOIN-007")
    assert [(f.severity, f.frames) for f in findings] == [(Severity.WARNING, [fallback, j.frames["syn"]])]


# ---------------------------------------------------------------------------------------- JOIN-008
def c_flag_handshake(sc: ConnectionBuilder) -> tuple[SubflowBuilder, int]:
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN, [MpCapable(1, 0x01)])
    synack = sf.raw("s", SYN | ACK, [MpCapable(1, 0x21, s.key)])
    sf.raw("c", ACK, [MpCapable(1, 0x01, c.key, s.key)])
    sf.ack("s")
    return sf, synack


def test_join_008_join_to_the_address_the_server_flagged_with_c(tmp_path: Path) -> None:
    """§3.1: C = 1 means the sender accepts no further subflows to the packet's source address and port."""
    sc = ConnectionBuilder()
    _, synack = c_flag_handshake(sc)
    j = join(sc)
    (finding,) = of(run(sc, tmp_path), "JOIN-008")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [synack, j.frames["syn"]])


def test_join_008_join_to_another_server_address_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    c_flag_handshake(sc)
    join(sc, server=("10.0.2.2", 80))
    assert of(run(sc, tmp_path), "JOIN-008") == []


# ---------------------------------------------------------------------------------------- JOIN-009
def test_join_009_one_address_id_for_two_addresses_at_the_same_time(tmp_path: Path) -> None:
    """§3.4: an address ID names one address; two live joins give ID 1 to two different addresses."""
    sc = ConnectionBuilder()
    established(sc)
    first = join(sc, client_ip="10.0.3.1", client_id=1)
    second = join(sc, client_ip="10.0.4.1", client_id=1)
    (finding,) = of(run(sc, tmp_path), "JOIN-009")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [first.frames["syn"], second.frames["syn"]])
    assert finding.subflow is None and finding.connection == 1


def test_join_009_reusing_an_id_after_the_first_subflow_closed_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    first = join(sc, client_ip="10.0.3.1", client_id=1)
    first.sf.fin("c")
    first.sf.fin("s")
    join(sc, client_ip="10.0.4.1", client_id=1)
    join(sc, client_ip="10.0.5.1", client_id=2)
    assert of(run(sc, tmp_path), "JOIN-009") == []


# ---------------------------------------------------------------------------------------- JOIN-010
def test_join_010_join_before_the_connection_is_fully_established(tmp_path: Path) -> None:
    """§3.2 (Linux): a join waits until the initiator's key was delivered or the responder sent a DSS."""
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN, [MpCapable(1, 0x01)])
    sf.raw("s", SYN | ACK, [MpCapable(1, 0x01, s.key)])
    j = join(sc)
    sc.wait(1.0)
    sf.raw("c", ACK, [MpCapable(1, 0x01, c.key, s.key)])
    (finding,) = of(run(sc, tmp_path), "JOIN-010")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [j.frames["syn"]])


def test_join_010_a_third_ack_overtaken_on_another_path_is_fine(tmp_path: Path) -> None:
    """H-REORD: the third ACK shows up within one RTT of the join SYN."""
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN, [MpCapable(1, 0x01)])
    sf.raw("s", SYN | ACK, [MpCapable(1, 0x01, s.key)])
    j = join(sc, synack=False)
    sf.raw("c", ACK, [MpCapable(1, 0x01, c.key, s.key)])
    assert j.frames["syn"]
    assert of(run(sc, tmp_path), "JOIN-010") == []


def test_join_010_is_not_judged_when_the_third_ack_was_never_captured(tmp_path: Path) -> None:
    """H-END, H-LOSS: the third ACK may have been sent before the join but missed by the capture."""
    sc = ConnectionBuilder()
    s = sc.side("s")
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN, [MpCapable(1, 0x01)])
    sf.raw("s", SYN | ACK, [MpCapable(1, 0x01, s.key)])
    join(sc)
    assert of(run(sc, tmp_path), "JOIN-010") == []


def test_join_010_join_after_the_third_ack_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sc.initial()
    join(sc)
    assert of(run(sc, tmp_path), "JOIN-010") == []


# ---------------------------------------------------------------------------------------- JOIN-011
def test_join_011_backup_join_is_recorded(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, backup=(True, False))
    (finding,) = of(run(sc, tmp_path), "JOIN-011")
    assert (finding.severity, finding.frames) == (Severity.INFO, [j.frames["syn"], j.frames["synack"]])


def test_join_011_regular_join_is_not_reported(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    join(sc)
    assert of(run(sc, tmp_path), "JOIN-011") == []


# ---------------------------------------------------------------------------------------- JOIN-012
def test_join_012_join_answered_by_a_plain_syn_ack(tmp_path: Path) -> None:
    """§3.2: a refused join gets a RST, not a SYN/ACK without MP_JOIN."""
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, synack=False)
    synack = j.sf.raw("s", SYN | ACK)
    (finding,) = of(run(sc, tmp_path), "JOIN-012")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [j.frames["syn"], synack])


def test_join_012_a_syn_ack_whose_options_the_capture_cut_is_not_judged(tmp_path: Path) -> None:
    """H-SNAP: the SYN/ACK carried MP_JOIN, but the snaplen kept only the first two option bytes."""
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, third_ack=False)
    path = tmp_path / "cut.pcap"
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for frame, (ts, packet) in enumerate(sc.packets, start=1):
            kept = packet[:42] if frame == j.frames["synack"] else packet  # IP + TCP header + 2 option bytes
            sec = int(ts)
            f.write(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(kept), len(packet)) + kept)
    assert of(analyze(str(path)), "JOIN-012") == []


def test_join_012_join_refused_with_a_rst_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, synack=False)
    j.sf.rst("s", [MpTcpRst(0, 0x01)])
    assert of(run(sc, tmp_path), "JOIN-012") == []


# ---------------------------------------------------------------------------------------- JOIN-013
def test_join_013_join_to_a_port_that_was_never_announced(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc, server=(sc.side("s").ip, 8080))
    (finding,) = of(run(sc, tmp_path), "JOIN-013")
    assert (finding.severity, finding.frames) == (Severity.INFO, [j.frames["syn"]])


def test_join_013_join_to_an_announced_port_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = established(sc)
    c, s = sc.side("c"), sc.side("s")
    address = ipaddress.IPv4Address(s.ip)
    hmac = crypto.add_addr_hmac(s.key, c.key, 5, address, 8080)
    sf.ack("s", extra=[AddAddr(5, address, 8080, hmac=hmac)])
    sf.ack("c", extra=[AddAddr(5, address, 8080, echo=True)])
    join(sc, server=(s.ip, 8080), server_id=5)
    assert of(run(sc, tmp_path), "JOIN-013") == []


def test_join_rules_stay_quiet_on_a_clean_two_subflow_connection(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc)
    j = join(sc)
    j.sf.send("c", b"world")
    j.sf.ack("s")
    sc.close()
    analysis = run(sc, tmp_path)
    assert [f for f in analysis.findings if f.rule.startswith("JOIN-")] == []
    assert not [f for f in analysis.findings if f.severity >= Severity.WARNING]


def test_every_join_rule_of_the_catalogue_is_registered_with_its_severity() -> None:
    """Rules are data: the catalogue's ids and severities, each with an RFC section and an explanation."""
    expected = {
        "JOIN-001": Severity.ERROR,
        "JOIN-002": Severity.ERROR,
        "JOIN-003": Severity.ERROR,
        "JOIN-004": Severity.ERROR,
        "JOIN-005": Severity.ERROR,
        "JOIN-006": Severity.ERROR,
        "JOIN-007": Severity.ERROR,
        "JOIN-008": Severity.WARNING,
        "JOIN-009": Severity.WARNING,
        "JOIN-010": Severity.WARNING,
        "JOIN-011": Severity.INFO,
        "JOIN-012": Severity.WARNING,
        "JOIN-013": Severity.INFO,
    }
    assert {rule.id: rule.severity for rule in JoinRules.RULES} == expected
    for rule in JoinRules.RULES:
        assert RULES[rule.id] == rule and rule.section and rule.title and rule.description
