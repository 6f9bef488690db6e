"""A DSS checksum over a 32-bit DSN whose high half the capture does not give cannot be judged wrong.

The pseudo-header sums the 64-bit DSN in 16-bit words, so its high half adds H mod 0xFFFF to the sum: for any
checksum some H makes it verify. Without the handshake (IDSN) or a 64-bit DSN in the stream, a failed check is
"not verifiable"; with a 64-bit DSN it is proof, an error.
"""

from __future__ import annotations

from pathlib import Path

from helpers import pcapgen as g

from analyzer.mptcp.options import DSS_ACK, DSS_DSN64, DSS_MAPPING, Dss
from analyzer.pipeline import analyze

ACK, PSH = 0x10, 0x08
PAYLOAD = b"GET / HTTP/1.0\r\n\r\n"


def one_packet(tmp_path: Path, flags: int, dsn: int, checksum: int) -> Path:
    opt = Dss(flags, data_ack=1, dsn=dsn, ssn=1, data_len=len(PAYLOAD), checksum=checksum)
    packet = g.ipv4_tcp("10.1.0.1", "10.2.0.2", 40000, 80, 1234, 5678, ACK | PSH, opt.build(), PAYLOAD)
    path = tmp_path / "one.pcap"
    path.write_bytes(g.pcap_bytes([packet], g.LINKTYPE_RAW))
    return path


def csum_findings(path: Path) -> tuple[list[str], tuple[int, int, int]]:
    analysis = analyze(str(path))
    rules = [f.rule for f in analysis.findings if f.rule.startswith("CSUM-001")]
    halves = [h for conn in analysis.connections for sf in conn.subflows for h in sf.halves]
    halves += [h for sf in analysis.tcp_flows for h in sf.halves]
    totals = tuple(sum(h.checksums[i] for h in halves) for i in range(3))
    return rules, (totals[0], totals[1], totals[2])


def test_32_bit_dsn_without_handshake_is_not_verifiable_never_an_error(tmp_path: Path) -> None:
    for checksum in (0x0000, 0x1234, 0xBEEF, 0xFFFF):
        rules, (ok, bad, unverifiable) = csum_findings(one_packet(tmp_path, DSS_ACK | DSS_MAPPING, 0x1000, checksum))
        assert rules == [], checksum
        assert bad == 0 and ok + unverifiable == 1, (checksum, ok, bad, unverifiable)


def test_64_bit_dsn_with_a_wrong_checksum_is_an_error(tmp_path: Path) -> None:
    rules, (ok, bad, _) = csum_findings(one_packet(tmp_path, DSS_ACK | DSS_MAPPING | DSS_DSN64, 0x1000, 0x1234))
    assert (rules, ok, bad) == (["CSUM-001"], 0, 1)
