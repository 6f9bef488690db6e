"""``summarise``: a corpus of traces as a partitioned Parquet dataset (traces, connections, findings).

Each trace is summarised by :func:`summarise_trace` into plain rows (picklable, so it runs under any
:class:`analyzer.ci.check.Executor`: one process, ``--jobs`` or Dask). Rows come back in input order
and are written ``traces_per_part`` traces at a time, so memory stays bounded by one part:

    OUT/_mptcp-analyze.json                 schema name, tables, counts (ignored by Parquet readers)
    OUT/traces/part-00000.parquet           one row per input trace, including the unreadable ones
    OUT/connections/part-00000.parquet      one row per MPTCP connection
    OUT/findings/part-00000.parquet         one row per finding

Every part of a table has the same explicit schema, so pandas, polars and DuckDB read a table's
directory (or ``*.parquet`` in it) as one table. pyarrow is imported only when writing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyzer.ci.check import Executor, InputError, Lost, process_pool
from analyzer.ci.rulebook import family_of
from analyzer.findings import Finding, Severity
from analyzer.ingest.capture import CaptureError
from analyzer.model import Analysis, Connection, StreamSummary
from analyzer.pipeline import AnalysisOptions, analyze

SCHEMA = "mptcp-analyze-corpus/1"
MARKER = "_mptcp-analyze.json"
TABLES = ("traces", "connections", "findings")
TRACES_PER_PART = 256

# column name -> pyarrow type name (kept as names so this module imports without pyarrow)
COLUMNS: dict[str, dict[str, str]] = {
    "traces": {
        "trace": "string", "status": "string", "error": "string", "format": "string", "packets": "int64",
        "mptcp_packets": "int64", "connections": "int32", "tcp_flows": "int32", "findings": "int32",
        "suppressed_findings": "int64",
    },
    "connections": {
        "trace": "string", "connection": "int32", "version": "int8", "client": "string", "server": "string",
        "first_frame": "int64", "subflows": "int32", "joins": "int32", "packets": "int64",
        "bytes_c2s": "int64", "bytes_s2c": "int64", "stream_bytes_c2s": "int64", "stream_bytes_s2c": "int64",
        "complete_c2s": "bool", "complete_s2c": "bool", "holes": "int32", "retransmitted_bytes": "int64",
        "reinjected_bytes": "int64", "reinjections": "int32", "fallback": "bool", "fallback_reason": "string",
        "checksum": "bool", "grouping": "string", "errors": "int32", "warnings": "int32", "infos": "int32",
        "rule_ids": "list<string>",
    },
    "findings": {
        "trace": "string", "connection": "int32", "subflow": "int32", "rule": "string", "family": "string",
        "severity": "string", "first_frame": "int64", "frames": "list<int64>", "message": "string",
    },
}  # fmt: skip


class CorpusError(Exception):
    """The output cannot be written (exists, pyarrow missing): one line for the user, exit 2."""


@dataclass(slots=True)
class TraceRows:
    """One trace's rows of the three tables, as plain data."""

    trace: dict[str, Any]
    connections: list[dict[str, Any]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.trace["status"] == "ok")


def _trace_row(path: str, status: str, error: str | None = None) -> dict[str, Any]:
    return {"trace": path, "status": status, "error": error, "format": None, "packets": 0, "mptcp_packets": 0,
            "connections": 0, "tcp_flows": 0, "findings": 0, "suppressed_findings": 0}  # fmt: skip


def summarise_trace(path: str) -> TraceRows:
    """Analyse one trace into rows. Input errors become a traces row with status ``error``, never an exception."""
    try:
        analysis = analyze(path, AnalysisOptions(stats=False))
    except CaptureError as exc:
        return TraceRows(_trace_row(path, "error", str(exc)))
    except OSError as exc:
        return TraceRows(_trace_row(path, "error", f"{path}: {exc.strerror or exc}"))
    except Exception as exc:  # a bug of ours: recorded for this trace, the others still summarised
        if os.environ.get("MPTCP_ANALYZE_DEBUG"):
            raise
        return TraceRows(_trace_row(path, "internal-error", f"{path}: internal error: {type(exc).__name__}: {exc}"))
    return rows_of(path, analysis)


def rows_of(path: str, analysis: Analysis) -> TraceRows:
    trace = _trace_row(path, "ok")
    trace.update(format=analysis.trace.file_format, packets=analysis.trace.packets,
                 mptcp_packets=analysis.trace.mptcp_packets, connections=len(analysis.connections),
                 tcp_flows=len(analysis.tcp_flows), findings=len(analysis.findings),
                 suppressed_findings=sum(analysis.suppressed_findings.values()))  # fmt: skip
    by_conn: dict[int | None, list[Finding]] = {}
    for finding in analysis.findings:
        by_conn.setdefault(finding.connection, []).append(finding)
    connections = [
        _connection_row(path, conn, analysis.streams.get(conn.id), by_conn.get(conn.id, []))
        for conn in analysis.connections
    ]
    return TraceRows(trace, connections, [_finding_row(path, f) for f in analysis.findings])


