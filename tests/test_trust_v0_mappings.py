"""Mappings that do not travel with their data (issue 9): the v0 habits of the multipath-tcp.org kernel and
capture loss.

Why: RFC 6824 and RFC 8684 (§3.3.1) only require every byte to be covered by a mapping the receiver knows;
a mapping may come ahead of its data (on a pure ACK), after it (on a later segment or a retransmission),
and be re-sent with retransmissions. A capture may also lose the segment that carried a mapping while the
bytes after it arrive. Counting payload as unmapped the moment it arrives raised DSS-004 errors (and lost
those bytes from the stream) on complete v0 captures. Unmapped bytes now wait for a mapping on the same
subflow; what is still unmapped at the end is DSS-004, an error only when the capture lost none of the
subflow's bytes and saw the subflow end. Each habit has a legal trace and a close illegal twin.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from analyzer.endpoint.builder import ConnectionBuilder, SubflowBuilder
from analyzer.findings import Severity
from analyzer.model import Analysis
from analyzer.mptcp.options import DSS_ACK, DSS_MAPPING, Dss
from analyzer.pipeline import analyze

MASK32 = 0xFFFFFFFF
V0 = DSS_ACK | DSS_MAPPING  # what the v0 kernel sends: 32-bit Data ACK, 32-bit DSN
DATA = bytes((i * 13 + 5) & 0xFF for i in range(6000))


def _ack_only(sc: ConnectionBuilder, side: str = "c") -> Dss:
    return Dss(DSS_ACK, data_ack=sc.side(side).acked & MASK32)


def _mapping(sc: ConnectionBuilder, rel_ssn: int, offset: int, length: int) -> Dss:
    """A v0 mapping of the client's stream bytes [offset, offset + length) at relative subflow ``rel_ssn``."""
    base = sc.side("c").dsn
    return Dss(V0, data_ack=sc.side("c").acked & MASK32, dsn=(base + offset) & MASK32, ssn=rel_ssn,
               data_len=length)  # fmt: skip


def _finish(sc: ConnectionBuilder, sf: SubflowBuilder, total: int, close: bool = True) -> None:
    client = sc.side("c")
    client.dsn = sc.side("s").acked = client.dsn + total
    sf.ack("s")
    if close:
        sc.close()


def _problems(analysis: Analysis) -> list[tuple[str, str]]:
    return [(f.rule, f.severity.label) for f in analysis.findings if f.severity >= Severity.WARNING]


def _stream_ok(analysis: Analysis, data: bytes) -> None:
    stream = analysis.streams[1][0]
    assert stream.bytes == len(data) and stream.complete
    assert stream.sha256 == hashlib.sha256(data).hexdigest()


def test_mapping_ahead_of_its_data_on_a_pure_ack(tmp_path: Path) -> None:
    sc = ConnectionBuilder(version=0)
    sf = sc.initial()
    sf.send("c", b"", dss=_mapping(sc, sf.rel("c"), 0, 3000))  # the mapping alone, on a pure ACK
    for at in range(0, 3000, 1000):
        sf.send("c", DATA[at : at + 1000], dss=_ack_only(sc))
    _finish(sc, sf, 3000)
    analysis = analyze(sc.write(tmp_path))
    assert _problems(analysis) == []
    _stream_ok(analysis, DATA[:3000])


def test_mapping_after_its_data(tmp_path: Path) -> None:
    """The first two segments go without a mapping; the third carries one covering all three."""
    sc = ConnectionBuilder(version=0)
    sf = sc.initial()
    start = sf.rel("c")
    sf.send("c", DATA[:1000], dss=_ack_only(sc))
    sf.send("c", DATA[1000:2000], dss=_ack_only(sc))
    sf.send("c", DATA[2000:3000], dss=_mapping(sc, start, 0, 3000))
    _finish(sc, sf, 3000)
    analysis = analyze(sc.write(tmp_path))
    assert _problems(analysis) == []
    _stream_ok(analysis, DATA[:3000])


def test_mapping_resent_with_a_retransmission(tmp_path: Path) -> None:
    """Data without its mapping, then the TCP retransmission of it that carries the mapping."""
    sc = ConnectionBuilder(version=0)
    sf = sc.initial()
    start = sf.rel("c")
    sf.send("c", DATA[:1000], dss=_ack_only(sc))
    sf.raw("c", 0x18, [_mapping(sc, start, 0, 1000)], DATA[:1000], seq=sf.isn["c"] + start)
    _finish(sc, sf, 1000)
    analysis = analyze(sc.write(tmp_path))
    assert _problems(analysis) == []
    _stream_ok(analysis, DATA[:1000])


