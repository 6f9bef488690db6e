"""What the end-of-pass stages contribute to the model, and the one place that writes it in.

Why: the reassembly, statistics and receive-window stages each learn per-subflow and per-connection values
that the report shows. They return them as frozen values keyed by subflow direction or connection; only
:func:`assemble` writes them into the :class:`~analyzer.model.Analysis`, so no stage writes into the model
and the order of the stages cannot change what the model holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from analyzer.model import Analysis, ChecksumFailure, HalfFlow, Stall, StreamSummary, WindowLimit


@dataclass(frozen=True, slots=True)
class HalfDelivery:
    """One subflow direction's bytes as the reassembly placed them."""

    new_bytes: int
    retransmitted_bytes: int
    reinjected_bytes: int
    unmapped_bytes: int
    mappings: int
    checksums: tuple[int, int, int]  # verified ok, bad, not verifiable


@dataclass(frozen=True, slots=True)
class Reassembled:
    """The reassembly stage's results: keyed by connection id and by ``Subflow.key(direction)``."""

    streams: dict[int, tuple[StreamSummary, StreamSummary]] = field(default_factory=dict)
    halves: dict[int, HalfDelivery] = field(default_factory=dict)
    checksum_failures: tuple[ChecksumFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class HalfTiming:
    """One subflow direction's timing at the capture point (analyzer.stats)."""

    rtt: dict[str, object] | None
    throughput: dict[int, int]
    stalls: list[Stall]
    rtt_series: list[tuple[float, float]]


@dataclass(frozen=True, slots=True)
class Timed:
    """The statistics stage's results: keyed by ``Subflow.key(direction)`` and by (connection id, side)."""

    halves: dict[int, HalfTiming] = field(default_factory=dict)
    data_ack_progress: dict[tuple[int, int], dict[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WindowLimits:
    """The receive-window stage's results: connection id -> its limited data sides, by side."""

    by_connection: dict[int, list[WindowLimit]] = field(default_factory=dict)


Contribution = Reassembled | Timed | WindowLimits


def assemble(analysis: Analysis, contributions: list[Contribution]) -> None:
    """Write the stages' results into the model (before the rule families' end-of-trace checks read it)."""
    for part in contributions:
        if isinstance(part, Reassembled):
            _reassembled(analysis, part)
        elif isinstance(part, Timed):
            _timed(analysis, part)
        else:
            _window_limits(analysis, part)


def _halves(analysis: Analysis) -> Iterator[tuple[int, HalfFlow]]:
    """Every reported subflow direction with its ``Subflow.key(direction)``."""
    for conn in analysis.connections:
        for sf in conn.subflows:
            for direction in (0, 1):
                yield sf.key(direction), sf.halves[direction]


def _reassembled(analysis: Analysis, part: Reassembled) -> None:
    analysis.streams.update(part.streams)
    analysis.checksum_failures.extend(part.checksum_failures)
    for key, half in _halves(analysis):
        if (got := part.halves.get(key)) is not None:
            half.new_bytes, half.retransmitted_bytes = got.new_bytes, got.retransmitted_bytes
            half.reinjected_bytes, half.unmapped_bytes = got.reinjected_bytes, got.unmapped_bytes
            half.mappings, half.checksums = got.mappings, got.checksums


def _timed(analysis: Analysis, part: Timed) -> None:
    for key, half in _halves(analysis):
        if (got := part.halves.get(key)) is not None:
            half.rtt, half.throughput = got.rtt, got.throughput
            half.stalls, half.rtt_series = got.stalls, got.rtt_series
    for conn in analysis.connections:
        for side in (0, 1):
            progress = part.data_ack_progress.get((conn.id, side)) if conn.id is not None else None
            if progress is not None:
                conn.data_ack_progress[side] = progress


def _window_limits(analysis: Analysis, part: WindowLimits) -> None:
    for conn in analysis.connections:
        if conn.id is not None and conn.id in part.by_connection:
            conn.window_limits.extend(part.by_connection[conn.id])
            conn.window_limits.sort(key=lambda w: w.side)
