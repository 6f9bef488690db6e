#!/usr/bin/env python3
"""Many-connection benchmark: N MP_CAPABLE SYNs from distinct ports, ours next to tshark, in one run.

    python3 bench/bench_syn_flood.py 20000 50000 200000

For each N it writes the flood (bench/make_syn_flood.py) and runs ``mptcp-analyze report --json`` and
``tshark -r F -q -z conv,tcp`` under /usr/bin/time, printing wall time, CPU time and peak RSS. Memory must
stay flat as N grows (half-open flows past Limits.max_half_open are summarised) and time linear.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIME = re.compile(r"wall (?P<wall>[\d.]+) cpu (?P<user>[\d.]+)\+(?P<sys>[\d.]+) rss (?P<rss>\d+)")


def measure(command: list[str]) -> tuple[float, float, int]:
    """(wall s, CPU s, peak RSS MB) of one command, via GNU time."""
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "wall %e cpu %U+%S rss %M", *command],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    match = TIME.search(proc.stderr)
    if match is None:
        raise SystemExit(f"{command[0]} failed: {proc.stderr[-500:]}")
    return float(match["wall"]), float(match["user"]) + float(match["sys"]), int(match["rss"]) // 1024


def main() -> int:
    sizes = [int(arg) for arg in sys.argv[1:]] or [20_000, 50_000, 200_000]
    print(f"{'SYNs':>8}  {'tool':14} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            trace = Path(tmp) / f"synflood-{size}.pcap"
            make = [sys.executable, str(ROOT / "bench/make_syn_flood.py"), str(size), str(trace)]
            subprocess.run(make, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
            runs = [("mptcp-analyze", [sys.executable, "-m", "analyzer.cli", "report", "--json", str(trace)])]
            if shutil.which("tshark"):
                runs.append(("tshark", ["tshark", "-r", str(trace), "-q", "-z", "conv,tcp"]))
            for name, command in runs:
                wall, cpu, rss = measure(command)
                print(f"{size:>8}  {name:14} {wall:>8.2f} {cpu:>8.2f} {rss:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
