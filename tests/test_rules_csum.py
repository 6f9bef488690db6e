"""CSUM family: the DSS checksum (RFC 8684 §3.3, §3.3.1, §3.7).

Checksums are on for the whole connection when either MP_CAPABLE SYN or SYN/ACK sets A. Then every
mapping (DSS with M, MP_CAPABLE with data) carries a checksum over the pseudo-header (64-bit DSN,
relative SSN, data-level length) and the whole mapping's payload; otherwise none does. Each rule has
a crafted trace that breaks it and a legal twin that comes as close as possible.
"""

from __future__ import annotations

import struct
from pathlib import Path

from analyzer.endpoint.builder import ACK, PSH, ConnectionBuilder, SubflowBuilder
from analyzer.findings import Finding, Severity
from analyzer.model import Analysis
from analyzer.mptcp import crypto
from analyzer.mptcp.options import DSS_ACK, DSS_ACK64, DSS_DSN64, DSS_MAPPING, Dss, MpCapable, MpFail
from analyzer.pipeline import analyze

MASK64 = (1 << 64) - 1
MAP64 = DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64


def findings(analysis: Analysis, rule: str) -> list[Finding]:
    return [f for f in analysis.findings if f.rule == rule]


def one(analysis: Analysis, rule: str) -> Finding:
    (finding,) = findings(analysis, rule)
    return finding


def send(sc: ConnectionBuilder, sf: SubflowBuilder, payload: bytes, checksum: int | None, side: str = "c") -> int:
    """``payload`` with a mapping that carries exactly this checksum field (None: no field)."""
    me = sc.side(side)
    dss = Dss(MAP64, data_ack=me.acked, dsn=me.dsn, ssn=sf.rel(side), data_len=len(payload), checksum=checksum)
    frame = sf.send(side, payload, dss=dss)
    me.dsn = (me.dsn + len(payload)) & MASK64
    sc.side("s" if side == "c" else "c").acked = me.dsn
    return frame


def good_checksum(sc: ConnectionBuilder, sf: SubflowBuilder, payload: bytes, side: str = "c") -> int:
    return crypto.dss_checksum(sc.side(side).dsn, sf.rel(side), len(payload), payload)


def write_with_snaplen(sc: ConnectionBuilder, directory: Path, snaplen: int) -> str:
    """The scenario as a pcap whose records keep only ``snaplen`` bytes of each packet (H-SNAP)."""
    path = directory / "snaplen.pcap"
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 101))
        for ts, packet in sc.packets:
            kept = packet[:snaplen]
            f.write(struct.pack("<IIII", int(ts), int((ts % 1) * 1e6), len(kept), len(packet)))
            f.write(kept)
    return str(path)


# CSUM-001 (reported by the reassembler) ----------------------------------------------------------


def test_csum_001_checksum_does_not_verify(tmp_path: Path) -> None:
    """§3.3.1: the checksum covers the pseudo-header and the mapping's bytes."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    frame = send(sc, sf, b"corrupted?", good_checksum(sc, sf, b"corrupted!"))
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CSUM-001")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_csum_001_checksum_verifies(tmp_path: Path) -> None:
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    sf.send("c", b"all good")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CSUM-001") == []


def test_csum_001_payload_cut_by_the_snaplen_is_not_verifiable(tmp_path: Path) -> None:
    """H-SNAP: with 20 payload bytes missing from the capture the checksum cannot be judged."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    payload = b"p" * 100
    send(sc, sf, payload, good_checksum(sc, sf, payload) ^ 0x1234)
    analysis = analyze(write_with_snaplen(sc, tmp_path, 20 + 20 + 28 + 80))  # IP + TCP + DSS(+NOPs) + 80 bytes
    assert findings(analysis, "CSUM-001") == []
    (sf_model,) = analysis.connections[0].subflows
    assert sf_model.halves[0].checksums == (0, 0, 1)  # not verifiable, never "wrong"


