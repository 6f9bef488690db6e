"""OPT family: MPTCP option format (RFC 8684 §3 and the per-option sections).

The tracker already reports what can be judged from the option bytes alone: a malformed TCP option
list (OPT-001), lengths no layout defines (OPT-002 for the context-free cases, DSS-001, FAIL-001,
PRIO-001) and unassigned subtypes (OPT-003). This family adds what needs the segment around the
option: the TCP flags, the direction, the payload and the subflow's handshake.

Hot path: almost every segment of a trace carries exactly one DSS and no SYN flag. For those,
``on_segment`` tests two bit masks and returns without allocating.
"""

from __future__ import annotations

from typing import ClassVar

from analyzer.checker.base import Context, Family
from analyzer.facts import Fact, OptionExperimental, OptionListMalformed, OptionMalformed, OptionUnassigned
from analyzer.findings import Severity
from analyzer.ingest.segment import TH_ACK, TH_RST, TH_SYN, Segment
from analyzer.model import CLIENT, Analysis, Subflow
from analyzer.mptcp.options import (
    AddAddr,
    Dss,
    MalformedOption,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MptcpOption,
    RemoveAddr,
    Subtype,
)
from analyzer.rules import Rule

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

DSS_RESERVED_FLAGS = 0xE0  # the three bits above F in byte 3
MASK32 = 0xFFFFFFFF
# A snaplen below this may have cut a SYN's options (link header + IPv6 + a full 60-byte TCP header).
MIN_SNAPLEN_FOR_SYN_OPTIONS = 128


def subtype_name(subtype: int | None) -> str:
    """``MP_JOIN`` for 1, ``subtype 0xa`` for an unassigned value, ``MPTCP`` when unknown."""
    if subtype is None:
        return "MPTCP"
    try:
        return Subtype(subtype).name
    except ValueError:
        return f"subtype {subtype:#x}"


def reserved_bits(opt: MptcpOption) -> tuple[int, str] | None:
    """The non-zero reserved bits of ``opt`` and where they sit, or None when they are all zero.

    MP_CAPABLE flags (MPC-008) and MP_TCPRST's U/V/W (RST-003) have rules of their own; v0 ADD_ADDR
    has no reserved bits (its nibble is the IP version) and v0 MP_PRIO's byte 3 is an address ID.
    """
    if isinstance(opt, Dss):
        if opt.reserved:
            return opt.reserved, "the low nibble of byte 2"
        if opt.flags & DSS_RESERVED_FLAGS:
            return opt.flags & DSS_RESERVED_FLAGS, "byte 3 (above the F flag)"
        return None
    if isinstance(opt, MpJoinSyn | MpJoinSynAck | MpPrio):
        return (opt.reserved << 1, "byte 2 (the bits between the subtype and B)") if opt.reserved else None
    if isinstance(opt, MpJoinAck | MpFail | MpFastclose):
        return (opt.reserved, "the low nibble of byte 2 and byte 3") if opt.reserved else None
    if isinstance(opt, RemoveAddr):
        return (opt.reserved, "the low nibble of byte 2") if opt.reserved else None
    if isinstance(opt, AddAddr) and not opt.v0 and opt.reserved:
        return opt.reserved << 1, "byte 2 (the bits between the subtype and E)"
    return None


# Subtypes whose malformed lengths have a rule of their own, in their family (DSS-001, FAIL-001, PRIO-001).
LENGTH_JUDGED_BY_ITS_FAMILY = frozenset({Subtype.DSS, Subtype.MP_FAIL, Subtype.MP_PRIO})


