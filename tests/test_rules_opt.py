"""OPT rules: MPTCP option format (RFC 8684 §3 and the per-option sections).

Each rule has a crafted trace that breaks it (asserting the id, severity and frames) and a legal
trace close to it that must stay quiet.
"""

from __future__ import annotations

import struct
from pathlib import Path

from analyzer.checker.opt import OptionFormatRules
from analyzer.endpoint.builder import ACK, LINKTYPE_RAW, PSH, SYN, ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp import crypto
from analyzer.mptcp.options import (
    DSS_ACK,
    DSS_ACK64,
    Dss,
    MpCapable,
    MpFail,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
)
from analyzer.pipeline import analyze
from analyzer.rules import RULES


def run(sc: ConnectionBuilder, tmp_path: Path) -> Analysis:
    return analyze(sc.write(tmp_path))


def of(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def write_with_snaplen(sc: ConnectionBuilder, directory: Path, caplen: dict[int, int], snaplen: int = 65535) -> str:
    """Write the scenario as pcap, cutting the frames named in ``caplen`` (or all, to ``snaplen``) short."""
    path = directory / "snap.pcap"
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, LINKTYPE_RAW))
        for frame, (ts, packet) in enumerate(sc.packets, start=1):
            kept = packet[: min(caplen.get(frame, len(packet)), snaplen)]
            sec = int(ts)
            f.write(struct.pack("<IIII", sec, round((ts - sec) * 1e6), len(kept), len(packet)) + kept)
    return str(path)


def manual_join(sc: ConnectionBuilder, client_ip: str = "10.0.3.1") -> SubflowBuilder:
    """An empty join subflow whose packets the test writes itself."""
    c, s = sc.side("c"), sc.side("s")
    sf = SubflowBuilder(sc, (client_ip, 41000), (s.ip, sc.server_port), isn={"c": 7000, "s": 9000},
                        nxt={"c": 7000, "s": 9000})  # fmt: skip
    sc.subflows.append(sf)
    assert c.key and s.key
    return sf


def join_options(
    sc: ConnectionBuilder, nonce_c: int = 0xA1A2A3A4, nonce_s: int = 0xB1B2B3B4
) -> tuple[MpJoinSyn, MpJoinSynAck, MpJoinAck]:
    c, s = sc.side("c"), sc.side("s")
    token = crypto.token_from_key(s.key, sc.version)
    thmac = crypto.join_synack_truncated_hmac(s.key, c.key, nonce_s, nonce_c, sc.version)
    return (
        MpJoinSyn(False, 1, token, nonce_c),
        MpJoinSynAck(False, 0, thmac, nonce_s),
        MpJoinAck(crypto.join_ack_hmac(c.key, s.key, nonce_c, nonce_s, sc.version)),
    )


