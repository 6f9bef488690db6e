"""The rows of the split view: one subflow direction seen from both captures, packet beside its own copy.

Plain data (no terminal): :func:`aligned_rows` turns the pairing ``compare(..., keep_packets=True)``
kept into rows in the upstream capture's order. A packet lost between the vantage points is a row with
nothing on the downstream side; a split (or coalesced) segment is one row per piece, the whole on the
first; a packet seen downstream only sits where it arrived. Each row carries its one-way delay and the
labels of the middlebox effects its frames take part in, plus "lost" and "reordered".
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from analyzer.compare.index import PacketRecord
from analyzer.compare.model import Comparison, ConnectionMatch, DirectionStats, SubflowDetail, SubflowMatch
from analyzer.compare.packets import DirectionWork
from analyzer.model import DIRECTION_NAMES
from analyzer.mptcp.options import MptcpOption, Subtype

MASK = 0xFFFFFFFF
SHORT = {
    Subtype.MP_CAPABLE: "MPC", Subtype.MP_JOIN: "JOIN", Subtype.DSS: "DSS", Subtype.ADD_ADDR: "ADD",
    Subtype.REMOVE_ADDR: "RM", Subtype.MP_PRIO: "PRIO", Subtype.MP_FAIL: "FAIL", Subtype.MP_FASTCLOSE: "FCLS",
    Subtype.MP_TCPRST: "TRST",
}  # fmt: skip

# Row kinds. "pair": the same packet on both sides; "modified": same bytes range, other bytes; "split" /
# "coalesced": pieces of one packet; "lost": upstream only, while the downstream capture ran; "uncaptured":
# upstream only, outside the downstream capture's time span; "extra": downstream only.
KINDS = ("pair", "modified", "split", "coalesced", "lost", "uncaptured", "extra")


@dataclass(frozen=True, slots=True)
class Packet:
    """One capture's packet on a row."""

    frame: int
    time: float  # seconds since the capture's first packet
    flags: int
    seq: int  # relative to the direction's ISN when the handshake was captured, else as on the wire
    ack: int
    length: int
    options: str  # the MPTCP options it carries, short names ("DSS", "MPC JOIN", …)


@dataclass(frozen=True, slots=True)
class Row:
    kind: str  # one of KINDS
    a: Packet | None
    b: Packet | None
    owd_ms: float | None  # one-way delay (clock offset corrected) of the pair on this row
    marks: tuple[str, ...]  # effect labels ("−DSS", "split", "payload modified", …), "lost", "reordered"

    @property
    def notable(self) -> bool:
        """Worth jumping to: a loss, a packet seen on one side only, or any effect."""
        return self.kind != "pair" or bool(self.marks)


def _packet(r: PacketRecord, isn: int | None, isn_rev: int | None, first_ts: float) -> Packet:
    seq = (r.seq - isn) & MASK if isn is not None else r.seq
    ack = (r.ack - isn_rev) & MASK if isn_rev is not None and r.flags & 0x10 else r.ack
    names = " ".join(_short(o) for o in r.mptcp)
    return Packet(r.frame, r.ts - first_ts, r.flags, seq, ack, r.length, names)


def _short(opt: MptcpOption) -> str:
    subtype = getattr(opt, "subtype", None)
    return SHORT.get(subtype, "?") if isinstance(subtype, Subtype) else "?"


@dataclass(slots=True)
class _Unit:
    """Rows that belong together, placed as one: a pair, a split, a lost packet, …"""

    kind: str
    a: list[int]
    b: list[int]
    up: int | None  # position in the upstream capture's list (None: downstream only)
    down: int | None

    def key(self) -> tuple[int, int]:
        return (self.up if self.up is not None else -1, self.down if self.down is not None else -1)


def _units(work: DirectionWork, lost: frozenset[int]) -> list[_Unit]:
    a_up = work.a_upstream is not False
    units: list[_Unit] = []
    used_a: set[int] = set()
    used_b: set[int] = set()

    def add(kind: str, a: list[int], b: list[int]) -> None:
        used_a.update(a)
        used_b.update(b)
        up, down = (a, b) if a_up else (b, a)
        units.append(_Unit(kind, a, b, min(up) if up else None, min(down) if down else None))

    for i, j in work.pairs:
        add("pair", [i], [j])
    for a_idx, b_idx, effect in work.links:
        kind = {"payload_modified": "modified", "segment_split": "split", "segments_coalesced": "coalesced"}[effect]
        add(kind, sorted(a_idx), sorted(b_idx))
    up_recs = work.a if a_up else work.b
    for k in range(len(up_recs)):
        if k not in (used_a if a_up else used_b):
            kind = "lost" if up_recs[k].frame in lost else "uncaptured"
            add(kind, [k] if a_up else [], [] if a_up else [k])
    down_recs = work.b if a_up else work.a
    for k in range(len(down_recs)):
        if k not in (used_b if a_up else used_a):
            add("extra", [] if a_up else [k], [k] if a_up else [])
    return units


def _place(units: list[_Unit]) -> list[_Unit]:
    """Upstream order; a downstream-only unit right after the unit that arrived just before it."""
    placed = sorted((u for u in units if u.up is not None), key=_Unit.key)
    arrivals = sorted((u.down, n) for n, u in enumerate(placed) if u.down is not None)
    downs = [d for d, _ in arrivals]
    extras = sorted((u for u in units if u.up is None), key=lambda u: u.down or 0)
    slots: dict[int, list[_Unit]] = {}
    for unit in extras:
        k = bisect.bisect_left(downs, unit.down or 0) - 1
        slots.setdefault(arrivals[k][1] if k >= 0 else -1, []).append(unit)
    out = list(slots.get(-1, []))
    for n, unit in enumerate(placed):
        out.append(unit)
        out.extend(slots.get(n, []))
    return out


