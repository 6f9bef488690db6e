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

Stage = Callable[[Subflow, Subflow], bool]


@dataclass(slots=True)
class Pairing:
    a_conn: Connection | None
    b_conn: Connection | None
    match: str  # "keys" | "token" | "tuple" | "dsn"
    subflows: list[tuple[Subflow, Subflow | None]]


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


def same_dsn_space(a: Subflow, b: Subflow) -> bool:
    """Data sequence ranges of both directions overlap (where known): sequence numbers and addresses rewritten."""
    overlaps = 0
    for d in (CLIENT, SERVER):
        ha, hb = a.halves[d], b.halves[d]
        if None in (ha.dsn_first, ha.dsn_last, hb.dsn_first, hb.dsn_last):
            continue
        if ha.dsn_first > hb.dsn_last or hb.dsn_first > ha.dsn_last:  # type: ignore[operator]
            return False
        overlaps += 1
    return overlaps > 0


TUPLE_STAGES: tuple[Stage, ...] = (same_tuple, same_isns, same_join, same_ports_other_isn)
DSN_STAGES: tuple[Stage, ...] = (same_dsn_space,)


def pair_subflows(
    a_list: Iterable[Subflow], b_list: Iterable[Subflow], stages: tuple[Stage, ...]
) -> list[tuple[Subflow, Subflow]]:
    """Pair subflows stage by stage; each subflow is used once, stronger evidence first."""
    a_left, b_left = list(a_list), list(b_list)
    pairs: list[tuple[Subflow, Subflow]] = []
    for stage in stages:
        for a in list(a_left):
            b = next((b for b in b_left if stage(a, b)), None)
            if b is not None:
                pairs.append((a, b))
                a_left.remove(a)
                b_left.remove(b)
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


def _initial_pair(a: Connection, b: Connection, taken: list[tuple[Subflow, Subflow]]) -> list[tuple[Subflow, Subflow]]:
    """The initial subflows of two connections matched by keys are the same subflow, whatever a box rewrote."""
    ia, ib = a.initial_subflow, b.initial_subflow
    if ia is None or ib is None or any(x is ia or y is ib for x, y in taken):
        return []
    return [(ia, ib)]


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
        rest_a = [sf for sf in conn.subflows if all(sf is not x for x, _ in pairs)]
        rest_b = [sf for sf in other.subflows if all(sf is not y for _, y in pairs)]
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
            pairings.append(Pairing(None, conn, "tuple", [(x, y) for y, x in reverse]))
    pairings.sort(key=lambda p: (p.a_conn.id if p.a_conn else 1 << 30, p.b_conn.id if p.b_conn else 0))
    return pairings


def _by_subflows(conn: Connection, b_flows: list[Subflow]) -> Pairing:
    """A connection no key or token identifies in B: by its subflows' 4-tuples/ISNs, else by DSN space."""
    pairs = pair_subflows(conn.subflows, b_flows, TUPLE_STAGES)
    how = "tuple"
    if not pairs:
        pairs = pair_subflows(conn.subflows, b_flows, DSN_STAGES)
        how = "dsn"
    owners = Counter(id(b.connection) for _, b in pairs if b.connection is not None)
    b_conn = None
    if owners:
        best = owners.most_common(1)[0][0]
        b_conn = next(b.connection for _, b in pairs if id(b.connection) == best)
        pairs = [(x, y) for x, y in pairs if y.connection is None or y.connection is b_conn]
    for _, y in pairs:
        if y in b_flows:
            b_flows.remove(y)
    return Pairing(conn, b_conn, how if pairs else "tuple", _in_a_order(conn.subflows, pairs))


def _in_a_order(subflows: list[Subflow], pairs: list[tuple[Subflow, Subflow]]) -> list[tuple[Subflow, Subflow | None]]:
    partner = {id(x): y for x, y in pairs}
    return [(sf, partner.get(id(sf))) for sf in subflows]
