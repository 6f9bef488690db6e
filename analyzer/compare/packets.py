"""Pair the packets of one subflow direction seen at two vantage points.

A packet is the same packet on both sides when its sequence number (moved into B's sequence space
by the ISN difference, so sequence randomisation does not matter), its length and its payload digest
agree; pure ACKs by sequence number, acknowledgment number and flags. Keys seen once on each side
pair at once; keys seen several times (retransmissions, duplicate ACKs) wait until the direction and
the clock offset are known, then each downstream copy takes the latest upstream copy that could have
produced it, so a lost original and its delivered retransmission are told apart.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter
from dataclasses import dataclass, field

from analyzer.compare.index import PacketRecord
from analyzer.ingest.segment import TH_ACK, TH_FIN, TH_RST, TH_SYN

MASK = 0xFFFFFFFF
KEY_FLAGS = TH_FIN | TH_SYN | TH_RST | TH_ACK
TOLERANCE = 1e-3  # seconds of timestamp noise allowed when deciding which copy produced which

CANDIDATES = 64  # latest upstream copies considered for one downstream copy (bounds repeated-key work)

Key = tuple[int, int, int, object]


def seq_delta(a_recs: list[PacketRecord], b_recs: list[PacketRecord], isn_a: int | None, isn_b: int | None) -> int:
    """B's sequence number minus A's for the same byte (mod 2^32): from the ISNs, else from equal payloads."""
    if isn_a is not None and isn_b is not None:
        return (isn_b - isn_a) & MASK
    first_b: dict[tuple[bytes, int], int] = {}
    for r in b_recs:
        if r.digest is not None:
            first_b.setdefault((r.digest, r.length), r.seq)
    votes = Counter(
        (first_b[(r.digest, r.length)] - r.seq) & MASK
        for r in a_recs
        if r.digest is not None and (r.digest, r.length) in first_b
    )
    return votes.most_common(1)[0][0] if votes else 0


def packet_key(r: PacketRecord, delta: int, delta_rev: int) -> Key:
    seq = (r.seq + delta) & MASK
    if r.length > 0:
        return (1, seq, r.length, r.digest)
    ack = (r.ack + delta_rev) & MASK if r.flags & TH_ACK else 0
    return (0, seq, ack, r.flags & KEY_FLAGS)


@dataclass(slots=True)
class DirectionWork:
    """One subflow direction: A's and B's packets, their pairs, and what is left over."""

    a: list[PacketRecord]
    b: list[PacketRecord]
    delta: int  # B seq - A seq in this direction
    delta_rev: int  # the same for the opposite direction (acknowledgment numbers)
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (index in a, index in b)
    ambiguous: list[tuple[list[int], list[int]]] = field(default_factory=list)
    a_upstream: bool | None = None  # None until decided
    isn_a: int | None = None  # this direction's ISN in each capture (None: handshake not captured)
    isn_b: int | None = None
    links: list[tuple[list[int], list[int], str]] = field(default_factory=list)  # (a, b, effect): unpaired, related

    def pair_unique(self) -> None:
        """Pair keys seen equally often on both sides, in order; keep the rest for :meth:`pair_by_time`."""
        groups: dict[Key, tuple[list[int], list[int]]] = {}
        for i, r in enumerate(self.a):
            groups.setdefault(packet_key(r, self.delta, self.delta_rev), ([], []))[0].append(i)
        for j, r in enumerate(self.b):
            groups.setdefault(packet_key(r, 0, 0), ([], []))[1].append(j)
        for a_idx, b_idx in groups.values():
            if len(a_idx) == len(b_idx):
                self.pairs.extend(zip(a_idx, b_idx, strict=True))
            elif a_idx and b_idx:
                self.ambiguous.append((a_idx, b_idx))

    def time_differences(self) -> list[float]:
        """B's timestamp minus A's over the pairs (owd + offset downstream in B, offset - owd upstream in B)."""
        return [self.b[j].ts - self.a[i].ts for i, j in self.pairs]

    def pair_by_time(self, offset: float, min_owd: float, typical_owd: float) -> None:
        """Each downstream copy of a repeated key takes the free upstream copy whose delay is most typical.

        Candidates must have been sent at least ``min_owd`` before (less :data:`TOLERANCE`); of those, the
        ones with the same IPv4 identification (if any), then the one whose implied one-way delay is closest
        to ``typical_owd`` (the median of the unambiguous pairs) wins, so a lost original loses to its
        retransmission and a burst of identical duplicate ACKs pairs copy by copy.
        """
        for a_idx, b_idx in self.ambiguous:
            if self.a_upstream is None:
                self.pairs.extend(zip(a_idx, b_idx, strict=False))
                continue
            up, down = (a_idx, b_idx) if self.a_upstream else (b_idx, a_idx)
            up_recs, down_recs = (self.a, self.b) if self.a_upstream else (self.b, self.a)
            shift = offset if self.a_upstream else -offset  # upstream clock -> downstream clock
            free = list(up)  # capture order, so (nearly) time order: bisect finds who was sent in time
            free_ts = [up_recs[u].ts for u in free]
            for d in down:
                arrival = down_recs[d].ts - shift
                end = bisect.bisect_right(free_ts, arrival - min_owd + TOLERANCE)
                window = range(max(0, end - CANDIDATES), end)
                if not window:
                    continue
                same_id = [
                    k
                    for k in window
                    if up_recs[free[k]].ip_id is not None and up_recs[free[k]].ip_id == down_recs[d].ip_id
                ]
                k = min(same_id or window, key=lambda c: abs(arrival - free_ts[c] - typical_owd))
                u = free.pop(k)
                del free_ts[k]
                self.pairs.append((u, d) if self.a_upstream else (d, u))
        self.ambiguous = []

    def leftovers(self) -> tuple[list[int], list[int]]:
        used_a = {i for i, _ in self.pairs}
        used_b = {j for _, j in self.pairs}
        return (
            [i for i in range(len(self.a)) if i not in used_a],
            [j for j in range(len(self.b)) if j not in used_b],
        )


def orientation(diffs_c2s: list[float], diffs_s2c: list[float]) -> bool | None:
    """Whether the subflow's c2s direction passes A first: its B-minus-A time differences are the larger."""
    if diffs_c2s and diffs_s2c:
        return statistics.median(diffs_c2s) >= statistics.median(diffs_s2c)
    if diffs_c2s:
        return statistics.median(diffs_c2s) >= 0
    if diffs_s2c:
        return statistics.median(diffs_s2c) < 0
    return None


def reordered(pairs: list[tuple[int, int]], a_upstream: bool) -> int:
    """Downstream arrivals that came after a packet the upstream side sent later."""
    order = sorted(pairs, key=lambda p: p[1] if a_upstream else p[0])
    count, highest = 0, -1
    for i, j in order:
        up = i if a_upstream else j
        if up < highest:
            count += 1
        else:
            highest = up
    return count


def percentile(sorted_values: list[float], fraction: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]
