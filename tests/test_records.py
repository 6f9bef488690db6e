"""Records carry their file offset; the one reader's offsets read every packet back (issue 16).

The capture reader is the only record loop: the inspector's index is built from its records and
re-reads packets through :class:`analyzer.ingest.capture.RecordFile`. Every format the reader takes
is checked here: pcap in both byte orders and both time resolutions, pcapng with several
interfaces and sections of both byte orders (enhanced, simple and obsolete packet blocks), and
gzip input, whose offsets count in the decompressed stream.
"""

from __future__ import annotations

import gzip
import io
import itertools
import struct
from pathlib import Path

import pytest
from helpers import pcapgen as g
from helpers.pcapgen import ACK, PSH, SYN, Iface, Packet

from analyzer.ingest import capture as capture_mod
from analyzer.ingest.capture import CaptureInfo, RecordError, RecordFile, open_capture, read_records
from analyzer.ingest.record import Record
from analyzer.pipeline import AnalysisOptions, analyze
from tui.session import Session

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def _packets(count: int = 6) -> list[bytes]:
    """IP packets of one small TCP exchange, with different lengths (so offsets are not regular)."""
    out = [g.ipv4_tcp("10.0.0.1", "10.0.0.2", 40000, 443, seq=1, ack=0, flags=SYN)]
    for i in range(count - 1):
        out.append(g.ipv4_tcp("10.0.0.1", "10.0.0.2", 40000, 443, seq=2 + i, ack=1, flags=ACK | PSH,
                              payload=bytes([i]) * (i * 7 + 1)))  # fmt: skip
    return out


def _read_all(path: Path, copy: io.BytesIO | None = None) -> tuple[list[Record], CaptureInfo]:
    stream, info = open_capture(str(path), copy)
    try:
        return list(read_records(stream, info)), info
    finally:
        stream.close()


def _assert_reads_back(records: list[Record], path: Path) -> None:
    """Frames count from 1; each offset reads back exactly the record's bytes and original length."""
    assert [r.frame for r in records] == list(range(1, len(records) + 1))
    assert all(type(r) is Record for r in records)
    reader = RecordFile(str(path))
    try:
        for r in records:
            assert reader.read(r.offset) == (r.data, r.origlen), f"frame {r.frame} at offset {r.offset}"
    finally:
        reader.close()


