"""The inspector's packet index: compact per-frame columns and reading packets back from the file.

Why: the packet list must scroll through millions of frames, so the index may hold only a few
bytes per packet and every packet must be readable again, exactly, from its file offset: for pcap,
pcapng and gzip files alike.
"""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import dpkt
import numpy as np

from tui.filter import evaluate, parse
from tui.index import BYTES_PER_PACKET, CHUNK, DSS_FIN, DSS_MAP, OPT_DSS
from tui.session import Session

REPO = Path(__file__).resolve().parent.parent
V0 = REPO / "tests" / "data" / "tcpdump" / "mptcp-v0.pcap"
MAX_BYTES_PER_PACKET = 32


def _packet(i: int) -> bytes:
    """Ethernet/IPv4/TCP data segment with a DSS option (mapping + Data ACK); every 1000th has DATA_FIN."""
    flags = 0x05 | (0x10 if i % 1000 == 999 else 0)
    dss = struct.pack("!BBBBIIIH", 30, 20, 0x20, flags, 1000 + i, 5000 + i * 10, 1 + i * 10, 10) + b"\x00\x00"
    options = dss
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1 + i * 10, 77, (20 + len(options)) // 4 << 4, 0x18, 512, 0, 0)
    payload = bytes(10)
    total = 20 + len(tcp) + len(options) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, i & 0xFFFF, 0, 64, 6, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))  # fmt: skip
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip + tcp + options + payload


def write_synthetic(path: Path, count: int) -> None:
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(count):
            data = _packet(i)
            f.write(struct.pack("<IIII", 1_700_000_000 + i // 1000, (i % 1000) * 1000, len(data), len(data)))
            f.write(data)
            if i % 97 == 0:  # an ARP frame now and then: frames the analyzer skips still get rows
                arp = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x06" + bytes(28)
                f.write(struct.pack("<IIII", 1_700_000_000 + i // 1000, (i % 1000) * 1000 + 1, len(arp), len(arp)))
                f.write(arp)


def test_index_of_a_large_trace_stays_compact(tmp_path: Path) -> None:
    """More than two chunks of frames: every one indexed, at under 32 bytes per packet."""
    path = tmp_path / "synthetic.pcap"
    count = 2 * CHUNK + 5000
    write_synthetic(path, count)
    session = Session(str(path))
    try:
        analysis = session.run()
        index = session.index
        arps = (count + 96) // 97
        assert index.count == analysis.trace.packets == count + arps
        assert BYTES_PER_PACKET <= MAX_BYTES_PER_PACKET
        assert index.nbytes / index.count <= MAX_BYTES_PER_PACKET + 1  # + the open chunk's spare capacity
        assert session.observer.misaligned == 0
        # Rows across chunk boundaries are exact, and the bytes read back are the frame's.
        for frame in (1, 2, CHUNK, CHUNK + 1, 2 * CHUNK + 1, index.count):
            row = index.row(frame - 1)
            assert row.frame == frame
            packet = session.store.read(frame)
            assert len(packet.data) in (len(_packet(0)), 42)
            if row.is_tcp:
                assert row.opts & OPT_DSS and row.dss & DSS_MAP and row.plen == 10
        fins = evaluate(parse("dss.fin"), session.filter_context())
        assert fins is not None and int(fins.sum()) == count // 1000
        subflow = index.column("subflow")
        assert len(subflow) == index.count and int((subflow == 0).sum()) == arps
        assert int((index.column("dss") & DSS_FIN != 0).sum()) == count // 1000
    finally:
        session.close()


def _records(path: Path) -> list[bytes]:
    with path.open("rb") as fh:
        return [bytes(buf) for _ts, buf in dpkt.pcap.Reader(fh)]


def test_every_frame_reads_back_exactly() -> None:
    session = Session(str(V0))
    try:
        session.run()
        expected = _records(V0)
        assert session.index.count == len(expected)
        for frame, data in enumerate(expected, start=1):
            assert session.store.read(frame).data == data
    finally:
        session.close()


def test_gzip_capture_reads_back_through_an_uncompressed_copy(tmp_path: Path) -> None:
    gz = tmp_path / "v0.pcap.gz"
    with V0.open("rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    session = Session(str(gz))
    copy = Path(session.data_path)
    try:
        session.run()
        assert copy != gz and copy.exists()
        expected = _records(V0)
        assert [session.store.read(f).data for f in (1, 100, len(expected))] == [
            expected[0], expected[99], expected[-1],
        ]  # fmt: skip
    finally:
        session.close()
    assert not copy.exists()


def test_pcapng_frames_line_up(tmp_path: Path) -> None:
    """A pcapng file: frame numbers, times and bytes match the analyzer's."""
    ng = tmp_path / "v0.pcapng"
    packets = _records(V0)
    with ng.open("wb") as f:
        writer = dpkt.pcapng.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for i, data in enumerate(packets):
            writer.writepkt(data, ts=1_600_000_000 + i / 1000)
    session = Session(str(ng))
    try:
        analysis = session.run()
        assert session.index.count == analysis.trace.packets == len(packets)
        assert session.observer.misaligned == 0
        rows = [session.index.row(i) for i in range(session.index.count)]
        assert np.all(np.diff([r.ts for r in rows]) > 0)
        assert session.store.read(len(packets)).data == packets[-1]
    finally:
        session.close()
