"""MPC family: MP_CAPABLE negotiation on the initial subflow (RFC 8684 §3.1).

Per initial subflow the family remembers what the handshake offered and selected (versions, flag
bytes, frames, times) and compares each later MP_CAPABLE with it. The tracker already reports key
echo mismatches and key changes (MPC-004, MPC-005).

Evidence rules: a rule that compares two handshake packets only runs when both were captured
(H-MID); retransmitted SYNs share their ISN, so "the SYN" means every captured SYN of the subflow
(H-RTX). A SYN/ACK with MP_CAPABLE answering a plain SYN is only an error when no earlier SYN can
have escaped the capture (H-LOSS).

Hot path: segments without SYN and without MP_CAPABLE cost one loop over their (usually one)
option and one truthiness test, unless the subflow is still being watched right after its
handshake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from analyzer.checker.base import Context, Family, header_cut
from analyzer.facts import Fact, KeyChanged, KeyEchoMismatch
from analyzer.findings import Severity
from analyzer.ingest.segment import TH_ACK, TH_RST, TH_SYN, Segment
from analyzer.model import CLIENT, SERVER, Analysis, Subflow
from analyzer.mptcp.options import MPC_CHECKSUM_REQUIRED, AddAddr, Dss, MpCapable
from analyzer.rules import Rule
from analyzer.seqnum import serial_lt

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

MASK32 = 0xFFFFFFFF
V1_ALGORITHMS = 0x1F  # D..H: crypto algorithm bits in v1 (H = HMAC-SHA256)
V0_ALGORITHMS = 0x3F  # C..H in RFC 6824 (H = HMAC-SHA1)
V1_UNASSIGNED = 0x5E  # B (extensibility) and D..G
# Linux retransmits a SYN twice with MP_CAPABLE before dropping it (initial RTO 1 s, then 2 s): a SYN
# sent less than this long after the capture started may have had MP_CAPABLE predecessors it missed.
SYN_RETRY_WINDOW = 3.5
MIN_GRACE = 0.001  # seconds: the smallest reordering allowance, for captures on one host
MAX_WATCHED_SEGMENTS = 64  # stop looking at an initial subflow's plain segments after this many


def algorithm_mask(version: int) -> int:
    return V0_ALGORITHMS if version == 0 else V1_ALGORITHMS


def algorithm_names(bits: int, version: int) -> str:
    names = []
    for bit, letter in ((0x20, "C"), (0x10, "D"), (0x08, "E"), (0x04, "F"), (0x02, "G"), (0x01, "H")):
        if bits & bit:
            names.append(letter)
    return "+".join(names) or "none"


@dataclass(slots=True)
class Handshake:
    """What the initial subflow's MP_CAPABLE handshake showed so far."""

    syn_frames: list[int] = field(default_factory=list)  # SYNs with MP_CAPABLE
    syn_time: float | None = None  # the first of them
    syn_versions: set[int] = field(default_factory=set)
    syn_flags: set[int] = field(default_factory=set)
    syn_tfo: bool = False  # a SYN carried payload (TCP Fast Open)
    plain_syn_frame: int | None = None  # a SYN without MP_CAPABLE (after or instead of MPTCP SYNs)
    synack_frame: int | None = None
    synack_version: int | None = None
    synack_flags: int | None = None
    ack_frame: int | None = None  # A's first MP_CAPABLE after the handshake
    ack_time: float | None = None
    established_time: float | None = None  # B's first DSS with a Data ACK (or ADD_ADDR) on this subflow
    established_frame: int | None = None
    established_tsval: int | None = None  # that segment's TCP timestamp, to tell when A received it
    bare_third_ack: int | None = None  # A's first ACK carried no MPTCP option at all (MPC-011)
    first_ack_seen: bool = False
    watched: int = 0
    reported: set[str] = field(default_factory=set)  # rules already reported for this subflow

    def rtt(self) -> float:
        """Handshake RTT at the capture point: SYN to A's ACK spans one RTT wherever the capture ran."""
        if self.syn_time is None or self.ack_time is None:
            return MIN_GRACE
        return max(self.ack_time - self.syn_time, MIN_GRACE)


@dataclass(slots=True)
class SynAckCandidate:
    """An MP_CAPABLE SYN/ACK answering a captured SYN without MP_CAPABLE (MPC-003, decided at the end)."""

    sf: Subflow
    syn_frame: int
    synack_frame: int
    syn_time: float


