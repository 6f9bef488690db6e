"""Fault injection: each fault's trace carries its violation on the wire, and the analyzer names it.

Two checks per fault. The wire check decodes the capture with the endpoint's codec and recomputes
the violated property from the catalogue (shared/mptcp-rules.md) independently of the analyzer.
The analyzer check asserts that ``analyze`` reports the target rule, and no *other* rule at warning
or error severity, so each trace breaks exactly one rule. Rules the checker does not implement yet
(not in ``analyzer.rules.RULES``) are expected failures.
"""

from __future__ import annotations

import hashlib
import importlib
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest

from analyzer.endpoint.faults import FAULTS, fault_config
from analyzer.endpoint.segment import Segment, decode_packet
from analyzer.endpoint.sim import SimResult, run
from analyzer.findings import Severity
from analyzer.mptcp import crypto
from analyzer.mptcp.options import (
    AddAddr,
    Dss,
    MalformedOption,
    MpCapable,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpTcpRst,
    RemoveAddr,
    Subtype,
)
from analyzer.pipeline import analyze
from analyzer.rules import RULES

MASK64 = (1 << 64) - 1

# The checker registers its rules on import (the pipeline imports it lazily). If it cannot be imported, these
# tests must fail, not turn into expected failures.
importlib.import_module("analyzer.checker")
_CACHE: dict[str, tuple[SimResult, list[Segment]]] = {}


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[SimResult, list[Segment]]]:
    """Each fault's trace, simulated once per module."""
    root = tmp_path_factory.mktemp("faults")

    def get(name: str) -> tuple[SimResult, list[Segment]]:
        if name not in _CACHE:
            result = run(fault_config(name, root / f"{name}.pcap", seed=5))
            _CACHE[name] = (result, list(_segments(result.pcap)))
        return _CACHE[name]

    return get


