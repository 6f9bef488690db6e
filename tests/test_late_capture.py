"""Captures that start late: the handshake is missing, and the grouping must use weaker evidence."""

from __future__ import annotations

from pathlib import Path

import dpkt

from analyzer.findings import Severity
from analyzer.model import Grouping
from analyzer.pipeline import analyze

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _tail(tmp_path: Path, name: str, keep: callable[[int, bytes], bool]) -> str:  # type: ignore[valid-type]
    """Copy a sample, keeping only the packets ``keep(index, bytes)`` accepts."""
    src = SAMPLES / f"{name}.pcap"
    out = tmp_path / f"{name}-late.pcap"
    with src.open("rb") as f_in, out.open("wb") as f_out:
        reader = dpkt.pcap.Reader(f_in)
        writer = dpkt.pcap.Writer(f_out, linktype=reader.datalink(), snaplen=262144)
        for index, (ts, buf) in enumerate(reader):
            if keep(index, buf):  # type: ignore[misc]
                writer.writepkt(buf, ts)
    return str(out)


def _syn_indexes(name: str) -> list[int]:
    with (SAMPLES / f"{name}.pcap").open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        result = []
        for index, (_, buf) in enumerate(reader):
            sll2 = buf[20:]
            if len(sll2) > 33 and sll2[0] >> 4 == 4 and sll2[9] == 6 and sll2[20 + 13] & 0x02:
                result.append(index)
        return result


def test_missing_syns_are_grouped_by_the_keys_echoed_in_the_third_ack(tmp_path: Path) -> None:
    syns = set(_syn_indexes("two-subflows"))
    path = _tail(tmp_path, "two-subflows", lambda i, _: i not in syns)
    analysis = analyze(path)
    (conn,) = analysis.connections
    assert conn.sides[0].key is not None and conn.sides[1].key is not None
    assert len(conn.subflows) == 2
    assert {sf.grouping for sf in conn.subflows} <= {Grouping.KEYS, Grouping.DSN, Grouping.HANDSHAKE}
    assert not [f for f in analysis.findings if f.severity == Severity.ERROR]


def test_capture_starting_mid_transfer_groups_subflows_by_data_sequence(tmp_path: Path) -> None:
    first_data = max(_syn_indexes("two-subflows")) + 20
    path = _tail(tmp_path, "two-subflows", lambda i, _: i >= first_data)
    analysis = analyze(path)
    mptcp = [c for c in analysis.connections if c.subflows and c.subflows[0].mptcp_seen]
    assert len(mptcp) == 1, [len(c.subflows) for c in analysis.connections]
    (conn,) = mptcp
    assert len(conn.subflows) == 2
    assert Grouping.DSN in {sf.grouping for sf in conn.subflows}
    c2s, _ = analysis.streams[conn.id]
    assert not c2s.complete and c2s.sha256 is None  # the start of the stream is not in the capture
    assert not [f for f in analysis.findings if f.severity == Severity.ERROR]


def test_roles_are_guessed_from_ports_without_a_syn(tmp_path: Path) -> None:
    first_data = max(_syn_indexes("two-subflows")) + 20
    path = _tail(tmp_path, "two-subflows", lambda i, _: i >= first_data)
    analysis = analyze(path)
    for conn in analysis.connections:
        for sf in conn.subflows:
            assert sf.role_guessed
            assert sf.server_port == 5201