@pytest.mark.parametrize("pure", [True, False], ids=["pure", "compiled-if-built"])
@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_offsets_read_back(
    tmp_path: Path, big_endian: bool, nano: bool, pure: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pure:
        monkeypatch.setattr(capture_mod, "_fast", None)
    packets = [Packet(p, ts=(1_700_000_000 + i, 123 + i)) for i, p in enumerate(_packets())]
    path = tmp_path / "x.pcap"
    path.write_bytes(g.pcap_bytes(packets, g.LINKTYPE_RAW, nano=nano, big_endian=big_endian))
    records, info = _read_all(path)
    assert info.errors == [] and len(records) == len(packets)
    assert records[0].offset == 24
    # Each record starts where the previous one's header + bytes end.
    assert [b.offset - a.offset for a, b in itertools.pairwise(records)] == [16 + len(r.data) for r in records[:-1]]
    assert [r.data for r in records] == [p.data for p in packets]
    _assert_reads_back(records, path)


def test_pcap_snaplen_keeps_origlen_on_read_back(tmp_path: Path) -> None:
    packets = [Packet(p) for p in _packets()]
    path = tmp_path / "cut.pcap"
    path.write_bytes(g.pcap_bytes(packets, g.LINKTYPE_RAW, snaplen=45))
    records, _ = _read_all(path)
    assert [len(r.data) for r in records] == [min(45, len(p.data)) for p in packets]
    assert [r.origlen for r in records] == [len(p.data) for p in packets]
    _assert_reads_back(records, path)


def test_pcapng_sections_interfaces_and_block_kinds_read_back(tmp_path: Path) -> None:
    """Two sections (little- then big-endian), two interfaces, EPBs, SPBs and an obsolete packet block."""
    ips = _packets(8)
    ifaces = [Iface(g.LINKTYPE_ETHERNET), Iface(g.LINKTYPE_RAW, tsresol=g.TSRESOL_NS)]
    first = g.pcapng_section(
        ifaces,
        [Packet(g.ethernet(p), ts=(1_700_000_000, i), interface=0) if i % 2 == 0 else
         Packet(p, ts=(1_700_000_000, 10**6 + i), interface=1) for i, p in enumerate(ips[:4])],
    )  # fmt: skip
    second = g.pcapng_section([Iface(g.LINKTYPE_RAW)], [Packet(p) for p in ips[4:6]], big_endian=True)
    second += g.pcapng_spb(Packet(ips[6]), Iface(g.LINKTYPE_RAW), big_endian=True)
    # An obsolete packet block (type 2): 16-bit interface id and drops count, then as an EPB.
    data = ips[7]
    body = struct.pack(">HHIIII", 0, 0, 0, 5, len(data), len(data)) + data + b"\0" * (-len(data) % 4)
    obsolete = struct.pack(">II", 2, 12 + len(body)) + body + struct.pack(">I", 12 + len(body))
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(first + second + obsolete)

    records, info = _read_all(path)
    assert info.errors == []
    assert [r.link_type for r in records] == [1, 101, 1, 101, 101, 101, 101, 101]
    assert [r.data for r in records] == [g.ethernet(ips[0]), ips[1], g.ethernet(ips[2]), ips[3], *ips[4:]]
    assert records[4].offset > len(first)  # second section: offsets keep counting through the file
    _assert_reads_back(records, path)


def test_record_file_refuses_an_offset_that_is_no_record(tmp_path: Path) -> None:
    path = tmp_path / "x.pcapng"
    path.write_bytes(g.pcapng_section([Iface(g.LINKTYPE_RAW)], [Packet(p) for p in _packets(2)]))
    reader = RecordFile(str(path))
    try:
        with pytest.raises(RecordError):
            reader.read(0)  # the section header block is not a packet block
        with pytest.raises(RecordError):
            reader.read(path.stat().st_size)
    finally:
        reader.close()


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_gzip_offsets_count_in_the_decompressed_stream(tmp_path: Path, fmt: str) -> None:
    packets = [Packet(p) for p in _packets()]
    plain = tmp_path / f"x.{fmt}"
    if fmt == "pcap":
        plain.write_bytes(g.pcap_bytes(packets, g.LINKTYPE_RAW))
    else:
        plain.write_bytes(g.pcapng_section([Iface(g.LINKTYPE_RAW)], packets))
    gz = g.gzip_file(plain)
    copy = io.BytesIO()
    records, info = _read_all(gz, copy)
    assert info.compressed
    plain_records, _ = _read_all(plain)
    assert records == plain_records  # same frames, same offsets as the uncompressed file
    assert copy.getvalue() == plain.read_bytes()  # the copy is the decompressed stream, byte for byte
    _assert_reads_back(records, plain)


def test_pipeline_shows_every_record_to_on_record(tmp_path: Path) -> None:
    """on_record sees each record once, in order, TCP or not, before the segment is observed."""
    ips = _packets(3)
    frames = [g.ethernet(ips[0]), g.arp(), g.ethernet(ips[1]), g.ethernet(ips[2])]
    path = tmp_path / "arp.pcap"
    path.write_bytes(g.pcap_bytes([Packet(f) for f in frames], g.LINKTYPE_ETHERNET))
    seen: list[Record] = []
    analysis = analyze(str(path), AnalysisOptions(on_record=seen.append))
    assert [r.frame for r in seen] == [1, 2, 3, 4] == list(range(1, analysis.trace.packets + 1))
    assert [r.data for r in seen] == frames


@pytest.mark.parametrize("name", ["two-subflows.pcap", "lossy.pcap"])
def test_tui_index_offsets_are_the_readers(name: str) -> None:
    """The inspector's offsets are the capture reader's, row for row (no second record loop)."""
    path = SAMPLES / name
    records, _ = _read_all(path)
    session = Session(str(path))
    try:
        session.run()
        offsets = session.index.column("offset")
        assert [int(o) for o in offsets] == [r.offset for r in records]
        assert session.observer.misaligned == 0
        for frame in (1, len(records) // 2, len(records)):
            assert session.store.read(frame).data == records[frame - 1].data
    finally:
        session.close()


def test_tui_gzip_rereads_from_the_decompressed_copy(tmp_path: Path) -> None:
    plain = tmp_path / "two.pcap"
    plain.write_bytes((SAMPLES / "two-subflows.pcap").read_bytes())
    gz = g.gzip_file(plain)
    records, _ = _read_all(plain)
    session = Session(str(gz))
    copy = Path(session.data_path)
    try:
        session.run()
        assert copy != gz and copy.read_bytes() == plain.read_bytes()
        assert [int(o) for o in session.index.column("offset")] == [r.offset for r in records]
        assert session.store.read(len(records)).data == records[-1].data
    finally:
        session.close()
    assert not copy.exists()
    with gzip.open(gz) as f:  # the capture itself is untouched
        assert f.read() == plain.read_bytes()
