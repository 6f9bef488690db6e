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

from analyzer.ingest.decode import TH_SYN, Segment
from analyzer.model import Analysis, Subflow
from analyzer.mptcp.options import Dss
from analyzer.seqnum import expand32

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
BUCKET = 0.1  # seconds
MAX_OUTSTANDING = 4096  # unacknowledged segments remembered per direction for RTT samples
SRTT_GAIN = 1 / 8  # RFC 6298
# RTT quantiles come from a log-scale histogram: bounded memory per direction, each bucket 2 % wide.
RTT_BUCKET_RATIO = 1.02
_LOG_RATIO = math.log(RTT_BUCKET_RATIO)
_MIN_RTT = 1e-6  # samples below 1 µs share the first bucket


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


@dataclass(slots=True)
class _Direction:
    outstanding: deque[tuple[int, float]] = field(default_factory=deque)  # (seq end, time sent)
    highest_end: int | None = None  # highest sequence end sent (32-bit), to recognise retransmissions
    rtt: RttEstimate = field(default_factory=RttEstimate)
    wire: dict[int, int] = field(default_factory=dict)  # bucket -> payload bytes sent


class StatsCollector:
    """Pipeline observer: RTT, throughput and Data ACK timelines (see the module docstring)."""

    def __init__(self) -> None:
        self.directions: dict[int, _Direction] = {}  # subflow id * 2 + direction
        self.data_acks: dict[tuple[int, int], dict[int, int]] = {}  # (id(conn), acking side) -> bucket -> ack
        self._ack_refs: dict[tuple[int, int], int] = {}
        self._last_raw: dict[tuple[int, int], int] = {}

    def forget(self, sf: Subflow) -> None:
        """The tracker summarised this (half-open) subflow."""
        self.directions.pop(sf.id * 2, None)
        self.directions.pop(sf.id * 2 + 1, None)

    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        bucket = int(seg.ts / BUCKET)
        length = seg.payload_len
        if length and not seg.flags & TH_SYN:
            # Only a direction that sends data needs state (acks and SYNs of a half-open flood cost nothing).
            key = sf.id * 2 + direction
            mine = self.directions.get(key)
            if mine is None:
                mine = self.directions[key] = _Direction()
            mine.wire[bucket] = mine.wire.get(bucket, 0) + length
            end = (seg.seq + length) & MASK32
            if mine.highest_end is None or ((end - mine.highest_end) & MASK32) < (1 << 31):
                if mine.highest_end != end:
                    mine.outstanding.append((end, seg.ts))
                    if len(mine.outstanding) > MAX_OUTSTANDING:
                        mine.outstanding.popleft()
                mine.highest_end = end
            else:  # retransmission: Karn's rule drops the samples it could spoil
                mine.outstanding.clear()
        peer = self.directions.get(sf.id * 2 + (1 - direction))
        if peer is not None and peer.outstanding:
            ack = seg.ack
            sample_time = None
            queue = peer.outstanding
            while queue and ((ack - queue[0][0]) & MASK32) < (1 << 31):
                sample_time = queue.popleft()[1]
            if sample_time is not None:
                peer.rtt.add(seg.ts - sample_time)
        conn = sf.connection
        if conn is not None and seg.options is not None:
            for opt in seg.options.mptcp:
                if type(opt) is Dss and opt.data_ack is not None:
                    self._data_ack(conn, direction ^ sf.reversed, opt, bucket)

    def _data_ack(self, conn: object, side: int, dss: Dss, bucket: int) -> None:
        key = (id(conn), side)
        assert dss.data_ack is not None
        raw = dss.data_ack | (dss.ack64 << 64)
        if self._last_raw.get(key) == raw:
            return  # repeated Data ACK: the series already holds it
        self._last_raw[key] = raw
        if dss.ack64:
            value = dss.data_ack
        else:
            reference = self._ack_refs.get(key)
            if reference is None:
                peer_idsn = conn.sides[1 - side].idsn  # type: ignore[attr-defined]
                if peer_idsn is None:
                    return
                reference = (peer_idsn + 1) & MASK64
            value = expand32(dss.data_ack, reference)
        self._ack_refs[key] = value
        series = self.data_acks.get(key)
        if series is None:
            series = self.data_acks[key] = {}
        series[bucket] = value

    def finish(self, analysis: Analysis) -> None:
        for conn in analysis.connections:
            for sf in conn.subflows:
                for direction in (0, 1):
                    mine = self.directions.get(sf.id * 2 + direction)
                    if mine is not None:
                        half = sf.halves[direction]
                        half.rtt = mine.rtt.to_json()
                        half.throughput = mine.wire
            for side in (0, 1):
                series = self.data_acks.get((id(conn), side))
                idsn = conn.sides[1 - side].idsn
                if series and idsn is not None:
                    base = (idsn + 1) & MASK64
                    conn.data_ack_progress[side] = {b: (v - base) & MASK64 for b, v in series.items()}


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
