"""What a comparison of two captures found: matched connections, subflows, per-direction numbers, effects.

Capture A and capture B are two vantage points of the same traffic. "a_to_b" is the direction of a
subflow whose packets pass A's vantage point first (decided from the timestamps of matched packets).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from analyzer.compare.packets import DirectionWork

MAX_EFFECT_FRAMES = 50  # frames listed per middlebox effect (the count says how many there were)


@dataclass(slots=True)
class Effect:
    """One middlebox effect, proven by frames on both sides."""

    effect: str  # "option_stripped" | "option_altered" | "address_rewritten" | "sequence_rewritten" | ...
    detail: str
    frames_a: list[int] = field(default_factory=list)
    frames_b: list[int] = field(default_factory=list)
    count: int = 0  # instances (frames_a/frames_b list the first MAX_EFFECT_FRAMES)

    def add(self, frames_a: list[int], frames_b: list[int]) -> None:
        self.count += 1
        room_a = MAX_EFFECT_FRAMES - len(self.frames_a)
        room_b = MAX_EFFECT_FRAMES - len(self.frames_b)
        self.frames_a.extend(frames_a[: max(room_a, 0)])
        self.frames_b.extend(frames_b[: max(room_b, 0)])

    def to_json(self) -> dict[str, object]:
        return {
            "effect": self.effect,
            "frames_a": self.frames_a,
            "frames_b": self.frames_b,
            "detail": self.detail,
            "count": self.count,
        }


@dataclass(slots=True)
class DirectionStats:
    """One direction of a matched subflow, seen from its upstream (sender-side) and downstream capture."""

    packets: int = 0  # packets the upstream capture saw in this direction
    matched: int = 0  # of those, found again downstream
    lost: int = 0  # seen upstream, never downstream, while the downstream capture ran
    reordered: int = 0  # arrived downstream after a packet sent later
    unmatched_downstream: int = 0  # seen downstream only (injected, or sent before the upstream capture began)
    lost_frames: list[int] = field(default_factory=list)  # upstream frames of lost packets
    owd_ms: dict[str, float | None] = field(
        default_factory=lambda: {"min": None, "median": None, "p95": None, "max": None}
    )
    # (upstream send time in A's clock, one-way delay in s) per matched packet, in send order: ``plot --kind owd``
    # (not in the JSON: owd_ms summarises it)
    owd_series: list[tuple[float, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "packets": self.packets,
            "lost": self.lost,
            "reordered": self.reordered,
            "owd_ms": self.owd_ms,
            "matched": self.matched,
            "unmatched_downstream": self.unmatched_downstream,
            "lost_frames": self.lost_frames,
        }


@dataclass(slots=True)
class SubflowDetail:
    """The packets behind a matched subflow's numbers, kept only when asked (the split view reads them).

    ``works`` are the two directions in A's roles (c2s, s2c) with their pairs and related leftovers;
    ``lost`` the upstream frames counted lost per direction; ``marks_a``/``marks_b`` every effect label
    per frame (uncapped, unlike :class:`Effect`'s frame lists).
    """

    works: tuple[DirectionWork, DirectionWork]
    lost: tuple[frozenset[int], frozenset[int]]
    marks_a: dict[int, list[str]]
    marks_b: dict[int, list[str]]
    offset: float  # the clock offset the delays were corrected by (0 when unknown)
    first_ts_a: float  # each capture's first timestamp, for relative times
    first_ts_b: float


@dataclass(slots=True)
class SubflowMatch:
    a: int  # subflow id in A's report
    b: int | None
    a_endpoints: str = ""  # "client → server" as A saw it
    b_endpoints: str = ""
    a_is_client_side: bool | None = None  # does the subflow's c2s direction go from A towards B?
    a_to_b: DirectionStats = field(default_factory=DirectionStats)
    b_to_a: DirectionStats = field(default_factory=DirectionStats)
    middlebox: list[Effect] = field(default_factory=list)
    detail: SubflowDetail | None = None  # packets, with compare(..., keep_packets=True); never in JSON

    def to_json(self) -> dict[str, object]:
        return {
            "a": self.a,
            "b": self.b,
            "a_to_b": self.a_to_b.to_json(),
            "b_to_a": self.b_to_a.to_json(),
            "middlebox": [effect.to_json() for effect in self.middlebox],
            "a_endpoints": self.a_endpoints,
            "b_endpoints": self.b_endpoints,
            "a_to_b_is": None if self.a_is_client_side is None else ("c2s" if self.a_is_client_side else "s2c"),
        }


@dataclass(slots=True)
class ConnectionMatch:
    a: int | None  # connection id in A's report (None: a plain TCP flow of A)
    b: int | None
    match: str  # "token" | "keys" | "tuple" | "dsn"
    subflows: list[SubflowMatch] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "a": self.a,
            "b": self.b,
            "match": self.match,
            "subflows": [sf.to_json() for sf in self.subflows],
        }


@dataclass(slots=True)
class Comparison:
    path_a: str
    path_b: str
    clock_offset_s: float | None  # B's clock minus A's clock, from the minimum delays of both directions
    connections: list[ConnectionMatch] = field(default_factory=list)
    unmatched_b: list[int] = field(default_factory=list)  # B's MPTCP connections nothing in A matched
    errors: list[str] = field(default_factory=list)
    indexed_packets: int = 0  # packet records kept in memory (matched subflows only)
