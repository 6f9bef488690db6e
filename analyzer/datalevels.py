"""The owner of every connection side's :class:`~analyzer.mptcp.datalevel.DataLevel` (one per analysis).

:class:`DataLevels` is the first observer of the pipeline: for each segment it finds the DSS option,
expands its DSN and Data ACK once (the only place in the analyzer that does), updates the sender's and
the peer's data level, and publishes the results in :attr:`DataLevels.packet`. The stages after it
(reassembly, stats, the checker, export, plots, the TUI, xcheck) read that annotation and the levels;
none of them expands a 32-bit value again, so all of them show the same 64-bit DSN for one packet.

Memory: two levels per connection (a few integers each) and, while a subflow is not grouped yet, one
per direction of that subflow; nothing per packet.
"""

from __future__ import annotations

from analyzer.ingest.segment import Segment
from analyzer.model import Analysis, Connection, Subflow
from analyzer.mptcp.datalevel import DataLevel, PacketLevels
from analyzer.mptcp.options import Dss, MpCapable
from analyzer.seqnum import MASK64


class DataLevels:
    """Pipeline observer keeping each connection side's data level and publishing each packet's values."""

    def __init__(self) -> None:
        self.packet = PacketLevels()  # the current segment's 64-bit values (see PacketLevels)
        self._sides: dict[int, DataLevel] = {}  # id(conn) * 2 + side
        self._loose: dict[int, DataLevel] = {}  # Subflow.key(direction), while the subflow is not grouped

    # ------------------------------------------------------------------ lookup
    def level(self, conn: Connection, side: int) -> DataLevel:
        """The data level of ``conn``'s ``side`` (0 = client), created on first use."""
        key = id(conn) * 2 + side
        level = self._sides.get(key)
        if level is None:
            level = self._sides[key] = DataLevel(conn.sides[side].idsn)
        elif level.idsn is None:
            idsn = conn.sides[side].idsn
            if idsn is not None:  # the keys arrived after the first segments
                level.learn_idsn(idsn)
        return level

    def level_of(self, sf: Subflow, direction: int) -> DataLevel:
        """The level of the side that sends in ``direction`` of ``sf`` (a subflow's own while not grouped)."""
        conn = sf.connection
        if conn is not None:
            return self.level(conn, sf.sender(direction))
        key = sf.key(direction)
        level = self._loose.get(key)
        if level is None:
            level = self._loose[key] = DataLevel()
        return level

    # ------------------------------------------------------------------ observer
    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        packet = self.packet
        if packet.dss is not None:  # only a DSS sets values: other packets need no reset
            packet.clear(seg.frame)
        else:
            packet.frame = seg.frame
        options = seg.options
        if options is None or not options.mptcp:
            return
        for opt in options.mptcp:
            if isinstance(opt, Dss):
                self._dss(opt, sf, direction)
            elif isinstance(opt, MpCapable) and opt.data_len and sf.connection is not None:
                # MP_CAPABLE with data (v1): the implied mapping starts at the sender's IDSN + 1
                level = self.level_of(sf, direction)
                if level.idsn is not None:
                    level.note_mapping((level.idsn + 1) & MASK64, opt.data_len, False, True)

    def _dss(self, dss: Dss, sf: Subflow, direction: int) -> None:
        packet = self.packet
        packet.dss = dss
        sender = packet.sender = self.level_of(sf, direction)
        peer = packet.peer = self.level_of(sf, 1 - direction)
        if dss.data_ack is not None:
            if dss.ack64:
                packet.ack64, packet.ack_anchored = dss.data_ack, True
                peer.anchor_from_ack(dss.data_ack)
            else:
                packet.ack_ref = peer.ack_reference()
                packet.ack64 = peer.expand_ack(dss.data_ack)
                packet.ack_anchored = packet.ack64 is not None and peer.anchored
            if packet.ack_anchored:
                assert packet.ack64 is not None
                peer.note_ack(packet.ack64)
        if dss.dsn is not None:
            if dss.dsn64:
                packet.dsn64, packet.dsn_anchored = dss.dsn, True
            else:
                anchored = sender.anchored
                packet.dsn_ref = sender.reference()
                packet.dsn64 = sender.expand(dss.dsn)
                packet.dsn_anchored = anchored
            if dss.data_len:
                sender.note_mapping(packet.dsn64, dss.data_len, dss.data_fin, packet.dsn_anchored)

    def forget(self, sf: Subflow) -> None:
        """The tracker summarised this half-open subflow: its levels go (ids of freed objects are reused)."""
        self._loose.pop(sf.key(0), None)
        self._loose.pop(sf.key(1), None)
        conn = sf.connection
        if conn is not None and conn.evicted:
            self._sides.pop(id(conn) * 2, None)
            self._sides.pop(id(conn) * 2 + 1, None)

    def finish(self, analysis: Analysis) -> None:
        self.packet.clear(0)
        self._loose.clear()
