#!/usr/bin/env python3
"""Benchmark: mptcp-analyze --json vs tshark on the same large kernel trace, in the same run.

Reports wall time, packets per second and peak RSS (from wait4's rusage) for each tool, best of
``--repeat`` runs. Not a test: numbers go into issue notes. Generate the trace first with
``sudo python3 bench/make_large_trace.py`` (writes bench/out/large.pcap).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import dpkt


def count_packets(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in dpkt.pcap.UniversalReader(f))


def run(cmd: list[str]) -> tuple[float, int]:
    """Run ``cmd`` with stdout discarded; return (wall seconds, peak RSS in KiB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return elapsed, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", default="bench/out/large.pcap", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if not args.trace.exists():
        raise SystemExit(f"{args.trace} not found: run `sudo python3 bench/make_large_trace.py` first")
    packets = count_packets(args.trace)
    trace = str(args.trace)
    cli = shutil.which("mptcp-analyze") or "mptcp-analyze"
    tools: dict[str, list[str]] = {
        "mptcp-analyze --json": [cli, "--json", trace],
        "mptcp-analyze --json --no-checks": [cli, "--json", "--no-checks", trace],
        "mptcp-analyze --json --no-checks --no-reassembly": [cli, "--json", "--no-checks", "--no-reassembly", trace],
    }
    tshark = shutil.which("tshark")
    if tshark:
        tools["tshark -Y mptcp (analyze_mappings)"] = [
            tshark,
            "-r",
            str(args.trace),
            "-Y",
            "mptcp",
            "-o",
            "mptcp.analyze_mappings:TRUE",
        ]
        tools["tshark -2 -Y mptcp"] = [tshark, "-2", "-r", str(args.trace), "-Y", "mptcp"]
    results = {}
    for name, cmd in tools.items():
        runs = [run(cmd) for _ in range(args.repeat)]
        best = min(r[0] for r in runs)
        rss = max(r[1] for r in runs)
        results[name] = {
            "seconds": round(best, 3),
            "pkt_per_s": round(packets / best),
            "peak_rss_mib": round(rss / 1024, 1),
        }
    if args.json:
        print(json.dumps({"trace": str(args.trace), "packets": packets, "results": results}, indent=2))
        return
    print(f"{args.trace}: {packets:,} packets, best of {args.repeat}")
    for name, r in results.items():
        print(f"  {name:50} {r['seconds']:7.2f} s  {r['pkt_per_s']:>9,} pkt/s  {r['peak_rss_mib']:7.1f} MiB")


if __name__ == "__main__":
    main()