# CSUM-002 ----------------------------------------------------------------------------------------


def test_csum_002_checksum_missing_although_negotiated(tmp_path: Path) -> None:
    """§3.3: with A set in the handshake, every mapping carries a checksum."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    sf.send("c", b"with")
    frame = send(sc, sf, b"without", None)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CSUM-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_csum_002_mp_capable_with_data_without_checksum(tmp_path: Path) -> None:
    """§3.3: MP_CAPABLE with data of length 22 (no checksum) on a checksum connection."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    c, s = sc.side("c"), sc.side("s")
    frame = sf.send("c", b"first", options=[MpCapable(1, 0x81, c.key, s.key, data_len=5)])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CSUM-002")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_csum_002_every_mapping_carries_a_checksum(tmp_path: Path) -> None:
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    sf.send("c", b"with")
    sf.send("c", b"with too")
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CSUM-002") == []
    assert [f for f in analysis.findings if f.severity >= Severity.WARNING] == []


# CSUM-003 ----------------------------------------------------------------------------------------


def test_csum_003_checksum_present_although_not_negotiated(tmp_path: Path) -> None:
    """§3.3: with A clear on both SYNs, mappings carry no checksum (length 20/28 instead of 18/26)."""
    sc = ConnectionBuilder(checksum=False)
    sf = sc.initial()
    sf.send("c", b"without")
    frame = send(sc, sf, b"with", good_checksum(sc, sf, b"with"))
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CSUM-003")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_csum_003_mp_capable_with_data_and_checksum(tmp_path: Path) -> None:
    sc = ConnectionBuilder(checksum=False)
    sf = sc.initial()
    c, s = sc.side("c"), sc.side("s")
    checksum = crypto.dss_checksum(c.dsn, 1, 5, b"first")
    frame = sf.send("c", b"first", options=[MpCapable(1, 0x01, c.key, s.key, data_len=5, checksum=checksum)])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CSUM-003")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frame])


def test_csum_003_no_mapping_carries_a_checksum(tmp_path: Path) -> None:
    sc = ConnectionBuilder(checksum=False)
    sf = sc.initial()
    c, s = sc.side("c"), sc.side("s")
    sf.send("c", b"first", options=[MpCapable(1, 0x01, c.key, s.key, data_len=5)])
    c.dsn += 5
    s.acked = c.dsn
    sf.send("c", b"second")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CSUM-003") == []


# CSUM-004 ----------------------------------------------------------------------------------------


def infinite_mapping(checksum: int) -> tuple[ConnectionBuilder, int]:
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    sf.send("c", b"mapped")
    sf.ack("s")
    c = sc.side("c")
    dss = Dss(MAP64, data_ack=c.acked, dsn=c.dsn, ssn=sf.rel("c"), data_len=0, checksum=checksum)
    frame = sf.send("c", b"plain", dss=dss)
    return sc, frame


def test_csum_004_infinite_mapping_with_a_checksum(tmp_path: Path) -> None:
    """§3.3.1, §3.7: an infinite mapping covers no bytes; its checksum field is 0."""
    sc, frame = infinite_mapping(checksum=0xBEEF)
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CSUM-004")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_csum_004_infinite_mapping_with_checksum_zero(tmp_path: Path) -> None:
    sc, _ = infinite_mapping(checksum=0)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CSUM-004") == []


# CSUM-005 ----------------------------------------------------------------------------------------


