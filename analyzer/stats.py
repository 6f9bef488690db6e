"""Per-subflow and per-connection statistics gathered in the single pass.

* RTT per subflow direction, estimated at the capture point: the time from a data segment to the
  first ACK covering it, with Karn's rule (retransmitted data gives no sample). At the sender this is
  the path RTT; at the receiver it only measures the local ACK delay, so it is labelled an estimate.
* Wire bytes per subflow direction over time (throughput) and Data ACK progress per connection side,
  both in fixed time buckets, so memory grows with the capture's duration, not its packet count.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from analyzer.ingest.segment import TH_ACK, TH_SYN, Segment
from analyzer.model import Analysis, Stall, Subflow
from analyzer.mptcp.datalevel import PacketLevels
from analyzer.mptcp.options import Dss
from analyzer.results import HalfTiming, Timed

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
BUCKET = 0.1  # seconds
MAX_OUTSTANDING = 4096  # unacknowledged segments remembered per direction for RTT samples
SRTT_GAIN = 1 / 8  # RFC 6298
# RTT quantiles come from a log-scale histogram: bounded memory per direction, each bucket 2 % wide.
RTT_BUCKET_RATIO = 1.02
_LOG_RATIO = math.log(RTT_BUCKET_RATIO)
_MIN_RTT = 1e-6  # samples below 1 µs share the first bucket
# A stall: sent data unacknowledged for at least Linux's minimum RTO (200 ms) and 4 × the direction's p95 RTT.
STALL_MIN = 0.2
STALL_RTT_FACTOR = 4
MAX_STALLS = 20  # per direction
MAX_STALL_RETRANSMISSIONS = 64  # retransmission times kept per stall (the count stays exact)
BACKOFF_GROWTH = 1.5  # a retransmission gap this much longer than the previous one is an RTO back-off


@dataclass(slots=True)
class RttEstimate:
    samples: int = 0
    minimum: float | None = None
    maximum: float | None = None
    srtt: float | None = None
    total: float = 0.0
    histogram: dict[int, int] | None = None  # log bucket → samples; created on the first sample

    def add(self, sample: float) -> None:
        if self.histogram is None:
            self.histogram = {}
        bucket = int(math.log(max(sample, _MIN_RTT) / _MIN_RTT) / _LOG_RATIO)
        self.histogram[bucket] = self.histogram.get(bucket, 0) + 1
        self.samples += 1
        self.total += sample
        if self.minimum is None or sample < self.minimum:
            self.minimum = sample
        if self.maximum is None or sample > self.maximum:
            self.maximum = sample
        self.srtt = sample if self.srtt is None else self.srtt + SRTT_GAIN * (sample - self.srtt)

    def to_json(self) -> dict[str, object] | None:
        if not self.samples:
            return None
        return {
            "samples": self.samples,
            "min_ms": round((self.minimum or 0) * 1000, 3),
            "mean_ms": round(self.total / self.samples * 1000, 3),
            "max_ms": round((self.maximum or 0) * 1000, 3),
            "srtt_ms": round((self.srtt or 0) * 1000, 3),
            "median_ms": round(self.quantile(0.5) * 1000, 3),
            "p95_ms": round(self.quantile(0.95) * 1000, 3),
        }

    def quantile(self, q: float) -> float:
        """The q-quantile of the samples, to within one bucket (2 %), clamped to the exact min and max."""
        if not self.histogram or self.minimum is None or self.maximum is None:
            return 0.0
        if q <= 0.0:
            return self.minimum
        if q >= 1.0:
            return self.maximum
        rank = q * (self.samples - 1)
        seen = 0
        for bucket in sorted(self.histogram):
            seen += self.histogram[bucket]
            if seen > rank:
                middle: float = _MIN_RTT * RTT_BUCKET_RATIO ** (bucket + 0.5)
                return min(max(middle, self.minimum), self.maximum)
        return self.maximum


class Thinned:
    """A time series of bounded size: when full, every other point is dropped and later ones are kept 1 in 2^k.

    Plots want the shape of a whole trace, not every sample; memory stays at ``limit`` points.
    """

    __slots__ = ("_seen", "limit", "points", "stride")

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self.points: list[tuple[float, float]] = []
        self.stride = 1
        self._seen = 0

    def add(self, t: float, value: float) -> None:
        self._seen += 1
        if self._seen % self.stride:
            return
        self.points.append((t, value))
        if len(self.points) >= self.limit:
            del self.points[1::2]
            self.stride *= 2


@dataclass(slots=True)
class _Direction:
    outstanding: deque[tuple[int, float]] = field(default_factory=deque)  # (seq end, time sent)
    highest_end: int | None = None  # highest sequence end sent (32-bit), to recognise retransmissions
    rtt: RttEstimate = field(default_factory=RttEstimate)
    rtt_series: Thinned = field(default_factory=lambda: Thinned())
    wire: dict[int, int] = field(default_factory=dict)  # bucket -> payload bytes sent
    una: int | None = None  # highest cumulative ACK the peer sent for this direction's data (32-bit)
    waiting: tuple[float, int] | None = None  # (time, frame) since which outstanding data saw no ACK progress
    rtx_times: list[tuple[float, int]] = field(default_factory=list)  # retransmissions while waiting
    rtx_count: int = 0
    stalls: list[Stall] = field(default_factory=list)

    def in_flight(self) -> bool:
        """Data sent that the peer has not acknowledged yet (as far as the capture shows)."""
        if self.highest_end is None or self.una is None:
            return self.highest_end is not None
        return 0 < ((self.highest_end - self.una) & MASK32) < (1 << 31)

    def on_send(self, ts: float, frame: int, retransmission: bool, was_outstanding: bool) -> None:
        if not was_outstanding:
            self.waiting = (ts, frame)
            self.rtx_times.clear()
            self.rtx_count = 0
        elif retransmission and self.waiting is not None:
            self.rtx_count += 1
            if len(self.rtx_times) < MAX_STALL_RETRANSMISSIONS:
                self.rtx_times.append((ts, frame))

    def on_ack(self, ack: int, ts: float, frame: int) -> None:
        if self.una is not None and not 0 < ((ack - self.una) & MASK32) < (1 << 31):
            return  # no progress
        self.una = ack
        self.close_wait(ts, frame)
        if self.in_flight():
            self.waiting = (ts, frame)

    def close_wait(self, ts: float, frame: int | None) -> None:
        """The wait ends at ``ts``: keep it as a stall candidate when it lasted the minimum RTO."""
        waiting, self.waiting = self.waiting, None
        if waiting is not None and ts - waiting[0] >= STALL_MIN and len(self.stalls) < MAX_STALLS:
            self.stalls.append(
                Stall(
                    start=waiting[0], end=ts, start_frame=waiting[1], end_frame=frame,
                    retransmissions=self.rtx_count, backoffs=_backoffs(waiting[0], self.rtx_times),
                    frames=tuple(f for _, f in self.rtx_times[:8]),
                )
            )  # fmt: skip
        self.rtx_times.clear()
        self.rtx_count = 0


class StatsCollector:
    """Pipeline observer: RTT, throughput and Data ACK timelines (see the module docstring)."""

    def __init__(self) -> None:
        self.directions: dict[int, _Direction] = {}  # Subflow.key(direction)
        self.data_acks: dict[tuple[int, int], dict[int, int]] = {}  # (id(conn), acking side) -> bucket -> ack
        self.packet = PacketLevels()  # the current segment's 64-bit Data ACK (analyzer.datalevels)
        self._last_raw: dict[tuple[int, int], int] = {}

    def forget(self, sf: Subflow) -> None:
        """The tracker summarised this (half-open) subflow."""
        self.directions.pop(sf.key(0), None)
        self.directions.pop(sf.key(1), None)

    def attach_levels(self, packet: PacketLevels, level: object) -> None:
        """The pipeline's data levels: Data ACKs are read there as 64 bits, never expanded here."""
        self.packet = packet

    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        bucket = int(seg.ts / BUCKET)
        length = seg.payload_len
        peer = self.directions.get(sf.key(1 - direction))
        if peer is not None and seg.flags & TH_ACK:
            peer.on_ack(seg.ack, seg.ts, seg.frame)
        if length and not seg.flags & TH_SYN:
            # Only a direction that sends data needs state (acks and SYNs of a half-open flood cost nothing).
            key = sf.key(direction)
            mine = self.directions.get(key)
            if mine is None:
                mine = self.directions[key] = _Direction()
            mine.wire[bucket] = mine.wire.get(bucket, 0) + length
            end = (seg.seq + length) & MASK32
            was_outstanding = mine.in_flight()
            if mine.highest_end is None or ((end - mine.highest_end) & MASK32) < (1 << 31):
                if mine.highest_end != end:
                    mine.outstanding.append((end, seg.ts))
                    if len(mine.outstanding) > MAX_OUTSTANDING:
                        mine.outstanding.popleft()
                    mine.on_send(seg.ts, seg.frame, False, was_outstanding)
                else:
                    mine.on_send(seg.ts, seg.frame, True, was_outstanding)
                mine.highest_end = end
            else:  # retransmission: Karn's rule drops the samples it could spoil
                mine.outstanding.clear()
                mine.on_send(seg.ts, seg.frame, True, was_outstanding)
        if peer is not None and peer.outstanding:
            ack = seg.ack
            sample_time = None
            queue = peer.outstanding
            while queue and ((ack - queue[0][0]) & MASK32) < (1 << 31):
                sample_time = queue.popleft()[1]
            if sample_time is not None:
                peer.rtt.add(seg.ts - sample_time)
                peer.rtt_series.add(seg.ts, seg.ts - sample_time)
        conn = sf.connection
        if conn is not None and seg.options is not None:
            for opt in seg.options.mptcp:
                if type(opt) is Dss and opt.data_ack is not None:
                    self._data_ack(conn, sf.sender(direction), opt, bucket)

    def _data_ack(self, conn: object, side: int, dss: Dss, bucket: int) -> None:
        key = (id(conn), side)
        assert dss.data_ack is not None
        raw = dss.data_ack | (dss.ack64 << 64)
        if self._last_raw.get(key) == raw:
            return  # repeated Data ACK: the series already holds it
        self._last_raw[key] = raw
        value = self.packet.known_ack(dss)  # expanded once by the data levels
        if value is None:
            return  # a 32-bit Data ACK whose high half is unknown (no IDSN, no 64-bit value seen)
        series = self.data_acks.get(key)
        if series is None:
            series = self.data_acks[key] = {}
        series[bucket] = value

    def results(self, analysis: Analysis) -> Timed:
        """End of capture: each subflow direction's timing and each side's Data ACK progress (analyzer.results)."""
        halves: dict[int, HalfTiming] = {}
        progress: dict[tuple[int, int], dict[int, int]] = {}
        for conn in analysis.connections:
            for sf in conn.subflows:
                for direction in (0, 1):
                    key = sf.key(direction)
                    mine = self.directions.get(key)
                    if mine is not None:
                        timing = HalfTiming(mine.rtt.to_json(), mine.wire, _stalls(mine, sf), mine.rtt_series.points)
                        halves[key] = timing
            for side in (0, 1):
                series = self.data_acks.get((id(conn), side))
                idsn = conn.sides[1 - side].idsn
                if series and idsn is not None and conn.id is not None:
                    base = (idsn + 1) & MASK64
                    progress[(conn.id, side)] = {b: (v - base) & MASK64 for b, v in series.items()}
        return Timed(halves, progress)


