"""The rule registry as documentation: families in catalogue order, lookup, RFC links, JSON.

Importing this module imports :mod:`analyzer.checker`, which registers every rule family that exists,
so the listing is always the registry the checker actually runs with.
"""

from __future__ import annotations

import difflib
import re

import analyzer.checker  # noqa: F401  (registers the family rules in RULES)
from analyzer.rules import RULES, Rule, source_file

# Catalogue order of the rule families; CAPTURE and GROUP are observations about the capture, not
# protocol rules. A family that appears in the registry but not here is listed after these.
FAMILY_ORDER = ("OPT", "MPC", "JOIN", "DSS", "DACK", "CSUM", "CLOSE", "ADDR", "PRIO", "FALLBACK", "FC", "RST",
                "FAIL", "CAPTURE", "GROUP")  # fmt: skip

FAMILY_NAMES = {
    "OPT": "Option format",
    "MPC": "MP_CAPABLE and version negotiation",
    "JOIN": "MP_JOIN",
    "DSS": "DSS mappings",
    "DACK": "Data ACK",
    "CSUM": "DSS checksum",
    "CLOSE": "DATA_FIN and close",
    "ADDR": "ADD_ADDR and REMOVE_ADDR",
    "PRIO": "MP_PRIO",
    "FALLBACK": "Fallback and infinite mapping",
    "FC": "MP_FASTCLOSE",
    "RST": "MP_TCPRST",
    "FAIL": "MP_FAIL",
    "CAPTURE": "Capture file",
    "GROUP": "Subflow grouping",
}

RFC_URL = "https://www.rfc-editor.org/rfc/rfc8684"
_SECTION = re.compile(r"§\s*(\d+(?:\.\d+)*)")
_ID_NUMBER = re.compile(r"(\d+)$")


def family_of(rule_id: str) -> str:
    return rule_id.split("-", 1)[0]


def _id_key(rule_id: str) -> tuple[str, int, str]:
    match = _ID_NUMBER.search(rule_id)
    return family_of(rule_id), int(match.group(1)) if match else 0, rule_id


def families() -> list[str]:
    """Every family: the catalogue's, then any other family present in the registry."""
    extra = sorted({rule.family for rule in RULES.values()} - set(FAMILY_ORDER))
    return [*FAMILY_ORDER, *extra]


def rules_by_family() -> list[tuple[str, list[Rule]]]:
    """(family, its rules in id order) for every family that has at least one registered rule."""
    grouped: dict[str, list[Rule]] = {}
    for rule in RULES.values():
        grouped.setdefault(rule.family, []).append(rule)
    return [(fam, sorted(grouped[fam], key=lambda r: _id_key(r.id))) for fam in families() if fam in grouped]


def all_rules() -> list[Rule]:
    return [rule for _, rules in rules_by_family() for rule in rules]


def find_rule(rule_id: str) -> Rule | None:
    """Case-insensitive lookup; ``dss-4`` and ``DSS-004`` both find DSS-004."""
    wanted = rule_id.strip().upper()
    if wanted in RULES:
        return RULES[wanted]
    fam, _, number = wanted.partition("-")
    if number.isdigit():
        for rule in RULES.values():
            match = _ID_NUMBER.search(rule.id)
            if rule.family == fam and match and int(match.group(1)) == int(number):
                return rule
    return None


def suggest(rule_id: str) -> list[str]:
    return difflib.get_close_matches(rule_id.strip().upper(), list(RULES), n=3, cutoff=0.6)


def rfc_link(section: str) -> str | None:
    """Link to the first RFC 8684 section named in ``section`` (e.g. ``§3.3.1`` → …#section-3.3.1)."""
    match = _SECTION.search(section)
    return f"{RFC_URL}#section-{match.group(1)}" if match else None


def rule_to_json(rule: Rule) -> dict[str, object]:
    return {
        "id": rule.id,
        "family": rule.family,
        "severity": rule.severity.label,
        "section": rule.section,
        "title": rule.title,
        "description": rule.description,
        "url": rfc_link(rule.section),
        "decided_in": source_file(rule.id),
    }
