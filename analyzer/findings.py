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


@dataclass(slots=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    frames: list[int] = field(default_factory=list)
    connection: int | None = None
    subflow: int | None = None
    assumes: tuple[str, ...] = ()  # keys of ASSUMPTIONS the verdict rests on (empty: proven by the bytes)

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
        self.findings.append(Finding(rule, severity, message, frames or [], connection, subflow, assumes))
