"""What the network between the two vantage points did to the packets, each effect with frames on both sides.

Only differences between a packet and its own copy count (or, for splits and coalescing, between byte
ranges that tile each other exactly), so two captures of an untouched path report nothing.
"""

from __future__ import annotations

from collections import Counter

from analyzer.compare.index import PacketRecord
from analyzer.compare.model import Effect
from analyzer.compare.packets import DirectionWork
from analyzer.model import ChecksumFailure, Subflow
from analyzer.mptcp.options import Dss, MpFail, MptcpOption, Subtype

MASK = 0xFFFFFFFF


def _name(opt: MptcpOption) -> str:
    subtype = getattr(opt, "subtype", None)
    try:
        return Subtype(subtype).name if subtype is not None else "malformed MPTCP option"
    except ValueError:
        return f"MPTCP subtype {subtype}"


MAX_PIECES = 64  # a segment split into more pieces than this is not looked for


class EffectLog:
    """Effects of one subflow, one entry per (effect, what, direction)."""

    def __init__(self) -> None:
        self.effects: dict[tuple[str, str], Effect] = {}
        self.marks_a: dict[int, list[str]] = {}  # frame -> short labels of the effects it takes part in
        self.marks_b: dict[int, list[str]] = {}

    def add(self, effect: str, detail: str, frames_a: list[int], frames_b: list[int], label: str = "") -> None:
        entry = self.effects.get((effect, detail))
        if entry is None:
            entry = self.effects[(effect, detail)] = Effect(effect, detail)
        entry.add(frames_a, frames_b)
        for marks, frames in ((self.marks_a, frames_a), (self.marks_b, frames_b)):
            for frame in frames:
                labels = marks.setdefault(frame, [])
                if (label or effect) not in labels:
                    labels.append(label or effect)

    def ordered(self) -> list[Effect]:
        return sorted(self.effects.values(), key=lambda e: (min(e.frames_a or [1 << 62]), e.effect))


def address_effect(log: EffectLog, a: Subflow, b: Subflow) -> None:
    """The same subflow under other addresses or ports: network address (and port) translation."""
    if (a.client_ip, a.client_port, a.server_ip, a.server_port) == (
        b.client_ip,
        b.client_port,
        b.server_ip,
        b.server_port,
    ):
        return
    changes = []
    if (a.client_ip, a.client_port) != (b.client_ip, b.client_port):
        changes.append(f"client {a.client} ↔ {b.client}")
    if (a.server_ip, a.server_port) != (b.server_ip, b.server_port):
        changes.append(f"server {a.server} ↔ {b.server}")
    log.add("address_rewritten", "NAT: " + ", ".join(changes), [a.first_frame], [b.first_frame], "NAT")


def sequence_effect(log: EffectLog, work: DirectionWork, name: str) -> None:
    """A constant difference between the two sides' sequence numbers: a box randomised the ISN."""
    if work.delta == 0 or not work.pairs:
        return
    i, j = min(work.pairs)
    a, b = work.a[i], work.b[j]
    shift = work.delta if work.delta < 1 << 31 else work.delta - (1 << 32)
    detail = f"{name} sequence numbers shifted by {shift:+d} (A seq {a.seq} is B seq {b.seq})"
    log.add("sequence_rewritten", detail, [a.frame], [b.frame], f"seq {shift:+d}")


def _options_by_name(opts: tuple[MptcpOption, ...]) -> Counter[str]:
    return Counter(_name(opt) for opt in opts)


def option_effects(log: EffectLog, work: DirectionWork, name: str, fallback: bool) -> None:
    """MPTCP options (and the MSS) that the copy downstream lost, gained, or carries with other values."""
    up_is_a = work.a_upstream is not False
    for i, j in sorted(work.pairs):
        a, b = work.a[i], work.b[j]
        up, down = (a, b) if up_is_a else (b, a)
        if up.mptcp != down.mptcp:
            _option_difference(log, a, b, up, down, name, fallback)
        if up.mss is not None and down.mss is not None and up.mss != down.mss:
            log.add("mss_altered", f"{name} MSS {up.mss} became {down.mss}", [a.frame], [b.frame], f"MSS→{down.mss}")


