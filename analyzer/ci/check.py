"""``check``: analyse many traces, apply expectations, decide a verdict and an exit code.

Each trace is analysed by :func:`check_trace`, which only returns plain data (no model objects), so
it can run anywhere an :class:`Executor` sends it: in this process, in worker processes (``--jobs``) or
on a Dask cluster (``--dask``, :mod:`analyzer.ci.distributed`). Results always come back in input order.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from analyzer.ci.expect import Expectations, ExpectationSet, Unmet, attempted_joins, established
from analyzer.ci.rulebook import families, family_of
from analyzer.findings import Finding, Severity
from analyzer.ingest.capture import CaptureError
from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.report import json_out

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".gz")
EXPECTATIONS_CASE = "expectations"  # JUnit test case / SARIF rule of unmet expectations
EXPECT_RULE_ID = "EXPECT-001"


class Status(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"  # the trace could not be read (input error)
    INTERNAL = "internal-error"  # a bug of ours while analysing it


@dataclass(slots=True)
class TraceResult:
    """Everything the reports need about one checked trace, as plain (picklable) data."""

    path: str
    status: Status
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)  # after ignore/downgrade
    ignored: list[Finding] = field(default_factory=list)
    unmet: list[Unmet] = field(default_factory=list)
    fail_on: Severity = Severity.ERROR
    packets: int = 0
    mptcp_packets: int = 0
    connections: int = 0
    subflows: int = 0
    established_subflows: int = 0  # subflows whose handshake completed (or captured running)
    joins_attempted: int = 0  # MP_JOIN SYNs, refused joins included
    fallbacks: int = 0
    seconds: float = 0.0
    expectations: Expectations | None = None
    document: dict[str, Any] | None = None  # the mptcp-analyze/1 document (only when asked for)
    diagnoses: list[tuple[int, str]] = field(default_factory=list)  # (connection id, diagnosis verdict)

    @property
    def failing(self) -> list[Finding]:
        return [f for f in self.findings if f.severity >= self.fail_on]

    def counts(self) -> dict[Severity, int]:
        counts = dict.fromkeys(Severity, 0)
        for finding in self.findings:
            counts[finding.severity] += 1
        return counts

    def by_family(self) -> dict[str, list[Finding]]:
        """Findings grouped by rule family, every known family present (possibly empty)."""
        grouped: dict[str, list[Finding]] = {fam: [] for fam in families()}
        for finding in self.findings:
            grouped.setdefault(family_of(finding.rule), []).append(finding)
        return grouped

    def verdict_json(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "status": self.status.value,
            "fail_on": self.fail_on.label,
            "error": self.error,
            "counts": {sev.label: counts[sev] for sev in sorted(Severity, reverse=True)},
            "failing_findings": [f.to_json() for f in self.failing],
            "expectations": {
                "source": self.expectations.source if self.expectations else None,
                "matched": list(self.expectations.matched) if self.expectations else [],
                "unmet": [u.to_json() for u in self.unmet],
            },
            "ignored_findings": [f.to_json() for f in self.ignored],
            "subflows": {
                "seen": self.subflows,
                "established": self.established_subflows,
                "joins_attempted": self.joins_attempted,
            },
        }

    def to_json(self) -> dict[str, Any]:
        """The mptcp-analyze/1 document of the trace plus its ``verdict`` (input errors: path and verdict)."""
        doc: dict[str, Any] = dict(self.document or {"schema": json_out.SCHEMA, "trace": {"path": self.path}})
        doc["verdict"] = self.verdict_json()
        return doc


@dataclass(frozen=True, slots=True)
class TraceJob:
    path: str
    expectations: Expectations
    fail_on: Severity
    want_document: bool = False
    limits: Limits = DEFAULT_LIMITS
    assume: frozenset[str] = frozenset()  # assumptions vouched for: findings resting on them are not capped


def check_trace(job: TraceJob) -> TraceResult:
    """Analyse one trace and judge it. Input errors become a result with status ERROR, never an exception."""
    started = time.perf_counter()
    result = TraceResult(job.path, Status.PASS, fail_on=job.fail_on, expectations=job.expectations)
    try:
        # Statistics always: the diagnosis (stalls, RTO back-offs, reinjection during a stall) reads them.
        analysis = analyze(job.path, AnalysisOptions(stats=True, limits=job.limits, assume=job.assume))
    except CaptureError as exc:
        result.status, result.error = Status.ERROR, str(exc)
        return result
    except OSError as exc:
        result.status, result.error = Status.ERROR, f"{job.path}: {exc.strerror or exc}"
        return result
    except Exception as exc:  # a bug of ours: report it for this trace, keep checking the others
        if os.environ.get("MPTCP_ANALYZE_DEBUG"):
            raise
        result.status, result.error = Status.INTERNAL, f"{job.path}: internal error: {type(exc).__name__}: {exc}"
        return result
    result.findings, result.ignored = job.expectations.apply(analysis.findings)
    result.unmet = job.expectations.evaluate(analysis)
    result.packets = analysis.trace.packets
    result.mptcp_packets = analysis.trace.mptcp_packets
    result.connections = len(analysis.connections)
    result.subflows = sum(len(conn.subflows) for conn in analysis.connections)
    result.established_subflows = sum(1 for conn in analysis.connections for sf in conn.subflows if established(sf))
    result.joins_attempted = sum(len(attempted_joins(conn)) for conn in analysis.connections)
    result.fallbacks = sum(1 for conn in analysis.connections if conn.fallback)
    result.diagnoses = [(cid, diagnosis.verdict) for cid, diagnosis in sorted(analysis.diagnoses.items())]
    if job.want_document:
        result.document = json_out.analysis_to_json(analysis)
        effective = []
        for kept, before in zip(result.findings, _originals(analysis.findings, result.ignored), strict=True):
            item = kept.to_json()
            if kept.severity != before:
                item["original_severity"] = before.label
            effective.append(item)
        result.document["findings"] = effective
    if result.failing or result.unmet:
        result.status = Status.FAIL
    result.seconds = time.perf_counter() - started
    return result


def _originals(findings: list[Finding], ignored: list[Finding]) -> list[Severity]:
    """Severities before downgrading, in the order ``Expectations.apply`` kept the findings."""
    dropped = {id(f) for f in ignored}
    return [f.severity for f in findings if id(f) not in dropped]


_Item = TypeVar("_Item")
_Out = TypeVar("_Out")


@dataclass(frozen=True, slots=True)
class Lost:
    """An item an executor could not get a result for (its worker died, or the task itself failed)."""

    message: str
    internal: bool = False  # True: a bug (the task raised); False: the worker running it died


class Executor(Protocol):
    """Runs ``fn`` over ``items``, yielding one result (or :class:`Lost`) per item, in input order."""

    def __call__(self, fn: Callable[[_Item], _Out], items: Sequence[_Item], /) -> Iterable[_Out | Lost]: ...


def serial(fn: Callable[[_Item], _Out], items: Sequence[_Item], /) -> Iterable[_Out | Lost]:
    """The in-process executor."""
    return map(fn, items)


def process_pool(workers: int) -> Executor:
    """An executor over ``workers`` local processes (serial when there is at most one)."""

    def run(fn: Callable[[_Item], _Out], items: Sequence[_Item], /) -> Iterator[_Out | Lost]:
        if workers <= 1 or len(items) <= 1:
            yield from map(fn, items)
            return
        with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
            yield from pool.map(fn, items)

    return run


def run_checks(jobs: Sequence[TraceJob], workers: int = 1, executor: Executor | None = None) -> Iterator[TraceResult]:
    """Check every trace through ``executor`` (default: ``workers`` processes), yielding results in input order.

    A trace the executor lost (e.g. its Dask worker died twice) is an input error, never dropped.
    """
    run = executor if executor is not None else process_pool(workers)
    for job, out in zip(jobs, run(check_trace, jobs), strict=True):
        yield lost_result(job, out) if isinstance(out, Lost) else out


def lost_result(job: TraceJob, lost: Lost) -> TraceResult:
    status = Status.INTERNAL if lost.internal else Status.ERROR
    error = f"{job.path}: {lost.message}"
    return TraceResult(job.path, status, error=error, fail_on=job.fail_on, expectations=job.expectations)


@dataclass(frozen=True, slots=True)
class InputError:
    path: str
    message: str


def expand_inputs(args: Iterable[str]) -> list[str | InputError]:
    """Files as given; directories recursively to their capture files (sorted); missing paths as errors.

    The result keeps the order of the arguments, so reports list input errors where they stood.
    """
    entries: list[str | InputError] = []
    seen: set[str] = set()
    for arg in args:
        p = Path(arg)
        if p.is_dir():
            found = sorted(
                str(child) for child in p.rglob("*")
                if child.is_file() and child.name.lower().endswith(CAPTURE_SUFFIXES)
            )  # fmt: skip
            if not found:
                entries.append(InputError(arg, f"{arg}: no capture files (*.pcap, *.pcapng, *.cap, *.gz) in it"))
            entries.extend(path for path in found if path not in seen)
            seen.update(found)
        elif p.exists() or arg == "-":
            if arg not in seen:
                entries.append(arg)
                seen.add(arg)
        else:
            entries.append(InputError(arg, f"{arg}: no such file or directory"))
    return entries


def check_inputs(
    entries: Sequence[str | InputError], expectations: ExpectationSet | None, fail_on: Severity,
    want_document: bool = False, workers: int = 1, executor: Executor | None = None,
    limits: Limits = DEFAULT_LIMITS, assume: frozenset[str] = frozenset(),
) -> list[TraceResult]:  # fmt: skip
    """Check every path of ``entries`` (input errors become ERROR results), in the order given."""
    jobs = make_jobs([e for e in entries if isinstance(e, str)], expectations, fail_on, want_document, limits, assume)
    checked = iter(run_checks(jobs, workers, executor))
    return [next(checked) if isinstance(e, str) else error_result(e, fail_on) for e in entries]


def make_jobs(
    paths: Sequence[str], expectations: ExpectationSet | None, fail_on: Severity, want_document: bool,
    limits: Limits = DEFAULT_LIMITS, assume: frozenset[str] = frozenset(),
) -> list[TraceJob]:  # fmt: skip
    return [
        TraceJob(path, expectations.for_trace(path) if expectations else Expectations(), fail_on, want_document,
                 limits, assume)
        for path in paths
    ]  # fmt: skip


def exit_code(results: Sequence[TraceResult]) -> int:
    """3 if we crashed on a trace, else 2 for any input error, else 1 for any failure, else 0."""
    statuses = {r.status for r in results}
    if Status.INTERNAL in statuses:
        return EXIT_INTERNAL
    if Status.ERROR in statuses:
        return EXIT_USAGE
    if Status.FAIL in statuses:
        return EXIT_FAIL
    return EXIT_OK


def error_result(error: InputError, fail_on: Severity) -> TraceResult:
    return TraceResult(error.path, Status.ERROR, error=error.message, fail_on=fail_on)


def report_json(results: Sequence[TraceResult], fail_on: Severity, code: int) -> dict[str, Any]:
    statuses = [r.status for r in results]
    return {
        "schema": "mptcp-analyze-check/1",
        "fail_on": fail_on.label,
        "exit_code": code,
        "summary": {
            "traces": len(results),
            "passed": statuses.count(Status.PASS),
            "failed": statuses.count(Status.FAIL),
            "errors": statuses.count(Status.ERROR) + statuses.count(Status.INTERNAL),
        },
        "traces": [r.to_json() for r in results],
    }
