"""Offloads on (issue 9): a capture taken with TSO/GSO/GRO on shows super-segments far above the MSS, and a
later retransmission or reinjection cuts the same bytes at other boundaries.

Why: bytes sent twice must be compared by data-sequence range, never segment by segment; otherwise a
re-send cut differently is a false DSS-003 ("sent again with different bytes"), and a real difference
inside a differently cut re-send is missed. Each case below has an identical twin (no finding) and a twin
with one byte changed (DSS-003, an error naming the re-sending frame, at the right stream offset).
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from analyzer.endpoint.builder import ConnectionBuilder
from analyzer.findings import Severity
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DSN64, DSS_MAPPING, Dss
from analyzer.pipeline import analyze

MAP64 = DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64
SUPER = 20_000  # one GSO/TSO super-segment, one mapping
DATA = bytes((i * 7 + i // 251) & 0xFF for i in range(SUPER))
CUTS = [0, 1000, 2448, 2449, 9000, 14_480, SUPER]  # none on a 1448-byte MSS boundary
CHANGED = 9500  # stream offset of the byte a broken re-send changes


def _pieces(changed: bool) -> list[tuple[int, bytes]]:
    out = []
    for lo, hi in pairwise(CUTS):
        piece = bytearray(DATA[lo:hi])
        if changed and lo <= CHANGED < hi:
            piece[CHANGED - lo] ^= 0xFF
        out.append((lo, bytes(piece)))
    return out


HEAD = b"head" * 25  # 100 bytes before the super-segment (the "waiting" case sends them last)


def _trace(tmp_path: Path, how: str, changed: bool) -> str:
    sc = ConnectionBuilder()
    sf = sc.initial()
    client = sc.side("c")
    start, head_ssn = client.dsn, sf.rel("c")
    head = Dss(MAP64, data_ack=client.acked, dsn=start, ssn=head_ssn, data_len=len(HEAD))
    if how != "waiting":
        sf.send("c", HEAD, dss=head)
    dsn, ssn = start + len(HEAD), head_ssn + len(HEAD)
    big = Dss(MAP64, data_ack=client.acked, dsn=dsn, ssn=ssn, data_len=SUPER)
    sf.raw("c", 0x18, [big], DATA, seq=sf.isn["c"] + ssn)
    sf.nxt["c"] = sf.isn["c"] + ssn + SUPER
    client.dsn = sc.side("s").acked = dsn + SUPER
    if how in ("retransmission", "waiting"):  # TCP retransmission, each piece with the original mapping
        for lo, piece in _pieces(changed):
            sf.raw("c", 0x18, [big], piece, seq=sf.isn["c"] + ssn + lo)
    else:  # reinjection on a second subflow, each piece with a mapping of its own
        join = sc.join()
        for lo, piece in _pieces(changed):
            own = Dss(MAP64, data_ack=client.acked, dsn=dsn + lo, ssn=join.rel("c"), data_len=len(piece))
            join.send("c", piece, dss=own)
    if how == "waiting":  # the head comes last: super-segment and re-sent pieces waited in the buffer together
        sf.raw("c", 0x18, [head], HEAD, seq=sf.isn["c"] + head_ssn)
    sc.close()
    return sc.write(tmp_path)


@pytest.mark.parametrize("how", ["retransmission", "reinjection", "waiting"])
def test_identical_bytes_cut_differently_are_no_conflict(tmp_path: Path, how: str) -> None:
    analysis = analyze(_trace(tmp_path, how, changed=False))
    assert [f.rule for f in analysis.findings if f.severity >= Severity.WARNING] == []
    stream = analysis.streams[1][0]
    assert stream.complete and stream.bytes == SUPER + len(HEAD) and stream.conflicts == 0
    assert stream.duplicate_bytes == SUPER, "every re-sent byte was compared"


@pytest.mark.parametrize("how", ["retransmission", "reinjection", "waiting"])
def test_one_changed_byte_in_a_differently_cut_resend_is_dss003(tmp_path: Path, how: str) -> None:
    analysis = analyze(_trace(tmp_path, how, changed=True))
    (conflict,) = [f for f in analysis.findings if f.rule == "DSS-003"]
    assert conflict.severity == Severity.ERROR
    assert f"stream offset {CHANGED + len(HEAD)} " in conflict.message
    assert conflict.frames
