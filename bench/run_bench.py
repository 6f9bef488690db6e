#!/usr/bin/env python3
"""Benchmark: mptcp-analyze --json vs tshark on the same large kernel trace, in the same run.

Reports wall time, CPU time, packets per second and peak RSS (from wait4's rusage) for each tool,
the median of ``--repeat`` runs. mptcp-analyze runs twice per mode: with the compiled hot path (when
built) and with the pure-Python reference (``MPTCP_ANALYZE_PURE=1``), side by side with tshark.
Not a test: numbers go into issue notes and the README. Generate the trace first with
``sudo python3 bench/make_large_trace.py`` (writes bench/out/large.pcap).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import dpkt


def count_packets(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in dpkt.pcap.UniversalReader(f))


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Run ``cmd`` with stdout discarded; return (wall seconds, CPU seconds, peak RSS in KiB).

    CPU time (user + system) is reported too because on a shared, loaded machine it is far
    steadier than wall time.
    """
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with status {status}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss


def markdown(trace: Path, packets: int, repeat: int, table: dict[str, dict[str, float]],
             reference: dict[str, float] | None) -> str:
    """The table as Markdown; "vs tshark" is tshark's CPU time over the tool's (steady on a loaded machine)."""
    lines = [
        f"Trace `{trace.name}`: {packets:,} packets; median of {repeat} interleaved runs, one machine, one run of "
        f"`python3 bench/run_bench.py` ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores).",
        "",
        "| tool | wall | CPU | packets/s (wall) | packets per CPU-second | peak RSS | vs tshark (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in table.items():
        ratio = f"{reference['cpu_seconds'] / r['cpu_seconds']:.2f}x" if reference else "-"
        lines.append(f"| `{name}` | {r['seconds']:.2f} s | {r['cpu_seconds']:.2f} s | {r['pkt_per_s']:,} | "
                     f"{r['pkt_per_cpu_s']:,} | {r['peak_rss_mib']:.1f} MiB | {ratio} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", nargs="?", default="bench/out/large.pcap", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--skip-two-pass", action="store_true", help="leave out tshark -2 (slow)")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown (e.g. BENCHMARKS.md)")
    args = parser.parse_args()
    if not args.trace.exists():
        raise SystemExit(f"{args.trace} not found: run `sudo python3 bench/make_large_trace.py` first")
    packets = count_packets(args.trace)
    trace = str(args.trace)
    cli = shutil.which("mptcp-analyze") or "mptcp-analyze"
    pure = {"MPTCP_ANALYZE_PURE": "1"}
    compiled = {"MPTCP_ANALYZE_PURE": ""}
    tools: dict[str, tuple[list[str], dict[str, str]]] = {}
    for label, flags in (("", []), (" --no-checks", ["--no-checks"]),
                         (" --no-checks --no-reassembly", ["--no-checks", "--no-reassembly"])):
        tools[f"mptcp-analyze --json{label} (compiled)"] = ([cli, "--json", *flags, trace], compiled)
        tools[f"mptcp-analyze --json{label} (pure)"] = ([cli, "--json", *flags, trace], pure)
    tshark = shutil.which("tshark")
    if tshark:
        one_pass = [tshark, "-r", trace, "-Y", "mptcp", "-o", "mptcp.analyze_mappings:TRUE"]
        tools["tshark -Y mptcp (analyze_mappings)"] = (one_pass, {})
        if not args.skip_two_pass:
            tools["tshark -2 -Y mptcp"] = ([tshark, "-2", "-r", trace, "-Y", "mptcp"], {})
    results: dict[str, list[tuple[float, float, int]]] = {}
    for _ in range(args.repeat):  # interleaved, so load changes hit every tool alike
        for name, (cmd, env) in tools.items():
            results.setdefault(name, []).append(run(cmd, env))
    table = {}
    for name, runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        table[name] = {
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "pkt_per_s": round(packets / wall),
            "pkt_per_cpu_s": round(packets / cpu),
            "peak_rss_mib": round(max(r[2] for r in runs) / 1024, 1),
        }
    reference = table.get("tshark -Y mptcp (analyze_mappings)")
    if args.markdown is not None:
        args.markdown.write_text(markdown(args.trace, packets, args.repeat, table, reference))
    if args.json:
        print(json.dumps({"trace": str(args.trace), "packets": packets, "results": table}, indent=2))
        return
    print(f"{args.trace}: {packets:,} packets, median of {args.repeat}")
    print(f"  {'tool':58} {'wall':>8} {'cpu':>8} {'pkt/s':>9} {'pkt/cpu-s':>9} {'RSS':>9} {'vs tshark':>9}")
    for name, r in table.items():
        ratio = f"{reference['cpu_seconds'] / r['cpu_seconds']:.2f}x" if reference else "-"
        print(f"  {name:58} {r['seconds']:7.2f}s {r['cpu_seconds']:7.2f}s {r['pkt_per_s']:>9,} "
              f"{r['pkt_per_cpu_s']:>9,} {r['peak_rss_mib']:6.1f}MiB {ratio:>9}")


if __name__ == "__main__":
    main()