class MpCapableRules(Family):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule("MPC-001", E, "§3.1", "SYN/ACK selects a higher MPTCP version than the SYN offered",
             "The version in the SYN/ACK's MP_CAPABLE must not exceed the version the SYN proposed; a responder "
             "that does not support the proposed version answers with a lower one or without MP_CAPABLE."),
        Rule("MPC-002", E, "§3.1", "Third ACK uses another version than the SYN/ACK selected",
             "The MP_CAPABLE of the third ACK and of the first data must carry the version the SYN/ACK selected."),
        Rule("MPC-003", E, "§3.1", "SYN/ACK carries MP_CAPABLE although the SYN did not",
             "A responder may only answer with MP_CAPABLE when the SYN it answers proposed MPTCP. All captured "
             "SYNs with that ISN are considered (Linux drops MP_CAPABLE from the third SYN but keeps the ISN); when "
             "the capture started shortly before the SYN an earlier MP_CAPABLE SYN may have been missed, so the "
             "finding is then only a warning."),
        Rule("MPC-004", E, "§3.1", "MP_CAPABLE key echo mismatch",
             "The third ACK (or MP_CAPABLE with data) must echo the key the server sent in its SYN/ACK (v0: and "
             "the client's key from its SYN)."),
        Rule("MPC-005", E, "§3.1", "MP_CAPABLE key changed",
             "A host's key must stay the same across the third ACK, its retransmissions and MP_CAPABLE with data. "
             "(A first DSN that contradicts the key's IDSN is DSS-007; a join token no key explains is JOIN-001.)"),
        Rule("MPC-006", E, "§3.1", "MP_CAPABLE after the handshake without both keys",
             "After the SYN/ACK the initiator's MP_CAPABLE carries both keys (20 bytes, or 22/24 with data); a 4- "
             "or 12-byte MP_CAPABLE on the third ACK or first data leaves the responder without the keys."),
        Rule("MPC-007", E, "§3.1", "MP_CAPABLE crypto algorithm negotiation broken",
             "Every MP_CAPABLE names at least one crypto algorithm (v1: H = HMAC-SHA256; v0: H = HMAC-SHA1); the "
             "SYN/ACK selects exactly one, and only one the SYN offered. Linux ignores such an option, so the "
             "connection falls back to TCP."),
        Rule("MPC-008", W, "§3.1", "Unassigned MP_CAPABLE flag set",
             "In v1 the B (extensibility) bit and the unassigned bits D–G must be zero. A peer that does not "
             "understand them ignores the MP_CAPABLE and falls back to TCP. Future extensions may assign them, so "
             "this is a warning."),
        Rule("MPC-009", E, "§3.1, §3.3", "Checksum flag of the third ACK contradicts the negotiation",
             "Checksums are used when the SYN or the SYN/ACK set A; the initiator's MP_CAPABLE after the handshake "
             "(third ACK, first data) must carry that decision (a stateless responder relies on it)."),
        Rule("MPC-010", W, "§3.1", "MP_CAPABLE sent after the connection is established",
             "The initiator repeats MP_CAPABLE only until it has received a DSS with a Data ACK from the responder, "
             "and only on the third ACK and the first data segment (relative sequence 1). Retransmissions of that "
             "segment are fine; one RTT is allowed for a DSS still in flight."),
        Rule("MPC-011", W, "§3.1", "Third ACK without MP_CAPABLE, yet MPTCP continues",
             "The SYN/ACK accepted MPTCP but the initiator's third ACK carried no MP_CAPABLE, which means the "
             "initiator fell back to TCP; it then sends MPTCP options anyway. (In v1 an MP_CAPABLE with data can "
             "replace a lost third ACK; that is fine.) A middlebox stripping the option gives the same picture."),
        Rule("MPC-012", E, "§3.1", "MP_CAPABLE data-level length shorter than the segment's payload",
             "The data-level length of MP_CAPABLE with data must cover at least the payload of the segment that "
             "carries it; a longer length is fine (the mapping continues into later segments)."),
        Rule("MPC-013", W, "§3.1", "MP_CAPABLE key is zero",
             "A key of 0 is a degenerate value: Linux never generates it and rejects it in syncookie mode."),
        Rule("MPC-014", INFO, "§3.1", "SYN retransmitted without MP_CAPABLE",
             "After unanswered MP_CAPABLE SYNs the client retried without MP_CAPABLE (Linux does this after two "
             "tries and may then disable active MPTCP for an hour, blackhole_timeout)."),
        Rule("MPC-015", E, "§3.1", "Responder's MP_CAPABLE outside its SYN/ACK, or SYN/ACK of the wrong length",
             "The responder sends MP_CAPABLE only on its SYN/ACK, and that option carries its key (12 bytes)."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (KeyEchoMismatch, KeyChanged)

    def on_fact(self, fact: Fact) -> None:
        """Keys the tracker learnt that disagree with each other."""
        frames, sf = list(fact.frames), fact.subflow
        if isinstance(fact, KeyEchoMismatch):
            self.ctx.report(
                "MPC-004",
                f"the client echoed the server key {fact.echoed:016x}, but the server's SYN/ACK "
                f"(frame {fact.known_frame}) carried {fact.known:016x}",
                frames, sf,
            )  # fmt: skip
        elif isinstance(fact, KeyChanged):
            who = "client" if fact.side == CLIENT else "server"
            rule = "MPC-004" if fact.version == 0 and fact.side == CLIENT else "MPC-005"  # v0 echoes both keys
            self.ctx.report(
                rule, f"the {who}'s key changed from {fact.old:016x} (frame {fact.old_frame}) to {fact.new:016x}",
                frames, sf,
            )  # fmt: skip

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._handshakes: dict[int, Handshake] = {}  # id(sf) -> handshake of an initial subflow
        self._watch: dict[int, Handshake] = {}  # subflows whose plain segments still matter
        self._candidates: list[SynAckCandidate] = []
        self._zero_keys: set[tuple[int, int]] = set()  # (id(conn or sf), side) already reported for MPC-013

    # ------------------------------------------------------------------ per segment
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        mpc: MpCapable | None = None
        opts = seg.options
        if opts is not None:
            mptcp = opts.mptcp
            if len(mptcp) == 1 and type(mptcp[0]) is Dss and not seg.flags & TH_SYN:
                if self._watch:  # the common case: one DSS after the handshake
                    hs = self._watch.get(id(sf))
                    if hs is not None:
                        self._watched(seg, sf, direction, hs, None)
                return
            for opt in mptcp:
                if type(opt) is MpCapable:
                    mpc = opt
                    break
        if seg.flags & TH_SYN:
            if mpc is not None or id(sf) in self._handshakes:
                self._on_syn(seg, sf, direction, mpc)
            return
        if mpc is not None:
            self._on_mpc_after_syn(seg, sf, direction, mpc)
        if self._watch:
            hs = self._watch.get(id(sf))
            if hs is not None:
                self._watched(seg, sf, direction, hs, mpc)

    # ------------------------------------------------------------------ SYN and SYN/ACK
    def _on_syn(self, seg: Segment, sf: Subflow, direction: int, mpc: MpCapable | None) -> None:
        hs = self._handshakes.get(id(sf))
        if hs is None:
            hs = self._handshakes[id(sf)] = Handshake()
        if not seg.flags & TH_ACK:
            if direction != CLIENT:
                return  # simultaneous open: not modelled
            if mpc is None:
                if hs.syn_frames and hs.plain_syn_frame is None:
                    hs.plain_syn_frame = seg.frame
                    self.ctx.report(
                        "MPC-014",
                        f"the SYN was retransmitted without MP_CAPABLE after {len(hs.syn_frames)} SYN(s) with it "
                        "(the client gave up on MPTCP for this connection; Linux may keep active MPTCP disabled "
                        "for an hour)",
                        [hs.syn_frames[0], seg.frame], sf,
                    )  # fmt: skip
                return
            hs.syn_frames.append(seg.frame)
            if hs.syn_time is None:
                hs.syn_time = seg.ts
            hs.syn_versions.add(mpc.version)
            hs.syn_flags.add(mpc.flags)
            if seg.payload_len:
                hs.syn_tfo = True
            self._check_algorithms(seg, sf, mpc, hs, "SYN")
            self._check_unassigned(seg, sf, mpc, hs, "SYN")
            self._check_zero_keys(seg, sf, direction, mpc)
            return
        # SYN/ACK
        if mpc is None:
            return  # no MP_CAPABLE: FALLBACK-001 (tracker)
        first = hs.synack_frame is None
        hs.synack_frame = seg.frame
        hs.synack_version = mpc.version
        hs.synack_flags = mpc.flags
        ctx = self.ctx
        if mpc.version in (0, 1) and mpc.length != 12 and "MPC-015" not in hs.reported:
            hs.reported.add("MPC-015")
            ctx.report(
                "MPC-015",
                f"the SYN/ACK's MP_CAPABLE is {mpc.length} bytes; it must be 12 (the responder's key)",
                seg.frame, sf,
            )  # fmt: skip
        client_isn = sf.halves[CLIENT].isn
        answers_syn = client_isn is not None and seg.ack == (client_isn + 1) & MASK32
        if hs.syn_versions and answers_syn and first and mpc.version > max(hs.syn_versions):
            ctx.report(
                "MPC-001",
                f"the SYN/ACK selects MPTCP version {mpc.version}, but the SYN offered version "
                f"{max(hs.syn_versions)}",
                [hs.syn_frames[-1], seg.frame], sf,
            )  # fmt: skip
        if not hs.syn_frames and sf.syn_seen and answers_syn and first:
            self._candidates.append(SynAckCandidate(sf, sf.first_frame, seg.frame, sf.first_time))
        self._check_algorithms(seg, sf, mpc, hs, "SYN/ACK")
        self._check_unassigned(seg, sf, mpc, hs, "SYN/ACK")
        self._check_zero_keys(seg, sf, direction, mpc)
        if first and sf.syn_seen:
            self._watch[id(sf)] = hs  # MPC-010 needs B's first DSS, MPC-011 A's first ACK

    # ------------------------------------------------------------------ after the handshake
    def _on_mpc_after_syn(self, seg: Segment, sf: Subflow, direction: int, mpc: MpCapable) -> None:
        if sf.kind == "join" or sf.join_token is not None or seg.flags & TH_RST:
            return  # OPT-006 covers MP_CAPABLE on a join subflow
        ctx = self.ctx
        hs = self._handshakes.get(id(sf))
        if hs is None:
            hs = self._handshakes[id(sf)] = Handshake()
        side = sf.sender(direction)
        roles_known = sf.syn_seen or sf.synack_seen
        if side == SERVER:
            if roles_known and "MPC-015/after" not in hs.reported:
                hs.reported.add("MPC-015/after")
                ctx.report(
                    "MPC-015",
                    f"the responder sent MP_CAPABLE ({mpc.length} bytes) after its SYN/ACK; only the initiator "
                    "repeats it on the third ACK and the first data",
                    seg.frame, sf,
                )  # fmt: skip
            return
        first = hs.ack_frame is None
        if first:
            hs.ack_frame = seg.frame
            hs.ack_time = seg.ts
        self._check_zero_keys(seg, sf, direction, mpc)
        if mpc.version in (0, 1) and mpc.length in (4, 12) and "MPC-006" not in hs.reported:
            hs.reported.add("MPC-006")
            ctx.report(
                "MPC-006",
                f"the initiator's MP_CAPABLE after the SYN/ACK is {mpc.length} bytes and does not carry both keys "
                "(20 bytes, or 22/24 with data)",
                seg.frame, sf,
            )  # fmt: skip
        if hs.synack_version is not None and mpc.version != hs.synack_version and "MPC-002" not in hs.reported:
            hs.reported.add("MPC-002")
            ctx.report(
                "MPC-002",
                f"the initiator's MP_CAPABLE uses version {mpc.version}, but the SYN/ACK selected version "
                f"{hs.synack_version}",
                [f for f in (hs.synack_frame, seg.frame) if f is not None], sf,
            )  # fmt: skip
        self._check_algorithms(seg, sf, mpc, hs, "initiator's ACK")
        self._check_unassigned(seg, sf, mpc, hs, "initiator's ACK")
        self._check_checksum_flag(seg, sf, mpc, hs)
        if mpc.data_len is not None and seg.payload_len > mpc.data_len:
            ctx.report(
                "MPC-012",
                f"MP_CAPABLE with data declares a data-level length of {mpc.data_len}, but the segment carries "
                f"{seg.payload_len} bytes of payload",
                seg.frame, sf,
            )  # fmt: skip
        self._check_late_mpc(seg, sf, direction, mpc, hs)

    def _check_late_mpc(self, seg: Segment, sf: Subflow, direction: int, mpc: MpCapable, hs: Handshake) -> None:
        if "MPC-010" in hs.reported or mpc.length in (4, 12):
            return
        isn = sf.halves[direction].isn
        if isn is not None and not hs.syn_tfo and seg.seq != (isn + 1) & MASK32:
            hs.reported.add("MPC-010")
            self.ctx.report(
                "MPC-010",
                f"the initiator sent MP_CAPABLE on a segment at relative sequence {(seg.seq - isn) & MASK32}; only "
                "the third ACK and the first data (relative sequence 1) carry it",
                seg.frame, sf,
            )  # fmt: skip
            return
        established = hs.established_time
        if established is None or hs.established_frame is None:
            return
        ts = seg.options.timestamp if seg.options is not None else None
        if ts is not None and hs.established_tsval is not None:
            # The initiator's timestamp echo tells whether it had received a segment the responder sent after
            # that DSS (each carries a Data ACK): a DSS lost on the path keeps it legitimately repeating it.
            late = serial_lt(hs.established_tsval, ts[1], 32)  # it echoes a segment sent after that DSS
        else:
            late = seg.ts - established > hs.rtt()  # one RTT for the DSS to reach the initiator (H-REORD)
        if late:
            hs.reported.add("MPC-010")
            self.ctx.report(
                "MPC-010",
                f"the initiator still sends MP_CAPABLE {seg.ts - established:.3f} s after the responder's first "
                f"DSS with a Data ACK (frame {hs.established_frame}), which made the connection fully established",
                [hs.established_frame, seg.frame], sf,
            )  # fmt: skip

    def _watched(self, seg: Segment, sf: Subflow, direction: int, hs: Handshake, mpc: MpCapable | None) -> None:
        """Plain segments right after the handshake: B's first Data ACK (MPC-010), A's third ACK (MPC-011)."""
        hs.watched += 1
        side = sf.sender(direction)
        opts = seg.options
        mptcp = opts.mptcp if opts is not None else ()
        if side == SERVER:
            if hs.established_time is None:
                for opt in mptcp:  # a Data ACK, or (Linux) a non-echo ADD_ADDR, completes the handshake
                    if (type(opt) is Dss and opt.data_ack is not None) or (type(opt) is AddAddr and not opt.echo):
                        hs.established_time = seg.ts
                        hs.established_frame = seg.frame
                        if opts is not None and opts.timestamp is not None:
                            hs.established_tsval = opts.timestamp[0]
                        break
        elif not hs.first_ack_seen:
            hs.first_ack_seen = True
            isn, peer_isn = sf.halves[direction].isn, sf.halves[1 - direction].isn
            if (
                not mptcp and not seg.payload_len and not seg.flags & TH_RST and not header_cut(seg)
                and isn is not None and seg.seq == (isn + 1) & MASK32
                and peer_isn is not None and seg.ack == (peer_isn + 1) & MASK32
            ):  # fmt: skip
                hs.bare_third_ack = seg.frame
        elif hs.bare_third_ack is not None and mptcp:
            if mpc is not None:
                hs.bare_third_ack = None  # an MP_CAPABLE (with data) stands in for the third ACK
            elif not seg.flags & TH_RST and "MPC-011" not in hs.reported:
                hs.reported.add("MPC-011")
                frames = [f for f in (hs.synack_frame, hs.bare_third_ack, seg.frame) if f is not None]
                self.ctx.report(
                    "MPC-011",
                    "the SYN/ACK accepted MPTCP but the third ACK carried no MP_CAPABLE (the initiator fell back to "
                    "TCP, or a middlebox stripped the option), yet the initiator later sends MPTCP options",
                    frames, sf,
                )  # fmt: skip
                hs.bare_third_ack = None
        done_a = hs.first_ack_seen and hs.bare_third_ack is None
        if (done_a and hs.established_time is not None) or hs.watched >= MAX_WATCHED_SEGMENTS:
            del self._watch[id(sf)]

    # ------------------------------------------------------------------ flag checks shared by all packets
    def _check_algorithms(self, seg: Segment, sf: Subflow, mpc: MpCapable, hs: Handshake, packet: str) -> None:
        if mpc.version not in (0, 1) or "MPC-007" in hs.reported:
            return
        mask = algorithm_mask(mpc.version)
        bits = mpc.flags & mask
        problem = None
        frames = [seg.frame]
        if not bits:
            problem = f"the {packet}'s MP_CAPABLE names no crypto algorithm (flags {mpc.flags:#04x}, H is clear)"
        elif packet == "SYN/ACK":
            if bits & (bits - 1):
                problem = (
                    f"the SYN/ACK selects more than one crypto algorithm ({algorithm_names(bits, mpc.version)}); "
                    "it must select exactly one"
                )
            elif hs.syn_flags and len(hs.syn_flags) == 1:
                offered = next(iter(hs.syn_flags)) & mask
                if offered and bits & ~offered:
                    problem = (
                        f"the SYN/ACK selects crypto algorithm {algorithm_names(bits, mpc.version)}, which the SYN "
                        f"did not offer ({algorithm_names(offered, mpc.version)})"
                    )
                    frames.insert(0, hs.syn_frames[-1])
        if problem is not None:
            hs.reported.add("MPC-007")
            self.ctx.report("MPC-007", problem + "; a receiver ignores such an option", frames, sf)

    def _check_unassigned(self, seg: Segment, sf: Subflow, mpc: MpCapable, hs: Handshake, packet: str) -> None:
        if mpc.version != 1:
            return
        bits = mpc.flags & V1_UNASSIGNED
        key = f"MPC-008/{packet}"
        if bits and key not in hs.reported:
            hs.reported.add(key)
            names = "B (extensibility)" if bits & 0x40 else ""
            rest = algorithm_names(bits & 0x1E, 1)
            if bits & 0x1E:
                names = f"{names} and {rest}" if names else rest
            self.ctx.report(
                "MPC-008",
                f"the {packet}'s MP_CAPABLE sets unassigned flag(s) {names} ({bits:#04x}); a peer that does not know "
                "them ignores the option",
                seg.frame, sf,
            )  # fmt: skip

    def _check_checksum_flag(self, seg: Segment, sf: Subflow, mpc: MpCapable, hs: Handshake) -> None:
        if (
            "MPC-009" in hs.reported or hs.synack_flags is None or len(hs.syn_flags) != 1
            or mpc.length not in (20, 22, 24)
        ):  # fmt: skip
            return  # H-MID / H-RTX: the decision is only known from one SYN and the SYN/ACK
        syn_a = bool(next(iter(hs.syn_flags)) & MPC_CHECKSUM_REQUIRED)
        synack_a = bool(hs.synack_flags & MPC_CHECKSUM_REQUIRED)
        decided = syn_a or synack_a
        if mpc.checksum_required != decided:
            hs.reported.add("MPC-009")
            self.ctx.report(
                "MPC-009",
                f"the third ACK's MP_CAPABLE has A={int(mpc.checksum_required)}, but the SYN (A={int(syn_a)}) and "
                f"the SYN/ACK (A={int(synack_a)}) decided that checksums are {'on' if decided else 'off'}",
                [f for f in (hs.syn_frames[-1] if hs.syn_frames else None, hs.synack_frame, seg.frame)
                 if f is not None],
                sf,
            )  # fmt: skip

    def _check_zero_keys(self, seg: Segment, sf: Subflow, direction: int, mpc: MpCapable) -> None:
        owner = id(sf.connection) if sf.connection is not None else id(sf)
        side = sf.sender(direction)
        for key, who in ((mpc.sender_key, side), (mpc.receiver_key, 1 - side)):
            if key == 0 and (owner, who) not in self._zero_keys:
                self._zero_keys.add((owner, who))
                name = "client" if who == CLIENT else "server"
                self.ctx.report(
                    "MPC-013",
                    f"the {name}'s MP_CAPABLE key is 0 (its token and IDSN are then fixed, well-known values)",
                    seg.frame, sf,
                )  # fmt: skip

    # ------------------------------------------------------------------ end of capture
    def finish(self, analysis: Analysis) -> None:
        start = analysis.trace.first_time
        for cand in self._candidates:
            lead = cand.syn_time - start if start is not None else 0.0
            early = lead < SYN_RETRY_WINDOW
            message = "the SYN/ACK carries MP_CAPABLE, but the SYN it answers did not offer MPTCP"
            if early:
                message += (
                    f" (the SYN came {lead:.1f} s after the capture started, so an earlier SYN "
                    "with MP_CAPABLE and the same ISN may have been missed)"
                )
            self.ctx.report(
                "MPC-003", message, [cand.syn_frame, cand.synack_frame], cand.sf,
                assumes=("capture-from-start",) if early else (),
            )  # fmt: skip