class OptionFormatRules(Family):
    RULES: ClassVar[tuple[Rule, ...]] = (
        # OPT-001/002/003 are emitted by the tracker (context-free checks); listed here with full text.
        Rule("OPT-001", E, "§3", "Malformed TCP option list",
             "A TCP option (MPTCP or not) has a length below 2, or an MPTCP option is shorter than 3 bytes, or an "
             "option runs past the TCP header (data offset × 4). Options cut short by the capture's snaplen are "
             "not malformed and are not reported."),
        Rule("OPT-002", E, "§3.1–3.6", "Invalid MPTCP option length",
             "The option's length is not one that RFC 8684 (or RFC 6824 for v0) defines for its subtype, version "
             "and packet type: MP_CAPABLE is 4 bytes on a v1 SYN and 12 on a v0 SYN, 20 on an ACK without payload "
             "and 22/24 (v1 only) on the first data; MP_JOIN is 12 on a SYN, 16 on a SYN/ACK and 24 on the third "
             "ACK."),
        Rule("OPT-003", W, "§3", "Unassigned MPTCP subtype",
             "The option uses a subtype value that IANA has not assigned (0x9–0xE); 0xF (MP_EXPERIMENTAL, private "
             "use) is reported as info."),
        Rule("OPT-004", W, "§3", "Same MPTCP option twice in one segment",
             "A segment carries two MPTCP options of the same subtype (for example two DSS). RFC 8684 gives no "
             "meaning to that and receivers keep only one of them. GRO-merged segments keep a single header, so "
             "coalescing cannot cause it."),
        Rule("OPT-005", W, "§3.1–3.6", "Reserved bits set in an MPTCP option",
             "Reserved bits must be sent as zero: the low nibble of byte 2 and the top three bits of byte 3 in DSS, "
             "the three bits before B in MP_JOIN SYN and SYN/ACK and the twelve after the subtype in its third "
             "ACK, the three bits before E in ADD_ADDR (v1), the nibble of REMOVE_ADDR, the three bits before B "
             "in MP_PRIO, and the twelve bits of MP_FAIL and MP_FASTCLOSE. (MP_CAPABLE flags: MPC-008; MP_TCPRST "
             "flags: RST-003.)"),
        Rule("OPT-006", E, "§3.1, §3.2", "MPTCP option on a packet type where it is not allowed",
             "MP_CAPABLE belongs to the initial subflow's handshake and first data, MP_JOIN to a join subflow's "
             "SYN, SYN/ACK and third ACK (sent by the initiator); DSS and MP_FAIL never ride on a SYN or SYN/ACK; "
             "a SYN carries MP_CAPABLE or MP_JOIN, never both. (ADD_ADDR/REMOVE_ADDR, MP_PRIO and MP_FASTCLOSE "
             "on a SYN are reported by ADDR-011, PRIO-002 and FC-006.) Retransmitted handshake packets are fine; "
             "with TCP Fast Open a DSS on the SYN/ACK is only a warning."),
        Rule("OPT-007", W, "§3.1", "MPTCP options on a connection that never negotiated MPTCP",
             "The captured SYN of this TCP connection carried neither MP_CAPABLE nor MP_JOIN, yet MPTCP options "
             "appear later. Either a stack sends options it never negotiated, or a middlebox stripped them from "
             "the SYN before the capture point. Not checked when the SYN was not captured."),
    )  # fmt: skip
    FACTS: ClassVar[tuple[type[Fact], ...]] = (
        OptionListMalformed, OptionMalformed, OptionUnassigned, OptionExperimental,
    )  # fmt: skip

    def on_fact(self, fact: Fact) -> None:
        """The tracker's observations of the option list and of options no other family judges."""
        frames, sf = list(fact.frames), fact.subflow
        if isinstance(fact, OptionListMalformed):
            self.ctx.report("OPT-001", f"malformed TCP option list: {fact.reason}", frames, sf)
        elif isinstance(fact, OptionMalformed):
            subtype = fact.option.subtype
            if subtype is None:  # shorter than 3 bytes: no subtype byte (§3)
                self.ctx.report("OPT-001", fact.describe(), frames, sf)
            elif subtype not in LENGTH_JUDGED_BY_ITS_FAMILY:
                self.ctx.report("OPT-002", fact.describe(), frames, sf)
        elif isinstance(fact, OptionUnassigned):
            self.ctx.report("OPT-003", f"MPTCP option with unassigned subtype {fact.subtype:#x}", frames, sf)
        elif isinstance(fact, OptionExperimental):
            self.ctx.report("OPT-003", "MP_EXPERIMENTAL option (subtype 0xf, private use)", frames, sf,
                            severity=INFO)  # fmt: skip

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._tfo: set[int] = set()  # id(sf) of subflows whose SYN used TCP Fast Open
        self._unnegotiated: dict[int, tuple[Subflow, list[int], str]] = {}  # OPT-007, reported at the end

    # ------------------------------------------------------------------ per segment
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        opts = seg.options
        if opts is None:
            return
        mptcp = opts.mptcp
        if len(mptcp) == 1:
            opt = mptcp[0]
            if type(opt) is Dss and not seg.flags & TH_SYN:  # the common case: one DSS, no SYN
                if opt.reserved or opt.flags & DSS_RESERVED_FLAGS:
                    self._reserved(seg, sf, opt)
                if sf.connection is None:
                    self._check_unnegotiated(seg, sf)
                return
        elif not mptcp:
            if seg.flags & TH_SYN and (opts.fastopen is not None or seg.payload_len):
                self._tfo.add(id(sf))
            return
        self._slow_path(seg, sf, direction, mptcp)

    def _slow_path(self, seg: Segment, sf: Subflow, direction: int, mptcp: list[MptcpOption]) -> None:
        flags = seg.flags
        if flags & TH_SYN and (seg.payload_len or (seg.options is not None and seg.options.fastopen is not None)):
            self._tfo.add(id(sf))
        if len(mptcp) > 1:
            self._duplicates(seg, sf, mptcp)
        for opt in mptcp:
            if type(opt) is not MalformedOption and reserved_bits(opt) is not None:
                self._reserved(seg, sf, opt)
        if flags & TH_SYN:
            self._syn_options(seg, sf, mptcp)
        else:
            for opt in mptcp:
                kind = type(opt)
                if kind is MpCapable or kind is MpJoinSyn or kind is MpJoinSynAck or kind is MpJoinAck:
                    self._handshake_option_after_syn(seg, sf, direction, opt)
            self._check_unnegotiated(seg, sf)

    # ------------------------------------------------------------------ OPT-004, OPT-005
    def _duplicates(self, seg: Segment, sf: Subflow, mptcp: list[MptcpOption]) -> None:
        seen: set[int | None] = set()
        repeated: list[str] = []
        for opt in mptcp:
            subtype = opt.subtype
            if subtype in seen:
                name = subtype_name(subtype)
                if name not in repeated:
                    repeated.append(name)
            seen.add(subtype)
        if repeated:
            self.ctx.report(
                "OPT-004", f"the segment carries more than one {' and more than one '.join(repeated)} option",
                seg.frame, sf,
            )  # fmt: skip

    def _reserved(self, seg: Segment, sf: Subflow, opt: MptcpOption) -> None:
        found = reserved_bits(opt)
        if found is None:
            return
        value, where = found
        self.ctx.report(
            "OPT-005", f"{subtype_name(opt.subtype)} has reserved bits {value:#x} set in {where}", seg.frame, sf,
        )  # fmt: skip

    # ------------------------------------------------------------------ OPT-002, OPT-006 on SYN and SYN/ACK
    def _syn_options(self, seg: Segment, sf: Subflow, mptcp: list[MptcpOption]) -> None:
        ctx = self.ctx
        synack = bool(seg.flags & TH_ACK)
        packet = "SYN/ACK" if synack else "SYN"
        has_mpc = has_join = False
        for opt in mptcp:
            kind = type(opt)
            if kind is MpCapable:
                assert isinstance(opt, MpCapable)
                has_mpc = True
                if not synack and opt.version in (0, 1):
                    expected = 12 if opt.version == 0 else 4
                    if opt.length != expected:
                        ctx.report(
                            "OPT-002",
                            f"MP_CAPABLE v{opt.version} on a SYN is {opt.length} bytes; a v{opt.version} SYN carries "
                            f"{expected} ({'the client key' if opt.version == 0 else 'no key'})",
                            seg.frame, sf,
                        )  # fmt: skip
            elif kind is MpJoinSyn or kind is MpJoinSynAck or kind is MpJoinAck:
                has_join = True
                expected_kind = MpJoinSynAck if synack else MpJoinSyn
                if kind is not expected_kind:
                    right = "16 (SYN/ACK form)" if synack else "12 (SYN form)"
                    ctx.report(
                        "OPT-002", f"MP_JOIN of {opt.length} bytes on a {packet}; a {packet} carries {right}",
                        seg.frame, sf,
                    )  # fmt: skip
            elif kind is Dss or kind is MpFail:
                tfo = id(sf) in self._tfo
                ctx.report(
                    "OPT-006",
                    f"{subtype_name(opt.subtype)} on a {packet}"
                    + (" (TCP Fast Open is in use, whose MPTCP mapping rules are not settled)" if tfo else ""),
                    seg.frame, sf, severity=W if tfo else None,
                )  # fmt: skip
        if has_mpc and has_join:
            ctx.report("OPT-006", f"MP_CAPABLE and MP_JOIN together on one {packet}", seg.frame, sf)

    # ------------------------------------------------------------------ MP_CAPABLE / MP_JOIN after the SYN
    def _handshake_option_after_syn(self, seg: Segment, sf: Subflow, direction: int, opt: MptcpOption) -> None:
        ctx = self.ctx
        kind = type(opt)
        if kind is MpJoinSyn or kind is MpJoinSynAck:
            form = "SYN" if kind is MpJoinSyn else "SYN/ACK"
            ctx.report(
                "OPT-002",
                f"MP_JOIN of {opt.length} bytes (the {form} form) on a segment without SYN; after the handshake "
                "only the 24-byte third-ACK form exists",
                seg.frame, sf,
            )  # fmt: skip
            return
        if seg.flags & TH_RST:
            return  # a RST ends the subflow anyway; nothing is negotiated on it
        if kind is MpJoinAck:
            if sf.kind == "initial" or sf.mpc_syn:
                ctx.report("OPT-006", "MP_JOIN (third-ACK form) on the MP_CAPABLE subflow", seg.frame, sf)
            elif direction != CLIENT and sf.syn_seen:
                ctx.report(
                    "OPT-006", "MP_JOIN third-ACK option sent by the join's responder; only the initiator sends it",
                    seg.frame, sf,
                )  # fmt: skip
            elif not seg.payload_len:  # with payload it is JOIN-005's "third ACK carries data"
                isn = sf.halves[direction].isn
                if isn is not None and seg.seq != (isn + 1) & MASK32:
                    ctx.report(
                        "OPT-006",
                        f"MP_JOIN third-ACK option on a segment at relative sequence {(seg.seq - isn) & MASK32}, "
                        "not on the third ACK (relative sequence 1)",
                        seg.frame, sf,
                    )  # fmt: skip
            return
        assert isinstance(opt, MpCapable)
        if sf.kind == "join" or sf.join_token is not None:
            ctx.report("OPT-006", "MP_CAPABLE on an MP_JOIN subflow", seg.frame, sf)
            return
        if sf.sender(direction) != CLIENT or opt.version not in (0, 1):
            return  # the server's MP_CAPABLE after the SYN/ACK is MPC-015
        if opt.length in (4, 12):
            return  # MPC-006: the third ACK without both keys
        payload = seg.payload_len
        if opt.version == 0 and opt.length != 20:
            ctx.report(
                "OPT-002",
                f"MP_CAPABLE v0 of {opt.length} bytes after the handshake; RFC 6824 defines only 20 (both keys) "
                "and sends data with a DSS",
                seg.frame, sf,
            )  # fmt: skip
        elif opt.version == 1 and opt.length == 20 and payload and id(sf) not in self._tfo:
            ctx.report(
                "OPT-002",
                f"MP_CAPABLE of 20 bytes on a segment with {payload} bytes of payload; the first data carries the "
                "22/24-byte form with the data-level length",
                seg.frame, sf,
            )  # fmt: skip
        elif opt.version == 1 and opt.length in (22, 24) and not payload:
            ctx.report(
                "OPT-002",
                f"MP_CAPABLE of {opt.length} bytes (with a data-level length) on a segment without payload; an ACK "
                "without data carries the 20-byte form",
                seg.frame, sf,
            )  # fmt: skip

    # ------------------------------------------------------------------ OPT-007
    def _check_unnegotiated(self, seg: Segment, sf: Subflow) -> None:
        if not sf.syn_seen or sf.mpc_syn or sf.mpc_synack or sf.join_token is not None or sf.kind == "join":
            return  # no SYN (H-MID), an MPTCP SYN, or a SYN/ACK with MP_CAPABLE answering a plain SYN (MPC-003)
        key = id(sf)
        if key in self._unnegotiated:
            return
        names = ", ".join(dict.fromkeys(subtype_name(o.subtype) for o in seg.options.mptcp)) if seg.options else ""
        self._unnegotiated[key] = (sf, [sf.first_frame, seg.frame], names)

    def finish(self, analysis: Analysis) -> None:
        snaplen = analysis.trace.snaplen
        if snaplen is not None and snaplen < MIN_SNAPLEN_FOR_SYN_OPTIONS:
            return  # H-SNAP: the SYNs' options may simply not have been captured
        for sf, frames, names in self._unnegotiated.values():
            self.ctx.report(
                "OPT-007",
                f"{names} on subflow {sf.id}, whose captured SYN carried neither MP_CAPABLE nor MP_JOIN "
                "(a stack sending options it never negotiated, or options stripped from the SYN before the "
                "capture point)",
                frames, sf,
            )  # fmt: skip
