"""Fault injection: traces that break exactly one rule of the catalogue (shared/mptcp-rules.md).

Each fault names the endpoint that misbehaves (through :class:`~analyzer.endpoint.config.Misbehave`)
and the network setup it needs; the peer stays a correct implementation and reacts as RFC 8684 and
Linux do (resets a join with a bad HMAC, ignores a Data ACK beyond what it sent, drops an ADD_ADDR
whose HMAC is wrong, resets a subflow whose mapping is missing or whose checksum fails, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from analyzer.endpoint.config import Misbehave, Role, SchedulerName
from analyzer.endpoint.network import LinkSpec
from analyzer.endpoint.sim import SimConfig

BASE_PATHS = [LinkSpec(rate=8e6, delay=0.010), LinkSpec(rate=8e6, delay=0.020)]


@dataclass(frozen=True, slots=True)
class Fault:
    name: str
    rule: str  # the catalogue rule the trace violates
    side: Role  # the endpoint that misbehaves
    description: str
    setup: Callable[[SimConfig], SimConfig] = lambda cfg: cfg

    @property
    def misbehave(self) -> Misbehave:
        return Misbehave(self.name)


def _announce(cfg: SimConfig) -> SimConfig:
    return replace(cfg, client_joins=False, server_announces=True)


def _checksums(cfg: SimConfig) -> SimConfig:
    return replace(cfg, checksum=True)


def _backup_join(cfg: SimConfig) -> SimConfig:
    # The bogus Data ACK goes on a backup join that carries no data afterwards (so no Data ACK on it
    # moves back: DACK-002), and the client ends with MP_FASTCLOSE instead of a DATA_FIN (an ACK beyond
    # the DATA_FIN would be DACK-006 instead).
    return replace(cfg, backup_paths=frozenset({2}), scheduler=SchedulerName.BACKUP_AWARE, client_abort=True)


def _three_paths(cfg: SimConfig) -> SimConfig:
    return replace(cfg, paths=[*BASE_PATHS, LinkSpec(rate=20e6, delay=0.030)])


def _abort(cfg: SimConfig) -> SimConfig:
    return replace(cfg, client_abort=True)


C, S = Role.CLIENT, Role.SERVER
FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("bad-join-synack-hmac", "JOIN-002", S,
              "wrong truncated HMAC in the MP_JOIN SYN/ACK; the client resets the join"),
        Fault("bad-join-ack-hmac", "JOIN-003", C,
              "wrong HMAC in the MP_JOIN third ACK; the server resets the join"),
        Fault("bad-add-addr-hmac", "ADDR-001", S,
              "ADD_ADDR with a wrong HMAC; the client drops it", _announce),
        Fault("bad-dss-checksum", "CSUM-001", C,
              "one mapping on the join subflow with a wrong DSS checksum; the server resets that subflow with "
              "MP_FAIL + MP_TCPRST and the data is reinjected", _checksums),
        Fault("conflicting-mapping", "DSS-002", C,
              "a DSS on a pure ACK maps already-sent subflow bytes to another DSN"),
        Fault("reinject-different-bytes", "DSS-003", C,
              "acknowledged data reinjected on the join subflow with other bytes"),
        Fault("data-ack-beyond", "DACK-001", S,
              "one Data ACK far beyond anything the client sent (on a backup join; the client ends with "
              "MP_FASTCLOSE)", _backup_join),
        Fault("data-ack-backwards", "DACK-002", S,
              "one Data ACK 1000 bytes below the previous one on the same subflow"),
        Fault("wrong-key-echo", "MPC-004", C,
              "the MP_CAPABLE third ACK echoes a wrong server key"),
        Fault("missing-mapping", "DSS-004", C,
              "one data segment on the join subflow without a DSS mapping; the server resets that subflow and "
              "the data is reinjected"),
        Fault("duplicate-address-id", "JOIN-009", C,
              "two client addresses join with the same address ID", _three_paths),
        Fault("remove-unknown-id", "ADDR-009", S,
              "REMOVE_ADDR for an address ID never announced or used"),
        Fault("fastclose-wrong-key", "FC-001", C,
              "MP_FASTCLOSE carries the sender's own key", _abort),
        Fault("bad-dss-length", "DSS-001", C,
              "a DSS whose length byte (14) disagrees with its flags (12)"),
        Fault("bad-option-length", "OPT-002", C,
              "a REMOVE_ADDR of length 3 (no address ID)"),
    )
}  # fmt: skip


def fault_config(name: str, output: Path, **overrides: object) -> SimConfig:
    """The simulation that produces the fault's trace (small transfer, two paths unless said)."""
    try:
        fault = FAULTS[name]
    except KeyError:
        raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}") from None
    cfg = SimConfig(output=output, paths=list(BASE_PATHS), c2s_bytes=150_000, s2c_bytes=30_000)
    cfg = fault.setup(cfg)
    if fault.side is Role.CLIENT:
        cfg = replace(cfg, client_misbehave=frozenset({fault.misbehave}))
    else:
        cfg = replace(cfg, server_misbehave=frozenset({fault.misbehave}))
    return replace(cfg, **overrides)  # type: ignore[arg-type]
