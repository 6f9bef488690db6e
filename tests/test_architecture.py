"""The rules of the house (ARCHITECTURE.md, "Rules of the house"), checked by walking every import.

Each rule names a group of modules and the groups it must never import. A rule broken here is a design
regression even when every behaviour test passes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analyzer", "tui")

# group name → module prefixes that belong to it
GROUPS: dict[str, tuple[str, ...]] = {
    "mptcp": ("analyzer.mptcp", "analyzer.seqnum", "analyzer.tcp_options"),
    "wire": ("analyzer.ingest",),
    "observe": (
        "analyzer.tracker",
        "analyzer.datalevels",
        "analyzer.reassembly",
        "analyzer.stats",
        "analyzer.export",
        "analyzer.follow",
        "analyzer.plot",
        "analyzer.rwnd",
        "analyzer.results",
    ),
    "facts": ("analyzer.facts",),
    "checker": ("analyzer.checker",),
    "endpoint": ("analyzer.endpoint",),
    "diagnose": ("analyzer.diagnosis",),
    "report": ("analyzer.report",),
    "ci": ("analyzer.ci",),
    "lab": ("analyzer.lab",),
    "cli": ("analyzer.cli",),
    "pipeline": ("analyzer.pipeline",),
    "compare": ("analyzer.compare",),
    "tui": ("tui",),
}
OURS = (*(p for prefixes in GROUPS.values() for p in prefixes), "analyzer.model", "analyzer.findings", "analyzer.rules")

# group → groups it never imports (why in ARCHITECTURE.md)
NEVER: dict[str, set[str]] = {
    "mptcp": {"*"},  # the protocol core imports nothing of ours
    "wire": set(GROUPS) - {"wire", "mptcp"},
    "observe": {"checker", "endpoint", "diagnose", "report", "ci", "cli", "tui", "lab", "compare"},
    "facts": set(GROUPS) - {"facts", "mptcp"},  # what observers publish and families judge: model + codec only
    "checker": {"observe", "pipeline", "endpoint", "diagnose", "report", "ci", "cli", "tui", "lab", "compare"},
    "endpoint": {"wire", "observe", "checker", "pipeline", "report", "ci", "cli", "tui", "lab", "compare"},
    "report": {"mptcp", "wire", "observe", "checker", "endpoint", "pipeline", "diagnose", "tui", "lab", "compare"},
    # the diagnosis reasons on the model (and the protocol core's names); it never re-reads packets
    "diagnose": {"wire", "observe", "checker", "endpoint", "pipeline", "report", "ci", "cli", "tui", "lab", "compare"},
    "ci": {"endpoint", "tui", "cli", "lab"},
    # the kernel lab makes the traces the analyzer is tested on: it may share the protocol core, nothing else
    "lab": set(GROUPS) - {"lab", "mptcp"},
    "compare": {"checker", "endpoint", "report", "ci", "cli", "tui", "lab"},  # over the pipeline and the model only
}
# textual belongs to the inspector's views, never to its data side (session, index, dissect, filter, ...)
TEXTUAL_ALLOWED = ("tui.app", "tui.messages", "tui.screenshot", "tui.screens", "tui.widgets")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[str]:
    """Absolute names of every module that ``path`` imports (relative imports resolved)."""
    me = module_name(path)
    package = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            yield target
            for alias in node.names:  # `from analyzer import checker` imports analyzer.checker
                yield f"{target}.{alias.name}"


def group_of(module: str) -> str | None:
    for group, prefixes in GROUPS.items():
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return group
    return None


def all_modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))


def test_the_walk_sees_the_whole_package() -> None:
    names = {module_name(p) for p in all_modules()}
    assert {"analyzer.pipeline", "analyzer.mptcp.options", "analyzer.checker.dss", "tui.app"} <= names
    assert len(names) > 80


@pytest.mark.parametrize("group", sorted(NEVER))
def test_group_never_imports_what_it_must_not(group: str) -> None:
    broken: list[str] = []
    for path in all_modules():
        me = module_name(path)
        if group_of(me) != group:
            continue
        for target in imports_of(path):
            other = group_of(target)
            if other is None or other == group:
                if NEVER[group] == {"*"} and other is None and target.startswith(OURS):
                    broken.append(f"{me} imports {target}")
                continue
            if "*" in NEVER[group] or other in NEVER[group]:
                broken.append(f"{me} imports {target} ({other})")
    assert not broken, "\n".join(sorted(set(broken)))


def test_a_rule_family_never_imports_another_family() -> None:
    """Families share only checker.base, checker.observations and the DSS family's bus (which CSUM rides)."""
    shared = {"analyzer.checker", "analyzer.checker.base", "analyzer.checker.observations", "analyzer.checker.dss"}
    broken = []
    for path in (ROOT / "analyzer" / "checker").glob("*.py"):
        me = module_name(path)
        if path.name in ("__init__.py", "base.py", "observations.py", "dss.py"):
            continue
        for target in imports_of(path):
            family = ".".join(target.split(".")[:3])
            if target.startswith("analyzer.checker.") and family not in shared and family != me:
                broken.append(f"{me} imports {target}")
    assert not broken, "\n".join(broken)


DECODERS = (
    "analyzer.ingest.decode",
    "analyzer.ingest.capture",
    "analyzer.ingest.tunnels",
    "analyzer.tcp_options",
    "analyzer.ingest._fastdecode",
    "analyzer.ingest.speedups",
)


def test_rules_never_import_a_decoder() -> None:
    """The families read decoded values (analyzer.ingest.segment, the option types), facts and the model."""
    broken = [
        f"{module_name(path)} imports {target}"
        for path in (ROOT / "analyzer" / "checker").glob("*.py")
        for target in imports_of(path)
        if any(target == d or target.startswith(d + ".") for d in DECODERS)
    ]
    assert not broken, "\n".join(broken)


def test_textual_only_in_the_inspector_views() -> None:
    broken = []
    for path in all_modules():
        me = module_name(path)
        if me.startswith(TEXTUAL_ALLOWED):
            continue
        if any(t == "textual" or t.startswith("textual.") for t in imports_of(path)):
            broken.append(me)
    assert not broken, f"textual imported outside the inspector's views: {broken}"


def test_no_regex_on_a_finding_message() -> None:
    """Stages share facts (e.g. Analysis.checksum_failures), never by parsing each other's words."""
    broken = []
    for path in all_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in ("search", "match", "fullmatch", "findall", "finditer", "sub"):
                continue
            for arg in node.args:
                if isinstance(arg, ast.Attribute) and arg.attr == "message":
                    broken.append(f"{module_name(path)}:{node.lineno}")
    assert not broken, f"a regex reads a finding's message: {broken}"
