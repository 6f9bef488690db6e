"""One connection side's data level (RFC 8684 §3.3.1): the only 32 → 64-bit DSN and Data ACK expansion.

A host sends its data into one 64-bit data-sequence space that starts after its IDSN. The wire may carry
a DSN or a Data ACK as its low 32 bits only (v0, or the ``m``/``a`` flag clear); the full value is then the
64-bit number with those low bits nearest a *reference*. :class:`DataLevel` holds, per connection side,
everything that reference is made of: the IDSN, the highest DSN end mapped, the DATA_FIN and the highest
Data ACK the peer sent for this data. Exactly one observer per analysis updates it, for each packet,
before any other stage sees the packet, and publishes the packet's 64-bit values in a
:class:`PacketLevels`; every later stage (reassembly, stats, rules, export, plots, TUI, xcheck) reads
those instead of expanding again, so they all show one 64-bit value for one 32-bit DSN.

Imports only :mod:`analyzer.seqnum`: the protocol core knows no analyzer stage.
"""

from __future__ import annotations

from analyzer.seqnum import MASK32, MASK64, expand32, serial_lt


class DataLevel:
    """The data-sequence space one connection side sends into, as far as the capture showed it.

    *Anchored* means the high 32 bits are known: the IDSN is known (from the keys) or a 64-bit DSN was
    seen. A capture that starts after the handshake and carries only 32-bit DSNs has no anchor: then the
    first 32-bit DSN stands in for its own 64-bit value (high half 0), later ones are expanded near it,
    and every value is flagged as not anchored, so no stage presents it as the real DSN.
    """

    __slots__ = ("acked", "data_fin", "guessed", "idsn", "mapped_end")

    def __init__(self, idsn: int | None = None) -> None:
        self.idsn = idsn  # None until the keys are seen (H-MID)
        self.mapped_end: int | None = None  # highest DSN end mapped (exclusive, counts the DATA_FIN unit)
        self.guessed = False  # mapped_end rests on 32-bit values nothing anchored
        self.data_fin: int | None = None  # 64-bit DSN of the first DATA_FIN mapped (anchored only)
        self.acked: int | None = None  # highest 64-bit Data ACK the peer sent for this data (anchored only)

    @property
    def anchored(self) -> bool:
        """Whether this side's 64-bit values are known, not guessed (IDSN known or a 64-bit DSN seen)."""
        return self.idsn is not None or (self.mapped_end is not None and not self.guessed)

    def learn_idsn(self, idsn: int) -> None:
        """The keys were seen: the IDSN anchors the space; an end guessed without it is dropped."""
        self.idsn = idsn
        if self.guessed:
            self.mapped_end = None
            self.guessed = False

    def anchor_from_ack(self, ack64: int) -> None:
        """A 64-bit Data ACK of this data: it lies within a window below the highest end mapped, so it gives
        a guessed end its real high half (a mid-connection capture with 32-bit DSNs but 64-bit Data ACKs)."""
        if self.guessed and self.mapped_end is not None:
            self.mapped_end = expand32(self.mapped_end & MASK32, ack64)
            self.guessed = False

    def known_end(self) -> int | None:
        """The highest DSN end mapped if its high half is known (None: nothing mapped, or only guessed)."""
        return None if self.guessed else self.mapped_end

    def reference(self) -> int | None:
        """The reference for this side's 32-bit DSNs: the highest DSN end mapped, else IDSN + 1.

        The highest end mapped, because a new mapping continues at most 2^31 bytes from what was sent
        (RFC 8684 §3.3.1 requires 64-bit DSNs when that could be exceeded within the MSL), and
        retransmissions sit below it within the same distance. Before any mapping, the first data byte
        is IDSN + 1. None: nothing known (no IDSN, nothing mapped).
        """
        if self.mapped_end is not None:
            return self.mapped_end
        return None if self.idsn is None else (self.idsn + 1) & MASK64

    def ack_reference(self) -> int | None:
        """The reference for the peer's 32-bit Data ACKs of this data: :meth:`reference`, else the last ACK.

        A Data ACK acknowledges this side's data, so it lies at or below the highest DSN end mapped and
        within a window of it; only when no mapping and no IDSN is known does the highest anchored Data
        ACK stand in (what Linux does, expanding near ``snd_una``).
        """
        reference = self.reference()
        return self.acked if reference is None else reference

    def expand(self, value32: int) -> int:
        """A 32-bit DSN of this side as 64 bits, nearest :meth:`reference` (itself when none is known)."""
        reference = self.reference()
        return value32 if reference is None else expand32(value32, reference)

    def expand_ack(self, value32: int) -> int | None:
        """A 32-bit Data ACK of this side's data as 64 bits, nearest :meth:`ack_reference` (None: none)."""
        reference = self.ack_reference()
        return None if reference is None else expand32(value32, reference)

    def note_mapping(self, dsn64: int, data_len: int, data_fin: bool, anchored: bool) -> None:
        """A mapping of ``data_len`` data-level bytes from ``dsn64`` (``anchored``: its high half is known)."""
        end = (dsn64 + data_len) & MASK64
        if anchored and self.guessed:  # the first real value replaces an end guessed without an anchor
            self.mapped_end = None
            self.guessed = False
        if self.mapped_end is None:
            self.mapped_end = end
            self.guessed = not anchored
        elif serial_lt(self.mapped_end, end):
            self.mapped_end = end
        if data_fin and anchored and self.data_fin is None:
            self.data_fin = (end - 1) & MASK64

    def note_ack(self, ack64: int) -> None:
        """An anchored Data ACK of this side's data: keep the highest (serial order, RFC 1982)."""
        if self.acked is None or serial_lt(self.acked, ack64):
            self.acked = ack64


