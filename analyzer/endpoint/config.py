"""Configuration of one endpoint: addresses, MPTCP options, TCP tuning, and deliberate misbehaviour.

Everything an endpoint does differently from the defaults is set here, never by poking private
attributes (tests and the simulator build one of these per side).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from analyzer.endpoint.segment import Address


class Role(enum.Enum):
    CLIENT = "client"  # opens the connection (host A of RFC 8684)
    SERVER = "server"  # passive side (host B)


class SchedulerName(enum.Enum):
    LOWEST_RTT = "lowest-rtt"
    ROUND_ROBIN = "round-robin"
    BACKUP_AWARE = "backup-aware"


class Misbehave(enum.Enum):
    """Deliberate protocol violations, one per fault (see :mod:`analyzer.endpoint.faults`).

    Each fires once (unless said otherwise); the rest of the endpoint stays correct.
    """

    BAD_JOIN_SYNACK_HMAC = "bad-join-synack-hmac"  # responder: wrong truncated HMAC in the SYN/ACK
    BAD_JOIN_ACK_HMAC = "bad-join-ack-hmac"  # initiator: wrong HMAC in the third ACK
    BAD_ADD_ADDR_HMAC = "bad-add-addr-hmac"  # announcer: wrong ADD_ADDR HMAC (every retransmission)
    BAD_DSS_CHECKSUM = "bad-dss-checksum"  # sender: one mapping on a join subflow with a wrong checksum
    CONFLICTING_MAPPING = "conflicting-mapping"  # sender: a DSS re-mapping sent bytes to another DSN
    REINJECT_DIFFERENT_BYTES = "reinject-different-bytes"  # sender: reinjects acked data with other bytes
    DATA_ACK_BEYOND = "data-ack-beyond"  # receiver: one Data ACK above anything the peer sent
    DATA_ACK_BACKWARDS = "data-ack-backwards"  # receiver: one Data ACK below the previous one
    WRONG_KEY_ECHO = "wrong-key-echo"  # client: third ACK echoes a wrong server key
    MISSING_MAPPING = "missing-mapping"  # sender: one data segment on a join subflow without a mapping
    DUPLICATE_ADDRESS_ID = "duplicate-address-id"  # client: two local addresses share one address ID
    REMOVE_UNKNOWN_ID = "remove-unknown-id"  # REMOVE_ADDR for an ID never announced or used
    FASTCLOSE_WRONG_KEY = "fastclose-wrong-key"  # MP_FASTCLOSE carrying the sender's own key
    BAD_DSS_LENGTH = "bad-dss-length"  # one DSS whose length byte disagrees with its flags
    BAD_OPTION_LENGTH = "bad-option-length"  # one REMOVE_ADDR of length 3 (no address ID)


@dataclass(frozen=True, slots=True)
class LocalAddress:
    """An address of this host that the path manager may use, with its MPTCP address ID."""

    address: Address
    address_id: int
    backup: bool = False  # open subflows from this address as backup (MP_JOIN B bit)
    mtu: int = 1500


@dataclass(slots=True)
class TcpTuning:
    """Subflow TCP parameters (RFC 6298 timers, RFC 5681 congestion control)."""

    initial_rto: float = 1.0
    min_rto: float = 0.2  # Linux TCP_RTO_MIN
    max_rto: float = 60.0
    max_retries: int = 6  # retransmission timeouts in a row before the subflow gives up
    initial_window: int = 10  # segments (RFC 6928)
    dupack_threshold: int = 3
    time_wait: float = 1.0  # shorter than 2*MSL: simulated runs end sooner
    syn_retries_before_fallback: int = 2  # SYNs with MP_CAPABLE before retrying without (Linux)
    timestamps: bool = True  # offer RFC 7323 timestamps (Linux does)


@dataclass(slots=True)
class EndpointConfig:
    """One side of a connection."""

    role: Role
    addresses: list[LocalAddress]  # the first is the primary address (address ID 0 by convention)
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    mptcp: bool = True  # False: a plain TCP host that ignores MP_CAPABLE
    checksum: bool = False  # ask for DSS checksums (A bit)
    port: int = 5201  # the server's listening port; the client picks ephemeral ports from rng
    key: int | None = None  # MPTCP key (drawn from rng when None)
    receive_buffer: int = 4 << 20  # connection-level receive buffer (bytes)
    window_scale: int = 7
    scheduler: SchedulerName = SchedulerName.LOWEST_RTT
    announce: list[LocalAddress] = field(default_factory=list)  # server: addresses to ADD_ADDR
    join_announced: bool = True  # client: open a subflow to each address the peer announces
    max_subflows: int = 8
    add_addr_timeout: float = 1.0  # resend an unechoed ADD_ADDR after this long (Linux: 120 s)
    add_addr_retries: int = 3
    tcp: TcpTuning = field(default_factory=TcpTuning)
    misbehave: frozenset[Misbehave] = frozenset()

    @property
    def primary(self) -> LocalAddress:
        return self.addresses[0]
