"""Whose fault it is (h11 style): our own misuse raises, a peer's violation becomes a protocol action."""

from __future__ import annotations


class EndpointError(Exception):
    """Base class of the endpoint's exceptions."""


class LocalProtocolError(EndpointError):
    """The caller asked for something the protocol state does not allow (e.g. send after close)."""


class RemoteProtocolError(EndpointError):
    """The peer broke the protocol; the connection turns this into a reset of a subflow or connection."""

    def __init__(self, message: str, reason: int = 0x01) -> None:
        super().__init__(message)
        self.reason = reason  # MP_TCPRST reason code to send (RFC 8684 §3.6)
