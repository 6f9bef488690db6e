"""The decoded TCP segment: a value the decoder builds and every later stage reads.

Why a module of its own: the rule families, the observers and the inspector read segments but must not depend
on the decoder that makes them (the rules of the house in ARCHITECTURE.md); the decoder and its compiled twin
import this type too.
"""

from __future__ import annotations

from analyzer.mptcp.packet import TH_ACK, TH_CWR, TH_ECE, TH_FIN, TH_PSH, TH_RST, TH_SYN, TH_URG
from analyzer.tcp_options import TcpOptions

# the flag bits a segment's readers test (defined once, in the protocol core's packet module)
__all__ = ["TH_ACK", "TH_CWR", "TH_ECE", "TH_FIN", "TH_PSH", "TH_RST", "TH_SYN", "TH_URG", "Segment"]


class Segment:
    """One TCP segment as the analyzer sees it: header fields plus where its bytes are."""

    __slots__ = (
        "ack",
        "captured_payload_len",
        "data",
        "dport",
        "dst",
        "flags",
        "frame",
        "ip_version",
        "options",
        "payload_len",
        "payload_offset",
        "seq",
        "sport",
        "src",
        "ts",
        "window",
    )

    def __init__(
        self,
        frame: int,
        ts: float,
        ip_version: int,
        src: bytes,
        dst: bytes,
        sport: int,
        dport: int,
        seq: int,
        ack: int,
        flags: int,
        window: int,
        payload_len: int,
        payload_offset: int,
        data: bytes,
        options: TcpOptions | None,
    ) -> None:
        self.frame = frame
        self.ts = ts
        self.ip_version = ip_version
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.seq = seq
        self.ack = ack
        self.flags = flags
        self.window = window
        self.payload_len = payload_len  # from the IP header: what was on the wire
        self.payload_offset = payload_offset
        captured = len(data) - payload_offset  # what the capture kept of it (snaplen)
        self.captured_payload_len = payload_len if captured >= payload_len else max(captured, 0)
        self.data = data
        self.options = options

    @property
    def payload(self) -> bytes:
        """The captured payload bytes (may be shorter than ``payload_len`` with a snaplen)."""
        return self.data[self.payload_offset : self.payload_offset + self.payload_len]

    @property
    def mptcp(self) -> list:  # type: ignore[type-arg]
        return self.options.mptcp if self.options is not None else []
