"""The compiled hot path (analyzer/ingest/_fastdecode.pyx) gives exactly what the pure-Python reference gives.

Why: the accelerator is only allowed to be faster, never different. The same traces go through
both paths and the ``mptcp-analyze/1`` documents must be byte-identical; hypothesis then throws
crafted and random packets and damaged pcap files at both decoders and record loops and compares
every field. The tests skip (saying why) only where the extension was not built; under CI it must
be built, so there its absence fails.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from helpers import pcapgen as g
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer import pipeline
from analyzer.endpoint import faults, sim
from analyzer.endpoint.network import LinkSpec
from analyzer.endpoint.pcapout import CaptureFormat
from analyzer.ingest import capture as capture_mod
from analyzer.ingest import decode as decode_mod
from analyzer.ingest import speedups
from analyzer.ingest.capture import CaptureInfo, read_records
from analyzer.ingest.decode import decode_segment_pure
from analyzer.ingest.record import Record
from analyzer.ingest.segment import Segment
from analyzer.mptcp.options import Dss, MpCapable, MpJoinSyn
from analyzer.report import json_out
from analyzer.tcp_options import TcpOptions

REPO = Path(__file__).resolve().parent.parent
TCPDUMP = Path("/work/shared/captures/tcpdump")
TRACES = sorted((REPO / "samples").glob("*.pcap")) + (sorted(TCPDUMP.glob("*.pcap")) if TCPDUMP.is_dir() else [])


def _extension() -> ModuleType | None:
    try:
        from analyzer.ingest import _fastdecode  # type: ignore[attr-defined]
    except ImportError:
        return None
    module: ModuleType = _fastdecode
    return module


FAST = _extension()
needs_fast = pytest.mark.skipif(
    FAST is None, reason="compiled hot path not built (python3 setup.py build_ext --inplace, or pip install)"
)


def test_extension_is_built_under_ci() -> None:
    """CI installs with a compiler: a missing extension there means the build silently fell back."""
    if not os.environ.get("CI"):
        pytest.skip("only enforced under CI (CI is not set)")
    assert FAST is not None, "the Cython extension analyzer.ingest._fastdecode was not built"


def test_pure_env_selects_the_reference() -> None:
    """MPTCP_ANALYZE_PURE=1 makes every hot-path entry point the pure one, and status() says so."""
    code = (
        "from analyzer.ingest import capture, decode, speedups; "
        "print(decode.COMPILED, capture._fast is None, decode.decode_segment is decode.decode_segment_pure); "
        "print(speedups.status())"
    )
    env = {**os.environ, speedups.PURE_ENV: "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    first, status = out.splitlines()
    assert first == "False True True"
    assert "pure Python" in status and speedups.PURE_ENV in status


@needs_fast
def test_default_selects_the_compiled_path() -> None:
    assert decode_mod.COMPILED and decode_mod.decode_segment is FAST.decode_segment  # type: ignore[union-attr]
    assert capture_mod._fast is FAST
    assert "compiled" in speedups.status()


# ---------------------------------------------------------------------------- whole documents


def _json(path: Path, pure: bool, monkeypatch: pytest.MonkeyPatch, **kw: bool) -> str:
    """The --json document of one trace through the chosen path (switched in process)."""
    with monkeypatch.context() as m:
        if pure:
            m.setattr(pipeline, "decode_segment", decode_segment_pure)
            m.setattr(capture_mod, "_fast", None)
        opts = pipeline.AnalysisOptions(**kw)
        return json_out.dumps(pipeline.analyze(str(path), opts))


def _assert_same(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for kw in ({}, {"check": False, "stats": False}):
        assert _json(path, False, monkeypatch, **kw) == _json(path, True, monkeypatch, **kw), (path.name, kw)


@needs_fast
@pytest.mark.parametrize("trace", TRACES, ids=lambda p: p.name)
def test_json_identical_on_every_trace(trace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _assert_same(trace, monkeypatch)


SIMULATIONS = {
    "loss-reorder": dict(paths=[LinkSpec(loss=0.03, reorder=0.05, jitter=0.002), LinkSpec(loss=0.01)]),
    "ipv6-checksum": dict(ipv6=True, checksum=True),
    "pcapng": dict(fmt=CaptureFormat.PCAPNG, paths=[LinkSpec(reorder=0.1), LinkSpec()]),
}


@needs_fast
@pytest.mark.parametrize("name", sorted(SIMULATIONS))
def test_json_identical_on_simulated_traces(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / f"{name}.pcap"
    sim.run(sim.SimConfig(output=out, c2s_bytes=120_000, s2c_bytes=20_000, seed=3, **SIMULATIONS[name]))  # type: ignore[arg-type]
    _assert_same(out, monkeypatch)


@needs_fast
@pytest.mark.parametrize("fault", ["bad-dss-checksum", "bad-join-ack-hmac", "bad-add-addr-hmac"])
def test_json_identical_on_fault_traces(fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / f"{fault}.pcap"
    sim.run(faults.fault_config(fault, out, c2s_bytes=60_000, s2c_bytes=10_000))
    _assert_same(out, monkeypatch)


# ---------------------------------------------------------------------------- packet decoder

SLOTS = Segment.__slots__


def _fields(seg: object) -> object:
    if not isinstance(seg, Segment):
        return seg  # a Skip reason
    return {name: getattr(seg, name) for name in SLOTS}


def _same_decode(frame: int, ts: float, link_type: int, data: bytes) -> None:
    assert FAST is not None
    pure = decode_segment_pure(frame, ts, link_type, data)
    fast = FAST.decode_segment(frame, ts, link_type, data)
    assert type(fast) is type(pure)
    assert _fields(fast) == _fields(pure)
    if isinstance(pure, Segment) and pure.options is not None:
        assert isinstance(fast.options, TcpOptions)
        assert dataclasses.astuple(fast.options) == dataclasses.astuple(pure.options)
        assert [type(o) for o in fast.options.mptcp] == [type(o) for o in pure.options.mptcp]


def _dss_bytes(flags: int, checksum: bool, reserved: int, values: list[int]) -> bytes:
    body = b""
    if flags & 0x01:
        body += values[0].to_bytes(8 if flags & 0x02 else 4, "big")
    if flags & 0x04:
        body += values[1].to_bytes(8 if flags & 0x08 else 4, "big") + struct.pack("!IH", values[2], values[3])
        if checksum:
            body += struct.pack("!H", values[4])
    return bytes((30, 4 + len(body), 0x20 | reserved, flags)) + body


U64 = st.integers(0, (1 << 64) - 1)
M32, M64 = 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
dss_option = st.builds(
    lambda flags, csum, res, a, d, s, n, c: _dss_bytes(
        flags,
        csum,
        res,
        [a & (M64 if flags & 2 else M32), d & (M64 if flags & 8 else M32), s & M32, n & 0xFFFF, c & 0xFFFF],
    ),
    st.integers(0, 255),
    st.booleans(),
    st.integers(0, 15),
    U64,
    U64,
    U64,
    U64,
    U64,
)
other_mptcp = st.sampled_from(
    [
        MpCapable(version=1, flags=0x81, sender_key=0x0102030405060708).build(),
        MpJoinSyn(backup=True, address_id=2, token=0xDEADBEEF, nonce=0x12345678).build(),
        Dss(flags=0x01, data_ack=7).build(),
    ]
)
tcp_option = st.one_of(
    dss_option,
    other_mptcp,
    st.just(b"\x01"),
    st.just(b"\x00"),
    st.builds(lambda a, b: struct.pack("!BBII", 8, 10, a, b), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)),
    st.builds(lambda v: struct.pack("!BBH", 2, 4, v), st.integers(0, 65535)),
    st.builds(lambda v: bytes((3, 3, v)), st.integers(0, 255)),
    st.just(b"\x04\x02"),
    st.builds(
        lambda e: bytes((5, 2 + 4 * len(e))) + b"".join(struct.pack("!I", x) for x in e),
        st.lists(st.integers(0, 2**32 - 1), max_size=8),
    ),
    st.builds(lambda c: bytes((34, 2 + len(c))) + c, st.binary(max_size=16)),
    st.builds(lambda k, b: bytes((k, len(b) + 2)) + b, st.integers(6, 40), st.binary(max_size=8)),
    st.binary(min_size=1, max_size=6),  # anything, malformed included
)


def _tcp_ip(options: bytes, payload: bytes, v6: bool, flags: int, total_len: int | None) -> bytes:
    opts = options[:40]
    pad = (-len(opts)) % 4
    opts += b"\x00" * pad
    tcp = struct.pack("!HHIIBBHHH", 40000, 443, 1, 2, (5 + len(opts) // 4) << 4, flags, 512, 0, 0) + opts + payload
    if v6:
        return struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, b"\x20" * 16, b"\x21" * 16) + tcp
    length = 20 + len(tcp) if total_len is None else total_len
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 0, 0, 64, 6, 0, b"\x0a\0\0\1", b"\x0a\0\0\2") + tcp


LINKS = {
    g.LINKTYPE_ETHERNET: b"\x02" * 12 + b"\x08\x00",
    113: b"\x00" * 14 + b"\x08\x00",
    276: b"\x08\x00" + b"\x00" * 18,
    101: b"",
    0: struct.pack("=I", 2),
    108: struct.pack("!I", 2),
}


@needs_fast
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    options=st.lists(tcp_option, max_size=6),
    payload=st.binary(max_size=24),
    v6=st.booleans(),
    flags=st.sampled_from([0x10, 0x18, 0x02, 0x12, 0x11, 0x04]),
    link=st.sampled_from(sorted(LINKS)),
    cut=st.integers(0, 120),
    total_len=st.one_of(st.none(), st.integers(0, 200)),
)
def test_decoder_matches_on_crafted_packets(
    options: list[bytes], payload: bytes, v6: bool, flags: int, link: int, cut: int, total_len: int | None
) -> None:
    """Well-formed, malformed and snaplen-cut option lists on every link type decode alike."""
    frame = LINKS[link] + _tcp_ip(b"".join(options), payload, v6, flags, total_len)
    if link == 0 and v6:
        frame = struct.pack("=I", 10) + frame[4:]
    if link == 108 and v6:
        frame = struct.pack("!I", 30) + frame[4:]
    if link == g.LINKTYPE_ETHERNET and v6:
        frame = frame[:12] + b"\x86\xdd" + frame[14:]
    _same_decode(7, 1.25, link, frame)
    _same_decode(7, 1.25, link, frame[: max(0, len(frame) - cut)])


@needs_fast
@settings(max_examples=300, deadline=None)
@given(link=st.sampled_from([*sorted(LINKS), 1234]), data=st.binary(max_size=120))
def test_decoder_matches_on_random_bytes(link: int, data: bytes) -> None:
    _same_decode(1, 0.0, link, data)


@needs_fast
def test_decoder_accepts_non_bytes_like_the_reference() -> None:
    frame = LINKS[101] + _tcp_ip(_dss_bytes(0x05, False, 0, [1, 2, 3, 4, 0]), b"abc", False, 0x18, None)
    assert FAST is not None
    assert _fields(FAST.decode_segment(1, 0.5, 101, bytearray(frame))) == _fields(
        decode_segment_pure(1, 0.5, 101, bytearray(frame))
    )


# ---------------------------------------------------------------------------- record loop


def _pcap(records: list[tuple[int, int, bytes, int]], little: bool, nanos: bool) -> bytes:
    order = "<" if little else ">"
    magic = 0xA1B23C4D if nanos else 0xA1B2C3D4
    out = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
    for sec, frac, data, orig in records:
        out += struct.pack(order + "IIII", sec, frac, len(data), orig) + data
    return out


def _read(blob: bytes, fast: bool, chunk: int) -> tuple[list[Record], list[str], int]:
    info = CaptureInfo(path="x.pcap")
    saved = capture_mod._fast
    capture_mod._fast = _ChunkedFast(chunk) if fast else None
    try:
        records = list(read_records(io.BufferedReader(io.BytesIO(blob)), info))  # type: ignore[arg-type]
    finally:
        capture_mod._fast = saved
    return records, info.errors, info.bytes_read


class _ChunkedFast:
    """The compiled module with a small read size, so records straddle chunk boundaries."""

    def __init__(self, chunk: int) -> None:
        self.chunk = chunk

    def pcap_records(self, *args: object) -> Iterator[Record]:
        assert FAST is not None
        return FAST.pcap_records(*args, chunk=self.chunk)  # type: ignore[no-any-return]


record = st.tuples(
    st.integers(0, 2**32 - 1), st.integers(0, 999_999_999), st.binary(max_size=80), st.integers(0, 2**32 - 1)
)


@needs_fast
@settings(max_examples=200, deadline=None)
@given(
    records=st.lists(record, max_size=12),
    little=st.booleans(),
    nanos=st.booleans(),
    cut=st.integers(0, 64),
    corrupt=st.one_of(st.none(), st.tuples(st.integers(0, 2000), st.integers(0, 255))),
    chunk=st.sampled_from([1, 7, 16, 100, 1 << 20]),
)
def test_record_loop_matches_on_damaged_files(
    records: list[tuple[int, int, bytes, int]],
    little: bool,
    nanos: bool,
    cut: int,
    corrupt: tuple[int, int] | None,
    chunk: int,
) -> None:
    """Records (frame numbers and file offsets too), error messages and bytes read agree, whole files and
    cut or corrupted ones; every offset reads back the record's bytes."""
    blob = bytearray(_pcap(records, little, nanos))
    if corrupt is not None and 24 + corrupt[0] < len(blob):
        blob[24 + corrupt[0]] = corrupt[1]
    data = bytes(blob[: max(24, len(blob) - cut)])
    fast, pure = _read(data, True, chunk), _read(data, False, chunk)
    assert fast == pure
    assert all(type(rec) is Record for rec in fast[0] + pure[0])
    assert [rec.frame for rec in fast[0]] == list(range(1, len(fast[0]) + 1))
    order = "<" if little else ">"
    for rec in fast[0]:
        caplen, origlen = struct.unpack_from(order + "II", data, rec.offset + 8)
        assert (data[rec.offset + 16 : rec.offset + 16 + caplen], origlen) == (rec.data, rec.origlen)


def test_verbose_says_once_when_the_pure_path_runs() -> None:
    """--verbose names the pure path on stderr (once), so a slow run explains itself."""
    env = {**os.environ, speedups.PURE_ENV: "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "--json", "-v", str(REPO / "samples" / "two-subflows.pcap")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("hot path: pure Python") == 1
