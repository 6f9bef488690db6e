"""A reference MPTCP v1 endpoint (sans-IO) and a deterministic multipath network simulator.

* :class:`MptcpConnection` — one connection, client or server; see :mod:`.connection`.
* :func:`run` / :class:`SimConfig` — simulate a transfer over N paths and write a pcap (:mod:`.sim`).
* :data:`FAULTS` — traces that break exactly one rule of the catalogue (:mod:`.faults`).
"""

from analyzer.endpoint.config import EndpointConfig, LocalAddress, Misbehave, Role, SchedulerName, TcpTuning
from analyzer.endpoint.connection import MptcpConnection
from analyzer.endpoint.events import (
    AddressAnnounced,
    AddressRemoved,
    Connected,
    ConnectionClosed,
    DataReceived,
    EndOfStream,
    Event,
    FellBack,
    PriorityChanged,
    SubflowAdded,
    SubflowClosed,
)
from analyzer.endpoint.segment import RawOption, Segment, decode_packet, encode_packet

__all__ = [
    "AddressAnnounced",
    "AddressRemoved",
    "Connected",
    "ConnectionClosed",
    "DataReceived",
    "EndOfStream",
    "EndpointConfig",
    "Event",
    "FellBack",
    "LocalAddress",
    "Misbehave",
    "MptcpConnection",
    "PriorityChanged",
    "RawOption",
    "Role",
    "SchedulerName",
    "Segment",
    "SubflowAdded",
    "SubflowClosed",
    "TcpTuning",
    "decode_packet",
    "encode_packet",
]
