"""The machine-readable contract (schema ``mptcp-analyze/1``).

Fields named in the contract are never renamed; new fields may be added.
"""

from __future__ import annotations

import json
from typing import Any

from analyzer.model import CLIENT, SERVER, Analysis, Connection, StreamSummary, Subflow, data_fin_frame

SCHEMA = "mptcp-analyze/1"


def analysis_to_json(analysis: Analysis) -> dict[str, Any]:
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
        },
        "connections": [_connection(conn, analysis) for conn in analysis.connections],
        "tcp_flows": [_tcp_flow(sf) for sf in analysis.tcp_flows],
        "findings": [finding.to_json() for finding in analysis.findings],
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
