"""Every rule id is emitted in exactly one module, the one the registry says decides it.

Why: a newcomer looking for DSS-004 or JOIN-002 must find it in one hop (``mptcp-analyze rules ID``
names the file), and a rule emitted from two stages gives two verdicts on one fact. The test reads
the source (ast): a rule id written as a string anywhere outside its declaration is an emitting site.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import analyzer.checker  # noqa: F401  (registers every family's rules)
from analyzer.rules import DECIDED_IN, RULES, source_file

REPO = Path(__file__).resolve().parent.parent
RULE_ID = re.compile(r"^[A-Z]+-\d{3}$")
# Modules that name rules without emitting them: each says why.
NOT_EMITTING = {
    "analyzer.rules": "the registry itself",
    "analyzer.endpoint.faults": "each fault names the rule it breaks (the simulator's test oracle)",
    "analyzer.ci.expect": "expectations name rules a user allows or requires",
    "analyzer.ci.xcheck": "known Wireshark bugs name the rule they would trip",
    "analyzer.ci.check": "EXPECT-001 is the id of an unmet expectation in CI reports, not a protocol finding",
}
# Rules that are no protocol rule of a family: the capture, the analysis itself, grouping.
NOT_YET_IN_FAMILY = {
    "CAPTURE-001": "analyzer.pipeline",
    "LIMIT-001": "analyzer.pipeline",
    "CHECKER-001": "analyzer.checker",
    "GROUP-001": "analyzer.tracker",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _declarations(tree: ast.AST) -> set[int]:
    """ids (id()) of the string nodes that are the first argument of a ``Rule(...)`` declaration."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Rule" and node.args:
            found.add(id(node.args[0]))
    return found


def emitting_sites() -> dict[str, set[str]]:
    sites: dict[str, set[str]] = {}
    for path in sorted((REPO / "analyzer").rglob("*.py")):
        module = _module_name(path)
        if module in NOT_EMITTING:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        declared = _declarations(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and RULE_ID.match(node.value)
                    and id(node) not in declared):  # fmt: skip
                sites.setdefault(node.value, set()).add(module)
    return sites


def test_every_rule_has_exactly_one_emitting_module_and_it_is_the_registered_one() -> None:
    sites = emitting_sites()
    wrong = {rule_id: sorted(sites.get(rule_id, set())) for rule_id in RULES
             if sites.get(rule_id, set()) != {DECIDED_IN[rule_id]}}  # fmt: skip
    assert not wrong, f"rule id emitted elsewhere than (or not in) the module that decides it: {wrong}"


def test_no_unregistered_rule_id_is_emitted() -> None:
    assert not set(emitting_sites()) - set(RULES)


def test_protocol_rules_are_decided_in_their_family_module() -> None:
    misplaced = {}
    for rule_id, module in DECIDED_IN.items():
        expected = NOT_YET_IN_FAMILY.get(rule_id, f"analyzer.checker.{rule_id.split('-')[0].lower()}")
        if module != expected:
            misplaced[rule_id] = module
    assert not misplaced, misplaced
    assert set(NOT_YET_IN_FAMILY) <= set(DECIDED_IN)


def test_the_rules_command_names_the_deciding_file() -> None:
    for rule_id in ("JOIN-002", "OPT-001", "FALLBACK-007", "DSS-004", "GROUP-001"):
        where = source_file(rule_id)
        assert where is not None and (REPO / where).is_file(), (rule_id, where)
        assert f'"{rule_id}"' in (REPO / where).read_text()