def _segments(path: Path) -> Iterator[Segment]:
    with path.open("rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            yield decode_packet(bytes(buf))


@dataclass
class Keys:
    client: int
    server: int


def keys_of(segs: list[Segment]) -> Keys:
    synack = next(o for s in segs if s.syn and s.has_ack for o in s.mptcp if isinstance(o, MpCapable))
    third = next(o for s in segs if not s.syn for o in s.mptcp if isinstance(o, MpCapable))
    assert synack.sender_key is not None and third.sender_key is not None
    return Keys(third.sender_key, synack.sender_key)


def client_ip(segs: list[Segment]) -> object:
    return segs[0].src


def opts(segs: list[Segment], kind: type) -> Iterator[tuple[Segment, object]]:  # type: ignore[type-arg]
    for seg in segs:
        for opt in seg.mptcp:
            if isinstance(opt, kind):
                yield seg, opt


def flow(seg: Segment) -> tuple[object, int, object, int]:
    return (seg.src, seg.sport, seg.dst, seg.dport)


# ------------------------------------------------------------------------------------------ wire checks
def wire_bad_join_synack_hmac(segs: list[Segment]) -> bool:
    k = keys_of(segs)
    syn = next(o for _, o in opts(segs, MpJoinSyn))
    synack_seg, synack = next(opts(segs, MpJoinSynAck))
    assert isinstance(syn, MpJoinSyn) and isinstance(synack, MpJoinSynAck)
    expected = crypto.join_synack_truncated_hmac(k.server, k.client, synack.nonce, syn.nonce)
    rst = [s for s in segs if s.rst and s.dst == synack_seg.src and s.sport == synack_seg.dport]
    return synack.truncated_hmac != expected and any(MpTcpRst(0, 1) in s.mptcp for s in rst)


def wire_bad_join_ack_hmac(segs: list[Segment]) -> bool:
    k = keys_of(segs)
    syn = next(o for _, o in opts(segs, MpJoinSyn))
    synack = next(o for _, o in opts(segs, MpJoinSynAck))
    ack = next(o for _, o in opts(segs, MpJoinAck))
    assert isinstance(syn, MpJoinSyn) and isinstance(synack, MpJoinSynAck) and isinstance(ack, MpJoinAck)
    return ack.hmac != crypto.join_ack_hmac(k.client, k.server, syn.nonce, synack.nonce)


def wire_bad_add_addr_hmac(segs: list[Segment]) -> bool:
    k = keys_of(segs)
    adds = [o for _, o in opts(segs, AddAddr) if isinstance(o, AddAddr) and not o.echo]
    echoes = [o for _, o in opts(segs, AddAddr) if isinstance(o, AddAddr) and o.echo]
    return (
        bool(adds)
        and not echoes
        and all(a.hmac != crypto.add_addr_hmac(k.server, k.client, a.address_id, a.address, a.port) for a in adds)
    )


def wire_bad_dss_checksum(segs: list[Segment]) -> bool:
    bad = [
        s for s, o in opts(segs, Dss)
        if isinstance(o, Dss) and o.has_mapping and o.checksum is not None and s.payload
        and not crypto.dss_checksum_ok(o.dsn or 0, o.ssn or 0, o.data_len or 0, s.payload, o.checksum)
    ]  # fmt: skip
    return len({flow(s) for s in bad}) == 1 and any(s.rst and any(o.subtype == Subtype.MP_FAIL for o in s.mptcp)
                                                     for s in segs)  # fmt: skip


def wire_conflicting_mapping(segs: list[Segment]) -> bool:
    seen: dict[tuple[object, int, object, int, int], int] = {}
    k = keys_of(segs)
    base = (crypto.idsn_from_key(k.client) + 1) & MASK64
    for seg, opt in opts(segs, MpCapable):
        if isinstance(opt, MpCapable) and opt.data_len:
            seen[(*flow(seg), 1)] = base
    for seg, opt in opts(segs, Dss):
        if isinstance(opt, Dss) and opt.has_mapping and opt.ssn:
            key = (*flow(seg), opt.ssn)
            if key in seen and seen[key] != opt.dsn:
                return True
            seen[key] = opt.dsn or 0
    return False


def wire_reinject_different_bytes(segs: list[Segment]) -> bool:
    by_dsn: dict[int, set[bytes]] = defaultdict(set)
    k = keys_of(segs)
    base = (crypto.idsn_from_key(k.client) + 1) & MASK64
    for seg, opt in opts(segs, MpCapable):
        if isinstance(opt, MpCapable) and opt.data_len and seg.payload:
            by_dsn[base].add(seg.payload)
    for seg, opt in opts(segs, Dss):
        if isinstance(opt, Dss) and opt.has_mapping and seg.payload:
            by_dsn[opt.dsn or 0].add(seg.payload)
    return sum(len(v) > 1 for v in by_dsn.values()) == 1


def wire_data_ack_beyond(segs: list[Segment]) -> bool:
    k = keys_of(segs)
    base = (crypto.idsn_from_key(k.client) + 1) & MASK64
    client = client_ip(segs)
    ends = [((o.dsn or 0) + (o.data_len or 0) - base) & MASK64 for s, o in opts(segs, Dss)
            if isinstance(o, Dss) and o.has_mapping and s.src == client]  # fmt: skip
    acks = [((o.data_ack or 0) - base) & MASK64 for s, o in opts(segs, Dss)
            if isinstance(o, Dss) and o.ack64 and s.src != client]  # fmt: skip
    return max(acks) > max(ends) + 1


def wire_data_ack_backwards(segs: list[Segment]) -> bool:
    last: dict[tuple[object, int, object, int], int] = {}
    for seg, opt in opts(segs, Dss):
        if isinstance(opt, Dss) and opt.ack64 and opt.data_ack is not None:
            key = flow(seg)
            if key in last and opt.data_ack < last[key] and not seg.payload:
                return True
            last[key] = opt.data_ack
    return False


def wire_wrong_key_echo(segs: list[Segment]) -> bool:
    k = keys_of(segs)
    third = next(o for s in segs if not s.syn and not s.payload for o in s.mptcp if isinstance(o, MpCapable))
    return third.receiver_key != k.server


def wire_missing_mapping(segs: list[Segment]) -> bool:
    unmapped = [
        s for s in segs
        if s.payload and not s.syn
        and not any((isinstance(o, Dss) and o.has_mapping) or isinstance(o, MpCapable) for o in s.mptcp)
    ]  # fmt: skip
    flows = {flow(s) for s in unmapped}
    if len(flows) != 1:
        return False
    src, sport, dst, dport = flows.pop()
    resets = [s for s in segs if s.rst and (s.src, s.sport, s.dst, s.dport) == (dst, dport, src, sport)]
    return any(MpTcpRst(0, 1) in s.mptcp for s in resets)


def wire_duplicate_address_id(segs: list[Segment]) -> bool:
    ids = defaultdict(set)
    for seg, opt in opts(segs, MpJoinSyn):
        if isinstance(opt, MpJoinSyn):
            ids[opt.address_id].add(seg.src)
    return any(len(v) > 1 for v in ids.values())


def wire_remove_unknown_id(segs: list[Segment]) -> bool:
    announced = {o.address_id for _, o in opts(segs, AddAddr) if isinstance(o, AddAddr)} | {0}
    removed = {i for _, o in opts(segs, RemoveAddr) if isinstance(o, RemoveAddr) for i in o.address_ids}
    return bool(removed - announced)


def wire_fastclose_wrong_key(segs: list[Segment]) -> bool:
    k = keys_of(segs)
    client = client_ip(segs)
    keys = {o.receiver_key for s, o in opts(segs, MpFastclose) if isinstance(o, MpFastclose) and s.src == client}
    return keys == {k.client}


def wire_bad_dss_length(segs: list[Segment]) -> bool:
    bad = [o for _, o in opts(segs, MalformedOption) if isinstance(o, MalformedOption) and o.subtype == Subtype.DSS]
    return len(bad) == 1 and bad[0].raw[1] == 14


def wire_bad_option_length(segs: list[Segment]) -> bool:
    bad = [o for _, o in opts(segs, MalformedOption) if isinstance(o, MalformedOption)]
    return len(bad) == 1 and bad[0].subtype == Subtype.REMOVE_ADDR and len(bad[0].raw) == 3


WIRE: dict[str, Callable[[list[Segment]], bool]] = {
    name: globals()[f"wire_{name.replace('-', '_')}"] for name in FAULTS
}


def test_every_fault_has_a_wire_check_and_a_catalogue_rule() -> None:
    assert set(WIRE) == set(FAULTS)
    text = (Path(__file__).resolve().parents[1] / "docs" / "mptcp-rules.md").read_text(encoding="utf-8")
    for fault in FAULTS.values():
        assert f"**{fault.rule} ·" in text, fault.rule


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_is_on_the_wire_and_the_transfer_survives(
    name: str, traces: Callable[[str], tuple[SimResult, list[Segment]]]
) -> None:
    result, segs = traces(name)
    assert WIRE[name](segs), f"{name}: the violation of {FAULTS[name].rule} is not on the wire"
    assert result.completed, "the correct peer recovers: both streams are delivered intact"


def test_every_fault_rule_is_registered() -> None:
    """A fault whose rule is not registered is a broken checker, never an expected failure."""
    assert {f.rule for f in FAULTS.values()} <= set(RULES)


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_is_detected_as_its_rule_only(
    name: str, traces: Callable[[str], tuple[SimResult, list[Segment]]]
) -> None:
    result, _ = traces(name)
    analysis = analyze(str(result.pcap))
    target = FAULTS[name].rule
    found = {f.rule for f in analysis.findings}
    assert target in found
    others = sorted({f.rule for f in analysis.findings if f.severity >= Severity.WARNING} - {target})
    assert others == [], f"{name} should violate only {target}"
    unclickable = [f.rule for f in analysis.findings if not f.frames]
    assert unclickable == [], f"findings that name no frame: {unclickable}"
    assert len(analysis.connections) == 1
    c2s, s2c = analysis.streams[analysis.connections[0].id]
    assert c2s.sha256 == result.c2s.sent_sha256 and s2c.sha256 == result.s2c.sent_sha256


def test_fault_traces_are_reproducible(tmp_path: Path) -> None:
    digests = {
        hashlib.sha256(run(fault_config("bad-dss-checksum", tmp_path / f"{i}.pcap", seed=9)).pcap.read_bytes()).digest()
        for i in range(2)
    }
    assert len(digests) == 1
