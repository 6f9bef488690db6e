"""Expectations: what a project asserts its trace must show, read from TOML and checked against the model.

The keys (global, or per trace under ``[traces."name-or-glob"]``)::

    connections = 1                      # exact number of MPTCP connections in the trace
    subflows = 2                         # each MPTCP connection has exactly 2 established subflows
    min_subflows = 1                     # … at least / at most
    max_subflows = 4
    established_subflows = 2             # the same count as subflows (established, never merely attempted)
    joins = 1                            # joins attempted (MP_JOIN SYNs) per connection, refused ones included
    version = 1                          # every MPTCP connection negotiated this version
    checksum = false                     # DSS checksums negotiated (true) or not (false), every connection
    fallback = false                     # false: no connection fell back; true: at least one did
    min_bytes = {c2s = 1000, s2c = 0}    # data-level bytes per direction, each connection (or one int: both)
    ignore = ["DSS-012", "GROUP-*"]      # findings of these rules (ids or globs) do not count
    downgrade = {"DACK-002" = "info"}    # findings of these rules count at this severity
    require = ["add_addr", "join"]       # events the trace must show (see REQUIRE_EVENTS); "join" = one that completed

A per-trace table replaces the global value of a key, except ``ignore`` and ``downgrade``, which add
to the global ones. The file is either such a TOML file (``--expect``) or the ``[tool.mptcp-analyze]``
table of a pyproject.toml (found in the current directory or the nearest parent that has one).
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from analyzer.findings import Finding, Severity
from analyzer.model import (
    CLIENT,
    DIRECTION_NAMES,
    SERVER,
    Analysis,
    Connection,
    Subflow,
    data_fin_frame,
    subflow_established,
)
from analyzer.rules import RULES

PYPROJECT_TABLE = ("tool", "mptcp-analyze")


class ExpectationError(Exception):
    """The expectations file cannot be used (syntax, unknown key, wrong type): a usage error."""


@dataclass(frozen=True, slots=True)
class Unmet:
    """One expectation the trace does not meet."""

    key: str
    message: str
    frames: tuple[int, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"key": self.key, "message": self.message, "frames": list(self.frames)}


@dataclass(frozen=True, slots=True)
class Expectations:
    """The expectations that apply to one trace (globals merged with its per-trace tables)."""

    connections: int | None = None
    subflows: int | None = None
    min_subflows: int | None = None
    max_subflows: int | None = None
    established_subflows: int | None = None
    joins: int | None = None
    version: int | None = None
    checksum: bool | None = None
    fallback: bool | None = None
    min_bytes: tuple[int, int] | None = None  # (c2s, s2c)
    ignore: tuple[str, ...] = ()
    downgrade: tuple[tuple[str, Severity], ...] = ()
    require: tuple[str, ...] = ()
    source: str | None = None  # file the expectations came from, for messages
    matched: tuple[str, ...] = ()  # per-trace patterns that applied

    @property
    def empty(self) -> bool:
        return self == Expectations(source=self.source, matched=self.matched)

    # ------------------------------------------------------------------ findings policy
    def is_ignored(self, rule: str) -> bool:
        return any(fnmatch.fnmatchcase(rule, pattern) for pattern in self.ignore)

    def severity_for(self, finding: Finding) -> Severity:
        for pattern, severity in reversed(self.downgrade):  # the last (most specific) wins
            if fnmatch.fnmatchcase(finding.rule, pattern):
                return severity
        return finding.severity

    def apply(self, findings: Iterable[Finding]) -> tuple[list[Finding], list[Finding]]:
        """(findings that count, with downgraded severities; findings ignored)."""
        kept: list[Finding] = []
        ignored: list[Finding] = []
        for finding in findings:
            if self.is_ignored(finding.rule):
                ignored.append(finding)
                continue
            severity = self.severity_for(finding)
            if severity != finding.severity:
                finding = replace(finding, severity=severity)
            kept.append(finding)
        return kept, ignored

    # ------------------------------------------------------------------ expectations
    def evaluate(self, analysis: Analysis) -> list[Unmet]:
        unmet: list[Unmet] = []
        mptcp = [conn for conn in analysis.connections if not conn.fallback]
        conns = analysis.connections
        if self.connections is not None and len(mptcp) != self.connections:
            unmet.append(Unmet("connections", f"expected {self.connections} MPTCP connection(s), found {len(mptcp)}"))
        per_connection = (
            self.subflows, self.min_subflows, self.max_subflows, self.version, self.checksum, self.min_bytes,
            self.established_subflows, self.joins,
        )  # fmt: skip
        if any(value is not None for value in per_connection) and not conns:
            unmet.append(Unmet("connections", "expected an MPTCP connection, found none"))
        for conn in conns:
            unmet.extend(self._connection(conn, analysis))
        if self.fallback is False:
            for conn in conns:
                if conn.fallback:
                    unmet.append(Unmet("fallback", f"connection {conn.id} fell back to TCP"
                                       f"{': ' + conn.fallback_reason if conn.fallback_reason else ''}",
                                       _fallback_frames(conn)))  # fmt: skip
        elif self.fallback is True and not any(conn.fallback for conn in conns):
            unmet.append(Unmet("fallback", "expected a connection that falls back to TCP, found none"))
        for event in self.require:
            if not REQUIRE_EVENTS[event][1](analysis):
                unmet.append(Unmet("require", f"required event not seen: {event} ({REQUIRE_EVENTS[event][0]})"))
        return unmet

    def _connection(self, conn: Connection, analysis: Analysis) -> list[Unmet]:
        unmet: list[Unmet] = []
        label = f"connection {conn.id}"
        frames = (conn.first_frame,) if conn.first_frame else ()
        count = sum(1 for sf in conn.subflows if established(sf))
        if self.subflows is not None and count != self.subflows:
            unmet.append(Unmet("subflows", f"{label}: expected {self.subflows} subflow(s), found {count}"
                               f"{_refused_note(conn)}", frames))  # fmt: skip
        if self.established_subflows is not None and count != self.established_subflows:
            unmet.append(Unmet("established_subflows", f"{label}: expected {self.established_subflows} established "
                               f"subflow(s), found {count}{_refused_note(conn)}", frames))  # fmt: skip
        attempted = attempted_joins(conn)
        if self.joins is not None and len(attempted) != self.joins:
            unmet.append(Unmet("joins", f"{label}: expected {self.joins} join attempt(s), found {len(attempted)}",
                               tuple(sf.first_frame for sf in attempted) or frames))  # fmt: skip
        if self.min_subflows is not None and count < self.min_subflows:
            unmet.append(Unmet("min_subflows", f"{label}: expected at least {self.min_subflows} subflow(s), "
                               f"found {count}", frames))  # fmt: skip
        if self.max_subflows is not None and count > self.max_subflows:
            unmet.append(Unmet("max_subflows", f"{label}: expected at most {self.max_subflows} subflow(s), "
                               f"found {count}", frames))  # fmt: skip
        if self.version is not None and not conn.fallback and conn.version != self.version:
            unmet.append(Unmet("version", f"{label}: expected MPTCP version {self.version}, "
                               f"found {'unknown' if conn.version is None else conn.version}", frames))  # fmt: skip
        if self.checksum is not None and not conn.fallback and bool(conn.checksum) != self.checksum:
            state = "on" if conn.checksum else "off"
            unmet.append(Unmet("checksum", f"{label}: expected DSS checksums {'on' if self.checksum else 'off'}, "
                               f"negotiated {state}", frames))  # fmt: skip
        if self.min_bytes is not None:
            streams = analysis.streams.get(conn.id)
            for direction in (CLIENT, SERVER):
                wanted = self.min_bytes[direction]
                got = max(streams[direction].length, streams[direction].bytes) if streams else 0
                if got < wanted:
                    unmet.append(Unmet("min_bytes", f"{label}: expected at least {wanted:,} bytes "
                                       f"{DIRECTION_NAMES[direction]}, found {got:,}", frames))  # fmt: skip
        return unmet


def established(sf: Subflow) -> bool:
    """A subflow counts when its handshake completed (a join: accepted, not refused), or it was captured running."""
    return subflow_established(sf)


def attempted_joins(conn: Connection) -> list[Subflow]:
    """Subflows opened with an MP_JOIN SYN, whatever became of them."""
    return [sf for sf in conn.subflows if sf.kind == "join" and sf.syn_seen]


def _refused_note(conn: Connection) -> str:
    refused = [sf.id for sf in attempted_joins(conn) if not established(sf)]
    if not refused:
        return ""
    return f" ({len(refused)} join(s) attempted but not established: subflow {', '.join(map(str, refused))})"


def _fallback_frames(conn: Connection) -> tuple[int, ...]:
    return tuple(frame for frame, text in conn.events if text.startswith("fallback"))[:1]


def _event(prefix: str) -> Callable[[Analysis], bool]:
    return lambda a: any(text.startswith(prefix) for conn in a.connections for _, text in conn.events)


def _reinjection(analysis: Analysis) -> bool:
    if any(s.reinjections for pair in analysis.streams.values() for s in pair):
        return True
    return any(h.reinjected_bytes for c in analysis.connections for sf in c.subflows for h in sf.halves)


REQUIRE_EVENTS: dict[str, tuple[str, Callable[[Analysis], bool]]] = {
    "join": (
        "a subflow joined with MP_JOIN and established (a refused join does not count)",
        lambda a: any(sf.kind == "join" and established(sf) for c in a.connections for sf in c.subflows),
    ),
    "join_attempt": (
        "a subflow opened with MP_JOIN, established or not",
        lambda a: any(sf.kind == "join" for c in a.connections for sf in c.subflows),
    ),
    "add_addr": ("an ADD_ADDR", lambda a: any(x.kind == "add" for c in a.connections for x in c.announcements)),
    "add_addr_echo": (
        "an echoed ADD_ADDR",
        lambda a: any(x.kind == "echo" for c in a.connections for x in c.announcements),
    ),
    "remove_addr": ("a REMOVE_ADDR", lambda a: any(x.kind == "remove" for c in a.connections for x in c.announcements)),
    "mp_prio": ("an MP_PRIO", _event("MP_PRIO")),
    "mp_fail": ("an MP_FAIL", _event("MP_FAIL")),
    "fastclose": ("an MP_FASTCLOSE", lambda a: any(c.fastclose_frame is not None for c in a.connections)),
    "mp_tcprst": (
        "a subflow reset with MP_TCPRST",
        lambda a: any(sf.end == "mp_tcprst" for c in a.connections for sf in c.subflows),
    ),
    "data_fin": (
        "a DATA_FIN",
        lambda a: any(data_fin_frame(c, side) is not None for c in a.connections for side in (CLIENT, SERVER)),
    ),
    "reinjection": ("data reinjected on another subflow", _reinjection),
    "backup": ("a backup subflow", lambda a: any(sf.backup for c in a.connections for sf in c.subflows)),
}

# ---------------------------------------------------------------------- parsing and validation

_SEVERITIES = {s.label: s for s in Severity}
_RULE_PATTERN = re.compile(r"^[A-Za-z]+-[0-9*?\[\]]+$|^[A-Za-z*?\[\]]+-?\*?$")


def _int(name: str, value: object, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ExpectationError(f"{where}: {name} must be an integer ≥ {minimum}, not {value!r}")
    return value


def _bool(name: str, value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ExpectationError(f"{where}: {name} must be true or false, not {value!r}")
    return value


def _rules(name: str, value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ExpectationError(f'{where}: {name} must be a list of rule ids, e.g. ["DSS-012"]')
    return [_rule_id(v, name, where) for v in value]


def _rule_id(value: str, name: str, where: str) -> str:
    rule = value.strip().upper()
    if any(ch in rule for ch in "*?["):
        if not _RULE_PATTERN.match(rule):
            raise ExpectationError(f'{where}: {name}: {value!r} is not a rule id or glob such as "DSS-*"')
        return rule
    if rule not in RULES:
        close = difflib.get_close_matches(rule, list(RULES), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else " (see mptcp-analyze rules)"
        raise ExpectationError(f"{where}: {name}: unknown rule {value!r}{hint}")
    return rule


def _parse_version(value: object, where: str) -> int:
    version = _int("version", value, where)
    if version not in (0, 1):
        raise ExpectationError(f"{where}: version must be 0 (RFC 6824) or 1 (RFC 8684), not {version}")
    return version


def _parse_min_bytes(value: object, where: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        n = _int("min_bytes", value, where)
        return n, n
    if not isinstance(value, dict):
        raise ExpectationError(f"{where}: min_bytes must be an integer or a table like {{c2s = 1000, s2c = 0}}")
    unknown = set(value) - set(DIRECTION_NAMES)
    if unknown:
        raise ExpectationError(f"{where}: min_bytes: unknown key(s) {', '.join(sorted(unknown))} "
                               "(use c2s and s2c)")  # fmt: skip
    return (_int("min_bytes.c2s", value.get("c2s", 0), where), _int("min_bytes.s2c", value.get("s2c", 0), where))


def _parse_downgrade(value: object, where: str) -> list[tuple[str, Severity]]:
    if not isinstance(value, dict):
        raise ExpectationError(f'{where}: downgrade must be a table like {{"DACK-002" = "info"}}')
    out: list[tuple[str, Severity]] = []
    for rule, level in value.items():
        if not isinstance(level, str) or level.lower() not in _SEVERITIES:
            raise ExpectationError(f"{where}: downgrade.{rule}: severity must be error, warning or info, "
                                   f"not {level!r}")  # fmt: skip
        out.append((_rule_id(rule, "downgrade", where), _SEVERITIES[level.lower()]))
    return out


def _parse_require(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ExpectationError(f'{where}: require must be a list of event names, e.g. ["join", "add_addr"]')
    events = []
    for name in value:
        event = name.strip().lower().replace("-", "_")
        if event not in REQUIRE_EVENTS:
            close = difflib.get_close_matches(event, list(REQUIRE_EVENTS), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ExpectationError(f"{where}: require: unknown event {name!r} ({hint}known: "
                                   f"{', '.join(REQUIRE_EVENTS)})")  # fmt: skip
        events.append(event)
    return events


_PARSERS: dict[str, Callable[[object, str], object]] = {
    "connections": lambda v, w: _int("connections", v, w),
    "subflows": lambda v, w: _int("subflows", v, w),
    "min_subflows": lambda v, w: _int("min_subflows", v, w),
    "max_subflows": lambda v, w: _int("max_subflows", v, w),
    "established_subflows": lambda v, w: _int("established_subflows", v, w),
    "joins": lambda v, w: _int("joins", v, w),
    "version": _parse_version,
    "checksum": lambda v, w: _bool("checksum", v, w),
    "fallback": lambda v, w: _bool("fallback", v, w),
    "min_bytes": _parse_min_bytes,
    "ignore": lambda v, w: _rules("ignore", v, w),
    "downgrade": _parse_downgrade,
    "require": _parse_require,
}
KEYS = tuple(_PARSERS)
_MERGED = ("ignore", "downgrade")  # per-trace values add to the global ones


def _parse_table(table: Mapping[str, Any], where: str, allow_traces: bool) -> dict[str, object]:
    parsed: dict[str, object] = {}
    for key, value in table.items():
        if key == "traces" and allow_traces:
            continue
        if key not in _PARSERS:
            close = difflib.get_close_matches(key, [*KEYS, "traces"] if allow_traces else list(KEYS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known keys: {', '.join(KEYS)})"
            raise ExpectationError(f"{where}: unknown key {key!r}{hint}")
        parsed[key] = _PARSERS[key](value, where)
    lo, hi = parsed.get("min_subflows"), parsed.get("max_subflows")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        raise ExpectationError(f"{where}: min_subflows ({lo}) is above max_subflows ({hi})")
    return parsed


@dataclass(frozen=True)
class ExpectationSet:
    """Global expectations plus per-trace tables, as read from one file."""

    source: str
    base: dict[str, object] = field(default_factory=dict)
    traces: tuple[tuple[str, dict[str, object]], ...] = ()
    root: Path = Path()

    def for_trace(self, path: str) -> Expectations:
        values = dict(self.base)
        matched: list[str] = []
        for pattern, table in self.traces:
            if not self._matches(pattern, path):
                continue
            matched.append(pattern)
            for key, value in table.items():
                if key in _MERGED and key in values:
                    old = values[key]
                    assert isinstance(old, list) and isinstance(value, list)
                    values[key] = [*old, *value]
                else:
                    values[key] = value
        return _build(values, self.source, tuple(matched))

    def _matches(self, pattern: str, path: str) -> bool:
        p = Path(path)
        candidates = {p.name, p.as_posix(), path}
        with contextlib.suppress(ValueError, OSError):
            candidates.add(p.resolve().relative_to(self.root.resolve()).as_posix())
        return any(fnmatch.fnmatch(c, pattern) for c in candidates)


def _build(values: dict[str, object], source: str | None, matched: tuple[str, ...] = ()) -> Expectations:
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("ignore", "require"):
            kwargs[key] = tuple(dict.fromkeys(value)) if isinstance(value, list) else ()
        elif key == "downgrade":
            kwargs[key] = tuple(value) if isinstance(value, list) else ()
        else:
            kwargs[key] = value
    return Expectations(**kwargs, source=source, matched=matched)


def parse(document: Mapping[str, Any], source: str, root: Path | None = None) -> ExpectationSet:
    """Validate an expectations table (the file's top level, or ``[tool.mptcp-analyze]``)."""
    base = _parse_table(document, source, allow_traces=True)
    traces_table = document.get("traces", {})
    if not isinstance(traces_table, dict):
        raise ExpectationError(f'{source}: traces must be tables, e.g. [traces."lossy.pcap"]')
    traces: list[tuple[str, dict[str, object]]] = []
    for pattern, table in traces_table.items():
        if not isinstance(table, dict):
            raise ExpectationError(f"{source}: traces.{pattern!r} must be a table of expectations")
        traces.append((pattern, _parse_table(table, f"{source} [traces.{pattern!r}]", allow_traces=False)))
    return ExpectationSet(source, base, tuple(traces), root or Path(source).parent)


def load(path: Path) -> ExpectationSet:
    """Read ``--expect FILE``: a TOML file of expectations, or a pyproject.toml with [tool.mptcp-analyze]."""
    try:
        with path.open("rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise ExpectationError(f"{path}: no such expectations file") from None
    except OSError as exc:
        raise ExpectationError(f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExpectationError(f"{path}: invalid TOML: {exc}") from None
    if path.name == "pyproject.toml":
        table = document.get(PYPROJECT_TABLE[0], {}).get(PYPROJECT_TABLE[1])
        if table is None:
            raise ExpectationError(f"{path}: no [tool.mptcp-analyze] table")
        return parse(table, f"{path} [tool.mptcp-analyze]", path.parent)
    return parse(document, str(path), path.parent)


def discover(start: Path | None = None) -> ExpectationSet | None:
    """``[tool.mptcp-analyze]`` of the nearest pyproject.toml at or above ``start`` (None if it has none)."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                with candidate.open("rb") as f:
                    document = tomllib.load(f)
            except tomllib.TOMLDecodeError as exc:
                raise ExpectationError(f"{candidate}: invalid TOML: {exc}") from None
            table = document.get(PYPROJECT_TABLE[0], {}).get(PYPROJECT_TABLE[1])
            if table is None:
                return None
            if not isinstance(table, dict):
                raise ExpectationError(f"{candidate}: [tool.mptcp-analyze] must be a table")
            return parse(table, f"{candidate} [tool.mptcp-analyze]", directory)
    return None
