"""Every resource bound of the analysis, in one place, with its default and why.

Captures are untrusted input: a damaged or hostile file must not make memory or time grow without
bound. Each stage reads its bounds from one frozen :class:`Limits` handed to ``analyze()``; when a
bound is hit the analysis goes on with what it holds and says so (a ``LIMIT-001`` warning and a
trace error naming the limit), never silently.

Bounds that follow from the wire format itself are fixed, not configurable: a TCP option list is at
most 40 bytes and the walker advances at least one byte per step; an MPTCP option length is one
byte; the decoder follows at most 4 VLAN tags and 12 IPv6 extension headers; a connection keeps at
most 200 notes (``Connection.MAX_EVENTS``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource bounds of one analysis; ``Limits()`` are the defaults (see SECURITY.md)."""

    # Capture reader: a record (pcap caplen, pcapng packet block) larger than this is corruption; reading stops.
    max_record_bytes: int = 1 << 20
    # Capture reader: a pcapng block larger than this is corruption (interface blocks are small).
    max_block_bytes: int = 1 << 24
    # Capture reader: per-record problems listed (counting goes on).
    max_capture_errors: int = 100
    # Tracker: TCP flows (subflows and plain TCP connections) tracked; later new flows are counted, not analysed.
    max_flows: int = 400_000
    # Tracker: MPTCP connections tracked; once reached, no new flow is tracked (already tracked ones go on).
    max_connections: int = 200_000
    # Tracker: flows that saw only their SYN so far. Beyond this, the oldest half-open flow is summarised
    # (counted, its state dropped): a SYN flood costs bounded memory.
    max_half_open: int = 10_000
    # Pipeline: segments of one MPTCP subflow not grouped yet (a join whose token is unknown so far, a subflow
    # captured without its handshake) held back from the later stages and replayed once it is grouped, so it
    # gets every per-segment rule. Past it a handshake-less subflow is grouped at once; a join is passed on
    # ungrouped (those of its segments see no connection-level rule).
    max_ungrouped_segments: int = 1024
    # Pipeline: bytes of captured packets held that way, over all subflows.
    max_ungrouped_bytes: int = 16 << 20
    # Reassembly: out-of-order bytes buffered per data stream before the gap in front is declared a hole.
    max_out_of_order_bytes: int = 64 << 20
    # Reassembly: out-of-order pieces buffered per data stream (tiny segments cost more than their bytes).
    max_out_of_order_pieces: int = 1 << 16
    # Reassembly: recent DSS mappings kept per subflow direction.
    max_mappings: int = 256
    # Findings: occurrences of one rule kept; the rest are counted as suppressed.
    max_findings_per_rule: int = 1000

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"limit {item.name} must be a positive integer, got {value!r}")

    @classmethod
    def names(cls) -> list[str]:
        return [item.name for item in dataclasses.fields(cls)]

    def replace(self, **changes: int) -> Limits:
        return dataclasses.replace(self, **changes)

    @classmethod
    def parse(cls, assignments: list[str], base: Limits | None = None) -> Limits:
        """``["max_flows=1000", ...]`` → Limits; unknown names and bad values raise ValueError."""
        changes: dict[str, int] = {}
        known = set(cls.names())
        for text in assignments:
            name, sep, value = text.partition("=")
            name = name.strip().replace("-", "_")
            if not sep or name not in known:
                raise ValueError(f"unknown limit {text!r}; known: {', '.join(sorted(known))}")
            try:
                changes[name] = int(value.strip().replace("_", ""), 0)
            except ValueError:
                raise ValueError(f"limit {name} needs an integer, got {value.strip()!r}") from None
        return (base or cls()).replace(**changes)


DEFAULT_LIMITS = Limits()


def limit_message(name: str, value: int, what: str) -> str:
    """The one wording used for every limit hit, so users can grep for the limit's name."""
    return f"limit {name}={value} reached: {what} (raise it with --limit {name}=N)"
