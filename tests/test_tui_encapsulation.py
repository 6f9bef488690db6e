"""The detail pane shows the encapsulation the decoder followed, header by header (issue 9, TUI item).

Why: a capture from a router or a hypervisor holds MPTCP inside MPLS, PPPoE, GRE/ERSPAN, IP-in-IP,
6in4, VXLAN or Geneve. The tree must show those outer headers (labels, session ids, keys, VNIs) as
nodes above the inner IP and TCP, and the TCP node must cover the inner segment's bytes (its
checksum verifies), using the decoder's own description (``decode.describe_layers``).
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from test_encapsulation import (
    LINK_ETHERNET,
    SAMPLE,
    WRAPS,
    _ip_packets,
    _write,
    ethernet,
    ipv4,
)

from analyzer.ingest.capture import open_capture, read_records
from analyzer.ingest.decode import describe_layers, network_offset
from tui.dissect import Context, Node, dissect
from tui.session import Session

IPV6_SAMPLE = SAMPLE.parent / "ipv6.pcap"

# Wrap name -> the labels (prefixes) of the top-level nodes after "Frame", in order.
INNER = ["Internet Protocol version 4, ", "Transmission Control Protocol"]
EXPECTED: dict[str, list[str]] = {
    "qinq": ["Ethernet II", *INNER],
    "mpls": ["Ethernet II", "MPLS label 1000, TC 0, TTL 64", "MPLS label 1001, TC 0, TTL 64, bottom of stack",
             *INNER],
    "pppoe": ["Ethernet II", "PPP-over-Ethernet session 0x1234", "Point-to-Point Protocol, protocol 0x0021 (IPv4)",
              *INNER],
    "ppp-link": ["Point-to-Point Protocol, protocol 0x0021 (IPv4)", *INNER],
    "pppoe-link": ["PPP-over-Ethernet session 0x1234", "Point-to-Point Protocol, protocol 0x0021", *INNER],
    "cisco-hdlc": ["Cisco HDLC, protocol 0x0800", *INNER],
    "gre": ["Ethernet II", "Internet Protocol version 4, 192.0.2.1 → 192.0.2.2",
            "Generic Routing Encapsulation, protocol 0x0800, key 7", *INNER],
    "ipip": ["Ethernet II", "Internet Protocol version 4, 192.0.2.1 → 192.0.2.2", *INNER],
    "vxlan": ["Ethernet II", "Internet Protocol version 4, 192.0.2.1", "User Datagram Protocol, 49152 → 4789",
              "Virtual eXtensible LAN, VNI 42", "Ethernet II", *INNER],
    "geneve": ["Ethernet II", "Internet Protocol version 6, ::1 → ::2", "User Datagram Protocol, 49152 → 6081",
               "Generic Network Virtualization Encapsulation, VNI 42", "Ethernet II", *INNER],
    "erspan-ii": ["Ethernet II", "Internet Protocol version 4, 192.0.2.1", "Generic Routing Encapsulation, "
                  "protocol 0x88be", "ERSPAN type II, session 7", "Ethernet II", *INNER],
    "erspan-iii": ["Ethernet II", "Internet Protocol version 4, 192.0.2.1", "Generic Routing Encapsulation, "
                   "protocol 0x22eb", "ERSPAN type III, session 7", "Ethernet II", *INNER],
    "vxlan-in-gre-in-mpls": ["Ethernet II", "MPLS label 1000", "MPLS label 1001", "Internet Protocol version 4, 192",
                             "Generic Routing Encapsulation", "Internet Protocol version 4, 192",
                             "User Datagram Protocol", "Virtual eXtensible LAN, VNI 42", "Ethernet II",
                             *INNER],
}  # fmt: skip


def _tcp_packets(count: int = 4) -> list[tuple[float, bytes]]:
    """The sample's first IPv4 TCP packets (the SYN with MP_CAPABLE first), ARP and MLD left out."""
    out = [(ts, ip) for ts, ip in _ip_packets() if ip[0] >> 4 == 4 and ip[9] == 6][:count]
    assert out[0][1][20 + 13] & 0x02  # a SYN
    return out


