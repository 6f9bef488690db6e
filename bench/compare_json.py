#!/usr/bin/env python3
"""Dump or compare the ``--json`` documents of every sample and tcpdump capture.

Why: performance work must not move a single byte of the ``mptcp-analyze/1`` output. Dump the
documents before a change, dump them again after, and diff the two directories:

    PYTHONPATH=$PWD python3 bench/compare_json.py dump /tmp/before
    PYTHONPATH=$PWD python3 bench/compare_json.py dump /tmp/after
    python3 bench/compare_json.py diff /tmp/before /tmp/after

Each trace is analysed three ways (full, ``--no-checks``, ``--no-checks --no-reassembly``), like
the CLI does. ``MPTCP_ANALYZE_PURE=1`` in the environment dumps the pure-Python path's output.
Extra traces (e.g. a large benchmark trace) can be named after the directory.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TCPDUMP_CAPTURES = Path("/work/shared/captures/tcpdump")
MODES = {"full": (True, True), "no-checks": (True, False), "no-reassembly": (False, False)}


def default_traces() -> list[Path]:
    """Every sample trace of the repository and every tcpdump capture present on this machine."""
    traces = sorted((REPO / "samples").glob("*.pcap"))
    if TCPDUMP_CAPTURES.is_dir():
        traces += sorted(TCPDUMP_CAPTURES.glob("*.pcap"))
    return traces


def dump(out_dir: Path, extra: list[Path]) -> int:
    """Write ``<trace>.<mode>.json`` for every trace and mode into ``out_dir``."""
    from analyzer.cli import run_analysis
    from analyzer.report import json_out

    out_dir.mkdir(parents=True, exist_ok=True)
    for trace in default_traces() + extra:
        for mode, (reassemble, check) in MODES.items():
            analysis = run_analysis(str(trace), show_progress=False, reassemble=reassemble, check=check)
            (out_dir / f"{trace.stem}.{mode}.json").write_text(json_out.dumps(analysis) + "\n")
    return 0


def diff(a: Path, b: Path) -> int:
    """Compare two dump directories file by file; exit 1 on any difference or missing file."""
    names = sorted({p.name for p in a.glob("*.json")} | {p.name for p in b.glob("*.json")})
    bad = 0
    for name in names:
        pa, pb = a / name, b / name
        if not pa.exists() or not pb.exists():
            print(f"missing: {name} ({'left' if not pa.exists() else 'right'})")
            bad += 1
            continue
        ha = hashlib.sha256(pa.read_bytes()).hexdigest()
        hb = hashlib.sha256(pb.read_bytes()).hexdigest()
        if ha != hb:
            print(f"DIFFERS: {name}")
            bad += 1
    print(f"{len(names) - bad} of {len(names)} documents identical")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("out_dir", type=Path)
    d.add_argument("extra", nargs="*", type=Path)
    c = sub.add_parser("diff")
    c.add_argument("a", type=Path)
    c.add_argument("b", type=Path)
    ns = ap.parse_args(argv)
    if ns.cmd == "dump":
        return dump(ns.out_dir, ns.extra)
    return diff(ns.a, ns.b)


if __name__ == "__main__":
    sys.exit(main())