def corrupted_then(reaction: str, wait: float = 2.0) -> tuple[ConnectionBuilder, int]:
    """A client mapping fails its checksum; the server then reacts (or not); returns the mapping's frame."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    dsn = sc.side("c").dsn
    frame = send(sc, sf, b"bits flipped", good_checksum(sc, sf, b"bits flippeD"))
    if reaction == "mp_fail":
        sf.ack("s", extra=[MpFail(dsn)])
    sf.send("c", b" and more")
    sf.ack("s")  # data-acknowledges past the failed mapping
    sc.wait(wait)
    sf.ack("c")
    return sc, frame


def test_csum_005_checksum_failure_ignored_by_the_receiver(tmp_path: Path) -> None:
    """§3.7: after a failed checksum the receiver sends MP_FAIL or resets the subflow."""
    sc, frame = corrupted_then("nothing")
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CSUM-005")
    assert (finding.severity, finding.frames) == (Severity.WARNING, [frame])


def test_csum_005_receiver_sends_mp_fail(tmp_path: Path) -> None:
    sc, _ = corrupted_then("mp_fail")
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CSUM-005") == []


def test_csum_005_capture_ends_before_a_reaction_could_come(tmp_path: Path) -> None:
    """H-END: no verdict when the capture stops right after the failure."""
    sc, _ = corrupted_then("nothing", wait=0.1)
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CSUM-005") == []


# CSUM-006 ----------------------------------------------------------------------------------------


def mid_connection(checksums: list[bool]) -> tuple[ConnectionBuilder, list[int]]:
    """The capture starts at the MP_CAPABLE third ACK: the negotiation itself is not in the capture."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial(handshake=False)
    sf.nxt = {"c": 1001, "s": 5001}
    c, s = sc.side("c"), sc.side("s")
    sf.raw("c", ACK, [MpCapable(1, 0x81, c.key, s.key)])
    frames = []
    for index, with_checksum in enumerate(checksums):
        payload = f"mapping {index}".encode()
        frames.append(send(sc, sf, payload, good_checksum(sc, sf, payload) if with_checksum else None))
    return sc, frames


def test_csum_006_checksum_on_some_mappings_only(tmp_path: Path) -> None:
    """§3.3: checksum use is a property of the connection, even when the handshake was not captured."""
    sc, frames = mid_connection([True, True, False])
    analysis = analyze(sc.write(tmp_path))
    finding = one(analysis, "CSUM-006")
    assert (finding.severity, finding.frames) == (Severity.ERROR, [frames[0], frames[2]])  # first of each kind
    assert findings(analysis, "CSUM-002") == findings(analysis, "CSUM-003") == []


def test_csum_006_checksum_on_every_mapping(tmp_path: Path) -> None:
    sc, _ = mid_connection([True, True, True])
    analysis = analyze(sc.write(tmp_path))
    assert findings(analysis, "CSUM-006") == []


def test_data_fin_only_mapping_carries_a_checksum_too(tmp_path: Path) -> None:
    """§3.3.1: a DATA_FIN-only mapping (no payload, length 1) has a checksum over the pseudo-header."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    sf.send("c", b"data")
    sf.ack("s")
    sc.close()
    analysis = analyze(sc.write(tmp_path))
    assert [f.rule for f in analysis.findings if f.rule.startswith("CSUM")] == []


def test_multi_segment_mapping_with_checksum(tmp_path: Path) -> None:
    """§3.3.1: one checksum over a mapping that spans two segments (an odd-length first piece)."""
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    c = sc.side("c")
    payload = b"odd first piece" + b" and the second"
    checksum = crypto.dss_checksum(c.dsn, sf.rel("c"), len(payload), payload)
    dss = Dss(MAP64, data_ack=c.acked, dsn=c.dsn, ssn=sf.rel("c"), data_len=len(payload), checksum=checksum)
    sf.send("c", payload[:15], dss=dss)
    sf.raw("c", ACK | PSH, [sc.ack_only_dss("c")], payload[15:])
    c.dsn += len(payload)
    sc.side("s").acked = c.dsn
    sf.ack("s")
    analysis = analyze(sc.write(tmp_path))
    assert [f.rule for f in analysis.findings if f.severity >= Severity.WARNING] == []
    assert analysis.connections[0].subflows[0].halves[0].checksums == (1, 0, 0)
