"""The ``mptcp-analyze-compare/1`` contract: fields are added, never renamed or removed."""

from __future__ import annotations

import json
from typing import Any

from analyzer.compare.model import Comparison

SCHEMA = "mptcp-analyze-compare/1"


def comparison_to_json(comparison: Comparison) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "clock_offset_s": None if comparison.clock_offset_s is None else round(comparison.clock_offset_s, 9),
        "connections": [conn.to_json() for conn in comparison.connections],
        "a": comparison.path_a,
        "b": comparison.path_b,
        "unmatched_b": comparison.unmatched_b,
        "errors": comparison.errors,
        "indexed_packets": comparison.indexed_packets,
    }


def dumps(comparison: Comparison) -> str:
    return json.dumps(comparison_to_json(comparison), indent=2)
