#!/usr/bin/env python3
"""Many-connection benchmark: N MP_CAPABLE SYNs from distinct ports, ours next to tshark, in one run.

    python3 bench/bench_syn_flood.py 20000 50000 200000

For each N it writes the flood (bench/make_syn_flood.py) and runs ``mptcp-analyze report --json`` and
``tshark -r F -q -z conv,tcp`` under /usr/bin/time, printing wall time, CPU time and peak RSS. Memory must
stay flat as N grows (half-open flows past Limits.max_half_open are summarised) and time linear.

It then measures, in process with tracemalloc, the bytes the analysis holds per tracked half-open flow
(max_half_open raised above N so none is summarised; counted just before the never-answered SYNs are
modelled for the report): the cost a SYN adds while the capture is read. ``--no-tshark`` skips tshark.
"""

from __future__ import annotations

import gc
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


def bytes_per_half_open(trace: Path, count: int) -> float:
    """tracemalloc bytes held per tracked SYN-only flow, at the end of the pass (before the report's modelling)."""
    import tracemalloc

    sys.path.insert(0, str(ROOT))
    from analyzer.limits import Limits
    from analyzer.pipeline import AnalysisOptions, analyze
    from analyzer.tracker import Tracker

    analyze(str(ROOT / "samples/two-subflows.pcap"))  # imports and caches first: only the flood is measured
    held: list[int] = []
    original = Tracker.take_held

    def measure_then_take(self: Tracker) -> list:  # type: ignore[type-arg]
        held.append(tracemalloc.get_traced_memory()[0])
        return original(self)

    Tracker.take_held = measure_then_take  # type: ignore[method-assign]
    try:
        gc.collect()
        tracemalloc.start()
        start = tracemalloc.get_traced_memory()[0]
        analyze(str(trace), AnalysisOptions(limits=Limits(max_half_open=count + 1)))
        tracemalloc.stop()
    finally:
        Tracker.take_held = original  # type: ignore[method-assign]
    return (held[0] - start) / count


def main() -> int:
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    tshark = "--no-tshark" not in sys.argv
    sizes = [int(arg) for arg in args] or [20_000, 50_000, 200_000]
    print(f"{'SYNs':>8}  {'tool':14} {'wall s':>8} {'CPU s':>8} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            trace = Path(tmp) / f"synflood-{size}.pcap"
            make = [sys.executable, str(ROOT / "bench/make_syn_flood.py"), str(size), str(trace)]
            subprocess.run(make, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
            runs = [("mptcp-analyze", [sys.executable, "-m", "analyzer.cli", "report", "--json", str(trace)])]
            if tshark and shutil.which("tshark"):
                runs.append(("tshark", ["tshark", "-r", str(trace), "-q", "-z", "conv,tcp"]))
            for name, command in runs:
                wall, cpu, rss = measure(command)
                print(f"{size:>8}  {name:14} {wall:>8.2f} {cpu:>8.2f} {rss:>8}")
        trace = Path(tmp) / "synflood-per-flow.pcap"
        per_flow = min(sizes[0], 20_000)
        make = [sys.executable, str(ROOT / "bench/make_syn_flood.py"), str(per_flow), str(trace)]
        subprocess.run(make, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
        cost = bytes_per_half_open(trace, per_flow)
        print(f"per tracked half-open flow ({per_flow} SYNs, tracemalloc): {cost:.0f} B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
