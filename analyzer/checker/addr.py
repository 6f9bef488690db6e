"""ADDR family: address signalling with ADD_ADDR and REMOVE_ADDR (RFC 8684 §3.4).

Each host names its addresses by Address ID: 0 is implicitly the address of the initial subflow,
others come from ADD_ADDR (answered by the peer with an echo, E = 1) or from the host's MP_JOINs.
REMOVE_ADDR withdraws IDs, and the subflows using a removed address are then closed.

What one option shows (format against version, E bit against length, packet type) is checked on
the segment; what needs the whole conversation (echoes, ID history, removals) is decided at the
end from ``Connection.announcements``, which the tracker records in capture order. The tracker
verifies the HMAC (ADDR-001). After a REMOVE_ADDR the family watches the affected subflows for new
data, which costs one truthiness test per segment while nothing is being watched.

Precision guards: rules that need the history of IDs (ADDR-005, -009, -012) run only when the
connection's handshake was captured and every subflow was seen from its SYN (H-MID, H-POINT); an
ADD_ADDR whose HMAC does not verify is ignored by its receiver, so no echo is expected for it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from analyzer.checker.base import GRACE_SECONDS, Context, Family, first_mapping
from analyzer.checker.observations import LOSS_NOTE, capture_lost_packets, observations
from analyzer.facts import AddAddrHmacChecked, Fact
from analyzer.findings import Severity
from analyzer.ingest.segment import TH_ACK, TH_SYN, Segment
from analyzer.model import CLIENT, Analysis, Announcement, Connection, Subflow, format_ip
from analyzer.mptcp import crypto
from analyzer.mptcp.options import AddAddr, RemoveAddr
from analyzer.rules import Rule
from analyzer.seqnum import serial_lt

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

Endpoint = tuple[int, str | None, int | None]  # (address ID, address, port) as announced


def side_name(side: int) -> str:
    return "client" if side == CLIENT else "server"


def endpoint(ann: Announcement) -> Endpoint:
    return ann.address_ids[0], ann.address, ann.port


def describe(ep: Endpoint) -> str:
    address_id, address, port = ep
    where = address or "?"
    if port is not None:
        where = f"[{where}]:{port}" if ":" in where else f"{where}:{port}"
    return f"id {address_id} {where}"


def carrier(conn: Connection, ann: Announcement) -> Subflow | None:
    """The subflow an announcement travelled on."""
    return next((sf for sf in conn.subflows if sf.id == ann.subflow), None)


def local_address_ids(conn: Connection, side: int) -> dict[int, Subflow | None]:
    """Address IDs ``side`` used for itself: 0 (initial subflow) and its MP_JOIN IDs, with one subflow each."""
    ids: dict[int, Subflow | None] = {}
    for sf in conn.subflows:
        if sf.kind == "initial":
            ids.setdefault(0, sf)
        elif sf.kind == "join":
            address_id = sf.halves[sf.direction_of(side)].address_id
            if address_id is not None:
                ids.setdefault(address_id, sf)
    ids.setdefault(0, None)
    return ids


@dataclass(slots=True)
class Removal:
    """A subflow whose address the REMOVE_ADDR of ``frame`` withdrew, watched for new data."""

    sf: Subflow
    frame: int
    time: float
    remover: int  # connection side that sent the REMOVE_ADDR
    address_id: int
    dsn_end: tuple[int | None, int | None]  # highest DSN end each side had mapped at the time


class AddressRules(Family):
    WANTS = frozenset({AddAddr, RemoveAddr})
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("ADDR-001", E, "§3.4.1", "ADD_ADDR HMAC mismatch",
             "The truncated HMAC of ADD_ADDR (v1, E = 0) must be the rightmost 64 bits of HMAC(Key-sender‖"
             "Key-receiver, Address ID‖Address‖Port), with two zero bytes for the port when none is carried. The "
             "address is the sender's view, so NAT does not excuse a mismatch. Not checked without both keys."),
        Rule("ADDR-002", E, "§3.4.1", "ADD_ADDR echo flag contradicts its length",
             "In v1 an announcement (E = 0) carries the truncated HMAC (length 16, 18, 28 or 30) and an echo "
             "(E = 1) does not (length 8, 10, 20 or 22)."),
        Rule("ADDR-003", E, "§3.4.1", "ADD_ADDR layout does not match the MPTCP version",
             "A v1 connection uses the RFC 8684 layout (E bit, HMAC); a v0 connection the RFC 6824 layout (IP "
             "version 4 or 6 in the low nibble, no HMAC). When the version is unknown (handshake not captured) "
             "either is accepted and the layout is noted as info."),
        Rule("ADDR-004", W, "§3.4.1", "ADD_ADDR never echoed",
             "A v1 ADD_ADDR is acknowledged by the receiver with an echo (E = 1, same ID, address and port) on any "
             "subflow. Reported when none was captured although the capture ran on for the grace period. An "
             "announcement whose HMAC does not verify is ignored by its receiver and needs no echo; an echo on an "
             "uncaptured path cannot be seen, so this is a warning."),
        Rule("ADDR-005", W, "§3.4.1", "ADD_ADDR echo matches no announcement",
             "An echo (E = 1) repeats an announcement of the peer: the same Address ID, address and port. Only "
             "judged when the connection was captured from its handshake on every subflow."),
        Rule("ADDR-006", W, "§3.4.1", "Address ID re-announced with a different address",
             "A host may repeat an ADD_ADDR for an Address ID already assigned (also with another port), but the "
             "address must be the same; to reuse an ID for another address it first removes it with REMOVE_ADDR."),
        Rule("ADDR-007", INFO, "§3.4.1", "ADD_ADDR announces Address ID 0",
             "Address ID 0 implicitly names the address of the initial subflow; announcing it tells the peer "
             "that this address is usable again (recent Linux path managers do this). Announcing another address "
             "under ID 0 is noted, though NAT may explain the difference."),
        Rule("ADDR-008", W, "§3.4.1", "ADD_ADDR carries port 0",
             "The optional port field of ADD_ADDR names the port to join; 0 is no usable port."),
        Rule("ADDR-009", W, "§3.4.2", "REMOVE_ADDR for an Address ID never used",
             "REMOVE_ADDR withdraws IDs of the sender's own addresses: ID 0 (the initial subflow), IDs it "
             "announced with ADD_ADDR, or IDs it used in its MP_JOINs. Only judged when the connection was "
             "captured from its handshake on every subflow."),
        Rule("ADDR-010", W, "§3.4.2", "Subflow keeps carrying new data after its address was removed",
             "After a REMOVE_ADDR for an Address ID, the subflows using that address of the sender are closed by "
             "the receiver; reported when one of them still carries new data after a grace period."),
        Rule("ADDR-011", E, "§3.4", "ADD_ADDR or REMOVE_ADDR on a SYN",
             "Address signalling happens on an established connection; ADD_ADDR and REMOVE_ADDR never ride on a "
             "SYN or SYN/ACK."),
        Rule("ADDR-012", W, "§3.4.1", "ADD_ADDR echoed by its own sender",
             "The echo (E = 1) is sent by the host that received the announcement; here the announcing host echoes "
             "its own address and the peer announced no such address."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (AddAddrHmacChecked,)

    def on_fact(self, fact: Fact) -> None:
        """ADD_ADDR HMACs next to the values the keys give."""
        if not isinstance(fact, AddAddrHmacChecked) or fact.ok:
            return
        ann = fact.announcement
        hint = _add_addr_hmac_hint(fact.sender_key, fact.receiver_key, ann)
        self.ctx.sink.add(
            "ADDR-001",
            f"ADD_ADDR id {ann.address_ids[0]} {ann.address} carries HMAC {ann.hmac or 0:016x}, expected "
            f"{fact.expected:016x} (rightmost 64 bits of HMAC(sender key‖receiver key, id‖address‖port)){hint}",
            list(fact.frames), fact.connection.id, ann.subflow,
        )  # fmt: skip

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.obs = observations(ctx)
        self._removals: list[Removal] = []
        self._watched: set[int] = set()  # id(conn) whose segments the REMOVE_ADDR watcher sees
        self._lossy = False  # the connection being judged at the end shows capture losses (H-LOSS)
        self._unknown_version: set[int] = set()  # id(conn or sf) noted for ADDR-003 (info)

    # ------------------------------------------------------------------ per segment
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        """A segment carrying ADD_ADDR or REMOVE_ADDR (dispatched by option type)."""
        if seg.options is None:
            return
        ctx = self.ctx
        flags = seg.flags
        conn = sf.connection
        for opt in seg.options.mptcp:
            if not isinstance(opt, AddAddr | RemoveAddr):
                continue
            name = "ADD_ADDR" if isinstance(opt, AddAddr) else "REMOVE_ADDR"
            if flags & TH_SYN:
                ctx.report("ADDR-011", f"{name} on a {'SYN/ACK' if flags & TH_ACK else 'SYN'}", seg.frame, sf)
                continue
            if isinstance(opt, AddAddr):
                self._format(seg, sf, conn, opt)
            elif conn is not None:
                self._removal(seg, sf, direction, conn, opt)

    def _format(self, seg: Segment, sf: Subflow, conn: Connection | None, opt: AddAddr) -> None:
        ctx = self.ctx
        version = conn.version if conn is not None else None
        layout = "RFC 6824 (v0)" if opt.v0 else "RFC 8684 (v1)"
        if version is None:
            key = id(conn) if conn is not None else id(sf)
            if key not in self._unknown_version:
                self._unknown_version.add(key)
                ctx.report(
                    "ADDR-003",
                    f"ADD_ADDR in the {layout} layout on a connection whose MPTCP version is unknown (handshake "
                    "not captured)",
                    seg.frame, sf, severity=INFO,
                )  # fmt: skip
        elif opt.v0 != (version == 0):
            ctx.report(
                "ADDR-003",
                f"ADD_ADDR in the {layout} layout on a connection that negotiated MPTCP v{version}",
                seg.frame, sf,
            )  # fmt: skip
            return
        if not opt.v0 and opt.echo == (opt.hmac is not None):
            if opt.echo:
                problem = f"is an echo (E = 1) but {opt.length} bytes long, with a truncated HMAC"
            else:
                problem = f"is an announcement (E = 0) but only {opt.length} bytes long, without the truncated HMAC"
            ctx.report("ADDR-002", f"ADD_ADDR id {opt.address_id} {opt.address} {problem}", seg.frame, sf)

    # ------------------------------------------------------------------ ADDR-010
    def _removal(self, seg: Segment, sf: Subflow, direction: int, conn: Connection, opt: RemoveAddr) -> None:
        remover = sf.sender(direction)
        for address_id in opt.address_ids:
            for each in conn.subflows:
                if any(r.sf is each and r.address_id == address_id for r in self._removals):
                    continue
                if each.kind == "initial":
                    uses = address_id == 0
                elif each.kind == "join":
                    uses = each.halves[each.direction_of(remover)].address_id == address_id
                else:
                    uses = False  # H-MID: which address the subflow uses is unknown
                if uses:
                    ends = (self.ctx.level(conn, 0).known_end(), self.ctx.level(conn, 1).known_end())
                    self._removals.append(Removal(each, seg.frame, seg.ts, remover, address_id, ends))
                    if id(conn) not in self._watched:
                        self._watched.add(id(conn))
                        self.obs.watch(conn, self._watch)

    def _watch(self, seg: Segment, sf: Subflow, direction: int) -> None:
        """Watcher (after a REMOVE_ADDR): new data on a subflow whose address was removed."""
        if not seg.payload_len or not self._removals:
            return
        for removal in self._removals:
            if removal.sf is sf:
                break
        else:
            return
        if seg.ts < removal.time + max(GRACE_SECONDS, self.obs.allowance(sf)) or seg.options is None:
            return  # H-REORD / H-END: closing the subflow takes a round trip or so
        if sf.connection is None:
            return
        side = sf.sender(direction)
        before = removal.dsn_end[side]
        mapping = first_mapping(self.ctx, seg)
        if mapping is None:
            return
        _, dsn, length = mapping
        if before is None or not serial_lt(before, (dsn + length) & ((1 << 64) - 1)):
            return  # nothing new at the data level (retransmission or reinjection of older data)
        self._removals = [r for r in self._removals if r.sf is not sf]
        self.ctx.report(
            "ADDR-010",
            f"the {side_name(removal.remover)} removed address id {removal.address_id} (frame {removal.frame}), "
            f"yet subflow {sf.id}, which uses it, still carries new data from the {side_name(side)} "
            f"{seg.ts - removal.time:.3f} s later",
            [removal.frame, seg.frame], sf,
        )  # fmt: skip

    # ------------------------------------------------------------------ end of capture
    def finish(self, analysis: Analysis) -> None:
        for conn in analysis.connections:
            if conn.announcements:
                self._lossy = capture_lost_packets(analysis, conn)
                self._conversation(conn)

    def _missing(self, rule: str, message: str, frame: int | list[int], sf: Subflow | None, conn: Connection) -> None:
        """Report what the capture does not show; only info when the capture lost packets (H-LOSS)."""
        if self._lossy:
            self.ctx.report(rule, message + LOSS_NOTE, frame, sf, conn, severity=INFO)
        else:
            self.ctx.report(rule, message, frame, sf, conn)

    def _conversation(self, conn: Connection) -> None:
        ctx = self.ctx
        complete = ctx.handshake_seen(conn) and ctx.fully_captured(conn)
        adds: list[list[Announcement]] = [[], []]  # per sender
        echoes: list[list[Announcement]] = [[], []]
        table: list[dict[int, Announcement]] = [{}, {}]  # per sender: Address ID -> live announcement
        noted: set[tuple[int, Endpoint]] = set()
        announced: list[set[int]] = [set(), set()]  # per sender: every Address ID it announced, at any time
        for ann in conn.announcements:
            if ann.kind == "add":
                announced[ann.sender].add(ann.address_ids[0])
        for ann in conn.announcements:
            if ann.kind == "add":
                adds[ann.sender].append(ann)
                self._announcement(conn, ann, table[ann.sender], noted)
            elif ann.kind == "echo":
                echoes[ann.sender].append(ann)
            else:
                for address_id in ann.address_ids:
                    table[ann.sender].pop(address_id, None)
                if complete:
                    self._unknown_removal(conn, ann, announced[ann.sender])
        if conn.version is not None and conn.version >= 1:
            self._unechoed(conn, adds, echoes)
        if complete:
            self._stray_echoes(conn, adds, echoes)

    def _announcement(self, conn: Connection, ann: Announcement, table: dict[int, Announcement],
                      noted: set[tuple[int, Endpoint]]) -> None:  # fmt: skip
        ctx = self.ctx
        ep = endpoint(ann)
        who = side_name(ann.sender)
        address_id = ep[0]
        previous = table.get(address_id)
        if previous is not None and previous.address != ann.address:
            self._missing(
                "ADDR-006",
                f"the {who} re-announces address id {address_id} as {ann.address} (frame {ann.frame}) although it "
                f"announced it as {previous.address} at frame {previous.frame} and did not remove it in between",
                [previous.frame, ann.frame], carrier(conn, ann), conn,
            )  # fmt: skip
        table[address_id] = ann
        if (ann.sender, ep) in noted:
            return  # a retransmission: judged once
        noted.add((ann.sender, ep))
        if address_id == 0:
            initial = conn.client_ip if ann.sender == CLIENT else conn.server_ip
            own = format_ip(initial) if initial else None
            note = "" if own is None or own == ann.address else (
                f", which differs from its initial subflow address {own} (NAT may explain this; Linux ignores an "
                "ID 0 announcement for another address)"
            )  # fmt: skip
            ctx.report(
                "ADDR-007", f"the {who} announces address id 0 ({ann.address}){note}", ann.frame, carrier(conn, ann),
                conn,
            )  # fmt: skip
        if ann.port == 0:
            ctx.report(
                "ADDR-008", f"the {who}'s ADD_ADDR {describe(ep)} carries port 0", ann.frame, carrier(conn, ann), conn
            )  # fmt: skip

    def _unechoed(self, conn: Connection, adds: list[list[Announcement]], echoes: list[list[Announcement]]) -> None:
        ctx = self.ctx
        reported: set[tuple[int, Endpoint]] = set()
        for sender in (0, 1):
            echoed = {endpoint(e) for e in echoes[1 - sender]}
            for ann in adds[sender]:
                ep = endpoint(ann)
                if ep in echoed or (sender, ep) in reported or ann.hmac_ok is False or ann.hmac is None:
                    continue  # echoed, already reported, or ignored by its receiver (bad HMAC / not v1)
                if any(endpoint(later) == ep and later.frame > ann.frame for later in adds[sender]):
                    continue  # judge the last copy: earlier ones were retransmitted because unechoed
                if not ctx.after_grace(ann.time):
                    continue  # H-END
                reported.add((sender, ep))
                self._missing(
                    "ADDR-004",
                    f"the {side_name(sender)}'s ADD_ADDR {describe(ep)} (frame {ann.frame}) was never echoed by the "
                    f"{side_name(1 - sender)}",
                    ann.frame, carrier(conn, ann), conn,
                )  # fmt: skip

    def _stray_echoes(self, conn: Connection, adds: list[list[Announcement]],
                      echoes: list[list[Announcement]]) -> None:  # fmt: skip
        judged: set[tuple[int, Endpoint]] = set()
        for sender in (0, 1):
            peer_adds = {endpoint(a) for a in adds[1 - sender]}
            own_adds = {endpoint(a) for a in adds[sender]}
            for echo in echoes[sender]:
                ep = endpoint(echo)
                if ep in peer_adds or (sender, ep) in judged:
                    continue
                judged.add((sender, ep))
                who, peer = side_name(sender), side_name(1 - sender)
                if ep in own_adds:
                    self._missing(
                        "ADDR-012",
                        f"the {who} echoes its own ADD_ADDR {describe(ep)} (frame {echo.frame}); the echo is the "
                        f"{peer}'s to send, and the {peer} announced no such address",
                        echo.frame, carrier(conn, echo), conn,
                    )  # fmt: skip
                    continue
                same_id = [a for a in adds[1 - sender] if a.address_ids[0] == ep[0]]
                if same_id:
                    detail = f"the {peer} announced id {ep[0]} as {describe(endpoint(same_id[-1]))}"
                else:
                    detail = f"the {peer} never announced address id {ep[0]}"
                self._missing(
                    "ADDR-005",
                    f"the {who}'s echo {describe(ep)} (frame {echo.frame}) matches no announcement: {detail}",
                    echo.frame, carrier(conn, echo), conn,
                )  # fmt: skip

    def _unknown_removal(self, conn: Connection, ann: Announcement, announced: set[int]) -> None:
        used = local_address_ids(conn, ann.sender)
        unknown = [i for i in ann.address_ids if i not in used and i not in announced]
        if unknown:
            self._missing(
                "ADDR-009",
                f"the {side_name(ann.sender)} removes address id(s) {', '.join(map(str, unknown))} that it never "
                "announced and never used in an MP_JOIN",
                ann.frame, carrier(conn, ann), conn,
            )  # fmt: skip


def _add_addr_hmac_hint(key_s: int, key_r: int, ann: Announcement) -> str:
    """Name the known implementation bugs a wrong ADD_ADDR HMAC matches, to save users the search."""
    address = ipaddress.ip_address(ann.address or "0.0.0.0")
    digest = crypto.add_addr_hmac_digest(key_s, key_r, ann.address_ids[0], address, ann.port)
    if int.from_bytes(digest[:8], "big") == ann.hmac:
        return (
            "; it equals the LEFTMOST 64 bits, the bug of Linux 5.7–5.9 fixed by 'mptcp: use rightmost 64 bits "
            "in ADD_ADDR HMAC'"
        )
    if crypto.add_addr_hmac(key_r, key_s, ann.address_ids[0], address, ann.port) == ann.hmac:
        return "; it matches the keys in the wrong order (receiver key first)"
    return ""
