"""Zero-window probes (issue 9): Linux probes a closed MPTCP window with one byte mapped at the DSN just
below the Data ACK (already acknowledged) while the payload is the next, unacknowledged byte.

Why: the receiver drops such a byte as old data, so it is harmless; comparing it with the byte really at
that DSN raised a false DSS-003 "sent again with different bytes" on every real trace with a closed window
(`mptcp-analyze lab zero-window`). The crafted pair below pins the rule: a 1-byte re-send of the
acknowledged byte is a probe only after the receiver advertised a zero window at that Data ACK; the same
segment without a zero window is a real conflict.
"""

from __future__ import annotations

from pathlib import Path

from analyzer.endpoint.builder import ACK, ConnectionBuilder, SubflowBuilder, ip_tcp
from analyzer.findings import Severity
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DSN64, DSS_MAPPING, Dss
from analyzer.pipeline import analyze

MAP64 = DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64
DATA = bytes(range(256)) * 16  # 4096 bytes, every byte differs from its neighbour


def _server_ack(sc: ConnectionBuilder, sf: SubflowBuilder, window: int) -> None:
    """The server's pure ACK with its Data ACK and an explicit TCP window (0: closed)."""
    dss = sc.ack_only_dss("s")
    packet = ip_tcp(sf.server[0], sf.client[0], sf.server[1], sf.client[1], sf.nxt["s"], sf.nxt["c"], ACK,
                      dss.build(), b"", window=window)  # fmt: skip
    sc.emit(packet)


def _trace(tmp_path: Path, zero_window: bool) -> str:
    sc = ConnectionBuilder()
    sf = sc.initial()
    half = len(DATA) // 2
    for at in range(0, half, 1024):
        sf.send("c", DATA[at : at + 1024])
    _server_ack(sc, sf, 0 if zero_window else 65535)
    client = sc.side("c")
    # The probe: mapped at the last acknowledged DSN, carrying the next byte (DATA[half], not DATA[half - 1]).
    probe = Dss(MAP64, data_ack=client.acked, dsn=client.dsn - 1, ssn=sf.rel("c"), data_len=1)
    sf.send("c", DATA[half : half + 1], dss=probe)
    _server_ack(sc, sf, 65535)
    for at in range(half, len(DATA), 1024):
        sf.send("c", DATA[at : at + 1024])
    sc.close()
    return sc.write(tmp_path)


def test_zero_window_probe_is_not_a_conflict(tmp_path: Path) -> None:
    analysis = analyze(_trace(tmp_path, zero_window=True))
    assert [f.rule for f in analysis.findings if f.severity >= Severity.WARNING] == []
    stream = analysis.streams[1][0]
    assert stream.complete and stream.bytes == len(DATA) and stream.conflicts == 0


def test_the_same_resend_without_a_closed_window_is_dss003(tmp_path: Path) -> None:
    analysis = analyze(_trace(tmp_path, zero_window=False))
    (conflict,) = [f for f in analysis.findings if f.rule == "DSS-003"]
    assert conflict.severity == Severity.ERROR and conflict.frames
