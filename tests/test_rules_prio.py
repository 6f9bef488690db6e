"""PRIO rules: subflow priority, MP_PRIO and the MP_JOIN B bit (RFC 8684 §3.3.8).

Each rule has a crafted trace that breaks it (asserting the id, severity and frames) and a legal
trace close to it that must stay quiet.
"""

from __future__ import annotations

from pathlib import Path

from analyzer.checker.prio import PriorityRules
from analyzer.endpoint.builder import ACK, SYN, ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp import crypto
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DSN64, DSS_MAPPING, Dss, MpCapable, MpJoinSyn, MpPrio
from analyzer.pipeline import analyze
from analyzer.rules import RULES


def run(sc: ConnectionBuilder, tmp_path: Path) -> Analysis:
    return analyze(sc.write(tmp_path))


def of(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def established(sc: ConnectionBuilder) -> SubflowBuilder:
    sf = sc.initial()
    sf.send("c", b"hello")
    sf.ack("s")
    return sf


# ---------------------------------------------------------------------------------------- PRIO-001
def test_prio_001_four_byte_mp_prio_in_a_v1_connection(tmp_path: Path) -> None:
    """§3.3.8: v1 MP_PRIO is 3 bytes and applies to its own subflow; the v0 address-ID form is gone."""
    sc = ConnectionBuilder()
    sf = established(sc)
    frame = sf.ack("c", extra=[MpPrio(True, address_id=0)])
    (finding,) = of(run(sc, tmp_path), "PRIO-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_prio_001_a_length_no_version_defines_is_reported_by_the_tracker(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf = established(sc)
    frame = sf.ack("c", extra=[b"\x1e\x05\x51\x00\x00"])
    (finding,) = of(run(sc, tmp_path), "PRIO-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_prio_001_four_byte_mp_prio_is_valid_in_v0_and_three_bytes_in_v1(tmp_path: Path) -> None:
    """H-V0: RFC 6824 allowed the address ID."""
    for version, option in ((0, MpPrio(True, address_id=0)), (1, MpPrio(True))):
        sc = ConnectionBuilder(version=version)
        established(sc).ack("c", extra=[option])
        directory = tmp_path / f"v{version}"
        directory.mkdir()
        assert of(run(sc, directory), "PRIO-001") == []


# ---------------------------------------------------------------------------------------- PRIO-002
def test_prio_002_mp_prio_on_a_join_syn(tmp_path: Path) -> None:
    """§3.3.8: the initial priority of a join is its B bit; MP_PRIO has no place on a SYN."""
    sc = ConnectionBuilder()
    established(sc)
    s = sc.side("s")
    join = SubflowBuilder(sc, ("10.0.3.1", 41000), (s.ip, 80), isn={"c": 1, "s": 1}, nxt={"c": 1, "s": 1})
    frame = join.raw("c", SYN, [MpJoinSyn(False, 1, crypto.token_from_key(s.key), 7), MpPrio(True)])
    (finding,) = of(run(sc, tmp_path), "PRIO-002")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_prio_002_mp_prio_together_with_mp_capable(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    c, s = sc.side("c"), sc.side("s")
    sf = sc.initial()
    frame = sf.raw("c", ACK, [MpCapable(1, 0x01, c.key, s.key), MpPrio(True)])
    (finding,) = of(run(sc, tmp_path), "PRIO-002")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_prio_002_mp_prio_on_an_established_subflow_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    established(sc).ack("c", extra=[MpPrio(True)])
    assert of(run(sc, tmp_path), "PRIO-002") == []


# ---------------------------------------------------------------------------------------- PRIO-003
def backup_join(sc: ConnectionBuilder) -> tuple[SubflowBuilder, SubflowBuilder, int]:
    """An established connection with a second subflow the client marked as backup (MP_PRIO B=1)."""
    sf = established(sc)
    join = sc.join()
    prio = join.ack("c", extra=[MpPrio(True)])
    return sf, join, prio


def test_prio_003_priority_change_and_new_data_on_the_backup_subflow(tmp_path: Path) -> None:
    """§3.3.8: a backup subflow carries data only when no regular subflow is usable (observation, not error)."""
    sc = ConnectionBuilder()
    sf, join, prio = backup_join(sc)
    sf.send("s", b"regular")
    data = join.send("s", b"on the backup path")
    findings = of(run(sc, tmp_path), "PRIO-003")
    assert [(f.severity, f.frames) for f in findings] == [(Severity.INFO, [prio]), (Severity.INFO, [prio, data])]


def test_prio_003_new_data_on_a_subflow_joined_as_backup(tmp_path: Path) -> None:
    """The MP_JOIN B bit sets the initial priority (JOIN-011 records it)."""
    sc = ConnectionBuilder()
    sf = established(sc)
    syn = len(sc.packets) + 1
    join = sc.join(backup=True)
    sf.send("c", b"regular")
    data = join.send("c", b"on the backup path")
    findings = of(run(sc, tmp_path), "PRIO-003")
    assert [(f.severity, f.frames) for f in findings] == [(Severity.INFO, [syn, data])]


def test_prio_003_data_on_the_backup_subflow_after_the_regular_one_closed_is_not_reported(tmp_path: Path) -> None:
    sc = ConnectionBuilder()
    sf, join, prio = backup_join(sc)
    sf.fin("c")
    sf.fin("s")
    join.send("s", b"only path left")
    findings = of(run(sc, tmp_path), "PRIO-003")
    assert [f.frames for f in findings] == [[prio]]


def test_prio_003_reinjecting_old_data_on_the_backup_subflow_is_not_reported(tmp_path: Path) -> None:
    """H-RTX: reinjection onto a backup subflow after loss is normal."""
    sc = ConnectionBuilder()
    sf, join, prio = backup_join(sc)
    s = sc.side("s")
    old = s.dsn
    sf.send("s", b"lost?")
    reinjection = Dss(
        DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64, data_ack=s.acked, dsn=old, ssn=join.rel("s"), data_len=5
    )
    join.send("s", b"lost?", dss=reinjection)
    findings = of(run(sc, tmp_path), "PRIO-003")
    assert [f.frames for f in findings] == [[prio]]


# ---------------------------------------------------------------------------------------- PRIO-004
def test_prio_004_v0_mp_prio_names_an_unknown_address_id(tmp_path: Path) -> None:
    """RFC 6824 §3.3.8: the address ID names an address of the connection."""
    sc = ConnectionBuilder(version=0)
    frame = established(sc).ack("c", extra=[MpPrio(True, address_id=7)])
    (finding,) = of(run(sc, tmp_path), "PRIO-004")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_prio_004_v0_mp_prio_naming_the_initial_address_is_fine(tmp_path: Path) -> None:
    sc = ConnectionBuilder(version=0)
    established(sc).ack("c", extra=[MpPrio(True, address_id=0)])
    assert of(run(sc, tmp_path), "PRIO-004") == []


def test_prio_004_is_not_judged_without_the_handshake(tmp_path: Path) -> None:
    """H-MID: address IDs may have been assigned before the capture started."""
    sc = ConnectionBuilder(version=0)
    sf = sc.initial(handshake=False)
    sf.nxt = {"c": 1001, "s": 5001}
    sf.send("c", b"hello")
    sf.ack("s", extra=[MpPrio(True, address_id=7)])
    assert of(run(sc, tmp_path), "PRIO-004") == []


def test_every_prio_rule_of_the_catalogue_is_registered_with_its_severity() -> None:
    """Rules are data: the catalogue's ids and severities, each with an RFC section and an explanation."""
    expected = {
        "PRIO-001": Severity.ERROR,
        "PRIO-002": Severity.WARNING,
        "PRIO-003": Severity.INFO,
        "PRIO-004": Severity.WARNING,
    }
    assert {rule.id: rule.severity for rule in PriorityRules.RULES} == expected
    for rule in PriorityRules.RULES:
        assert RULES[rule.id] == rule and rule.section and rule.title and rule.description
