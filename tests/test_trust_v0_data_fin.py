"""DATA_FIN habits of the v0 (RFC 6824, multipath-tcp.org) kernel and CLOSE-003 (issue 9).

Why: CLOSE-003 "DATA_FIN at two different data sequence numbers" was raised on ordinary v0 web traffic. What
that kernel does (mptcp_output.c): a DATA_FIN without data is its own skb, sent at once on a pure ACK with
relative subflow sequence 0, data-level length 1 and the DATA_FIN's 32-bit DSN (RFC 6824 §3.3.3); when
data is still queued the DATA_FIN rides on the last data segment (data-level length counts it); when a
subflow is closed the empty DATA_FIN is reinjected on another one, and it is retransmitted at the meta
level. All of these name one DSN, expanded from 32 bits near the stream's data; only a DATA_FIN at another
DSN is CLOSE-003, an error naming both frames. The tests run with and without the handshake in the capture
(a capture that starts mid-connection has 32-bit DSNs and no IDSN to anchor them).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.endpoint.builder import ACK, FIN, ConnectionBuilder
from analyzer.findings import Severity
from analyzer.mptcp.options import DSS_ACK, DSS_DATA_FIN, DSS_MAPPING, Dss
from analyzer.pipeline import analyze

MASK32 = 0xFFFFFFFF
V0 = DSS_ACK | DSS_MAPPING
REQUEST = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n"
RESPONSE = bytes((i * 31) & 0xFF for i in range(5000))


def _trace(tmp_path: Path, handshake: bool, moved: int = 0) -> tuple[str, list[int]]:
    """A v0 request/response; the server's DATA_FIN rides on its last data, then goes again on a pure ACK
    (meta retransmission) and on a second subflow (reinjected). ``moved``: the last copy is that far off."""
    sc = ConnectionBuilder(version=0)
    sf = sc.initial(handshake=handshake)
    if not handshake:  # the uncaptured SYNs took relative sequence number 0: data starts at 1, as on the wire
        sf.nxt["c"] = (sf.nxt["c"] + 1) & MASK32
        sf.nxt["s"] = (sf.nxt["s"] + 1) & MASK32
    client, server = sc.side("c"), sc.side("s")

    def dss(side: str, dsn: int, ssn: int, data_len: int, fin: bool = False) -> Dss:
        me = sc.side(side)
        return Dss(V0 | (DSS_DATA_FIN if fin else 0), data_ack=me.acked & MASK32, dsn=dsn & MASK32, ssn=ssn,
                   data_len=data_len)  # fmt: skip

    sf.send("c", REQUEST, dss=dss("c", client.dsn, sf.rel("c"), len(REQUEST)))
    client.dsn = server.acked = client.dsn + len(REQUEST)
    sf.ack("s", extra=[])
    for at in range(0, 4000, 1000):
        sf.send("s", RESPONSE[at : at + 1000], dss=dss("s", server.dsn + at, sf.rel("s"), 1000))
    fin_dsn = server.dsn + len(RESPONSE)
    frames = [sf.send("s", RESPONSE[4000:], dss=dss("s", server.dsn + 4000, sf.rel("s"), 1001, fin=True))]
    server.dsn = client.acked = fin_dsn  # the DATA_FIN not yet acknowledged
    # meta retransmission of the DATA_FIN alone: a pure ACK, subflow sequence 0, data-level length 1
    frames.append(sf.raw("s", ACK, [dss("s", fin_dsn, 0, 1, fin=True)]))
    join = sc.join()
    frames.append(join.raw("s", ACK, [dss("s", fin_dsn + moved, 0, 1, fin=True)]))  # reinjected
    client.acked = fin_dsn + 1
    # the client's DATA_FIN on a subflow FIN (combined, as the v0 kernel does when nothing is outstanding)
    sf.raw("c", FIN | ACK, [dss("c", client.dsn, 0, 1, fin=True)])
    server.acked = client.dsn + 1
    for each in (sf, join):
        each.raw("s", FIN | ACK, [Dss(DSS_ACK, data_ack=server.acked & MASK32)])
        each.raw("c", ACK, [Dss(DSS_ACK, data_ack=client.acked & MASK32)])
    return sc.write(tmp_path), frames


@pytest.mark.parametrize("handshake", [True, False], ids=["handshake", "mid-connection"])
def test_v0_data_fin_repeated_at_one_dsn_is_no_close003(tmp_path: Path, handshake: bool) -> None:
    path, _ = _trace(tmp_path, handshake)
    analysis = analyze(path)
    assert [f.rule for f in analysis.findings if f.rule == "CLOSE-003"] == []
    # nor a warning: without the handshake the 32-bit DSNs get their high half from the 64-bit Data ACKs
    # (before that, DACK-006 and DACK-002 compared a real Data ACK with a guessed DSN)
    assert [f for f in analysis.findings if f.severity >= Severity.WARNING] == []


def test_v0_data_fin_at_another_dsn_is_close003_naming_frames(tmp_path: Path) -> None:
    path, frames = _trace(tmp_path, handshake=True, moved=7)
    analysis = analyze(path)
    (finding,) = [f for f in analysis.findings if f.rule == "CLOSE-003"]
    assert finding.severity == Severity.ERROR
    assert finding.frames and set(finding.frames) <= set(frames) and frames[-1] in finding.frames
