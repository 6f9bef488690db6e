"""The machine-readable contract (schema ``mptcp-analyze/1``).

Fields named in the contract are never renamed; new fields may be added.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from analyzer.model import CLIENT, SERVER, Analysis, Connection, StreamSummary, Subflow, data_fin_frame

SCHEMA = "mptcp-analyze/1"


def analysis_to_json(analysis: Analysis) -> dict[str, Any]:
    return {key: list(value) if key in _STREAMED else value for key, value in _document(analysis).items()}


_STREAMED = ("connections", "tcp_flows", "findings")  # the parts that grow with the trace


def _document(analysis: Analysis) -> dict[str, Any]:
    """The document, with its big lists as generators so :func:`dump` holds one item at a time."""
    trace = analysis.trace
    return {
        "schema": SCHEMA,
        "trace": {
            "path": trace.path,
            "packets": trace.packets,
            "link_types": trace.link_types,
            "first_time": trace.first_time,
            "last_time": trace.last_time,
            "errors": trace.errors,
            "format": trace.file_format,
            "compressed": trace.compressed,
            "tcp_packets": trace.tcp_packets,
            "mptcp_packets": trace.mptcp_packets,
            "skipped": trace.skipped,
            "truncated_packets": trace.truncated_packets,
            "snaplen": trace.snaplen,
            "assumed": list(trace.assumed),
        },
        "connections": (_connection(conn, analysis) for conn in analysis.connections),
        "tcp_flows": (_tcp_flow(sf) for sf in analysis.tcp_flows),
        "findings": (finding.to_json() for finding in analysis.findings),
        "suppressed_findings": analysis.suppressed_findings,
    }


def _connection(conn: Connection, analysis: Analysis) -> dict[str, Any]:
    streams = analysis.streams.get(conn.id, (StreamSummary(), StreamSummary()))
    client, server = conn.sides
    return {
        "id": conn.id,
        "version": conn.version,
        "fallback": conn.fallback,
        "fallback_reason": conn.fallback_reason,
        "checksum": bool(conn.checksum),
        "grouping": conn.grouping.value,
        "client": client.to_json(conn.client_address),
        "server": server.to_json(conn.server_address),
        "subflows": [sf.to_json() for sf in conn.subflows],
        "announcements": [a.to_json() for a in conn.announcements],
        "events": [{"frame": frame, "text": text} for frame, text in conn.events],
        "fastclose": None
        if conn.fastclose_frame is None
        else {"frame": conn.fastclose_frame, "sender": "client" if conn.fastclose_sender == CLIENT else "server"},
        "data_fin": {
            "c2s": data_fin_frame(conn, CLIENT),
            "s2c": data_fin_frame(conn, SERVER),
        },
        "streams": {"c2s": streams[CLIENT].to_json(), "s2c": streams[SERVER].to_json()},
        "fallback_cause": conn.fallback_cause,
        "diagnosis": diagnosis.to_json() if (diagnosis := analysis.diagnoses.get(conn.id)) is not None else None,
    }


def _tcp_flow(sf: Subflow) -> dict[str, Any]:
    return sf.to_json()


def dumps(analysis: Analysis) -> str:
    return json.dumps(analysis_to_json(analysis), indent=2)


def dump(analysis: Analysis, out: TextIO) -> None:
    """Write exactly what :func:`dumps` returns, one connection at a time (memory stays flat on huge traces)."""
    for piece in _pieces(_document(analysis)):
        out.write(piece)


def _pieces(document: dict[str, Any]) -> Iterator[str]:
    yield "{"
    for number, (key, value) in enumerate(document.items()):
        yield ("," if number else "") + "\n  " + json.dumps(key) + ": "
        if key in _STREAMED:
            yield from _list_pieces(value, 1)
        else:
            yield _nested(json.dumps(value, indent=2), 1)
    yield "\n}"


def _list_pieces(items: Iterable[Any], level: int) -> Iterator[str]:
    """A list as ``json.dumps(indent=2)`` lays it out at nesting ``level``, item by item."""
    pad: Callable[[int], str] = lambda depth: "\n" + "  " * depth  # noqa: E731
    empty = True
    for item in items:
        yield ("[" if empty else ",") + pad(level + 1) + _nested(json.dumps(item, indent=2), level + 1)
        empty = False
    yield "[]" if empty else pad(level) + "]"


def _nested(text: str, level: int) -> str:
    """Re-indent a value dumped at the top level to sit ``level`` deep (JSON strings hold no raw newlines)."""
    return text.replace("\n", "\n" + "  " * level)
