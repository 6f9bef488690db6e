"""``compare``: two captures of the same traffic, what the network between them did.

Each capture gets the normal analysis (one pass each); connections and subflows are matched on the
models; then each capture is read a second time to index the packets of matched subflows only, and
packets are paired per subflow direction. The clock offset between the captures is estimated from the
minimum delays of both directions (offset = (min_ab - min_ba) / 2, which assumes the fastest packet
took as long each way); one-way delays are then corrected by it.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from analyzer.compare.index import PacketRecord, SubflowPackets, index_subflows
from analyzer.compare.match import Pairing, match_connections
from analyzer.compare.middlebox import (
    EffectLog,
    address_effect,
    first_mp_fail,
    option_effects,
    range_effects,
    sequence_effect,
)
from analyzer.compare.model import Comparison, ConnectionMatch, DirectionStats, SubflowDetail, SubflowMatch
from analyzer.compare.packets import DirectionWork, orientation, percentile, reordered, seq_delta
from analyzer.ingest.capture import CaptureError
from analyzer.model import CLIENT, DIRECTION_NAMES, SERVER, Analysis, ChecksumFailure, Subflow
from analyzer.pipeline import AnalysisOptions, analyze

WINDOW_SLACK = 1e-3  # seconds: a packet due just outside the other capture's time span is not called lost


@dataclass(slots=True)
class _Pair:
    """A matched subflow being worked on."""

    a: Subflow
    b: Subflow
    works: tuple[DirectionWork, DirectionWork]
    a_is_client_side: bool | None = None


def compare(path_a: str, path_b: str, keep_packets: bool = False) -> Comparison:
    """Compare two captures. Raises :class:`CaptureError` if either cannot be read at all.

    ``keep_packets`` keeps each matched subflow's packets and pairs (``SubflowMatch.detail``) for the split
    view; memory then stays at the packets of matched subflows after the call, not only during it.
    """
    for path in (path_a, path_b):
        if path == "-":
            raise CaptureError("compare reads each capture twice: give files, not stdin")
    options = AnalysisOptions(check=False, stats=False)
    analysis_a, analysis_b = analyze(path_a, options), analyze(path_b, options)
    return compare_analyses(analysis_a, analysis_b, keep_packets)


def compare_analyses(a: Analysis, b: Analysis, keep_packets: bool = False) -> Comparison:
    """Compare two finished analyses (their files are read again for the packets of matched subflows)."""
    out = Comparison(a.trace.path, b.trace.path, None)
    out.errors = [f"A: {e}" for e in a.trace.errors] + [f"B: {e}" for e in b.trace.errors]
    pairings = match_connections(a, b)
    matched = [(x, y, flipped) for p in pairings for x, y, flipped in p.subflows if y is not None]
    packets_a = index_subflows(a.trace.path, [x for x, _, _ in matched])
    packets_b = index_subflows(b.trace.path, [y for _, y, _ in matched])
    out.indexed_packets = sum(len(h) for store in (packets_a, packets_b) for sp in store.values() for h in sp.halves)
    pairs = {id(x): _start(x, y, flipped, packets_a[x.id], packets_b[y.id]) for x, y, flipped in matched}
    out.clock_offset_s = _clock_offset(list(pairs.values()))
    offset = out.clock_offset_s or 0.0
    checksum_failures = (a.checksum_failures, b.checksum_failures)
    for pairing in pairings:
        conn = ConnectionMatch(
            pairing.a_conn.id if pairing.a_conn else None, pairing.b_conn.id if pairing.b_conn else None, pairing.match
        )
        for x, y, _ in pairing.subflows:
            pair = pairs.get(id(x)) if y is not None else None
            if pair is None:
                conn.subflows.append(_unmatched(x))
                continue
            result = _finish(pair, pairing, offset, (a, b), checksum_failures, keep_packets)
            conn.subflows.append(result)
        out.connections.append(conn)
    seen_b = {c.b for c in out.connections if c.b is not None}
    out.unmatched_b = [c.id for c in b.connections if c.id not in seen_b]
    return out


def _start(x: Subflow, y: Subflow, flipped: bool, pa: SubflowPackets, pb: SubflowPackets) -> _Pair:
    """Both directions of a matched subflow, in A's roles (B's halves swapped when B guessed them the other way)."""
    b_halves = pb.halves[::-1] if flipped else pb.halves
    b_isns = [y.halves[d ^ flipped].isn for d in (CLIENT, SERVER)]
    deltas = [seq_delta(pa.halves[d], b_halves[d], x.halves[d].isn, b_isns[d]) for d in (CLIENT, SERVER)]
    c2s, s2c = (
        DirectionWork(pa.halves[d], b_halves[d], deltas[d], deltas[d ^ 1], isn_a=x.halves[d].isn, isn_b=b_isns[d])
        for d in (CLIENT, SERVER)
    )
    works = (c2s, s2c)
    for work in works:
        work.pair_unique()
    pair = _Pair(x, y, works)
    pair.a_is_client_side = orientation(works[CLIENT].time_differences(), works[SERVER].time_differences())
    if pair.a_is_client_side is not None:
        works[CLIENT].a_upstream = pair.a_is_client_side
        works[SERVER].a_upstream = not pair.a_is_client_side
    return pair


def _clock_offset(pairs: list[_Pair]) -> float | None:
    """B's clock minus A's: half the difference of the smallest A→B and B→A time differences."""
    ab: list[float] = []
    ba: list[float] = []
    for pair in pairs:
        for work in pair.works:
            diffs = work.time_differences()
            if not diffs or work.a_upstream is None:
                continue
            if work.a_upstream:
                ab.append(min(diffs))
            else:
                ba.append(min(-d for d in diffs))
    if not ab or not ba:
        return None
    return (min(ab) - min(ba)) / 2


def _one_way_delays(work: DirectionWork, offset: float) -> list[float]:
    if work.a_upstream is False:
        return [work.a[i].ts - work.b[j].ts + offset for i, j in work.pairs]
    return [work.b[j].ts - work.a[i].ts - offset for i, j in work.pairs]


def _delay_series(work: DirectionWork, offset: float) -> list[tuple[float, float]]:
    """Each matched packet's one-way delay at its upstream send time, on A's clock (B's minus the offset)."""
    if work.a_upstream is False:
        series = [(work.b[j].ts - offset, work.a[i].ts - work.b[j].ts + offset) for i, j in work.pairs]
    else:
        series = [(work.a[i].ts, work.b[j].ts - work.a[i].ts - offset) for i, j in work.pairs]
    return sorted(series)


def _finish(
    pair: _Pair,
    pairing: Pairing,
    offset: float,
    analyses: tuple[Analysis, Analysis],
    checksum_failures: tuple[list[ChecksumFailure], list[ChecksumFailure]],
    keep_packets: bool,
) -> SubflowMatch:
    x, y = pair.a, pair.b
    result = SubflowMatch(x.id, y.id, f"{x.client} → {x.server}", f"{y.client} → {y.server}", pair.a_is_client_side)
    log = EffectLog()
    address_effect(log, x, y)
    fallback = (pairing.a_conn is None or pairing.a_conn.fallback) or (
        pairing.b_conn is None or pairing.b_conn.fallback
    )
    mp_fail = first_mp_fail(
        [("A", pair.works[d].a) for d in (CLIENT, SERVER)] + [("B", pair.works[d].b) for d in (CLIENT, SERVER)]
    )
    for direction, work in enumerate(pair.works):
        name = DIRECTION_NAMES[direction]
        delays = _one_way_delays(work, offset)
        work.pair_by_time(offset, min(delays) if delays else 0.0, statistics.median(delays) if delays else 0.0)
        sequence_effect(log, work, name)
        a_up = work.a_upstream is not False
        failures = [f for f in checksum_failures[1 if a_up else 0] if f.subflow == (y.id if a_up else x.id)]
        a_left, b_left = range_effects(log, work, name, failures, mp_fail)
        option_effects(log, work, name, fallback)
        stats = _stats(work, a_left, b_left, offset, analyses)
        if a_up:
            result.a_to_b = stats
        else:
            result.b_to_a = stats
    result.middlebox = log.ordered()
    if keep_packets:
        lost = [frozenset(stats.lost_frames) for stats in _by_direction(result)]
        result.detail = SubflowDetail(
            pair.works, (lost[CLIENT], lost[SERVER]), log.marks_a, log.marks_b, offset,
            analyses[0].trace.first_time or 0.0, analyses[1].trace.first_time or 0.0,
        )  # fmt: skip
    return result


def _by_direction(result: SubflowMatch) -> tuple[DirectionStats, DirectionStats]:
    """The (c2s, s2c) statistics of a subflow, whichever of them passes A first."""
    if result.a_is_client_side is False:
        return result.b_to_a, result.a_to_b
    return result.a_to_b, result.b_to_a


def _stats(
    work: DirectionWork, a_left: list[int], b_left: list[int], offset: float, analyses: tuple[Analysis, Analysis]
) -> DirectionStats:
    a_up = work.a_upstream is not False
    up, down_trace = (work.a, analyses[1].trace) if a_up else (work.b, analyses[0].trace)
    up_left, down_left = (a_left, b_left) if a_up else (b_left, a_left)
    delays = sorted(_one_way_delays(work, offset))
    stats = DirectionStats(packets=len(up), matched=len(work.pairs), unmatched_downstream=len(down_left))
    stats.owd_series = _delay_series(work, offset)
    stats.reordered = reordered(work.pairs, a_up)
    if delays:
        stats.owd_ms = {
            "min": round(delays[0] * 1e3, 3),
            "median": round(statistics.median(delays) * 1e3, 3),
            "p95": round(percentile(delays, 0.95) * 1e3, 3),
            "max": round(delays[-1] * 1e3, 3),
        }
    shift = offset if a_up else -offset
    min_owd = delays[0] if delays else 0.0
    start, end = down_trace.first_time, down_trace.last_time
    lost: list[PacketRecord] = []
    for k in up_left:
        due = up[k].ts + shift + min_owd
        if start is not None and end is not None and start - WINDOW_SLACK <= due <= end + WINDOW_SLACK:
            lost.append(up[k])
    stats.lost = len(lost)
    stats.lost_frames = [r.frame for r in lost]
    return stats


def _unmatched(x: Subflow) -> SubflowMatch:
    """A subflow B never saw: its packets are counted, nothing is called lost (it may have taken another path)."""
    result = SubflowMatch(x.id, None, f"{x.client} → {x.server}")
    result.a_to_b = DirectionStats(packets=x.halves[CLIENT].packets)
    result.b_to_a = DirectionStats()
    return result
