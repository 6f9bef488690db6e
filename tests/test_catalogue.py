"""The rule catalogue (docs/mptcp-rules.md, our copy of shared/mptcp-rules.md) and the registry agree.

The copy lives in the repository so that these checks always run, also on a CI machine without ../shared.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import analyzer.checker  # noqa: F401  (registers the rule families)
from analyzer.rules import RULES

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT / "docs" / "mptcp-rules.md"
SHARED = ROOT.parent / "shared" / "mptcp-rules.md"
# Rules about the capture and the tool itself, not about RFC 8684: they have no catalogue entry.
OWN_RULES = {"CAPTURE-001", "CHECKER-001", "GROUP-001", "LIMIT-001"}


def catalogue_rules() -> dict[str, str]:
    """Rule id → severity label, as the catalogue declares them."""
    text = CATALOGUE.read_text(encoding="utf-8")
    return {m.group(1): m.group(2) for m in re.finditer(r"^- \*\*([A-Z]+-\d+) · (\w+)", text, re.MULTILINE)}


def test_catalogue_is_present_and_complete() -> None:
    rules = catalogue_rules()
    assert len(rules) >= 114, f"the catalogue parser found only {len(rules)} rules"


def test_every_catalogue_rule_is_registered_with_its_severity() -> None:
    rules = catalogue_rules()
    missing = sorted(set(rules) - set(RULES))
    assert not missing, f"in the catalogue, not registered: {missing}"
    differ = {r: (sev, RULES[r].severity.label) for r, sev in rules.items() if RULES[r].severity.label != sev}
    assert not differ, f"catalogue vs registry severity: {differ}"


def test_every_registered_rule_is_in_the_catalogue_or_our_own() -> None:
    extra = sorted(set(RULES) - set(catalogue_rules()) - OWN_RULES)
    assert not extra, f"registered but not in the catalogue: {extra}"


@pytest.mark.skipif(not SHARED.exists(), reason=f"no shared catalogue at {SHARED} to compare the copy with")
def test_copy_matches_the_shared_catalogue() -> None:
    assert CATALOGUE.read_bytes() == SHARED.read_bytes(), "docs/mptcp-rules.md is out of date: copy it again"
