"""Findings: what the analysis reports about a trace, each tied to a stable rule id.

The rule metadata lives in :mod:`analyzer.rules`; a finding only carries the id, where it happened
(connection, subflow, frames) and a plain-English message about this occurrence.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Severity(enum.IntEnum):
    """Ordered so that ``finding.severity >= Severity.WARNING`` reads naturally."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


# What a verdict rests on that the capture does not show (JSON ``assumes``). A finding that names one is
# never an error on its own; a user who knows the assumption holds may say so (``check --assume``).
ASSUMPTIONS: dict[str, str] = {
    "no-capture-loss": "the capture lost no packet of this connection",
    "subflows-from-syn": "every subflow of the connection was captured from its SYN",
    "keys-captured": "both MP_CAPABLE keys and the initial subflow's SYN were captured",
    "capture-order": "the capture saw these packets (on different subflows) in the order they were sent",
    "capture-from-start": "the capture started before the connection did",
    "subflow-end-captured": "the capture ran until the subflow ended (a mapping may follow the bytes it maps)",
}


MASK64 = (1 << 64) - 1
# Marks a DSN inside a message while it is being built (see DsnRef); the sink turns them into DsnSpans.
_OPEN, _SEP, _CLOSE = "\x1d", "\x1e", "\x1f"


@dataclass(frozen=True, slots=True)
class DsnRef:
    """A 64-bit DSN (or Data ACK) in a message being built: ``f"DSN {dsn_ref(value, side)}"``.

    It formats as a marked token that :meth:`FindingSink.add` replaces with the absolute value and records
    as a :class:`DsnSpan`, so the message (the JSON's text) stays absolute while the text report can show
    the same value relative to ``side``'s IDSN, without ever parsing the message.
    """

    value: int
    side: int  # the connection side (CLIENT/SERVER) whose data sequence space the value is in

    def __format__(self, spec: str) -> str:
        return f"{_OPEN}{self.side}{_SEP}{self.value}{_CLOSE}"

    def __str__(self) -> str:
        return self.__format__("")


def dsn_ref(value: int | None, side: int) -> DsnRef | str:
    """``value`` marked as a DSN of ``side``'s data (None stays the word "None", as before)."""
    return "None" if value is None else DsnRef(value & MASK64, side)


@dataclass(frozen=True, slots=True)
class DsnSpan:
    """Where a DSN sits in a finding's message: ``message[start:end]`` is the absolute ``value``."""

    start: int
    end: int
    side: int
    value: int


def resolve_dsns(text: str) -> tuple[str, tuple[DsnSpan, ...]]:
    """The message with every marked DSN written as its absolute value, and where each one is."""
    if _OPEN not in text:
        return text, ()
    out: list[str] = []
    spans: list[DsnSpan] = []
    length = 0
    rest = text
    while (start := rest.find(_OPEN)) >= 0:
        sep, end = rest.find(_SEP, start), rest.find(_CLOSE, start)
        if not start < sep < end:
            break
        side, value = int(rest[start + 1 : sep]), int(rest[sep + 1 : end])
        out.append(rest[:start])
        length += start
        digits = str(value)
        spans.append(DsnSpan(length, length + len(digits), side, value))
        out.append(digits)
        length += len(digits)
        rest = rest[end + 1 :]
    out.append(rest)
    return "".join(out), tuple(spans)


@dataclass(slots=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    frames: list[int] = field(default_factory=list)
    connection: int | None = None
    subflow: int | None = None
    assumes: tuple[str, ...] = ()  # keys of ASSUMPTIONS the verdict rests on (empty: proven by the bytes)
    dsns: tuple[DsnSpan, ...] = ()  # the DSNs / Data ACKs in ``message`` (absolute there; see ``text``)

    def text(self, idsns: tuple[int | None, int | None] | None) -> str:
        """The message with its DSNs relative to each side's IDSN (first data byte 1, as Wireshark numbers
        TCP); a value whose side's IDSN is unknown stays absolute. ``idsns=None``: the message as is."""
        if idsns is None or not self.dsns:
            return self.message
        parts: list[str] = []
        at = 0
        for span in self.dsns:
            idsn = idsns[span.side]
            if idsn is None:
                continue
            relative = (span.value - idsn) & MASK64
            parts += [self.message[at : span.start], str(relative - (1 << 64) if relative >> 63 else relative)]
            at = span.end
        parts.append(self.message[at:])
        return "".join(parts)

    def to_json(self) -> dict[str, object]:
        from analyzer.rules import RULES

        rule = RULES.get(self.rule)
        return {
            "rule": self.rule,
            "severity": self.severity.label,
            "connection": self.connection,
            "subflow": self.subflow,
            "frames": list(self.frames),
            "message": self.message,
            "section": rule.section if rule else None,
            "title": rule.title if rule else None,
            "assumes": list(self.assumes),
        }


class FindingSink:
    """Collects findings, capping repeats of one rule so a broken trace cannot exhaust memory."""

    def __init__(self, per_rule_limit: int = 1000, assumed: frozenset[str] = frozenset()) -> None:
        self.findings: list[Finding] = []
        self.suppressed: dict[str, int] = {}
        self._counts: dict[str, int] = {}
        self._limit = per_rule_limit
        # Assumptions the user vouches for (--assume): findings resting only on them keep their rule's severity.
        self.assumed = assumed

    def add(
        self,
        rule: str,
        message: str,
        frames: list[int] | None = None,
        connection: int | None = None,
        subflow: int | None = None,
        severity: Severity | None = None,
        assumes: tuple[str, ...] = (),
    ) -> None:
        from analyzer.rules import RULES

        count = self._counts.get(rule, 0) + 1
        self._counts[rule] = count
        if count > self._limit:
            self.suppressed[rule] = self.suppressed.get(rule, 0) + 1
            return
        if severity is None:
            meta = RULES.get(rule)
            severity = meta.severity if meta else Severity.WARNING
        if assumes and severity > Severity.WARNING and not self.assumed.issuperset(assumes):
            severity = Severity.WARNING  # an error means proven: what rests on an assumption is a warning
        message, dsns = resolve_dsns(message)
        self.findings.append(Finding(rule, severity, message, frames or [], connection, subflow, assumes, dsns))