def _option_difference(
    log: EffectLog, a: PacketRecord, b: PacketRecord, up: PacketRecord, down: PacketRecord, name: str, fallback: bool
) -> None:
    sent, arrived = _options_by_name(up.mptcp), _options_by_name(down.mptcp)
    for option in sorted(sent - arrived):
        why = ""
        if fallback and option in ("MP_CAPABLE", "DSS"):
            why = ": explains the fallback to TCP"
        log.add("option_stripped", f"{name} {option} removed{why}", [a.frame], [b.frame], f"−{option}")
    for option in sorted(arrived - sent):
        log.add("option_added", f"{name} {option} added", [a.frame], [b.frame], f"+{option}")
    if sent == arrived:
        changed = sorted({_name(x) for x, y in zip(up.mptcp, down.mptcp, strict=False) if x != y})
        for option in changed or ["MPTCP options"]:
            log.add("option_altered", f"{name} {option} changed", [a.frame], [b.frame], f"~{option}")


def _tile(
    start: int, end: int, pieces: dict[int, list[int]], used: set[int], recs: list[PacketRecord]
) -> list[int] | None:
    """Unused pieces (indexes into recs, by sequence number) that cover [start, end) exactly, in order."""
    out: list[int] = []
    cur = start
    while cur != end and len(out) <= MAX_PIECES:
        choice = next((k for k in pieces.get(cur, []) if k not in used and k not in out and recs[k].length > 0), None)
        if choice is None:
            return None
        nxt = (cur + recs[choice].length) & 0xFFFFFFFF
        if (nxt - start) & 0xFFFFFFFF > (end - start) & 0xFFFFFFFF:
            return None
        out.append(choice)
        cur = nxt
    return out if cur == end and len(out) >= 2 else None


def range_effects(
    log: EffectLog, work: DirectionWork, name: str, failures: list[ChecksumFailure], mp_fail: str | None
) -> tuple[list[int], list[int]]:
    """Modified payloads, splits and coalescing among the unpaired packets; returns what is still unpaired (a, b)."""
    a_left, b_left = work.leftovers()
    seq_a = {i: (work.a[i].seq + work.delta) & 0xFFFFFFFF for i in a_left}
    by_range_b: dict[tuple[int, int], list[int]] = {}
    for j in b_left:
        if work.b[j].length > 0:
            by_range_b.setdefault((work.b[j].seq, work.b[j].length), []).append(j)
    used_a: set[int] = set()
    used_b: set[int] = set()
    mappings: list[tuple[int, int, int]] | None = None  # downstream DSS mappings, read once if needed
    for i in a_left:
        r = work.a[i]
        if r.length == 0:
            continue
        for j in by_range_b.get((seq_a[i], r.length), []):
            if j in used_b:
                continue
            used_a.add(i)
            used_b.add(j)
            if r.digest is not None and work.b[j].digest is not None:  # both whole: the bytes differ
                if mappings is None:
                    mappings = _mappings(work.b if work.a_upstream is not False else work.a) if failures else []
                _payload_effect(log, work, r, work.b[j], name, failures, mappings, mp_fail)
                work.links.append(([i], [j], "payload_modified"))
            else:
                work.pairs.append((i, j))  # a snaplen cut one side's copy: same range, same packet
            break
    a_left = [i for i in a_left if i not in used_a]
    b_left = [j for j in b_left if j not in used_b]
    _split_effects(log, work, name, a_left, b_left, seq_a, used_a, used_b)
    return [i for i in a_left if i not in used_a], [j for j in b_left if j not in used_b]


def _payload_effect(
    log: EffectLog,
    work: DirectionWork,
    a: PacketRecord,
    b: PacketRecord,
    name: str,
    failures: list[ChecksumFailure],
    mappings: list[tuple[int, int, int]],
    mp_fail: str | None,
) -> None:
    a_up = work.a_upstream is not False
    down = b if a_up else a
    why = []
    failure = _failure_of(down, work.isn_b if a_up else work.isn_a, mappings, failures)
    if failure is not None:
        why.append(f"explains the DSS checksum failure of the mapping at frame {failure.frames[0]}")
    if mp_fail is not None:
        why.append(f"explains the {mp_fail}")
    detail = f"{name} payload of {a.length} bytes modified" + (": " + "; ".join(why) if why else "")
    log.add("payload_modified", detail, [a.frame], [b.frame], "payload modified")