# ---------------------------------------------------------------------------------------- OPT-001
def test_opt_001_an_mptcp_option_running_past_the_tcp_header_is_malformed(tmp_path: Path) -> None:
    """§3: an option whose length runs past the data offset makes the option list malformed."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = sf.raw("c", ACK, [b"\x1e\x10\x50\x00"])  # MP_PRIO claiming 16 bytes in a 4-byte option area
    (finding,) = of(run(sc, tmp_path), "OPT-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_opt_001_an_mptcp_option_too_short_for_its_subtype_byte_is_malformed(tmp_path: Path) -> None:
    """§3: an MPTCP option needs at least 3 bytes (kind, length, subtype)."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = sf.raw("c", ACK, [sc.ack_only_dss("c"), b"\x1e\x02"])
    (finding,) = of(run(sc, tmp_path), "OPT-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_opt_001_an_option_cut_by_the_snaplen_is_not_malformed(tmp_path: Path) -> None:
    """H-SNAP: the capture kept only part of the header; the option was whole on the wire."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = sf.send("c", b"data")
    path = write_with_snaplen(sc, tmp_path, {frame: 20 + 20 + 6})  # IP + TCP header + 6 option bytes
    analysis = analyze(path)
    assert analysis.trace.truncated_packets == 1
    assert of(analysis, "OPT-001") == []


# ---------------------------------------------------------------------------------------- OPT-002
def test_opt_002_a_v1_syn_carrying_a_key_has_the_wrong_length(tmp_path: Path) -> None:
    """§3.1: the v1 SYN's MP_CAPABLE is 4 bytes; the 12-byte (keyed) form belongs to v0."""
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    frame = sf.raw("c", SYN, [MpCapable(1, 0x01, sc.side("c").key)])
    (finding,) = of(run(sc, tmp_path), "OPT-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_opt_002_v0_and_v1_syns_with_their_own_lengths_are_fine(tmp_path: Path) -> None:
    for version in (0, 1):
        sc = ConnectionBuilder(version=version)
        sf = sc.initial()
        sf.send("c", b"x")
        directory = tmp_path / f"v{version}"
        directory.mkdir()
        assert of(run(sc, directory), "OPT-002") == []


def test_opt_002_mp_capable_without_data_length_on_the_first_data(tmp_path: Path) -> None:
    """§3.1: in v1 the initiator's first data carries MP_CAPABLE with the data-level length (22/24 bytes)."""
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial()
    frame = sf.send("c", b"hello", options=[MpCapable(1, 0x01, c.key, s.key)])
    (finding,) = of(run(sc, tmp_path), "OPT-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_opt_002_mp_capable_with_data_length_on_a_pure_ack(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial()
    frame = sf.raw("c", ACK, [MpCapable(1, 0x01, c.key, s.key, 5)])
    (finding,) = of(run(sc, tmp_path), "OPT-002")
    assert finding.frames == [frame]


def test_opt_002_mp_capable_with_data_on_the_first_data_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial()
    sf.send("c", b"hello", options=[MpCapable(1, 0x01, c.key, s.key, 5)])
    sf.ack("s")
    assert of(run(sc, tmp_path), "OPT-002") == []


def test_opt_002_v0_has_no_mp_capable_with_data(tmp_path: Path) -> None:
    """RFC 6824 §3.1: v0 sends data with a DSS; its MP_CAPABLE after the SYN/ACK is always 20 bytes."""
    sc = ConnectionBuilder(version=0)
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial()
    frame = sf.send("c", b"hello", options=[MpCapable(0, 0x01, c.key, s.key, 5)])
    (finding,) = of(run(sc, tmp_path), "OPT-002")
    assert finding.frames == [frame]


def test_opt_002_join_syn_form_on_a_syn_ack(tmp_path: Path) -> None:
    """§3.2: the SYN/ACK of a join carries the 16-byte form; the 12-byte form is the SYN's."""
    sc = ConnectionBuilder()
    sc.initial()
    join = manual_join(sc)
    syn, _, _ = join_options(sc)
    join.raw("c", SYN, [syn])
    frame = join.raw("s", SYN | ACK, [syn])
    (finding,) = of(run(sc, tmp_path), "OPT-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_opt_002_a_length_no_layout_defines_is_reported_by_the_tracker(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = sf.raw("c", ACK, [b"\x1e\x0d\x01\x01" + bytes(9)])  # MP_CAPABLE of 13 bytes
    (finding,) = of(run(sc, tmp_path), "OPT-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


# ---------------------------------------------------------------------------------------- OPT-003
def test_opt_003_unassigned_subtype_is_a_warning_and_experimental_is_info(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    unassigned = sf.raw("c", ACK, [sc.ack_only_dss("c"), b"\x1e\x04\x90\x00"])
    experimental = sf.raw("c", ACK, [sc.ack_only_dss("c"), b"\x1e\x04\xf0\x00"])
    findings = of(run(sc, tmp_path), "OPT-003")
    assert [(f.severity, f.frames) for f in findings] == [
        (Severity.WARNING, [unassigned]), (Severity.INFO, [experimental]),
    ]  # fmt: skip


def test_opt_003_assigned_subtypes_are_quiet(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"x")
    assert of(run(sc, tmp_path), "OPT-003") == []


# ---------------------------------------------------------------------------------------- OPT-004
def test_opt_004_two_dss_options_in_one_segment(tmp_path: Path) -> None:
    """§3: one segment carries at most one option of each subtype."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    frame = sf.send("c", b"x", extra=[sc.ack_only_dss("c")])
    (finding,) = of(run(sc, tmp_path), "OPT-004")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])
    assert "DSS" in finding.message


def test_opt_004_different_subtypes_together_are_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"x", extra=[MpPrio(False)])
    assert of(run(sc, tmp_path), "OPT-004") == []


# ---------------------------------------------------------------------------------------- OPT-005
def test_opt_005_reserved_bits_in_dss_join_and_mp_fail(tmp_path: Path) -> None:
    """§3.3, §3.2, §3.7: reserved bits are sent as zero."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    s = sc.side("s")
    dss_frame = sf.raw("c", ACK, [Dss(DSS_ACK | DSS_ACK64 | 0x20, data_ack=sc.side("c").acked)])
    nibble_frame = sf.raw("c", ACK, [Dss(DSS_ACK | DSS_ACK64, data_ack=sc.side("c").acked, reserved=0x3)])
    fail_frame = sf.raw("s", ACK, [sc.ack_only_dss("s"), MpFail(s.dsn, reserved=0x100)])
    join = manual_join(sc)
    syn, _, _ = join_options(sc)
    join_frame = join.raw("c", SYN, [MpJoinSyn(syn.backup, syn.address_id, syn.token, syn.nonce, reserved=0x4)])
    findings = of(run(sc, tmp_path), "OPT-005")
    assert [f.frames for f in findings] == [[dss_frame], [nibble_frame], [fail_frame], [join_frame]]
    assert {f.severity for f in findings} == {Severity.WARNING}


def test_opt_005_clean_options_are_quiet(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"x")
    sc.join().send("c", b"y")
    sc.close()
    assert of(run(sc, tmp_path), "OPT-005") == []


# ---------------------------------------------------------------------------------------- OPT-006
def test_opt_006_dss_on_a_syn(tmp_path: Path) -> None:
    """§3.3: a DSS never rides on a SYN."""
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    frame = sf.raw("c", SYN, [MpCapable(1, 0x01), Dss(DSS_ACK, data_ack=1)])
    (finding,) = of(run(sc, tmp_path), "OPT-006")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_opt_006_dss_on_a_fast_open_syn_ack_is_only_a_warning(tmp_path: Path) -> None:
    """H-TFO: with data on the SYN the MPTCP mapping rules are not settled."""
    sc = ConnectionBuilder()
    s = sc.side("s")
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN, [MpCapable(1, 0x01), b"\x22\x02"], payload=b"GET /")
    frame = sf.raw("s", SYN | ACK, [MpCapable(1, 0x01, s.key), Dss(DSS_ACK, data_ack=1)])
    (finding,) = of(run(sc, tmp_path), "OPT-006")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_opt_006_mp_capable_and_mp_join_together_on_a_syn(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    syn, _, _ = join_options(sc)
    frame = sf.raw("c", SYN, [MpCapable(1, 0x01), syn])
    findings = of(run(sc, tmp_path), "OPT-006")
    assert [(f.severity, f.frames) for f in findings] == [(Severity.ERROR, [frame])]


def test_opt_006_join_third_ack_option_sent_by_the_responder(tmp_path: Path) -> None:
    """§3.2: only the initiator sends the third-ACK form of MP_JOIN."""
    sc = ConnectionBuilder()
    sc.initial()
    join = manual_join(sc)
    syn, synack, ack = join_options(sc)
    join.raw("c", SYN, [syn])
    join.raw("s", SYN | ACK, [synack])
    join.raw("c", ACK, [ack])
    frame = join.raw("s", ACK, [ack])
    (finding,) = of(run(sc, tmp_path), "OPT-006")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_opt_006_mp_capable_on_a_join_subflow(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sc.initial()
    join = sc.join()
    frame = join.raw("c", ACK, [MpCapable(1, 0x01, c.key, s.key)])
    (finding,) = of(run(sc, tmp_path), "OPT-006")
    assert finding.frames == [frame]


def test_opt_006_retransmitted_third_acks_may_repeat_the_handshake_options(tmp_path: Path) -> None:
    """H-RTX: a retransmitted third ACK has the same sequence number and repeats MP_CAPABLE / MP_JOIN."""
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial()
    sf.raw("c", ACK, [MpCapable(1, 0x01, c.key, s.key)])
    join = manual_join(sc)
    syn, synack, ack = join_options(sc)
    join.raw("c", SYN, [syn])
    join.raw("s", SYN | ACK, [synack])
    join.raw("c", ACK, [ack])
    join.raw("c", ACK, [ack])
    join.ack("s")
    assert of(run(sc, tmp_path), "OPT-006") == []


# ---------------------------------------------------------------------------------------- OPT-007
def test_opt_007_mptcp_options_after_a_plain_tcp_handshake(tmp_path: Path) -> None:
    """§3.1: MPTCP options only make sense on a connection whose SYN negotiated MPTCP."""
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    syn = sf.raw("c", SYN)
    sf.raw("s", SYN | ACK)
    sf.raw("c", ACK)
    frame = sf.send("c", b"hello")
    (finding,) = of(run(sc, tmp_path), "OPT-007")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [syn, frame])


def test_opt_007_is_not_judged_when_the_snaplen_may_have_cut_the_syn_options(tmp_path: Path) -> None:
    """H-SNAP: with a short snaplen an MP_CAPABLE on the SYN may not have been captured."""
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    sf.raw("c", SYN)
    sf.raw("s", SYN | ACK)
    sf.raw("c", ACK)
    sf.send("c", b"hello")
    assert of(analyze(write_with_snaplen(sc, tmp_path, {}, snaplen=96)), "OPT-007") == []


def test_opt_007_without_the_syn_the_negotiation_is_unknown(tmp_path: Path) -> None:
    """H-MID: a capture that starts after the handshake cannot tell whether MPTCP was negotiated."""
    sc = ConnectionBuilder()
    sf = sc.initial(handshake=False)
    sf.nxt = {"c": 1001, "s": 5001}
    sf.send("c", b"hello")
    sf.ack("s")
    assert of(run(sc, tmp_path), "OPT-007") == []


def test_opt_rules_stay_quiet_on_a_clean_connection_with_a_join(tmp_path: Path) -> None:
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    sf.send("c", b"hello", options=[MpCapable(1, 0x81, sc.side("c").key, sc.side("s").key, 5,
                                              crypto.dss_checksum(sc.side("c").dsn, 1, 5, b"hello"))])  # fmt: skip
    sc.side("c").dsn += 5
    sc.side("s").acked = sc.side("c").dsn
    sf.ack("s")
    join = sc.join()
    join.send("c", b"world")
    join.ack("s")
    sf.send("s", b"reply", flags=ACK | PSH)
    sc.close()
    analysis = run(sc, tmp_path)
    assert [f for f in analysis.findings if f.rule.startswith("OPT-")] == []
    assert not [f for f in analysis.findings if f.severity >= Severity.WARNING]


def test_every_opt_rule_of_the_catalogue_is_registered_with_its_severity() -> None:
    """Rules are data: the catalogue's ids and severities, each with an RFC section and an explanation."""
    expected = {
        "OPT-001": Severity.ERROR,
        "OPT-002": Severity.ERROR,
        "OPT-003": Severity.WARNING,
        "OPT-004": Severity.WARNING,
        "OPT-005": Severity.WARNING,
        "OPT-006": Severity.ERROR,
        "OPT-007": Severity.WARNING,
    }
    assert {rule.id: rule.severity for rule in OptionFormatRules.RULES} == expected
    for rule in OptionFormatRules.RULES:
        assert RULES[rule.id] == rule and rule.section and rule.title and rule.description
