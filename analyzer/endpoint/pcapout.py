"""Capture files with virtual timestamps: pcap (raw IP, link type 101) through dpkt, or pcapng."""

from __future__ import annotations

import enum
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

import dpkt

LINKTYPE_RAW: Final = 101  # raw IPv4/IPv6, as the analyzer's decoder expects
EPOCH: Final = 1_700_000_000.0  # virtual time 0 in the capture (fixed, so runs are byte-identical)
SNAPLEN: Final = 65535


class CaptureFormat(enum.Enum):
    PCAP = "pcap"
    PCAPNG = "pcapng"


class CaptureWriter:
    """Writes raw IP packets at virtual times (seconds since the start of the simulation)."""

    def __init__(self, path: Path, fmt: CaptureFormat = CaptureFormat.PCAP, *, epoch: float = EPOCH) -> None:
        """``epoch`` is the capture time of virtual time 0 (0.0: the times given are already absolute)."""
        self.path = path
        self._epoch = epoch
        self._file: BinaryIO = path.open("wb")
        self._writer: dpkt.pcap.Writer | dpkt.pcapng.Writer
        if fmt is CaptureFormat.PCAPNG:
            self._writer = dpkt.pcapng.Writer(self._file, snaplen=SNAPLEN, linktype=LINKTYPE_RAW)
        else:
            self._writer = dpkt.pcap.Writer(self._file, snaplen=SNAPLEN, linktype=LINKTYPE_RAW)
        self.packets = 0

    def write(self, time: float, packet: bytes) -> None:
        self._writer.writepkt(packet, ts=round(self._epoch + time, 6))
        self.packets += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
