"""Pieces of a byte stream that arrived ahead of a gap, waiting in offset order.

A data-level receiver (the endpoint's) and a data-level observer (the analyzer's stream) both hold the
pieces that came before the bytes in front of them, one piece per offset (the longer copy kept), and
release them lowest offset first once the gap closes. What happens to a released piece (delivered,
compared, a hole) is the caller's; this is only the ordered waiting room, with its byte count for
buffer caps and windows. Offsets are positions from the stream's first byte (they never wrap).
"""

from __future__ import annotations

import heapq
from typing import Generic, Protocol, TypeVar

__all__ = ["ReorderQueue", "Waiting"]


class Waiting(Protocol):
    """A piece as the queue sees it."""

    @property
    def offset(self) -> int: ...

    @property
    def length(self) -> int: ...


P = TypeVar("P", bound=Waiting)


class ReorderQueue(Generic[P]):
    """At most one piece per offset; ``first()`` and ``pop_first()`` in O(log n)."""

    __slots__ = ("_heap", "_pieces", "bytes")

    def __init__(self) -> None:
        self._heap: list[int] = []
        self._pieces: dict[int, P] = {}
        self.bytes = 0  # bytes waiting (for caps and advertised windows)

    def __len__(self) -> int:
        return len(self._pieces)

    def __bool__(self) -> bool:
        return bool(self._pieces)

    def get(self, offset: int) -> P | None:
        return self._pieces.get(offset)

    def put(self, piece: P) -> None:
        """Wait ``piece`` at its offset, replacing the one there (the caller chose which copy stays)."""
        old = self._pieces.get(piece.offset)
        if old is None:
            heapq.heappush(self._heap, piece.offset)
        else:
            self.bytes -= old.length
        self._pieces[piece.offset] = piece
        self.bytes += piece.length

    def first(self) -> int | None:
        """The lowest offset waiting."""
        return self._heap[0] if self._heap else None

    def pop_first(self) -> P:
        """Take the piece at the lowest offset (the queue must not be empty)."""
        piece = self._pieces.pop(heapq.heappop(self._heap))
        self.bytes -= piece.length
        return piece
