"""A simple path manager: which subflows to open and which addresses to announce.

Client: once the connection is fully established, one MP_JOIN subflow from each extra local
address to the server's address, and one from the primary address to each address the server
announces. Server: announce the configured addresses with ADD_ADDR.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.endpoint.config import EndpointConfig, LocalAddress, Misbehave, Role
from analyzer.endpoint.segment import Address


@dataclass(frozen=True, slots=True)
class JoinPlan:
    """A subflow to open: from ``local`` to ``remote``:``port``."""

    local: LocalAddress
    remote: Address
    port: int


class PathManager:
    def __init__(self, config: EndpointConfig) -> None:
        self._cfg = config
        self._planned: set[tuple[Address, Address, int]] = set()

    def _plan(self, local: LocalAddress, remote: Address, port: int) -> list[JoinPlan]:
        key = (local.address, remote, port)
        if key in self._planned or len(self._planned) + 1 >= self._cfg.max_subflows:
            return []
        self._planned.add(key)
        return [JoinPlan(local, remote, port)]

    def on_fully_established(self, remote: Address, port: int) -> list[JoinPlan]:
        """Subflows to open once the connection is fully established (client only)."""
        if self._cfg.role is not Role.CLIENT:
            return []
        plans: list[JoinPlan] = []
        extra = self._cfg.addresses[1:]
        for index, local in enumerate(extra):
            if Misbehave.DUPLICATE_ADDRESS_ID in self._cfg.misbehave and index > 0:
                # Fault: every extra address reuses the first extra address's ID (JOIN-009).
                local = LocalAddress(local.address, extra[0].address_id, local.backup, local.mtu)
            plans += self._plan(local, remote, port)
        return plans

    def on_address_announced(self, address: Address, port: int) -> list[JoinPlan]:
        """Subflows to open towards an address the peer announced (client only)."""
        if self._cfg.role is not Role.CLIENT or not self._cfg.join_announced:
            return []
        return self._plan(self._cfg.primary, address, port)

    def announcements(self) -> list[LocalAddress]:
        """Addresses to announce once fully established (server)."""
        return list(self._cfg.announce) if self._cfg.role is Role.SERVER else []
