"""The rule registry: every finding id with its severity, RFC section and explanation.

Rules are data so that ``mptcp-analyze rules`` can list and explain them, and so that CI users can
refer to stable ids when they ignore or downgrade a rule.  Ids and sections follow the project's
catalogue (shared/mptcp-rules.md); where the catalogue and RFC 8684 disagree, RFC 8684 wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.findings import Severity

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    severity: Severity
    section: str
    title: str
    description: str = ""

    @property
    def family(self) -> str:
        return self.id.split("-", 1)[0]


_RULES: list[Rule] = [
    # Capture-level observations (not protocol rules).
    Rule(
        "CAPTURE-001",
        W,
        "-",
        "Capture file problem",
        "The capture file itself is damaged (truncated record, corrupt header); analysis continued with what "
        "could be read.",
    ),
    Rule(
        "CHECKER-001",
        W,
        "-",
        "Internal error in a rule family",
        "A rule family raised an unexpected error on this trace; the analysis went on without it. The other "
        "results stand; please report the trace.",
    ),
    Rule(
        "LIMIT-001",
        W,
        "-",
        "Analysis limit reached",
        "A resource bound of the analysis (analyzer.limits, --limit NAME=N) was reached: the capture is larger "
        "or more hostile than the limit allows, and the results past that point are partial. The message names "
        "the limit; everything analysed before it stands.",
    ),
    Rule(
        "GROUP-001",
        INFO,
        "§3.2",
        "Subflow grouped without the handshake",
        "The MP_CAPABLE or MP_JOIN handshake of this subflow was not captured, so it was attached to its "
        "connection by weaker evidence (keys echoed later, or data-sequence continuity).",
    ),
]

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}
# The module that decides each rule: the only place its id is emitted (tests/test_rule_sites.py checks it).
DECIDED_IN: dict[str, str] = {
    "CAPTURE-001": "analyzer.pipeline",
    "LIMIT-001": "analyzer.pipeline",
    "CHECKER-001": "analyzer.checker",
    "GROUP-001": "analyzer.tracker",
}


def register(rule: Rule, decided_in: str) -> None:
    """Add a rule and the module that decides it (the checker's families register theirs on import)."""
    RULES[rule.id] = rule
    DECIDED_IN.setdefault(rule.id, decided_in)


def source_file(rule_id: str) -> str | None:
    """Path, relative to the repository, of the module that decides ``rule_id``."""
    module = DECIDED_IN.get(rule_id)
    if module is None:
        return None
    package = module.replace(".", "/")
    return f"{package}/__init__.py" if module == "analyzer.checker" else f"{package}.py"
