"""Handshake-less subflows never share a data stream without evidence (issue: one buffer for five TCP connections).

A v0 stack maps with 32-bit DSNs; without the MP_CAPABLE handshake nothing links two such subflows, so each
keeps its own stream: no gigabyte "hole" between two unrelated DSN bases, no checksum judged against another
connection's DSNs.
"""

from __future__ import annotations

from pathlib import Path

from helpers import pcapgen as g

from analyzer.findings import Severity
from analyzer.mptcp.options import DSS_ACK, DSS_MAPPING, Dss
from analyzer.pipeline import analyze

ACK, PSH = 0x10, 0x08


def handshake_less_flow(client_port: int, dsn: int, payloads: list[bytes], client: str = "10.1.0.1") -> list[bytes]:
    """Mid-connection segments of one v0 subflow: each data segment maps itself with a 32-bit DSN."""
    packets = []
    seq, ack = 1_000_000, 5_000_000
    for payload in payloads:
        opt = Dss(DSS_ACK | DSS_MAPPING, data_ack=77, dsn=dsn & 0xFFFFFFFF, ssn=(seq - 999_000) & 0xFFFFFFFF,
                  data_len=len(payload))  # fmt: skip
        packets.append(g.ipv4_tcp(client, "10.2.0.2", client_port, 80, seq, ack, ACK | PSH, opt.build(), payload))
        reply = Dss(DSS_ACK, data_ack=(dsn + len(payload)) & 0xFFFFFFFF)
        packets.append(g.ipv4_tcp("10.2.0.2", client, 80, client_port, ack, seq + len(payload), ACK, reply.build()))
        seq += len(payload)
        dsn += len(payload)
    return packets


def test_unrelated_handshake_less_v0_subflows_keep_their_own_streams(tmp_path: Path) -> None:
    flows = [
        handshake_less_flow(40001, 0x00001000, [b"GET /a HTTP/1.1\r\n\r\n", b"more"]),
        handshake_less_flow(40002, 0x90000000, [b"GET /b HTTP/1.1\r\n\r\n"], client="10.1.0.9"),
        handshake_less_flow(40003, 0x40000000, [b"GET /c HTTP/1.1\r\n\r\n", b"x" * 100]),
    ]
    longest = max(len(f) for f in flows)
    packets = [f[i] for i in range(longest) for f in flows if i < len(f)]  # the flows interleaved, as on a wire
    path = tmp_path / "v0-web.pcap"
    path.write_bytes(g.pcap_bytes(packets, g.LINKTYPE_RAW))
    analysis = analyze(str(path))
    holes = [s.hole_bytes for pair in analysis.streams.values() for s in pair]
    assert max(holes, default=0) < 1 << 20, f"a hole between unrelated DSN bases: {holes}"
    total = sum(s.bytes for pair in analysis.streams.values() for s in pair)
    assert total == sum(len(p) for p in (b"GET /a HTTP/1.1\r\n\r\n", b"more", b"GET /b HTTP/1.1\r\n\r\n",
                                         b"GET /c HTTP/1.1\r\n\r\n", b"x" * 100))  # fmt: skip
    assert not [f for f in analysis.findings if f.severity is Severity.ERROR]
