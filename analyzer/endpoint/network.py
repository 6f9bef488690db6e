"""Simulated links: rate, delay, jitter, loss, reordering, MTU, drop-tail queue, outages.

A :class:`Link` is one direction of a path. It decides, from its own seeded ``random.Random``,
when a packet handed to it arrives at the far end, or that it is lost. Nothing here knows about
TCP; the simulator moves bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """Properties of one path (both directions get the same)."""

    rate: float = 100e6  # bits per second
    delay: float = 0.010  # one-way propagation delay, seconds
    jitter: float = 0.0  # extra delay drawn uniformly from [0, jitter] per packet (may reorder)
    loss: float = 0.0  # probability that a packet is lost
    reorder: float = 0.0  # probability that a packet is held back by reorder_delay
    reorder_delay: float = 0.004
    mtu: int = 1500
    queue: int = 256  # packets the sender-side queue holds (drop-tail)
    outages: tuple[tuple[float, float | None], ...] = ()  # (down at, up at or None) in seconds


@dataclass(slots=True)
class Transit:
    """What happened to one packet on a link."""

    tap_time: float | None  # when it passed the middle of the link (None: never got there)
    arrival: float | None  # when it reaches the far end (None: lost)
    reason: str | None = None  # why it was dropped


@dataclass(slots=True)
class Link:
    spec: LinkSpec
    rng: random.Random
    busy_until: float = 0.0
    forced_down: bool = False  # set by scenario actions
    queued: list[float] = field(default_factory=list)  # departure times of packets still queued
    sent: int = 0
    dropped: int = 0

    def up(self, now: float) -> bool:
        if self.forced_down:
            return False
        return not any(start <= now and (end is None or now < end) for start, end in self.spec.outages)

    def transmit(self, size: int, now: float) -> Transit:
        """Hand a packet of ``size`` bytes to the link at ``now``."""
        spec = self.spec
        self.sent += 1
        # Random draws happen for every packet in the same order, so one seed gives one trace.
        lost = self.rng.random() < spec.loss
        jitter = self.rng.random() * spec.jitter if spec.jitter else 0.0
        held = spec.reorder_delay if spec.reorder and self.rng.random() < spec.reorder else 0.0
        if not self.up(now):
            return self._drop("link down")
        if size > spec.mtu:
            return self._drop("larger than the MTU")
        self.queued = [t for t in self.queued if t > now]
        if len(self.queued) >= spec.queue:
            return self._drop("queue full")
        start = max(now, self.busy_until)
        departure = start + size * 8 / spec.rate
        self.busy_until = departure
        self.queued.append(departure)
        tap = departure + spec.delay / 2
        if lost:
            self.dropped += 1
            return Transit(tap, None, "loss")
        return Transit(tap, departure + spec.delay + jitter + held)

    def _drop(self, reason: str) -> Transit:
        self.dropped += 1
        return Transit(None, None, reason)
