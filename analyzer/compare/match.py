"""Which connection and subflow of capture B is which of capture A.

Connections first by what no middlebox rewrites: MP_CAPABLE keys, then tokens (also a join's token).
Subflows of a matched pair, and connections nothing identifies, then by 4-tuple and ISNs, with
fallbacks that survive address translation (equal ISNs, equal MP_JOIN token and nonce) and sequence
randomisation (data sequence space, which only MPTCP-aware boxes touch).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from analyzer.model import CLIENT, SERVER, Analysis, Connection, Subflow

Test = Callable[[Subflow, Subflow], bool]
Matched = tuple[Subflow, Subflow, bool]  # (A's, B's, B's client/server roles are the other way round)


@dataclass(slots=True)
class Pairing:
    a_conn: Connection | None
    b_conn: Connection | None
    match: str  # "keys" | "token" | "tuple" | "dsn"
    subflows: list[tuple[Subflow, Subflow | None, bool]]


def _tuple(sf: Subflow) -> tuple[bytes, int, bytes, int]:
    return (sf.client_ip, sf.client_port, sf.server_ip, sf.server_port)


def _isns(sf: Subflow) -> tuple[int | None, int | None]:
    return (sf.halves[CLIENT].isn, sf.halves[SERVER].isn)


def _compatible_isns(a: Subflow, b: Subflow) -> bool:
    return all(x is None or y is None or x == y for x, y in zip(_isns(a), _isns(b), strict=True))


def same_tuple(a: Subflow, b: Subflow) -> bool:
    return _tuple(a) == _tuple(b) and _compatible_isns(a, b)


def same_isns(a: Subflow, b: Subflow) -> bool:
    """Both ISNs equal: the same subflow behind an address translator."""
    isn_a, isn_b = _isns(a), _isns(b)
    return None not in isn_a and isn_a == isn_b


def same_join(a: Subflow, b: Subflow) -> bool:
    """MP_JOIN token and initiator nonce equal: survives NAT and sequence randomisation."""
    return (
        a.join_token is not None
        and a.join_token == b.join_token
        and a.join_nonces[CLIENT] is not None
        and a.join_nonces[CLIENT] == b.join_nonces[CLIENT]
    )


def same_ports_other_isn(a: Subflow, b: Subflow) -> bool:
    """Same 4-tuple, different ISNs: a box that randomises sequence numbers (or a new incarnation)."""
    return _tuple(a) == _tuple(b)


def same_dsn_space(a: Subflow, b: Subflow, flipped: bool = False) -> bool:
    """Data sequence ranges of both directions overlap (where known): sequence numbers and addresses rewritten."""
    overlaps = 0
    for d in (CLIENT, SERVER):
        ha, hb = a.halves[d], b.halves[d ^ flipped]
        if None in (ha.dsn_first, ha.dsn_last, hb.dsn_first, hb.dsn_last):
            continue
        if ha.dsn_first > hb.dsn_last or hb.dsn_first > ha.dsn_last:  # type: ignore[operator]
            return False
        overlaps += 1
    return overlaps > 0


def same_tuple_flipped(a: Subflow, b: Subflow) -> bool:
    """B guessed the roles the other way round (no SYN captured): its client is A's server."""
    return b.role_guessed and _tuple(a) == (b.server_ip, b.server_port, b.client_ip, b.client_port)


def same_dsn_space_flipped(a: Subflow, b: Subflow) -> bool:
    return b.role_guessed and same_dsn_space(a, b, flipped=True)


@dataclass(frozen=True, slots=True)
class Stage:
    """One kind of evidence: a test, whether it means B's roles are flipped, and keys that must be equal first."""

    test: Test
    flipped: bool = False
    key_a: Callable[[Subflow], object] | None = None  # bucket A and B by these so the test runs on few pairs
    key_b: Callable[[Subflow], object] | None = None


def _join_key(sf: Subflow) -> object:
    return (sf.join_token, sf.join_nonces[CLIENT])


def _reversed_tuple(sf: Subflow) -> tuple[bytes, int, bytes, int]:
    return (sf.server_ip, sf.server_port, sf.client_ip, sf.client_port)


def _has_dsn(sf: Subflow) -> object:
    return any(half.dsn_first is not None for half in sf.halves)


TUPLE_STAGES: tuple[Stage, ...] = (
    Stage(same_tuple, key_a=_tuple, key_b=_tuple),
    Stage(same_isns, key_a=_isns, key_b=_isns),
    Stage(same_join, key_a=_join_key, key_b=_join_key),
    Stage(same_tuple_flipped, True, key_a=_tuple, key_b=_reversed_tuple),
    Stage(same_ports_other_isn, key_a=_tuple, key_b=_tuple),
)
DSN_STAGES: tuple[Stage, ...] = (
    Stage(same_dsn_space, key_a=_has_dsn, key_b=_has_dsn),
    Stage(same_dsn_space_flipped, True, key_a=_has_dsn, key_b=_has_dsn),
)