def _mappings(recs: list[PacketRecord]) -> list[tuple[int, int, int]]:
    """(relative ssn, data-level length, DSN) of every distinct DSS mapping in ``recs``."""
    seen = {
        (opt.ssn, opt.data_len, opt.dsn)
        for r in recs
        for opt in r.mptcp
        if isinstance(opt, Dss) and opt.dsn is not None and opt.ssn is not None and opt.data_len
    }
    return sorted(seen)


def _failure_of(
    down: PacketRecord, isn: int | None, mappings: list[tuple[int, int, int]], failures: list[ChecksumFailure]
) -> ChecksumFailure | None:
    """The downstream checksum failure whose mapping holds ``down``'s bytes.

    A failure lists only the first frames of its mapping, so membership of the frame is not enough: the
    mapping that covers the packet's relative subflow sequence number (from the DSS options the capture
    holds, which need the ISN) is matched to the failure by its DSN (low 32 bits, as a DSS may carry).
    """
    by_frame = next((f for f in failures if down.frame in f.frames), None)
    if by_frame is not None or isn is None or not failures:
        return by_frame
    rel = (down.seq - isn) & MASK
    dsns = {f.dsn & MASK: f for f in failures}
    for ssn, length, dsn in mappings:
        if (rel - ssn) & MASK < length and (dsn & MASK) in dsns:
            return dsns[dsn & MASK]
    return None


def _split_effects(
    log: EffectLog,
    work: DirectionWork,
    name: str,
    a_left: list[int],
    b_left: list[int],
    seq_a: dict[int, int],
    used_a: set[int],
    used_b: set[int],
) -> None:
    pieces_b: dict[int, list[int]] = {}
    for j in b_left:
        pieces_b.setdefault(work.b[j].seq, []).append(j)
    pieces_a: dict[int, list[int]] = {}
    for i in a_left:
        pieces_a.setdefault(seq_a[i], []).append(i)
    a_up = work.a_upstream is not False
    for i in a_left:  # one A packet is several B packets
        tiles = _tile(seq_a[i], (seq_a[i] + work.a[i].length) & 0xFFFFFFFF, pieces_b, used_b, work.b)
        if tiles:
            used_a.add(i)
            used_b.update(tiles)
            effect = "segment_split" if a_up else "segments_coalesced"
            detail = (
                f"{name} {work.a[i].length} bytes {'split into' if a_up else 'coalesced from'} {len(tiles)} segments"
            )
            log.add(effect, detail, [work.a[i].frame], [work.b[k].frame for k in tiles], effect.replace("_", " "))
            work.links.append(([i], list(tiles), effect))
    for j in b_left:  # several A packets are one B packet
        if j in used_b:
            continue
        b = work.b[j]
        tiles = _tile(b.seq, (b.seq + b.length) & 0xFFFFFFFF, pieces_a, used_a, work.a)
        if tiles:
            used_b.add(j)
            used_a.update(tiles)
            effect = "segments_coalesced" if a_up else "segment_split"
            detail = f"{name} {b.length} bytes {'coalesced from' if a_up else 'split into'} {len(tiles)} segments"
            log.add(effect, detail, [work.a[k].frame for k in tiles], [b.frame], effect.replace("_", " "))
            work.links.append((list(tiles), [j], effect))


def first_mp_fail(records: list[tuple[str, list[PacketRecord]]]) -> str | None:
    """'MP_FAIL at frame N of capture X' for the first MP_FAIL in the given packet lists."""
    found = [(r.frame, label) for label, recs in records for r in recs if any(isinstance(o, MpFail) for o in r.mptcp)]
    if not found:
        return None
    frame, label = min(found)
    return f"MP_FAIL at frame {frame} of capture {label}"