def _walk(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    for node in nodes:
        out.append(node)
        out.extend(_walk(node.children))
    return out


def _tree(path: Path, frame: int) -> tuple[list[Node], bytes]:
    session = Session(str(path))
    try:
        session.run()
        packet = session.store.packet(frame)
        ctx = Context(session.subflow(packet.row.subflow), session.index.first_ts or 0.0, session.find_mapping)
        return dissect(packet, ctx), packet.data
    finally:
        session.close()


def _check_inner_tcp(nodes: list[Node], data: bytes) -> None:
    """The TCP node covers the innermost segment: its checksum verifies and MP_CAPABLE is parsed in it."""
    tcp = next(n for n in nodes if n.label.startswith("Transmission Control Protocol"))
    sport, dport = (int(p) for p in tcp.label.split(", ")[1].split(" → "))
    assert data[tcp.start : tcp.start + 4] == struct.pack("!HH", sport, dport)
    labels = [n.label for n in _walk([tcp])]
    assert any(label.startswith("Checksum:") and label.endswith("[correct]") for label in labels)
    assert any("MP_CAPABLE" in label for label in labels)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_detail_tree_shows_every_outer_header(name: str, tmp_path: Path) -> None:
    link_type, wrap = WRAPS[name]
    path = tmp_path / f"{name}.pcap"
    _write(path, link_type, [(ts, wrap(ip)) for ts, ip in _tcp_packets()])
    nodes, data = _tree(path, 1)  # the SYN with MP_CAPABLE
    labels = [n.label for n in nodes[1:]]
    assert len(labels) == len(EXPECTED[name]), labels
    for label, prefix in zip(labels, EXPECTED[name], strict=True):
        assert label.startswith(prefix), (label, prefix)
    _check_inner_tcp(nodes, data)


def test_header_fields_cover_their_bytes(tmp_path: Path) -> None:
    """The hex view highlights a field's bytes: MPLS label, GRE key, VXLAN VNI, PPPoE session id."""
    link_type, wrap = WRAPS["vxlan-in-gre-in-mpls"]
    path = tmp_path / "deep.pcap"
    _write(path, link_type, [(ts, wrap(ip)) for ts, ip in _tcp_packets(2)])
    nodes, data = _tree(path, 1)
    fields = {n.label: n for n in _walk(nodes)}
    label = fields["Label: 1000"]
    assert int.from_bytes(data[label.start : label.end], "big") >> 4 == 1000
    vni = fields["VNI: 42"]
    assert int.from_bytes(data[vni.start : vni.end], "big") == 42
    key = fields["Key: 7"]
    assert data[key.start : key.end] == b"\0\0\0\7"

    link_type, wrap = WRAPS["pppoe"]
    path = tmp_path / "pppoe.pcap"
    _write(path, link_type, [(ts, wrap(ip)) for ts, ip in _tcp_packets(2)])
    nodes, data = _tree(path, 1)
    session = next(n for n in _walk(nodes) if n.label.startswith("Session ID"))
    assert data[session.start : session.end] == b"\x12\x34"


def _ipv6_packets() -> list[tuple[float, bytes]]:
    stream, info = open_capture(str(IPV6_SAMPLE))
    with stream:
        out = []
        for rec in read_records(stream, info):
            net = network_offset(rec.link_type, rec.data)
            assert isinstance(net, tuple)
            ip = rec.data[net[0] :]
            if ip[0] >> 4 == 6 and ip[6] == 6:  # TCP
                out.append((rec.ts, ip))
            if len(out) == 4:
                return out
    return out


def test_6in4_shows_the_outer_ipv4_above_the_inner_ipv6(tmp_path: Path) -> None:
    path = tmp_path / "6in4.pcap"
    _write(path, LINK_ETHERNET, [(ts, ethernet(ipv4(41, ip))) for ts, ip in _ipv6_packets()])
    nodes, data = _tree(path, 1)
    labels = [n.label for n in nodes[1:]]
    assert labels[0].startswith("Ethernet II")
    assert labels[1].startswith("Internet Protocol version 4, 192.0.2.1 → 192.0.2.2")
    assert labels[2].startswith("Internet Protocol version 6, ")
    assert labels[3].startswith("Transmission Control Protocol")
    _check_inner_tcp(nodes, data)


def test_cut_tunnel_shows_what_was_decoded_and_why_it_stopped(tmp_path: Path) -> None:
    """A VXLAN frame cut inside the inner Ethernet header: the outer layers are shown, then the reason."""
    _link_type, wrap = WRAPS["vxlan"]
    frame = wrap(_tcp_packets(1)[0][1])
    layers, verdict = describe_layers(LINK_ETHERNET, frame[: 14 + 20 + 8 + 8 + 6])
    assert [layer.name for layer in layers] == ["Ethernet", "IPv4", "UDP", "VXLAN"]
    assert verdict.name == "TRUNCATED_HEADER"  # type: ignore[union-attr]
    path = tmp_path / "cut.pcap"
    _write(path, LINK_ETHERNET, [(1.0, frame[: 14 + 20 + 8 + 8 + 6])])
    nodes, _data = _tree(path, 1)
    assert nodes[-1].label.startswith("Virtual eXtensible LAN, VNI 42")
    assert nodes[-1].children[-1].label.startswith("Not analysed: ")
