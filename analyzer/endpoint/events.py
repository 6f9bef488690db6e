"""Events the endpoint reports to its application (pulled with ``next_event()``).

Small immutable values, one per thing that happened; fields say what, never how.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.endpoint.segment import Address


@dataclass(frozen=True, slots=True)
class Connected:
    """The connection can carry data (MP_CAPABLE handshake done, or plain TCP after a fallback)."""

    mptcp: bool  # False when the connection fell back to plain TCP during the handshake


@dataclass(frozen=True, slots=True)
class FellBack:
    """The connection continues as plain TCP (RFC 8684 §3.7)."""

    reason: str


@dataclass(frozen=True, slots=True)
class SubflowAdded:
    """A subflow completed its handshake (the initial one or an MP_JOIN)."""

    subflow_id: int
    local: Address
    local_port: int
    remote: Address
    remote_port: int
    join: bool  # opened with MP_JOIN
    backup: bool  # backup priority requested by either side at the handshake


@dataclass(frozen=True, slots=True)
class SubflowClosed:
    """A subflow ended (FIN exchange, reset sent or received, or given up after retransmissions)."""

    subflow_id: int
    reason: str  # "fin" | "reset-received" | "reset-sent" | "timeout" | "hmac" | ...
    reset_reason: int | None = None  # MP_TCPRST reason code, when one was sent or received


@dataclass(frozen=True, slots=True)
class DataReceived:
    """In-order connection-level data."""

    data: bytes


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The peer's DATA_FIN (or, after fallback, its FIN) arrived: it will send no more data."""


@dataclass(frozen=True, slots=True)
class AddressAnnounced:
    """The peer announced an address with ADD_ADDR whose HMAC verified."""

    address_id: int
    address: Address
    port: int | None


@dataclass(frozen=True, slots=True)
class AddressRemoved:
    """The peer withdrew an address with REMOVE_ADDR."""

    address_id: int
    known: bool  # False when the ID was never announced or used


@dataclass(frozen=True, slots=True)
class PriorityChanged:
    """The peer changed a subflow's priority with MP_PRIO."""

    subflow_id: int
    backup: bool


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The connection is over: "closed" (both DATA_FINs acknowledged), "fastclose", "reset" or "failed"."""

    reason: str


Event = (
    Connected | FellBack | SubflowAdded | SubflowClosed | DataReceived | EndOfStream | AddressAnnounced
    | AddressRemoved | PriorityChanged | ConnectionClosed
)  # fmt: skip
