"""Named simulation setups (``mptcp-analyze simulate --scenario NAME``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from analyzer.endpoint.config import SchedulerName
from analyzer.endpoint.network import LinkSpec
from analyzer.endpoint.sim import Action, ActionKind, SimConfig

FAST = LinkSpec(rate=20e6, delay=0.010)
SLOW = LinkSpec(rate=10e6, delay=0.025)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    build: Callable[[SimConfig], SimConfig]


def _two_paths(cfg: SimConfig) -> SimConfig:
    return replace(cfg, paths=[FAST, SLOW])


def _add_addr(cfg: SimConfig) -> SimConfig:
    return replace(
        cfg, paths=[FAST, SLOW], client_joins=False, server_announces=True,
        actions=(Action(0.7, ActionKind.REMOVE_ADDRESS, 1),),
    )  # fmt: skip


def _path_failure(cfg: SimConfig) -> SimConfig:
    return replace(cfg, paths=[FAST, SLOW], actions=(Action(0.5, ActionKind.LINK_DOWN, 2),))


def _backup(cfg: SimConfig) -> SimConfig:
    return replace(
        cfg, paths=[FAST, SLOW], backup_paths=frozenset({2}), scheduler=SchedulerName.BACKUP_AWARE,
        actions=(Action(0.4, ActionKind.LINK_DOWN, 1),),
    )  # fmt: skip


def _lossy(cfg: SimConfig) -> SimConfig:
    lossy = [
        replace(FAST, loss=0.02, jitter=0.002, reorder=0.02),
        replace(SLOW, loss=0.02, jitter=0.004, reorder=0.02),
    ]
    return replace(cfg, paths=lossy)


def _fallback(cfg: SimConfig) -> SimConfig:
    return replace(cfg, paths=[FAST], server_mptcp=False)


def _fastclose(cfg: SimConfig) -> SimConfig:
    return replace(cfg, paths=[FAST, SLOW], client_abort=True)


def _checksum(cfg: SimConfig) -> SimConfig:
    return replace(cfg, paths=[FAST, SLOW], checksum=True)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("two-paths", "client opens a second subflow from its address on path 2", _two_paths),
        Scenario("add-addr", "server announces its path-2 address (ADD_ADDR), the client joins it; "
                 "at 70 % the server removes it (REMOVE_ADDR)", _add_addr),
        Scenario("path-failure", "path 2 goes down at 50 %: its data is reinjected on path 1", _path_failure),
        Scenario("backup", "path 2 is a backup subflow (MP_JOIN B bit); path 1 fails at 40 % and "
                 "the backup takes over", _backup),
        Scenario("lossy", "2 % loss, jitter and reordering on both paths", _lossy),
        Scenario("fallback", "the server is a plain TCP host: the SYN/ACK has no MP_CAPABLE", _fallback),
        Scenario("fastclose", "the client ends with MP_FASTCLOSE on every subflow (Linux style)", _fastclose),
        Scenario("checksum", "DSS checksums negotiated (A bit) on two paths", _checksum),
    )
}  # fmt: skip


def scenario_config(name: str, output: Path, **overrides: object) -> SimConfig:
    """The configuration of a named scenario, with explicit settings applied on top."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
    cfg = scenario.build(SimConfig(output=output, c2s_bytes=400_000, s2c_bytes=100_000))
    return replace(cfg, **overrides)  # type: ignore[arg-type]