def _connection_row(
    path: str, conn: Connection, streams: tuple[StreamSummary, StreamSummary] | None, findings: list[Finding]
) -> dict[str, Any]:
    wire = [0, 0]  # payload bytes on the wire per connection direction (client→server, server→client)
    packets = retransmitted = reinjected = 0
    for sf in conn.subflows:
        for direction, half in enumerate(sf.halves):
            wire[direction ^ int(sf.reversed)] += half.payload_bytes
            packets += half.packets
            retransmitted += half.retransmitted_bytes
            reinjected += half.reinjected_bytes
    c2s, s2c = streams if streams is not None else (StreamSummary(), StreamSummary())
    severities = [f.severity for f in findings]
    return {
        "trace": path, "connection": conn.id, "version": conn.version, "client": conn.client_address,
        "server": conn.server_address, "first_frame": conn.first_frame, "subflows": len(conn.subflows),
        "joins": sum(1 for sf in conn.subflows if sf.kind == "join"), "packets": packets,
        "bytes_c2s": wire[0], "bytes_s2c": wire[1], "stream_bytes_c2s": c2s.bytes, "stream_bytes_s2c": s2c.bytes,
        "complete_c2s": c2s.complete, "complete_s2c": s2c.complete, "holes": c2s.holes + s2c.holes,
        "retransmitted_bytes": retransmitted, "reinjected_bytes": reinjected,
        "reinjections": len(c2s.reinjections) + len(s2c.reinjections), "fallback": conn.fallback,
        "fallback_reason": conn.fallback_reason, "checksum": bool(conn.checksum), "grouping": conn.grouping.value,
        "errors": severities.count(Severity.ERROR), "warnings": severities.count(Severity.WARNING),
        "infos": severities.count(Severity.INFO), "rule_ids": sorted({f.rule for f in findings}),
    }  # fmt: skip


def _finding_row(path: str, finding: Finding) -> dict[str, Any]:
    return {
        "trace": path, "connection": finding.connection, "subflow": finding.subflow, "rule": finding.rule,
        "family": family_of(finding.rule), "severity": finding.severity.label,
        "first_frame": min(finding.frames) if finding.frames else None, "frames": list(finding.frames),
        "message": finding.message,
    }  # fmt: skip


def lost_rows(path: str, lost: Lost) -> TraceRows:
    return TraceRows(_trace_row(path, "internal-error" if lost.internal else "error", f"{path}: {lost.message}"))


@dataclass(slots=True)
class CorpusCounts:
    traces: int = 0
    errors: list[str] = field(default_factory=list)  # one message per trace that could not be summarised
    connections: int = 0
    findings: int = 0
    parts: int = 0


def summarise(
    entries: Sequence[str | InputError], out: Path, executor: Executor | None = None, force: bool = False,
    traces_per_part: int = TRACES_PER_PART,
) -> CorpusCounts:  # fmt: skip
    """Summarise every trace through ``executor`` and write the dataset to ``out`` (replaced only with ``force``).

    Input errors (missing paths, unreadable or lost traces) are rows of the traces table, in input order.
    """
    _check_target(out, force)
    _pyarrow()
    paths = [e for e in entries if isinstance(e, str)]
    run = executor if executor is not None else process_pool(1)
    summarised = iter(zip(paths, run(summarise_trace, paths), strict=True))

    def ordered() -> Iterable[TraceRows]:
        for entry in entries:
            if isinstance(entry, InputError):
                yield TraceRows(_trace_row(entry.path, "error", entry.message))
                continue
            path, out_ = next(summarised)
            yield lost_rows(path, out_) if isinstance(out_, Lost) else out_

    rows = ordered()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        counts = write_dataset(rows, staging, traces_per_part)
        if out.exists():
            _remove(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return counts


def _check_target(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not force:
        raise CorpusError(f"{out} exists; --force replaces it")
    if out.is_dir() and not (out / MARKER).is_file():
        raise CorpusError(f"{out} is a directory that is not an mptcp-analyze corpus; not replacing it")


def _remove(out: Path) -> None:
    if out.is_dir():
        shutil.rmtree(out)
    else:
        out.unlink()


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise CorpusError("summarise writes Parquet through pyarrow, which is not installed "
                          "(pip install 'mptcp-analyze[dask]')") from None  # fmt: skip
    return pyarrow


def arrow_schema(table: str) -> Any:
    pa = _pyarrow()
    types = {"string": pa.string(), "int8": pa.int8(), "int32": pa.int32(), "int64": pa.int64(), "bool": pa.bool_(),
             "list<string>": pa.list_(pa.string()), "list<int64>": pa.list_(pa.int64())}  # fmt: skip
    return pa.schema([(name, types[kind]) for name, kind in COLUMNS[table].items()])


def write_dataset(rows: Iterable[TraceRows], root: Path, traces_per_part: int = TRACES_PER_PART) -> CorpusCounts:
    """Write the three tables under ``root``, one part file per ``traces_per_part`` traces (at least one part)."""
    pa = _pyarrow()
    schemas = {table: arrow_schema(table) for table in TABLES}
    for table in TABLES:
        (root / table).mkdir(parents=True, exist_ok=True)
    counts = CorpusCounts()
    batch: list[TraceRows] = []

    def flush() -> None:
        for table in TABLES:
            records = [r.trace for r in batch] if table == "traces" else [
                row for r in batch for row in getattr(r, table)
            ]  # fmt: skip
            arrow = pa.Table.from_pylist(records, schema=schemas[table])
            pa.parquet.write_table(arrow, root / table / f"part-{counts.parts:05d}.parquet")
        counts.parts += 1
        batch.clear()

    for item in rows:
        batch.append(item)
        counts.traces += 1
        counts.connections += len(item.connections)
        counts.findings += len(item.findings)
        if not item.ok:
            counts.errors.append(item.trace["error"] or item.trace["trace"])
        if len(batch) >= traces_per_part:
            flush()
    if batch or counts.parts == 0:
        flush()
    marker = {"schema": SCHEMA, "tables": {t: f"{t}/*.parquet" for t in TABLES}, "traces": counts.traces,
              "connections": counts.connections, "findings": counts.findings, "parts": counts.parts}  # fmt: skip
    (root / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return counts
