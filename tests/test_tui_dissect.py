"""The detail tree's computed values: keys → tokens, HMACs checked against the model's keys, DSNs
expanded, checksums verified, the mapping that covers a payload, and byte ranges for the hex view.

Why: these values are what a user reads to judge a trace; they must agree with the analyzer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from analyzer.mptcp import crypto
from tui.dissect import Context, Node, dissect
from tui.session import Session

REPO = Path(__file__).resolve().parent.parent
TCPDUMP = REPO / "tests" / "data" / "tcpdump"


def walk(nodes: list[Node]) -> Iterator[Node]:
    for node in nodes:
        yield node
        yield from walk(node.children)


def tree(session: Session, frame: int) -> list[Node]:
    packet = session.store.packet(frame)
    ctx = Context(session.subflow(packet.row.subflow), session.index.first_ts or 0.0, session.find_mapping)
    return dissect(packet, ctx)


def find(nodes: list[Node], prefix: str) -> Node:
    return next(n for n in walk(nodes) if n.label.startswith(prefix))


@pytest.fixture(scope="module")
def v0() -> Iterator[Session]:
    s = Session(str(TCPDUMP / "mptcp-v0.pcap"))
    s.run()
    yield s
    s.close()


def test_key_gives_token_and_idsn(v0: Session) -> None:
    nodes = tree(v0, 1)
    key = find(nodes, "Sender's key")
    value = int(key.label.split(": ")[1], 16)
    assert key.children[0].label == f"Token (from key): {crypto.token_from_key(value, 0):08x}"
    assert key.children[1].label == f"IDSN (from key): {crypto.idsn_from_key(value, 0)}"
    data = v0.store.packet(1).data
    assert data[key.start : key.end] == value.to_bytes(8, "big")


def test_join_hmacs_are_checked_against_the_keys(v0: Session) -> None:
    synack = find(tree(v0, 9), "Truncated HMAC")
    assert synack.children[0].label.endswith("[correct]") and synack.children[0].style == "ok"
    ack = find(tree(v0, 10), "HMAC")
    assert ack.children[0].label.endswith("[correct]")
    token = find(tree(v0, 8), "Receiver's token")
    assert token.children[0].label.startswith("Matches connection 1")


def test_dss_values_and_checksum(v0: Session) -> None:
    nodes = tree(v0, 4)
    dsn = find(nodes, "Data sequence number")
    assert [c.label.split(":")[0] for c in dsn.children] == ["64-bit", "Relative to the sender's IDSN"]
    assert dsn.children[1].label.endswith(": 1")
    checksum = find(nodes, "Checksum: 0x082f")
    assert checksum.children[0].label == "Verified over this segment's payload [correct]"
    assert (dsn.start, dsn.end) == (82, 86)


def test_payload_names_its_mapping(v0: Session) -> None:
    nodes = tree(v0, 6)
    payload = find(nodes, "Payload")
    mapping = next(c for c in payload.children if c.label.startswith("Mapping of frame 6"))
    assert mapping.style == "ok"


def test_add_addr_hmac_mismatch_is_flagged() -> None:
    s = Session(str(TCPDUMP / "mptcp-aa-v1.pcap"))
    s.run()
    try:
        hmac = find(tree(s, 13), "Truncated HMAC")
        assert hmac.children[0].label.endswith("[MISMATCH]") and hmac.children[0].style == "bad"
    finally:
        s.close()


def test_every_frame_of_the_samples_dissects() -> None:
    """No packet of the vendored captures makes the dissector raise; byte ranges are ordered."""
    for path in sorted(TCPDUMP.glob("*.pcap")):
        s = Session(str(path))
        try:
            s.run()
            for frame in range(1, s.index.count + 1):
                for node in walk(tree(s, frame)):
                    assert 0 <= node.start <= node.end, (path.name, frame, node.label)
        finally:
            s.close()


@pytest.mark.parametrize("fault", ["bad-join-synack-hmac", "bad-join-ack-hmac"])
def test_join_hmac_verdicts_are_the_trackers(fault: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The detail pane shows the value the tracker computed (Subflow.join_*_expected), never its own: with the
    HMAC functions broken after the load, a wrong HMAC from the simulator's fault is still flagged."""
    from analyzer.endpoint import faults, sim

    out = tmp_path / f"{fault}.pcap"
    sim.run(faults.fault_config(fault, out, c2s_bytes=20_000, s2c_bytes=5_000))
    s = Session(str(out))
    s.run()
    try:

        def broken(*_: object, **__: object) -> object:
            raise AssertionError("the detail pane recomputed an HMAC")

        monkeypatch.setattr(crypto, "join_synack_truncated_hmac", broken)
        monkeypatch.setattr(crypto, "join_ack_hmac", broken)
        monkeypatch.setattr(crypto, "add_addr_hmac", broken)
        prefix = "Truncated HMAC" if fault == "bad-join-synack-hmac" else "HMAC: "
        verdicts = []
        for frame in range(1, s.index.count + 1):
            nodes = tree(s, frame)
            node = next((n for n in walk(nodes) if n.label.startswith(prefix) and n.children), None)
            if node is None or not any(n.label.startswith("Subtype: MP_JOIN") for n in walk(nodes)):
                continue
            sf = s.subflow(s.store.packet(frame).row.subflow)
            assert sf is not None
            expected = sf.join_synack_hmac_expected if prefix.startswith("Truncated") else sf.join_ack_hmac_expected
            assert expected is not None
            shown = f"{expected:016x}" if isinstance(expected, int) else expected.hex()
            assert node.children[0].label.startswith(f"Expected {shown}")
            verdicts.append(node.children[0].style)
        assert "bad" in verdicts  # the fault's join is flagged
    finally:
        s.close()
