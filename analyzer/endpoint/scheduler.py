"""Packet schedulers: which subflow carries the next chunk of connection-level data.

A scheduler sees the subflows that can carry data now (established, fully joined, not closing,
not stalled by a retransmission timeout) and picks one with enough congestion-window room, or
none to wait. ``lowest-rtt`` and ``round-robin`` ignore priorities; ``backup-aware`` uses backup
subflows only while no regular subflow is available (RFC 8684 §3.3.8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from analyzer.endpoint.config import SchedulerName


@dataclass(frozen=True, slots=True)
class PathInfo:
    """What a scheduler knows about one available subflow."""

    subflow_id: int
    srtt: float  # smoothed RTT (initial RTO before the first sample)
    room: int  # bytes the congestion window allows to queue now
    cap: int  # largest chunk the subflow's MSS allows
    backup: bool  # either side asked for backup priority


class Scheduler(Protocol):
    def pick(self, paths: Sequence[PathInfo], need: int) -> int | None:
        """The subflow for a chunk of up to ``need`` bytes, or None to wait."""
        ...


def _fits(path: PathInfo, need: int) -> bool:
    return path.room >= min(path.cap, need)


class LowestRtt:
    """The subflow with the smallest SRTT among those with room (priorities ignored)."""

    def pick(self, paths: Sequence[PathInfo], need: int) -> int | None:
        ready = [p for p in paths if _fits(p, need)]
        if not ready:
            return None
        return min(ready, key=lambda p: (p.srtt, p.subflow_id)).subflow_id


class RoundRobin:
    """Each subflow with room in turn (priorities ignored)."""

    def __init__(self) -> None:
        self._last = -1

    def pick(self, paths: Sequence[PathInfo], need: int) -> int | None:
        ready = sorted((p for p in paths if _fits(p, need)), key=lambda p: p.subflow_id)
        if not ready:
            return None
        chosen = next((p for p in ready if p.subflow_id > self._last), ready[0])
        self._last = chosen.subflow_id
        return chosen.subflow_id


class BackupAware:
    """Lowest RTT among regular subflows; backups only when no regular subflow is available."""

    def __init__(self) -> None:
        self._inner = LowestRtt()

    def pick(self, paths: Sequence[PathInfo], need: int) -> int | None:
        regular = [p for p in paths if not p.backup]
        return self._inner.pick(regular or list(paths), need)


def make_scheduler(name: SchedulerName) -> Scheduler:
    table: dict[SchedulerName, type[LowestRtt] | type[RoundRobin] | type[BackupAware]] = {
        SchedulerName.LOWEST_RTT: LowestRtt,
        SchedulerName.ROUND_ROBIN: RoundRobin,
        SchedulerName.BACKUP_AWARE: BackupAware,
    }
    return table[name]()
