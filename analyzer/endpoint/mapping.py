"""Receive-side DSS mappings of one subflow (RFC 8684 §3.3.1): subflow bytes → data-level offsets.

Mappings arrive with segments, possibly before (or with) the bytes they cover; in-order subflow
bytes are then translated through them. A mapping may span several segments. With checksums, a
mapping's bytes are held until the whole mapping arrived and its checksum verified (§3.3.1).
Violations raise :class:`RemoteProtocolError` with the MP_TCPRST reason to reset the subflow with.
The mappings are kept in the protocol core's :class:`~analyzer.mptcp.mapindex.MappingIndex`, the
analyzer's mapper's structure too (sorted, bisect, bounded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from analyzer.endpoint.errors import RemoteProtocolError
from analyzer.mptcp.crypto import ChecksumAccumulator
from analyzer.mptcp.mapindex import MappingIndex

REASON_MPTCP = 0x01  # MP_TCPRST "MPTCP-specific error"
REASON_MIDDLEBOX = 0x06  # MP_TCPRST "middlebox interference" (checksum failure)
# Mappings kept per subflow direction for bytes not yet received in order. The receive window (4 MiB by
# default) in 1400-byte segments needs ~3,000; past the cap the oldest is dropped, and should its bytes
# still come, they are unmapped (a protocol error): a peer cannot grow the table without bound.
MAX_MAPPINGS = 8192


class ChecksumFailure(RemoteProtocolError):
    """A mapping's DSS checksum did not verify."""

    def __init__(self, dsn: int) -> None:
        super().__init__(f"DSS checksum failure on the mapping at DSN {dsn:#x}", REASON_MIDDLEBOX)
        self.dsn = dsn  # 64-bit DSN of the failed mapping, for MP_FAIL


@dataclass(slots=True)
class RecvMapping:
    ssn: int  # relative subflow sequence number of the first byte
    offset: int  # data-level offset of the first byte
    length: int  # payload bytes covered (data-level length without the DATA_FIN unit)
    data_len: int  # data-level length as on the wire (checksum pseudo-header)
    dsn: int  # full 64-bit DSN as on the wire (checksum pseudo-header)
    data_fin: bool
    checksum: int | None
    acc: ChecksumAccumulator | None = None
    held: list[tuple[int, bytes]] = field(default_factory=list)
    consumed: int = 0

    @property
    def start(self) -> int:
        return self.ssn

    @property
    def end(self) -> int:
        return self.ssn + self.length


@dataclass(slots=True)
class Delivery:
    """Data-level pieces that became available, and the DATA_FIN offset if one completed."""

    pieces: list[tuple[int, bytes]] = field(default_factory=list)
    fin_offset: int | None = None


class MappingTable:
    """The mappings of one subflow direction that still cover bytes not yet received in order."""

    def __init__(self, checksums: bool, cap: int = MAX_MAPPINGS) -> None:
        self.checksums = checksums
        self._mappings: MappingIndex[RecvMapping] = MappingIndex(cap)
        self.received = 1  # subflow bytes below this were already translated

    def add(self, mapping: RecvMapping) -> None:
        """Record a mapping; identical repeats are fine, conflicting ones are a protocol error."""
        if mapping.length == 0 or mapping.end <= self.received:
            return  # DATA_FIN-only, or a repeat of a mapping already used up
        if self.checksums != (mapping.checksum is not None):
            raise RemoteProtocolError("DSS checksum presence does not match the negotiation", REASON_MPTCP)
        kept, _evicted = self._mappings.add(mapping, _conflict_with(mapping))
        if kept is mapping and self.checksums:
            mapping.acc = ChecksumAccumulator()

    def consume(self, rel: int, data: bytes) -> Delivery:
        """Translate in-order subflow bytes starting at ``rel``."""
        out = Delivery()
        pos, end = rel, rel + len(data)
        while pos < end:
            mapping = self._mappings.covering(pos)
            if mapping is None:
                raise RemoteProtocolError(f"subflow byte {pos} is not covered by any DSS mapping", REASON_MPTCP)
            stop = min(end, mapping.end)
            piece = data[pos - rel : stop - rel]
            at = mapping.offset + (pos - mapping.ssn)
            mapping.consumed += len(piece)
            if mapping.acc is not None:
                mapping.acc.update(piece)
                mapping.held.append((at, piece))
            else:
                out.pieces.append((at, piece))
            if mapping.consumed >= mapping.length:
                self._complete(mapping, out)
            pos = stop
        self.received = max(self.received, end)
        return out

    def _complete(self, mapping: RecvMapping, out: Delivery) -> None:
        self._mappings.remove(mapping)
        if mapping.acc is not None:
            if not mapping.acc.verify(mapping.dsn, mapping.ssn, mapping.data_len, mapping.checksum or 0):
                raise ChecksumFailure(mapping.dsn)
            out.pieces.extend(mapping.held)
            mapping.held = []
        if mapping.data_fin:
            out.fin_offset = mapping.offset + mapping.length


def _conflict_with(mapping: RecvMapping) -> Callable[[RecvMapping], None]:
    def conflict(_old: RecvMapping) -> None:
        raise RemoteProtocolError(f"mapping at subflow byte {mapping.ssn} conflicts with an earlier one", REASON_MPTCP)

    return conflict