def rebin(series: dict[int, int], max_points: int = 200, reduce: str = "sum") -> list[tuple[float, int]]:
    """Coarsen a bucket -> value series to at most ``max_points`` points of (time, value)."""
    if not series:
        return []
    first, last = min(series), max(series)
    width = max(1, -(-(last - first + 1) // max_points))
    out: dict[int, int] = {}
    for bucket, value in series.items():
        slot = (bucket - first) // width
        if reduce == "sum":
            out[slot] = out.get(slot, 0) + value
        else:
            out[slot] = max(out.get(slot, value), value)
    return [((first + slot * width) * BUCKET, value) for slot, value in sorted(out.items())]


def _backoffs(start: float, retransmissions: list[tuple[float, int]]) -> int:
    """Retransmissions whose gap to the previous send grew by half or more: the RTO backing off."""
    count, previous_gap, last = 0, None, start
    for ts, _ in retransmissions:
        gap = ts - last
        if previous_gap is not None and previous_gap > 0 and gap >= BACKOFF_GROWTH * previous_gap:
            count += 1
        previous_gap, last = gap, ts
    return count


def _stalls(direction: _Direction, sf: Subflow) -> list[Stall]:
    """The direction's stalls that outlasted 4 × its p95 RTT, plus one still open when the subflow's capture ends.

    Without any ACK progress seen (the capture lacks the other direction) no wait counts as a stall.
    """
    if direction.una is None:
        return []
    if direction.waiting is not None and direction.in_flight():
        direction.close_wait(sf.last_time, None)
    floor = max(STALL_MIN, STALL_RTT_FACTOR * direction.rtt.quantile(0.95))
    # Without a retransmission a wait of the minimum RTO may be a delayed ACK (Linux waits up to 200 ms): then
    # only twice the floor counts.
    return [
        stall
        for stall in direction.stalls
        if stall.end - stall.start >= (floor if stall.retransmissions else 2 * floor)
    ]
