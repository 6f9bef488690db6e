"""JUnit XML for ``check --junit``: one test suite per trace, one test case per trace × rule family.

A test case fails when its family has findings at or above ``--fail-on``; the failure names the rules,
frames and messages. Findings below the threshold go to the test case's ``system-out``. Unmet
expectations are the failing test case ``expectations``; a trace that cannot be read is one test case
``input`` with an ``error``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from analyzer.ci.check import EXPECTATIONS_CASE, Status, TraceResult
from analyzer.findings import Finding


def finding_line(finding: Finding) -> str:
    """``DSS-004 error §3.3.1 connection 1 subflow 2 frames 12, 13: message``."""
    from analyzer.rules import RULES

    rule = RULES.get(finding.rule)
    where = []
    if finding.connection is not None:
        where.append(f"connection {finding.connection}")
    if finding.subflow is not None:
        where.append(f"subflow {finding.subflow}")
    if finding.frames:
        label = "frame" if len(finding.frames) == 1 else "frames"
        where.append(f"{label} {', '.join(map(str, finding.frames))}")
    section = f" {rule.section}" if rule and rule.section != "-" else ""
    place = f" {' '.join(where)}" if where else ""
    return f"{finding.rule} {finding.severity.label}{section}{place}: {finding.message}"


def _classname(path: str) -> str:
    stem = Path(path).name
    return "mptcp-analyze." + stem.replace(".", "_")


def build(results: Sequence[TraceResult]) -> ET.ElementTree:
    root = ET.Element("testsuites", name="mptcp-analyze check")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for index, result in enumerate(results):
        suite = ET.SubElement(root, "testsuite", name=result.path, id=str(index))
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="trace", value=result.path)
        ET.SubElement(props, "property", name="fail_on", value=result.fail_on.label)
        ET.SubElement(props, "property", name="status", value=result.status.value)
        counts = {"tests": 0, "failures": 0, "errors": 0}
        classname = _classname(result.path)
        if result.status in (Status.ERROR, Status.INTERNAL):
            case = ET.SubElement(suite, "testcase", name="input", classname=classname, time="0")
            kind = "input-error" if result.status is Status.ERROR else "internal-error"
            error = ET.SubElement(case, "error", message=result.error or "cannot read the trace", type=kind)
            error.text = result.error
            counts["tests"] += 1
            counts["errors"] += 1
        else:
            families = result.by_family()
            for family, findings in families.items():
                case = ET.SubElement(suite, "testcase", name=family, classname=classname, time="0")
                counts["tests"] += 1
                failing = [f for f in findings if f.severity >= result.fail_on]
                passing = [f for f in findings if f.severity < result.fail_on]
                if failing:
                    counts["failures"] += 1
                    rules = ", ".join(dict.fromkeys(f.rule for f in failing))
                    first = failing[0]
                    label = "frame" if len(first.frames) == 1 else "frames"
                    frames = f" ({label} {', '.join(map(str, first.frames))})" if first.frames else ""
                    more = f"; and {len(failing) - 1} more" if len(failing) > 1 else ""
                    failure = ET.SubElement(
                        case, "failure", type=rules,
                        message=f"{first.rule}{frames}: {first.message}{more}",
                    )  # fmt: skip
                    failure.text = "\n".join(finding_line(f) for f in failing)
                if passing:
                    out = ET.SubElement(case, "system-out")
                    out.text = "\n".join(finding_line(f) for f in passing)
            case = ET.SubElement(suite, "testcase", name=EXPECTATIONS_CASE, classname=classname, time="0")
            counts["tests"] += 1
            if result.unmet:
                counts["failures"] += 1
                failure = ET.SubElement(
                    case, "failure", type="expectations",
                    message=f"{len(result.unmet)} unmet expectation(s): {result.unmet[0].message}",
                )  # fmt: skip
                failure.text = "\n".join(f"{u.key}: {u.message}" for u in result.unmet)
            elif result.expectations is None or result.expectations.empty:
                ET.SubElement(case, "skipped", message="no expectations for this trace")
            if result.ignored:
                out = ET.SubElement(case, "system-out")
                out.text = "ignored by expectations:\n" + "\n".join(finding_line(f) for f in result.ignored)
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failures"]))
        suite.set("errors", str(counts["errors"]))
        suite.set("skipped", str(len(suite.findall("testcase/skipped"))))
        suite.set("time", f"{result.seconds:.6f}")
        for key in totals:
            totals[key] += counts[key]
    for key, value in totals.items():
        root.set(key, str(value))
    ET.indent(root)
    return ET.ElementTree(root)


def write(results: Sequence[TraceResult], path: Path) -> None:
    build(results).write(path, encoding="utf-8", xml_declaration=True)