class PacketLevels:
    """The 64-bit values of the packet every stage is looking at now, published once by the owner.

    Mutable and reused (one per analysis): it describes only the current packet (``frame``), so it
    costs nothing per packet. ``dsn64`` is the DSS mapping's DSN (None: no mapping on this packet);
    ``dsn_anchored`` says whether its high half is known or guessed (see :class:`DataLevel`);
    ``dsn_ref`` is the reference it was expanded near (None: carried as 64 bits, or none known), for
    rules that judge how far a 32-bit value lies from it. The Data ACK fields likewise (``ack64`` None:
    no Data ACK, or a 32-bit one with nothing to expand it near). ``sender`` is the level of the side
    that sent the packet, ``peer`` the other side's (None: the subflow is not grouped yet).
    """

    __slots__ = ("ack64", "ack_anchored", "ack_ref", "dsn64", "dsn_anchored", "dsn_ref", "dss", "frame", "peer",
                 "sender")  # fmt: skip

    def __init__(self) -> None:
        self.frame = 0
        self.dss: object = None  # the Dss option the values belong to
        self.dsn64: int | None = None
        self.dsn_anchored = False
        self.dsn_ref: int | None = None
        self.ack64: int | None = None
        self.ack_anchored = False
        self.ack_ref: int | None = None
        self.sender: DataLevel | None = None
        self.peer: DataLevel | None = None

    def clear(self, frame: int) -> None:
        self.frame = frame
        self.dss = None
        self.dsn64 = self.dsn_ref = self.ack64 = self.ack_ref = None
        self.dsn_anchored = self.ack_anchored = False
        self.sender = self.peer = None

    def known_dsn(self, dss: object) -> int | None:
        """The anchored 64-bit DSN of ``dss`` if it is this packet's mapping, else None."""
        return self.dsn64 if dss is self.dss and self.dsn_anchored else None

    def known_ack(self, dss: object) -> int | None:
        """The anchored 64-bit Data ACK of ``dss`` if it is this packet's, else None."""
        return self.ack64 if dss is self.dss and self.ack_anchored else None
