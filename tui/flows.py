"""The connections pane's model: MPTCP connections → subflows, plus plain TCP and fallback flows.

Built from the analysis model, or, while the trace still loads, from the subflows seen so far
(connection numbers are then provisional: the analyzer numbers connections at the end).
No textual here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from analyzer.model import Connection, Subflow

MAX_PLAIN_FLOWS = 500  # plain TCP flows listed in the tree (the rest are counted)


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


@dataclass(slots=True, frozen=True)
class SubflowItem:
    id: int
    label: str
    detail: str


@dataclass(slots=True)
class ConnItem:
    id: int
    label: str
    detail: str
    subflow_ids: tuple[int, ...]
    subflows: list[SubflowItem] = field(default_factory=list)
    fallback: bool = False


@dataclass(slots=True)
class FlowTree:
    connections: list[ConnItem]  # MPTCP connections (not fallen back)
    other: list[ConnItem | SubflowItem]  # fallback connections and plain TCP flows
    other_total: int
    final: bool

    @property
    def all_subflow_ids(self) -> tuple[int, ...]:
        ids: list[int] = []
        for item in self.other:
            ids.extend(item.subflow_ids if isinstance(item, ConnItem) else (item.id,))
        return tuple(ids)


def subflow_item(sf: Subflow) -> SubflowItem:
    c, s = sf.halves
    role = {"initial": "initial", "join": "join", "tcp": "tcp"}.get(sf.kind, "?")
    flags = []
    if sf.backup:
        flags.append("backup")
    if sf.end:
        flags.append(sf.end)
    nbytes = c.payload_bytes + s.payload_bytes
    label = f"sf{sf.id} {role} {sf.client} → {sf.server}"
    detail = f"{sf.packets} pkts, {human_bytes(nbytes)}" + (f", {' '.join(flags)}" if flags else "")
    return SubflowItem(sf.id, label, detail)


def conn_item(conn: Connection, provisional: bool = False) -> ConnItem:
    version = f"v{conn.version}" if conn.version is not None else "v?"
    client = conn.client_address or (conn.subflows[0].client if conn.subflows else "?")
    server = conn.server_address or (conn.subflows[0].server if conn.subflows else "?")
    nbytes = sum(h.payload_bytes for sf in conn.subflows for h in sf.halves)
    n = len(conn.subflows)
    prefix = "~" if provisional else "#"
    label = f"{prefix}{conn.id} MPTCP {version} {client} → {server}"
    status = []
    if conn.fallback:
        status.append(f"fallback: {conn.fallback_reason or '?'}")
    if conn.fastclose_frame is not None:
        status.append("fastclose")
    detail = f"{n} subflow{'s' if n != 1 else ''}, {human_bytes(nbytes)}" + (f", {'; '.join(status)}" if status else "")
    subflows = sorted(conn.subflows, key=lambda sf: sf.id)
    return ConnItem(conn.id, label, detail, tuple(sf.id for sf in subflows), [subflow_item(sf) for sf in subflows],
                    fallback=conn.fallback)  # fmt: skip


def build_tree(connections: Iterable[Connection], plain: Iterable[Subflow], final: bool) -> FlowTree:
    mptcp: list[ConnItem] = []
    other: list[ConnItem | SubflowItem] = []
    total = 0
    for conn in connections:
        item = conn_item(conn, provisional=not final)
        if conn.fallback:
            other.append(item)
            total += 1
        else:
            mptcp.append(item)
    for sf in plain:
        total += 1
        if len(other) < MAX_PLAIN_FLOWS:
            other.append(subflow_item(sf))
    return FlowTree(mptcp, other, total, final)


def live_tree(subflows: Iterable[Subflow]) -> FlowTree:
    """The tree from the subflows seen so far (call it in the analysis thread)."""
    connections: dict[int, Connection] = {}
    plain: list[Subflow] = []
    for sf in subflows:
        conn = sf.connection
        if conn is None:
            plain.append(sf)
        elif id(conn) not in connections:
            connections[id(conn)] = conn
    return build_tree(sorted(connections.values(), key=lambda c: c.first_frame), plain, final=False)
