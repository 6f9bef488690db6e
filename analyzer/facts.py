"""Facts: what an observing stage saw, published once for the rule families to judge.

The tracker groups packets and learns keys, tokens and HMACs; it never decides which rule a thing
breaks. It publishes a fact instead (a malformed option, a key that changed, a fallback and why, a
join HMAC with the value it should have had) and the checker hands each fact to the families that
subscribed to its type. A rule id is therefore emitted in exactly one place: its family's module.

Facts are frozen; they name frames and the model objects (subflow, connection) they are about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from analyzer.model import Announcement, Connection, Subflow
from analyzer.mptcp.options import MalformedOption


@dataclass(frozen=True, slots=True)
class Fact:
    """Base: the frames that show it and the subflow it was seen on (None for connection-wide facts)."""

    frames: tuple[int, ...]
    subflow: Subflow | None


@dataclass(frozen=True, slots=True)
class OptionListMalformed(Fact):
    """The TCP option list itself could not be walked to its end."""

    reason: str


@dataclass(frozen=True, slots=True)
class OptionMalformed(Fact):
    """An MPTCP option whose length or fields do not fit its subtype (``option.subtype`` None: no subtype byte)."""

    option: MalformedOption
    subtype_name: str

    def describe(self) -> str:
        raw = self.option.raw
        return f"malformed {self.subtype_name} option ({len(raw)} bytes {raw.hex()}): {self.option.reason}"


@dataclass(frozen=True, slots=True)
class OptionUnassigned(Fact):
    """An MPTCP option with a subtype RFC 8684 does not assign."""

    subtype: int


@dataclass(frozen=True, slots=True)
class OptionExperimental(Fact):
    """MP_EXPERIMENTAL (subtype 0xf, private use)."""


@dataclass(frozen=True, slots=True)
class KeyEchoMismatch(Fact):
    """The client's third ACK echoed a server key other than the one the SYN/ACK carried."""

    echoed: int
    known: int
    known_frame: int | None


@dataclass(frozen=True, slots=True)
class KeyChanged(Fact):
    """A host's key, once learnt, appeared with another value (``side`` is the connection side)."""

    side: int
    old: int
    new: int
    old_frame: int | None
    version: int | None


@dataclass(frozen=True, slots=True)
class FastcloseKeyMismatch(Fact):
    """MP_FASTCLOSE carried a key other than the receiver's."""

    carried: int
    receiver_key: int
    sender_key: int | None


@dataclass(frozen=True, slots=True)
class FellBack(Fact):
    """The connection fell back to TCP: the SYN/ACK refused MPTCP, an infinite mapping, or data without DSS."""

    cause: Literal["synack", "infinite-mapping", "no-dss"]  # as Connection.fallback_cause
    reason: str


@dataclass(frozen=True, slots=True)
class JoinSynAckHmacChecked(Fact):
    """A join SYN/ACK's truncated (64-bit) HMAC and the value the keys and nonces give."""

    seen: int
    expected: int


@dataclass(frozen=True, slots=True)
class JoinAckHmacChecked(Fact):
    """A join third ACK's 160-bit HMAC and the value the keys and nonces give."""

    seen: bytes
    expected: bytes


@dataclass(frozen=True, slots=True)
class AddAddrHmacChecked(Fact):
    """An ADD_ADDR's HMAC and the value the two keys give; ``subflow`` is None, the announcement names it."""

    connection: Connection
    announcement: Announcement
    sender_key: int
    receiver_key: int
    expected: int

    @property
    def ok(self) -> bool:
        return self.announcement.hmac == self.expected


@dataclass(frozen=True, slots=True)
class MappingsConflict(Fact):
    """One subflow byte mapped to two data sequence numbers by two mappings (reassembly)."""

    subflow_byte: int  # relative subflow sequence number, 32 bits
    first_dsn: int
    first_frame: int
    second_dsn: int
    second_frame: int


@dataclass(frozen=True, slots=True)
class ChecksumFailed(Fact):
    """A mapping whose DSS checksum does not verify over its captured bytes, and the receiver's answer."""

    checksum: int
    dsn: int
    ssn: int
    data_len: int
    length: int  # payload bytes summed
    mp_fail_frame: int | None  # the receiver's MP_FAIL that names this mapping, if captured
    on_rst: bool  # that MP_FAIL rode on a RST (the subflow was reset) rather than an ACK (fallback)


@dataclass(frozen=True, slots=True)
class StreamConflict(Fact):
    """A data-level range carried twice with different bytes (``subflow`` None: ``subflow_id`` names it)."""

    connection: Connection
    side: int
    offset: int  # stream offset
    subflow_id: int


@dataclass(frozen=True, slots=True)
class DataFinMoved(Fact):
    """A host's DATA_FIN seen at two different data sequence numbers (stream offsets)."""

    connection: Connection
    side: int
    offset: int
    other: int


@dataclass(frozen=True, slots=True)
class UnmappedBytes(Fact):
    """Payload bytes of an MPTCP subflow direction that no DSS mapping covers."""

    direction: int  # subflow direction of the sender
    count: int
    after_gap: bool = False  # some of them followed bytes the capture lost (the mapping may have been there)
    ended: bool = True  # the subflow's end is in the capture (a mapping may follow the bytes it covers)


@dataclass(frozen=True, slots=True)
class Reinjected(Fact):
    """Bytes a subflow carried that another subflow had carried first."""

    count: int


FactLog = list[Fact]
