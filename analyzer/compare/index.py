"""A packet-level index of chosen subflows, built by a second read of the capture.

The normal analysis keeps no per-packet lists (memory grows with flows). Comparing two vantage points
needs every packet of the subflows being compared, so after the analyses have matched subflows, each
capture is read once more and only the packets of *matched* subflows are kept: memory grows with the
packets of matched connections, never with the rest of the trace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from analyzer.ingest.capture import open_capture, read_records
from analyzer.ingest.decode import Skip, decode_segment, network_offset
from analyzer.ingest.segment import Segment
from analyzer.model import CLIENT, SERVER, Subflow
from analyzer.mptcp.options import MptcpOption

Tuple4 = tuple[bytes, int, bytes, int]


class PacketRecord:
    """What one segment contributes to matching: header, payload digest, MPTCP options."""

    __slots__ = ("ack", "digest", "flags", "frame", "ip_id", "length", "mptcp", "mss", "seq", "ts")

    def __init__(self, seg: Segment, ip_id: int | None = None) -> None:
        self.frame = seg.frame
        self.ts = seg.ts
        self.seq = seg.seq
        self.ack = seg.ack
        self.flags = seg.flags
        self.length = seg.payload_len
        # No digest when the snaplen cut the payload: such packets match by sequence range alone.
        full = seg.payload_len > 0 and seg.captured_payload_len >= seg.payload_len
        self.digest: bytes | None = hashlib.blake2b(seg.payload, digest_size=8).digest() if full else None
        self.mptcp: tuple[MptcpOption, ...] = tuple(seg.mptcp)
        self.mss: int | None = seg.options.mss if seg.options is not None else None
        self.ip_id = ip_id  # IPv4 identification: tells identical duplicate ACKs apart (None for IPv6)


class SubflowPackets:
    """Both directions of one subflow, in capture order."""

    __slots__ = ("halves", "subflow")

    def __init__(self, subflow: Subflow) -> None:
        self.subflow = subflow
        self.halves: tuple[list[PacketRecord], list[PacketRecord]] = ([], [])


def index_subflows(path: str, subflows: Iterable[Subflow]) -> dict[int, SubflowPackets]:
    """Read ``path`` again and keep the packets of ``subflows`` (by 4-tuple within each one's frame range)."""
    wanted: dict[Tuple4, list[tuple[SubflowPackets, int]]] = {}
    out: dict[int, SubflowPackets] = {}
    for sf in subflows:
        entry = out.setdefault(sf.id, SubflowPackets(sf))
        wanted.setdefault((sf.client_ip, sf.client_port, sf.server_ip, sf.server_port), []).append((entry, CLIENT))
        wanted.setdefault((sf.server_ip, sf.server_port, sf.client_ip, sf.client_port), []).append((entry, SERVER))
    if not wanted:
        return out
    stream, info = open_capture(path)
    try:
        for frame, _offset, ts, link_type, data, _origlen in read_records(stream, info):
            seg = decode_segment(frame, ts, link_type, data)
            if isinstance(seg, Skip):
                continue
            candidates = wanted.get((seg.src, seg.sport, seg.dst, seg.dport))
            if candidates is None:
                continue
            for entry, direction in candidates:
                if entry.subflow.first_frame <= frame <= entry.subflow.last_frame:
                    entry.halves[direction].append(PacketRecord(seg, _ip_id(link_type, data)))
                    break
    finally:
        stream.close()
    return out


def _ip_id(link_type: int, data: bytes) -> int | None:
    net = network_offset(link_type, data)
    if isinstance(net, Skip) or net[1] != 4 or len(data) < net[0] + 6:
        return None
    return int.from_bytes(data[net[0] + 4 : net[0] + 6], "big")
