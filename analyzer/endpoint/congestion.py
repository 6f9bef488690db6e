"""Round-trip time estimation (RFC 6298) and NewReno congestion control (RFC 5681, RFC 6582).

Per subflow; uncoupled, like Linux's default. Windows are in bytes, times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RttEstimator:
    """SRTT/RTTVAR and the retransmission timeout with exponential back-off."""

    initial_rto: float
    min_rto: float
    max_rto: float
    srtt: float | None = None
    rttvar: float = 0.0
    rto: float = 0.0
    backoff: int = 0  # timeouts in a row

    def __post_init__(self) -> None:
        self.rto = self.initial_rto

    def sample(self, rtt: float) -> None:
        """A new measurement (never from a retransmitted segment: Karn's algorithm)."""
        if self.srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = min(self.max_rto, max(self.min_rto, self.srtt + max(0.001, 4 * self.rttvar)))

    @property
    def current(self) -> float:
        """The timeout to arm now, backed off by 2^timeouts."""
        return min(self.max_rto, self.rto * (1 << self.backoff))

    def on_timeout(self) -> None:
        self.backoff += 1

    def on_progress(self) -> None:
        self.backoff = 0

    @property
    def smoothed(self) -> float:
        """SRTT, or the initial RTO before any sample (for the scheduler)."""
        return self.srtt if self.srtt is not None else self.initial_rto


@dataclass(slots=True)
class NewReno:
    """Slow start, congestion avoidance, fast retransmit / fast recovery with partial ACKs."""

    mss: int
    cwnd: int = 0
    ssthresh: int = 1 << 30
    in_recovery: bool = False
    recover: int = 0  # highest sequence sent when recovery started (RFC 6582)
    _acked_in_ca: int = 0

    def start(self, initial_segments: int) -> None:
        self.cwnd = initial_segments * self.mss

    def on_ack(self, acked: int, ack: int) -> bool:
        """New data acknowledged; returns True if a partial ACK asks to retransmit the next segment."""
        if self.in_recovery:
            if ack >= self.recover:
                self.in_recovery = False
                self.cwnd = self.ssthresh
                return False
            self.cwnd = max(self.mss, self.cwnd - acked + self.mss)  # deflate, then inflate by one
            return True
        if self.cwnd < self.ssthresh:
            self.cwnd += min(acked, self.mss)
        else:
            self._acked_in_ca += acked
            if self._acked_in_ca >= self.cwnd:
                self._acked_in_ca -= self.cwnd
                self.cwnd += self.mss
        return False

    def on_dupack(self, dupacks: int, flight: int, highest_sent: int, threshold: int) -> bool:
        """A duplicate ACK; returns True when it triggers a fast retransmit."""
        if self.in_recovery:
            self.cwnd += self.mss
            return False
        if dupacks == threshold:
            self.ssthresh = max(flight // 2, 2 * self.mss)
            self.cwnd = self.ssthresh + threshold * self.mss
            self.in_recovery = True
            self.recover = highest_sent
            return True
        return False

    def on_timeout(self, flight: int) -> None:
        self.ssthresh = max(flight // 2, 2 * self.mss)
        self.cwnd = self.mss
        self.in_recovery = False