def _reordered(work: DirectionWork) -> set[tuple[int, int]]:
    """Pairs that arrived downstream after a packet the upstream side sent later (as packets.reordered counts)."""
    a_up = work.a_upstream is not False
    out: set[tuple[int, int]] = set()
    highest = -1
    for i, j in sorted(work.pairs, key=lambda p: p[1] if a_up else p[0]):
        up = i if a_up else j
        if up < highest:
            out.add((i, j))
        else:
            highest = up
    return out


def aligned_rows(detail: SubflowDetail, direction: int) -> list[Row]:
    """The rows of ``direction`` (0 = c2s, 1 = s2c in A's roles) of a matched subflow."""
    work = detail.works[direction]
    a_up = work.a_upstream is not False
    rev = detail.works[direction ^ 1]
    late = _reordered(work)
    rows: list[Row] = []
    for unit in _place(_units(work, detail.lost[direction])):
        a = [_packet(work.a[i], work.isn_a, rev.isn_a, detail.first_ts_a) for i in unit.a]
        b = [_packet(work.b[j], work.isn_b, rev.isn_b, detail.first_ts_b) for j in unit.b]
        owd = None
        if a and b:
            up, down = (work.a[unit.a[0]], work.b[unit.b[0]]) if a_up else (work.b[unit.b[0]], work.a[unit.a[0]])
            shift = detail.offset if a_up else -detail.offset
            owd = round((down.ts - up.ts - shift) * 1e3, 3)
        for n in range(max(len(a), len(b))):
            pa = a[n] if n < len(a) else None
            pb = b[n] if n < len(b) else None
            marks = _marks(detail, pa, pb)
            if unit.kind == "lost" and n == 0:
                marks = ("lost", *marks)
            if unit.kind == "pair" and (unit.a[0], unit.b[0]) in late:
                marks = (*marks, "reordered")
            rows.append(Row(unit.kind, pa, pb, owd if n == 0 else None, marks))
    return rows


def _marks(detail: SubflowDetail, a: Packet | None, b: Packet | None) -> tuple[str, ...]:
    labels: list[str] = []
    for packet, marks in ((a, detail.marks_a), (b, detail.marks_b)):
        if packet is not None:
            labels.extend(label for label in marks.get(packet.frame, ()) if label not in labels)
    return tuple(labels)


def next_notable(rows: list[Row], position: int, forward: bool = True) -> int | None:
    """The next (or previous) row worth looking at from ``position``, or None."""
    span = range(position + 1, len(rows)) if forward else range(position - 1, -1, -1)
    return next((k for k in span if rows[k].notable), None)


# -- what the split view lists and shows above the rows ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """A matched connection the split view can open: its place in the comparison and a one-line label."""

    connection: int  # index in Comparison.connections
    subflows: tuple[int, ...]  # indexes of its subflows that B saw too (and whose packets were kept)
    label: str


def choices(comparison: Comparison) -> list[Choice]:
    out = []
    for n, conn in enumerate(comparison.connections):
        kept = tuple(k for k, sf in enumerate(conn.subflows) if sf.detail is not None)
        if not kept:
            continue
        lost = sum(sf.a_to_b.lost + sf.b_to_a.lost for sf in conn.subflows)
        effects = sum(len(sf.middlebox) for sf in conn.subflows)
        a = f"A#{conn.a}" if conn.a is not None else "A (TCP)"
        b = f"B#{conn.b}" if conn.b is not None else "B (TCP)"
        label = (
            f"{a} ↔ {b} by {conn.match} · {len(kept)}/{len(conn.subflows)} subflows matched · "
            f"{lost} lost · {effects} effect{'s' if effects != 1 else ''} · {conn.subflows[kept[0]].a_endpoints}"
        )
        out.append(Choice(n, kept, label))
    return out


def _owd(stats: DirectionStats) -> str:
    o = stats.owd_ms
    if o["min"] is None:
        return "OWD -"
    return f"OWD {o['min']:.2f}/{o['median']:.2f}/{o['p95']:.2f} ms"


def direction_stats(sf: SubflowMatch, direction: int) -> tuple[str, DirectionStats]:
    """("A→B" or "B→A", its statistics) for ``direction`` (0 = c2s in A's roles)."""
    c2s_ab = sf.a_is_client_side is not False
    ab = (direction == 0) == c2s_ab
    return ("A→B", sf.a_to_b) if ab else ("B→A", sf.b_to_a)


def summary(comparison: Comparison, conn: ConnectionMatch, sf: SubflowMatch, direction: int) -> list[str]:
    """The lines above the rows: clock offset, the subflow, both directions' loss and delay, its effects."""
    offset = comparison.clock_offset_s
    clock = "clock B−A unknown (OWD assume 0)" if offset is None else f"clock B−A {offset * 1e3:+.3f} ms"
    a = f"A#{conn.a}" if conn.a is not None else "A"
    b = f"B#{conn.b}" if conn.b is not None else "B"
    lines = [f"{a}↔{b} ({conn.match}) · subflow A#{sf.a}↔B#{sf.b} · {clock}", f"{sf.a_endpoints}"]
    for d in (0, 1):
        way, stats = direction_stats(sf, d)
        here = "▶" if d == direction else " "
        lines.append(
            f"{here}{DIRECTION_NAMES[d]} {way} {stats.packets} pkts · lost {stats.lost} · "
            f"reord {stats.reordered} · {_owd(stats)}"
        )
    if sf.middlebox:
        shown = ", ".join(f"{e.effect}{f' ×{e.count}' if e.count > 1 else ''}" for e in sf.middlebox)
        lines.append(f"effects: {shown}")
    else:
        lines.append("effects: none")
    return lines
