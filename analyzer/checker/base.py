"""The checker's frame: rule families observe every segment and report findings through a context.

A *family* (one module per catalogue section: OPT, MPC, JOIN, DSS, …) declares its rules as data and
implements ``on_segment`` (called for every TCP segment, after the tracker placed it in its subflow
and connection and the reassembler mapped it) and ``finish`` (called once at the end, when the whole
model is known: that is where rules with a grace period or "never happened" conditions decide).

The context holds what several families need, so they do not each recompute it: the connection
side of a segment, each packet's 64-bit DSN and Data ACK and each side's data level (highest DSN
mapped, DATA_FIN, Data ACK; read from :mod:`analyzer.datalevels`, which alone expands them),
and the capture-level facts that the hazards in the catalogue (H-MID, H-POINT, H-END, …) depend on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from analyzer.facts import Fact
from analyzer.findings import FindingSink, Severity
from analyzer.ingest.segment import Segment
from analyzer.model import CLIENT, Analysis, Connection, Subflow
from analyzer.mptcp.datalevel import DataLevel, PacketLevels
from analyzer.mptcp.options import Dss
from analyzer.rules import Rule, register

MASK64 = (1 << 64) - 1
GRACE_SECONDS = 1.0  # H-END: minimum time a reaction may take before "it never came" is reported


LevelLookup = Callable[[Connection, int], DataLevel]


def _unattached(conn: Connection, side: int) -> DataLevel:
    raise RuntimeError("the checker's context has no data levels: run it in the pipeline (DataLevels first)")


@dataclass
class Context:
    """Shared services for rule families (see the module docstring)."""

    sink: FindingSink
    # The data levels (analyzer.datalevels, the pipeline's first observer): each packet's 64-bit DSN and Data
    # ACK, expanded once there, and each connection side's highest DSN mapped, DATA_FIN and Data ACK.
    packet: PacketLevels = field(default_factory=PacketLevels)
    level: LevelLookup = _unattached
    # State that several families share for one run (it dies with the run, unlike module globals).
    shared: dict[str, object] = field(default_factory=dict)
    last_time: float = 0.0

    # ------------------------------------------------------------------ reporting
    def report(
        self,
        rule: str,
        message: str,
        frames: list[int] | int,
        sf: Subflow | None = None,
        conn: Connection | None = None,
        severity: Severity | None = None,
        assumes: tuple[str, ...] = (),
    ) -> None:
        """Record a finding; ``severity`` overrides the rule's default (e.g. lowered by a hazard).

        ``assumes`` names what the verdict rests on that the capture does not show; the sink keeps such a
        finding at most a warning (an error means proven) unless the user vouches for all of it (--assume).
        """
        if isinstance(frames, int):
            frames = [frames]
        if conn is None and sf is not None:
            conn = sf.connection
        self.sink.add(
            rule, message, sorted(set(frames)), conn.id if conn else None, sf.id if sf else None, severity, assumes
        )

    # ------------------------------------------------------------------ model helpers
    @staticmethod
    def side_of(sf: Subflow, direction: int) -> int:
        """Connection side (CLIENT/SERVER) that sent a segment travelling in ``direction``."""
        return sf.sender(direction)

    def dsn64(self, dss: Dss) -> int | None:
        """The 64-bit DSN of this packet's mapping ``dss`` (None: a 32-bit DSN whose high half is unknown)."""
        return self.packet.known_dsn(dss)

    @staticmethod
    def fully_captured(conn: Connection) -> bool:
        """H-POINT guard: every subflow was seen from its SYN (so none is missing from the capture)."""
        return all(sf.syn_seen for sf in conn.subflows)

    @staticmethod
    def handshake_seen(conn: Connection) -> bool:
        """H-MID guard: both keys and the initial subflow's SYN are in the capture."""
        initial = conn.initial_subflow
        return (
            initial is not None
            and initial.syn_seen
            and conn.sides[CLIENT].key is not None
            and conn.sides[1 - CLIENT].key is not None
        )

    def unproven(self, conn: Connection, *, capture_gap: bool = False, keys: bool = True) -> tuple[str, ...]:
        """The assumptions a verdict about ``conn``'s data would rest on (empty: the capture shows it all).

        ``capture_gap``: the stage saw a hole the capture left in this data; ``keys``: the verdict needs the
        keys (IDSN) and the initial SYN.
        """
        missing: list[str] = []
        if capture_gap:
            missing.append("no-capture-loss")
        if not self.fully_captured(conn):
            missing.append("subflows-from-syn")
        if keys and not self.handshake_seen(conn):
            missing.append("keys-captured")
        return tuple(missing)

    def after_grace(self, time: float) -> bool:
        """H-END guard: the capture lasted long enough after ``time`` for a reaction to be expected."""
        return self.last_time - time >= GRACE_SECONDS


class Family:
    """Base class of a rule family. Subclasses set ``RULES`` and override the hooks they need."""

    RULES: ClassVar[tuple[Rule, ...]] = ()
    # Option types whose presence makes a segment interesting to this family. None (the default)
    # means every segment; a set lets the checker skip the call for the other ~all segments.
    WANTS: ClassVar[frozenset[type] | None] = None
    # Fact types (analyzer.facts) this family judges; the checker hands it each one as it is published.
    FACTS: ClassVar[tuple[type[Fact], ...]] = ()

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        """Called for every TCP segment of an MPTCP (or attempted MPTCP) subflow, in capture order."""

    def on_fact(self, fact: Fact) -> None:
        """Called for each published fact of a type in ``FACTS``, before the segment that showed it."""

    def finish(self, analysis: Analysis) -> None:
        """Called once after the whole capture was read and the model is final."""

    @classmethod
    def register_rules(cls) -> None:
        for rule in cls.RULES:
            register(rule, cls.__module__)


def header_cut(seg: Segment) -> bool:
    """H-SNAP: the capture did not keep the whole TCP header, so "no option" may mean "option not captured"."""
    opts = seg.options
    return len(seg.data) < seg.payload_offset or (opts is not None and opts.truncated)


def first_mapping(ctx: Context, seg: Segment) -> tuple[Dss, int, int] | None:
    """The first DSS of a segment that maps data, with its 64-bit DSN and length; None if none (or not expandable).

    Only the first DSS counts: a segment carries one mapping; later DSS options are not read.
    """
    if seg.options is None:
        return None
    for opt in seg.options.mptcp:
        if type(opt) is not Dss:
            continue
        assert isinstance(opt, Dss)
        if opt.dsn is None or not opt.data_len:
            return None
        dsn = ctx.dsn64(opt)
        return None if dsn is None else (opt, dsn, opt.data_len)
    return None
