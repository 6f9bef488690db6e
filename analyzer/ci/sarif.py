"""SARIF 2.1.0 for ``check --sarif``: the rule registry as ``tool.driver.rules``, findings as results.

Every result points at the trace file (SARIF has no notion of a frame, so frames, connection and
subflow go in the result's ``properties``). Unmet expectations are results of the synthetic rule
``EXPECT-001``; traces that could not be read are tool execution notifications.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

from analyzer.ci.check import EXPECT_RULE_ID, Status, TraceResult
from analyzer.ci.rulebook import RFC_URL, all_rules, rfc_link
from analyzer.findings import Severity

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _version() -> str:
    try:
        return metadata.version("mptcp-analyze")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def artifact_uri(path: str, base: Path | None = None) -> str:
    """Relative (to ``base``, default the current directory) when below it, else an absolute file URI.

    The path as given is tried before the symlink-resolved one: a trace linked into the checkout from
    elsewhere keeps its in-checkout path, which is what code scanning maps to the repository.
    """
    given = Path(os.path.abspath(path))
    root = base or Path.cwd()
    for candidate, anchor in (
        (given, Path(os.path.abspath(root))),
        (given, root.resolve()),
        (Path(path).resolve(), root.resolve()),
    ):
        try:
            return quote(candidate.relative_to(anchor).as_posix())
        except ValueError:
            continue
    return given.as_uri()


def _root_uri(base: Path | None) -> str:
    uri = Path(os.path.abspath(base or Path.cwd())).as_uri()
    return uri if uri.endswith("/") else uri + "/"


def _pascal(title: str) -> str:
    """``MP_JOIN SYN/ACK HMAC mismatch`` → ``MpJoinSynAckHmacMismatch`` (SARIF's rule ``name``)."""
    return "".join(word.capitalize() for word in re.split(r"[^0-9A-Za-z]+", title) if word)


def _driver_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for rule in all_rules():
        entry: dict[str, Any] = {
            "id": rule.id,
            "name": _pascal(rule.title),
            "shortDescription": {"text": rule.title},
            "fullDescription": {"text": rule.description or rule.title},
            "defaultConfiguration": {"level": LEVELS[rule.severity]},
            "properties": {"family": rule.family, "section": rule.section, "tags": ["mptcp", rule.family]},
        }
        link = rfc_link(rule.section)
        if link:
            entry["helpUri"] = link
        rules.append(entry)
    rules.append({
        "id": EXPECT_RULE_ID,
        "name": "TraceExpectationNotMet",
        "shortDescription": {"text": "Trace expectation not met"},
        "fullDescription": {"text": "The trace does not show what its expectations (--expect or "
                                    "[tool.mptcp-analyze]) require: subflow count, version, checksum, "
                                    "fallback, bytes per direction or a required event."},
        "defaultConfiguration": {"level": "error"},
        "properties": {"family": "EXPECT", "section": "-", "tags": ["mptcp", "expectations"]},
    })  # fmt: skip
    return rules


def build(results: Sequence[TraceResult], base: Path | None = None) -> dict[str, Any]:
    rules = _driver_rules()
    index = {rule["id"]: i for i, rule in enumerate(rules)}
    artifacts: list[dict[str, Any]] = []
    sarif_results: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    for result in results:
        uri = artifact_uri(result.path, base) if result.path != "-" else "stdin"
        artifact_index = len(artifacts)
        where: dict[str, Any] = {"uri": uri} if ":" in uri or uri == "stdin" else {"uri": uri, "uriBaseId": "SRCROOT"}
        artifacts.append({"location": where, "roles": ["analysisTarget"]})
        location = [{"physicalLocation": {"artifactLocation": {**where, "index": artifact_index}}}]
        if result.status in (Status.ERROR, Status.INTERNAL):
            notifications.append({
                "level": "error",
                "message": {"text": result.error or f"{result.path}: cannot read the trace"},
                "locations": location,
                "properties": {"status": result.status.value},
            })  # fmt: skip
            continue
        for finding in result.findings:
            item: dict[str, Any] = {
                "ruleId": finding.rule,
                "level": LEVELS[finding.severity],
                "message": {"text": finding.message},
                "locations": location,
                "properties": {
                    "frames": list(finding.frames),
                    "connection": finding.connection,
                    "subflow": finding.subflow,
                    "trace": result.path,
                    "failsCheck": finding.severity >= result.fail_on,
                    "assumes": list(finding.assumes),
                },
            }
            if finding.rule in index:
                item["ruleIndex"] = index[finding.rule]
            sarif_results.append(item)
        for unmet in result.unmet:
            sarif_results.append({
                "ruleId": EXPECT_RULE_ID,
                "ruleIndex": index[EXPECT_RULE_ID],
                "level": "error",
                "message": {"text": f"{unmet.key}: {unmet.message}"},
                "locations": location,
                "properties": {"frames": list(unmet.frames), "expectation": unmet.key, "trace": result.path,
                               "failsCheck": True},
            })  # fmt: skip
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "mptcp-analyze",
                "version": _version(),
                "informationUri": RFC_URL,
                "rules": rules,
            }
        },
        "originalUriBaseIds": {"SRCROOT": {"uri": _root_uri(base)}},
        "artifacts": artifacts,
        "results": sarif_results,
        "invocations": [{
            "executionSuccessful": not notifications,
            "toolExecutionNotifications": notifications,
        }],
        "columnKind": "unicodeCodePoints",
    }  # fmt: skip
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def write(results: Sequence[TraceResult], path: Path, root: Path | None = None) -> None:
    """``root``: the directory URIs are relative to (``--sarif-root``; default the working directory)."""
    path.write_text(json.dumps(build(results, root), indent=2) + "\n")
