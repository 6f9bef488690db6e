#!/usr/bin/env python3
"""Benchmark: a corpus of small traces, single process vs ``--jobs 2`` vs ``--dask local`` (LocalCluster(2)).

Builds ``--traces`` capture files (copies of the bundled kernel samples, round robin) and times the
CLI as a user runs it, so interpreter start and cluster start-up are included. Each mode's ``--json``
output must be byte-identical (SHA-256 printed); ``summarise`` is timed the same way. Not a test:
numbers go into issue notes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = {"single process": [], "--jobs 2": ["--jobs", "2"], "--dask local (2 workers)": ["--dask", "local", "-j", "2"]}


def make_corpus(target: Path, count: int) -> int:
    """``count`` traces in ``target`` (copies of samples/*.pcap); returns the total size in bytes."""
    samples = sorted((ROOT / "samples").glob("*.pcap"))
    target.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        shutil.copy(samples[i % len(samples)], target / f"trace-{i:04d}-{samples[i % len(samples)].name}")
    return sum(p.stat().st_size for p in target.iterdir())


def timed(cmd: list[str], cwd: Path) -> tuple[float, str, int]:
    """Wall seconds, SHA-256 of stdout and exit code of ``cmd``."""
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return elapsed, hashlib.sha256(proc.stdout).hexdigest(), proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per mode")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "analyzer.cli"]
    env_note = f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    with tempfile.TemporaryDirectory(prefix="mptcp-corpus-") as tmp:
        work = Path(tmp)
        size = make_corpus(work / "traces", args.traces)
        print(f"{args.traces} traces, {size / 1e6:.1f} MB, {env_note}")
        print(f"{'command':<10} {'mode':<26} {'wall s':>8} {'traces/s':>9}  sha256 of --json / exit")
        for mode, extra in MODES.items():
            runs = [timed([*cli, "check", "traces", "--no-expect", "--json", *extra], work) for _ in range(args.repeat)]
            best = min(runs)
            print(f"{'check':<10} {mode:<26} {best[0]:8.2f} {args.traces / best[0]:9.1f}  {best[1][:16]} / {best[2]}")
        for mode, extra in MODES.items():
            best_s = min(
                timed([*cli, "summarise", "traces", "-o", f"corpus-{n}.parquet", *extra], work)[0]
                for n in range(args.repeat)
            )  # fmt: skip
            for n in range(args.repeat):
                shutil.rmtree(work / f"corpus-{n}.parquet")
            print(f"{'summarise':<10} {mode:<26} {best_s:8.2f} {args.traces / best_s:9.1f}")


if __name__ == "__main__":
    main()
