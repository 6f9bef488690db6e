"""The connection's keys and what derives from them (RFC 8684 §3.1, §3.2, §3.4.1).

Thin wrappers over :mod:`analyzer.mptcp.crypto`: the endpoint never computes a hash itself.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from analyzer.endpoint.segment import Address
from analyzer.mptcp import crypto

VERSION = 1


def draw_key(rng: random.Random) -> int:
    """A random non-zero 64-bit key (Linux never uses 0; shared rules MPC-013)."""
    while True:
        key = rng.getrandbits(64)
        if key:
            return key


@dataclass(slots=True)
class KeyMaterial:
    """Our key and, once learnt, the peer's."""

    local_key: int
    remote_key: int | None = None

    @property
    def local_token(self) -> int:
        return crypto.token_from_key(self.local_key, VERSION)

    @property
    def local_idsn(self) -> int:
        """IDSN of the data we send; our first byte has DSN = IDSN + 1."""
        return crypto.idsn_from_key(self.local_key, VERSION)

    @property
    def remote_token(self) -> int:
        return crypto.token_from_key(self._remote(), VERSION)

    @property
    def remote_idsn(self) -> int:
        return crypto.idsn_from_key(self._remote(), VERSION)

    def _remote(self) -> int:
        if self.remote_key is None:
            raise ValueError("the peer's key is not known yet")
        return self.remote_key

    def synack_hmac(self, nonce_local: int, nonce_remote: int) -> int:
        """Truncated HMAC we send as the MP_JOIN responder."""
        return crypto.join_synack_truncated_hmac(self.local_key, self._remote(), nonce_local, nonce_remote, VERSION)

    def expected_synack_hmac(self, nonce_local: int, nonce_remote: int) -> int:
        """Truncated HMAC the responder must send us (we initiated the join)."""
        return crypto.join_synack_truncated_hmac(self._remote(), self.local_key, nonce_remote, nonce_local, VERSION)

    def ack_hmac(self, nonce_local: int, nonce_remote: int) -> bytes:
        """HMAC we send in the third ACK as the join initiator."""
        return crypto.join_ack_hmac(self.local_key, self._remote(), nonce_local, nonce_remote, VERSION)

    def expected_ack_hmac(self, nonce_local: int, nonce_remote: int) -> bytes:
        """HMAC the initiator must send us in its third ACK (we are the responder)."""
        return crypto.join_ack_hmac(self._remote(), self.local_key, nonce_remote, nonce_local, VERSION)

    def add_addr_hmac(self, address_id: int, address: Address, port: int | None) -> int:
        """HMAC of an ADD_ADDR we send."""
        return crypto.add_addr_hmac(self.local_key, self._remote(), address_id, address, port)

    def expected_add_addr_hmac(self, address_id: int, address: Address, port: int | None) -> int:
        """HMAC the peer's ADD_ADDR must carry."""
        return crypto.add_addr_hmac(self._remote(), self.local_key, address_id, address, port)