def pair_subflows(a_list: Iterable[Subflow], b_list: Iterable[Subflow], stages: tuple[Stage, ...]) -> list[Matched]:
    """Pair subflows stage by stage; each subflow is used once, stronger evidence first."""
    a_left, b_all = list(a_list), list(b_list)
    used_b: set[int] = set()
    pairs: list[Matched] = []
    for stage in stages:
        buckets: dict[object, list[Subflow]] | None = None
        if stage.key_a is not None and stage.key_b is not None:
            buckets = {}
            for candidate in b_all:
                if id(candidate) not in used_b:
                    buckets.setdefault(stage.key_b(candidate), []).append(candidate)
        rest: list[Subflow] = []
        for a in a_left:
            pool = b_all if buckets is None or stage.key_a is None else buckets.get(stage.key_a(a), [])
            found = next((b for b in pool if id(b) not in used_b and stage.test(a, b)), None)
            if found is None:
                rest.append(a)
                continue
            used_b.add(id(found))
            pairs.append((a, found, stage.flipped))
        a_left = rest
    return pairs


def _keys(conn: Connection) -> set[int]:
    return {side.key for side in conn.sides if side.key is not None}


def _tokens(conn: Connection) -> set[int]:
    tokens = {side.token for side in conn.sides if side.token is not None}
    return tokens | {sf.join_token for sf in conn.subflows if sf.join_token is not None}


def _by_identity(a: Connection, candidates: list[Connection]) -> tuple[Connection, str] | None:
    keys = _keys(a)
    if keys:
        for b in candidates:
            if keys & _keys(b):
                return b, "keys"
    tokens = _tokens(a)
    if tokens:
        for b in candidates:
            if tokens & _tokens(b):
                return b, "token"
    return None


def _initial_pair(a: Connection, b: Connection, taken: list[Matched]) -> list[Matched]:
    """The initial subflows of two connections matched by keys are the same subflow, whatever a box rewrote."""
    ia, ib = a.initial_subflow, b.initial_subflow
    if ia is None or ib is None or any(x is ia or y is ib for x, y, _ in taken):
        return []
    return [(ia, ib, False)]


def match_connections(a: Analysis, b: Analysis) -> list[Pairing]:
    """Every MPTCP connection of A with its counterpart in B (or None), and B's that only matched A's plain flows."""
    b_free = list(b.connections)
    pairings: list[Pairing] = []
    unmatched: list[Connection] = []
    for conn in a.connections:
        found = _by_identity(conn, b_free)
        if found is None:
            unmatched.append(conn)
            continue
        other, how = found
        b_free.remove(other)
        pairs = pair_subflows(conn.subflows, other.subflows, TUPLE_STAGES)
        pairs += _initial_pair(conn, other, pairs)
        rest_a = [sf for sf in conn.subflows if all(sf is not x for x, _, _ in pairs)]
        rest_b = [sf for sf in other.subflows if all(sf is not y for _, y, _ in pairs)]
        pairs += pair_subflows(rest_a, rest_b, DSN_STAGES)
        pairings.append(Pairing(conn, other, how, _in_a_order(conn.subflows, pairs)))
    b_flows = [sf for conn in b_free for sf in conn.subflows] + list(b.tcp_flows)
    for conn in unmatched:
        pairings.append(_by_subflows(conn, b_flows))
    for conn in b_free:  # B's MPTCP connections whose A side is plain TCP (an option added on the way?)
        if any(p.b_conn is conn for p in pairings):
            continue
        reverse = pair_subflows(conn.subflows, a.tcp_flows, TUPLE_STAGES)
        if reverse:
            pairings.append(Pairing(None, conn, "tuple", [(x, y, flipped) for y, x, flipped in reverse]))
    pairings.sort(key=lambda p: (p.a_conn.id if p.a_conn else 1 << 30, p.b_conn.id if p.b_conn else 0))
    return pairings


def _by_subflows(conn: Connection, b_flows: list[Subflow]) -> Pairing:
    """A connection no key or token identifies in B: by its subflows' 4-tuples/ISNs, else by DSN space."""
    pairs = pair_subflows(conn.subflows, b_flows, TUPLE_STAGES)
    how = "tuple"
    if not pairs:
        pairs = pair_subflows(conn.subflows, b_flows, DSN_STAGES)
        how = "dsn"
    owners = Counter(id(b.connection) for _, b, _ in pairs if b.connection is not None)
    b_conn = None
    if owners:
        best = owners.most_common(1)[0][0]
        b_conn = next(b.connection for _, b, _ in pairs if id(b.connection) == best)
        pairs = [(x, y, f) for x, y, f in pairs if y.connection is None or y.connection is b_conn]
    for _, y, _ in pairs:
        if y in b_flows:
            b_flows.remove(y)
    return Pairing(conn, b_conn, how if pairs else "tuple", _in_a_order(conn.subflows, pairs))


def _in_a_order(subflows: list[Subflow], pairs: list[Matched]) -> list[tuple[Subflow, Subflow | None, bool]]:
    partner = {id(x): (y, flipped) for x, y, flipped in pairs}
    return [(sf, *partner.get(id(sf), (None, False))) for sf in subflows]
