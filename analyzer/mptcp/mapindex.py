"""The DSS mappings of one subflow direction (RFC 8684 §3.3.1), sorted and bounded.

Both the analyzer's mapper and the endpoint's receive side keep, per subflow direction, the mappings
that turn subflow bytes into data-level positions. They need the same things: insert a mapping in
subflow order, tell an identical copy (retransmission, TSO split) from a conflicting one (it overlaps
with another subflow-to-data delta), find the mappings that cover a position by bisection, and stay
bounded. What a conflict *means* differs (the analyzer records a fact, the endpoint resets the
subflow), so the caller passes what to do with it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["MappingIndex", "Span"]

MASK64 = (1 << 64) - 1


class Span(Protocol):
    """A mapping as the index sees it: subflow range [start, end) mapped at the 64-bit DSN ``dsn``."""

    @property
    def start(self) -> int: ...  # subflow sequence number of the first byte, unwrapped (never wraps)

    @property
    def end(self) -> int: ...

    @property
    def dsn(self) -> int: ...  # data sequence number of ``start``


S = TypeVar("S", bound=Span)


class MappingIndex(Generic[S]):
    """Mappings sorted by subflow start (``starts`` mirrors them for bisect); at most ``cap`` kept."""

    __slots__ = ("cap", "items", "longest", "reach", "starts")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: list[S] = []
        self.starts: list[int] = []
        self.longest = 0  # longest mapping kept: bounds the search for earlier mappings reaching a position
        self.reach = 0  # highest end ever added: a mapping starting there overlaps nothing kept

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[S]:
        return iter(self.items)

    def add(self, mapping: S, conflict: Callable[[S], None] | None = None) -> tuple[S, S | None]:
        """Insert ``mapping``: (the mapping kept, the oldest one evicted past the cap or None).

        An identical mapping already there is kept instead (nothing changes). ``conflict`` is called with
        each overlapping mapping of another delta before ``mapping`` goes in.
        """
        items, starts = self.items, self.starts
        length = mapping.end - mapping.start
        if length > self.longest:
            self.longest = length
        if items:
            last = items[-1]
            if _same(last, mapping):
                return last, None  # identical copy of the newest mapping (the usual repeat)
        if not items or mapping.start >= self.reach:  # the usual case: the next mapping in order
            index = len(items)
        else:
            index = self._overlaps(mapping, conflict)
            if index < 0:
                return items[-index - 1], None
        items.insert(index, mapping)
        starts.insert(index, mapping.start)
        if mapping.end > self.reach:
            self.reach = mapping.end
        if len(items) <= self.cap:
            return mapping, None
        # Evict the oldest, but never the one just added: a retransmission far behind the newest data
        # carries its own (old) mapping and needs it for this very segment.
        victim = 1 if index == 0 else 0
        del starts[victim]
        return mapping, items.pop(victim)

    def _overlaps(self, mapping: S, conflict: Callable[[S], None] | None) -> int:
        """Insertion index for an out-of-order mapping, or -(index + 1) of an identical existing one."""
        items, starts = self.items, self.starts
        index = bisect_left(starts, mapping.start)
        low = index
        reach = mapping.start - self.longest  # earlier mappings reach this one only if they start this close
        while low > 0 and starts[low - 1] >= reach:
            low -= 1
        for position in range(low, len(items)):
            existing = items[position]
            if existing.start >= mapping.end:
                break
            if existing.end <= mapping.start:
                continue
            if _same(existing, mapping):
                return -position - 1
            if (
                conflict is not None
                and (existing.dsn - existing.start) & MASK64 != (mapping.dsn - mapping.start) & MASK64
            ):
                conflict(existing)
        return index

    def covering(self, position: int) -> S | None:
        """The earliest-starting mapping that covers subflow byte ``position``, if any."""
        starts = self.starts
        for index in range(bisect_right(starts, position - self.longest), bisect_right(starts, position)):
            mapping = self.items[index]
            if mapping.end > position:
                return mapping
        return None

    def remove(self, mapping: S) -> None:
        """Drop ``mapping`` (this very object) from the index."""
        index = bisect_left(self.starts, mapping.start)
        while self.items[index] is not mapping:
            index += 1
        del self.items[index]
        del self.starts[index]


def _same(a: Span, b: Span) -> bool:
    return a.start == b.start and a.dsn == b.dsn and a.end == b.end
