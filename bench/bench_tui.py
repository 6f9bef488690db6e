#!/usr/bin/env python3
"""Benchmark: the inspector's time to its first screen of packets and to a complete index, headless.

Runs the real app (textual's headless driver, 120x40) on a trace and reports, median of ``--repeat``:
the seconds until the packet list shows its first rows (the load streams into it) and until the load
worker has indexed every packet; plus the peak RSS of the process. Not a test: the numbers go into
BENCHMARKS.md next to run_bench.py's.

    python3 bench/bench_tui.py bench/out/large.pcap --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from pathlib import Path

POLL = 0.01  # seconds between looks at the app (the measure's resolution)
TIMEOUT = 1800.0


async def one_run(trace: Path) -> tuple[float, float, int]:
    """(seconds to the first rows on screen, seconds to the complete index, packets indexed)."""
    from tui.app import MptcpInspector

    app = MptcpInspector(str(trace))
    started = time.perf_counter()
    first = None
    async with app.run_test(size=(120, 40)) as pilot:
        while time.perf_counter() - started < TIMEOUT:
            if first is None and app.packets.count > 0:
                first = time.perf_counter() - started
            if app.session.loaded:
                break
            await pilot.pause(POLL)
        loaded = time.perf_counter() - started
        await app.workers.wait_for_complete()
        packets = app.session.index.count
    return (first if first is not None else loaded), loaded, packets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [asyncio.run(one_run(args.trace)) for _ in range(args.repeat)]
    first = statistics.median(r[0] for r in runs)
    loaded = statistics.median(r[1] for r in runs)
    packets = runs[-1][2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.trace}: {packets:,} packets indexed; median of {args.repeat}: first screen {first:.2f} s, "
          f"complete index {loaded:.2f} s ({packets / loaded:,.0f} packets/s), peak RSS {rss:.0f} MiB")


if __name__ == "__main__":
    main()
