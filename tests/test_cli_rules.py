"""`mptcp-analyze rules`: the registry listed as a table grouped by family, one rule explained, JSON."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from analyzer import cli
from analyzer.ci import rulebook
from analyzer.rules import RULES

runner = CliRunner()
WIDE = {"COLUMNS": "200", "NO_COLOR": "1"}


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(args), env=WIDE)
    return result.exit_code, result.stdout, result.stderr


def test_rules_lists_every_registered_rule_with_severity_section_and_title() -> None:
    code, out, _ = run("rules")
    assert code == 0
    for rule in RULES.values():
        line = next((ln for ln in out.splitlines() if f" {rule.id} " in f" {ln} "), None)
        assert line is not None, f"{rule.id} missing from the listing"
        assert rule.severity.label in line
        assert rule.title[:30] in line
    assert f"{len(RULES)} rules" in out


def test_rules_are_grouped_by_family_in_catalogue_order() -> None:
    _, out, _ = run("rules")
    present = [fam for fam, _ in rulebook.rules_by_family()]
    cells = [ln.strip(" │┃|").split() for ln in out.splitlines()]
    families = [c[0] for c in cells if c and c[0] in present]
    assert families == present
    order = list(rulebook.FAMILY_ORDER)
    known = [fam for fam in families if fam in order]
    assert known == sorted(known, key=order.index)
    # every rule appears below its own family header
    lines = out.splitlines()
    for fam, rules in rulebook.rules_by_family():
        start = next(i for i, ln in enumerate(lines) if ln.strip(" │┃|").split()[:1] == [fam])
        block = "\n".join(lines[start : start + len(rules) + 1])
        for rule in rules:
            assert rule.id in block


def test_explain_one_rule() -> None:
    code, out, _ = run("rules", "DSS-004")
    rule = RULES["DSS-004"]
    assert code == 0
    assert "DSS-004" in out
    assert rule.title in out
    assert rule.severity.label in out
    assert f"RFC 8684 {rule.section}" in out
    assert "rfc8684#section-3.3.1" in out
    assert " ".join(rule.description.split()[:6]) in " ".join(out.split())


@pytest.mark.parametrize("spelling", ["dss-004", "DSS-4", " DSS-004 "])
def test_explain_accepts_loose_spelling(spelling: str) -> None:
    code, out, _ = run("rules", spelling)
    assert code == 0
    assert "DSS-004" in out


def test_unknown_rule_is_one_line_error_exit_2() -> None:
    code, out, err = run("rules", "DSS-999")
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mptcp-analyze: error: unknown rule 'DSS-999'")


def test_rules_json_lists_families_and_rules() -> None:
    code, out, _ = run("rules", "--json")
    assert code == 0
    doc = json.loads(out)
    ids = [rule["id"] for fam in doc["families"] for rule in fam["rules"]]
    assert sorted(ids) == sorted(RULES)
    for fam in doc["families"]:
        assert all(rule["family"] == fam["family"] for rule in fam["rules"])
    first = doc["families"][0]["rules"][0]
    assert set(first) >= {"id", "family", "severity", "section", "title", "description"}


def test_explain_json() -> None:
    code, out, _ = run("rules", "CSUM-001", "--json")
    assert code == 0
    doc = json.loads(out)
    rule = RULES["CSUM-001"]
    assert doc["id"] == "CSUM-001"
    assert doc["severity"] == rule.severity.label
    assert doc["section"] == rule.section
    assert doc["title"] == rule.title
    assert doc["description"] == rule.description
    assert doc["url"].endswith("#section-3.3.1")


def test_unknown_rule_json_still_exit_2() -> None:
    code, out, _ = run("rules", "NOPE-1", "--json")
    assert code == 2
    assert out == ""


def test_main_routes_rules_check_xcheck_as_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`mptcp-analyze rules` must not be rewritten to `report rules` (a file named rules)."""
    assert {"report", "follow", "rules", "check", "xcheck"} <= cli.COMMANDS
    with pytest.raises(SystemExit) as exc:
        cli.main(["rules", "--json", "GROUP-001"])
    assert exc.value.code == 0
    assert json.loads(capsys.readouterr().out)["id"] == "GROUP-001"


def test_rfc_link() -> None:
    assert rulebook.rfc_link("§3.3.1, §3.3.6") == "https://www.rfc-editor.org/rfc/rfc8684#section-3.3.1"
    assert rulebook.rfc_link("§3.1–3.6") == "https://www.rfc-editor.org/rfc/rfc8684#section-3.1"
    assert rulebook.rfc_link("-") is None
