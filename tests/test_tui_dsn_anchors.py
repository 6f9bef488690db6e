"""The detail pane's 64-bit DSNs past 2 GiB: a re-read packet's 32-bit DSN is expanded near the 64-bit value the
pass saw last before its frame (tui.collect.DsnAnchors), not near the IDSN, which is exact only for the first
2^31 bytes of a connection side.
"""

from __future__ import annotations

from analyzer.ingest.segment import Segment
from analyzer.model import Connection, Subflow
from analyzer.mptcp.datalevel import PacketLevels
from analyzer.mptcp.options import Dss
from tui.collect import ANCHOR_STEP, DsnAnchors, expand

IDSN = 0xFFFF_FFF0_0000_0000 - 5  # the 64-bit space wraps inside the transfer too
STEP = 60_000  # data-level bytes per mapping (a TSO-sized segment)
MASK32, MASK64 = (1 << 32) - 1, (1 << 64) - 1


def run_pass(total: int) -> tuple[DsnAnchors, Connection, dict[int, int]]:
    """Feed the observer what the data levels publish for ``total`` bytes of client data: frame -> 64-bit DSN."""
    anchors = DsnAnchors()
    packet = PacketLevels()
    anchors.attach_levels(packet, None)
    conn = Connection(id=1)
    sf = Subflow(1, b"\x0a\0\0\1", 40000, b"\x0a\0\0\2", 80, 1, 0.0)
    sf.connection = conn
    truth: dict[int, int] = {}
    for n in range(total // STEP):
        frame = n + 1
        dsn64 = (IDSN + 1 + n * STEP) & MASK64
        dss = Dss(flags=0x04, dsn=dsn64 & MASK32, ssn=(1 + n * STEP) & MASK32, data_len=STEP)
        packet.clear(frame)
        packet.dss, packet.dsn64, packet.dsn_anchored = dss, dsn64, True
        seg = Segment(frame, float(n), 4, sf.client_ip, sf.server_ip, 40000, 80, 0, 0, 0x10, 100, 0, 0, b"", None)
        anchors.on_segment(seg, sf, 0)
        truth[frame] = dsn64
    return anchors, conn, truth


def test_dsns_past_2_gib_expand_to_what_the_pass_saw() -> None:
    anchors, conn, truth = run_pass(5 << 30)  # 5 GiB: past 2^31 and past a 2^32 wrap of the 32-bit DSN
    wrong_without = 0
    for frame in range(1, len(truth) + 1, 997):
        value32 = truth[frame] & MASK32
        assert expand(value32, IDSN, anchors.reference(conn, 0, frame)) == truth[frame], frame
        wrong_without += expand(value32, IDSN) != truth[frame]
    assert wrong_without > 0  # the IDSN alone gets the later ones wrong: the anchors are what fixes them


def test_one_anchor_per_step_of_data() -> None:
    anchors, conn, truth = run_pass(5 << 30)
    assert 4 <= len(anchors._values[(id(conn), 0)]) <= (5 << 30) // ANCHOR_STEP + 1  # per GiB, never per packet
    assert anchors.reference(conn, 1, len(truth)) is None  # the other side sent nothing
    assert anchors.reference(conn, 0, 0) is None  # before the first mapping: the IDSN's expansion applies