def test_never_mapped_bytes_on_a_subflow_seen_to_its_end_are_an_error(tmp_path: Path) -> None:
    """The illegal twin of the above: no mapping ever comes, and the capture saw the subflow close."""
    sc = ConnectionBuilder(version=0)
    sf = sc.initial()
    sf.send("c", DATA[:1000], dss=_mapping(sc, sf.rel("c"), 0, 1000))
    frame = sf.send("c", DATA[1000:2000], dss=_ack_only(sc))
    _finish(sc, sf, 2000)
    analysis = analyze(sc.write(tmp_path))
    (finding,) = [f for f in analysis.findings if f.rule == "DSS-004"]
    assert (finding.severity, finding.frames, finding.assumes) == (Severity.ERROR, [frame], ())


def test_never_mapped_bytes_before_the_capture_ends_are_a_warning(tmp_path: Path) -> None:
    """The same bytes, but the capture stops before the subflow ends: a mapping may still follow."""
    sc = ConnectionBuilder(version=0)
    sf = sc.initial()
    sf.send("c", DATA[:1000], dss=_mapping(sc, sf.rel("c"), 0, 1000))
    sf.send("c", DATA[1000:2000], dss=_ack_only(sc))
    _finish(sc, sf, 2000, close=False)
    analysis = analyze(sc.write(tmp_path))
    (finding,) = [f for f in analysis.findings if f.rule == "DSS-004"]
    assert finding.severity == Severity.WARNING and finding.assumes == ("subflow-end-captured",)


def _lost_mapping(tmp_path: Path, retransmitted: bool) -> Analysis:
    """Segment A carries the mapping of A + B; the capture loses A (B arrives: a TCP-level gap)."""
    sc = ConnectionBuilder(version=1)
    sf = sc.initial()
    start = sf.rel("c")
    client = sc.side("c")
    mapping = Dss(DSS_ACK | DSS_MAPPING | 0x08 | 0x02, data_ack=client.acked, dsn=client.dsn, ssn=start,
                  data_len=2000)  # 64-bit, as Linux v1  # fmt: skip
    sf.send("c", DATA[:1000], dss=mapping)
    del sc.packets[-1]  # A: not in the capture
    sf.send("c", DATA[1000:2000], dss=Dss(DSS_ACK | 0x02, data_ack=client.acked))
    if retransmitted:
        sf.raw("c", 0x18, [mapping], DATA[:1000], seq=sf.isn["c"] + start)
    client.dsn = sc.side("s").acked = client.dsn + 2000
    sf.ack("s")
    sc.close()
    return analyze(sc.write(tmp_path))


def test_capture_loss_of_the_mapping_then_its_retransmission(tmp_path: Path) -> None:
    analysis = _lost_mapping(tmp_path, retransmitted=True)
    assert [rule for rule, _ in _problems(analysis)] == []
    _stream_ok(analysis, DATA[:2000])


def test_capture_loss_of_the_mapping_never_retransmitted_is_a_warning(tmp_path: Path) -> None:
    analysis = _lost_mapping(tmp_path, retransmitted=False)
    (finding,) = [f for f in analysis.findings if f.rule == "DSS-004"]
    assert finding.severity == Severity.WARNING and "no-capture-loss" in finding.assumes
    assert finding.frames


def test_waiting_bytes_are_bounded_and_all_counted(tmp_path: Path) -> None:
    """400 kB that no mapping ever covers: past the bound the oldest are unmapped at once, none is lost."""
    sc = ConnectionBuilder(version=0)
    sf = sc.initial()
    sf.send("c", DATA[:1000], dss=_mapping(sc, sf.rel("c"), 0, 1000))
    for _ in range(400):
        sf.send("c", DATA[:1000], dss=_ack_only(sc))
    _finish(sc, sf, 1000)
    analysis = analyze(sc.write(tmp_path))
    (finding,) = [f for f in analysis.findings if f.rule == "DSS-004"]
    assert finding.message.startswith("400000 payload bytes") and finding.severity == Severity.ERROR
    assert analysis.streams[1][0].bytes == 1000
