"""Fuzz harnesses shared by the CI-sized hypothesis run (tests/test_fuzz.py) and the long run (tools/fuzz.py).

Each harness takes bytes and returns normally for every input; anything else it raises is a bug. The only
exception a harness lets through by contract is none: documented failures (CaptureError for a file that
is not a capture at all) are caught here, because they are answers, not crashes.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path

from analyzer.ingest.capture import CaptureError, CaptureInfo, read_records
from analyzer.mptcp.options import OPTION_TYPES, MalformedOption, UnknownMptcpOption, parse_option
from analyzer.pipeline import analyze
from analyzer.tcp_options import TcpOptions, walk_tcp_options

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fuzz_corpus"


def option_harness(data: bytes) -> None:
    """parse_option never raises, returns a declared type, and a typed option rebuilds to the same option."""
    opt = parse_option(data)
    assert isinstance(opt, OPTION_TYPES), type(opt)
    if isinstance(opt, MalformedOption | UnknownMptcpOption):
        return
    assert parse_option(opt.build()) == opt, (data.hex(), opt)


def walker_harness(data: bytes) -> None:
    """The TCP option walker ends (each step advances) and never raises, whatever the bounds."""
    for end in (len(data), min(len(data), 40)):
        out = walk_tcp_options(data, 0, end, captured_end=max(0, end - 3))
        assert isinstance(out, TcpOptions)
        for opt in out.mptcp:
            assert isinstance(opt, OPTION_TYPES)


def reader_harness(data: bytes) -> None:
    """The pcap/pcapng readers stop with a message on damage; only 'not a capture at all' raises CaptureError."""
    import io

    info = CaptureInfo(path="fuzz")
    try:
        for record in read_records(io.BufferedReader(io.BytesIO(data)), info):  # type: ignore[arg-type]
            assert len(record.data) <= info.limits.max_record_bytes
    except CaptureError:
        return


def pipeline_harness(data: bytes, directory: Path | None = None) -> None:
    """The whole analysis of arbitrary bytes: finishes, with no internal error."""
    from tests.helpers.damage import assert_sound

    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = Path(tmp) / "fuzz.pcap"
        path.write_bytes(data)
        try:
            analysis = analyze(str(path))
        except CaptureError:
            return
        assert_sound(analysis)


HARNESSES: dict[str, Callable[[bytes], None]] = {
    "option": option_harness,
    "walker": walker_harness,
    "reader": reader_harness,
    "pipeline": pipeline_harness,
}


def seeds(kind: str) -> list[bytes]:
    """The seed corpus of a harness: option hex lines, or whole small capture files."""
    if kind in ("option", "walker"):
        lines = (CORPUS / "options.hex").read_text().splitlines()
        options = [bytes.fromhex(line) for line in lines if line.strip() and not line.startswith("#")]
        if kind == "walker":  # option lists: a few real ones glued with NOPs and MSS
            return [b"\x02\x04\x05\xb4\x01" + opt + b"\x01\x01" for opt in options] + [b"\x01" * 40, b"\x00"]
        return options
    return [path.read_bytes() for path in sorted(CORPUS.glob("*.pcap*"))]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """A small random edit: flip bits, set interesting bytes, cut, duplicate or insert a chunk."""
    out = bytearray(data or b"\0")
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(6)
        pos = rng.randrange(len(out)) if out else 0
        if choice == 0 and out:
            out[pos] ^= 1 << rng.randrange(8)
        elif choice == 1 and out:
            out[pos] = rng.choice((0, 1, 2, 0x7F, 0x80, 0xFF, 30, 40, 255))
        elif choice == 2:
            del out[pos : pos + rng.randint(1, 16)]
        elif choice == 3 and out:
            start = rng.randrange(len(out))
            out[pos:pos] = out[start : start + rng.randint(1, 32)]
        elif choice == 4:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif out:
            size = rng.choice((1, 2, 4))
            out[pos : pos + size] = rng.choice((b"\xff" * size, b"\0" * size, rng.randbytes(size)))
    return bytes(out)
