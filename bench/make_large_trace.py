#!/usr/bin/env python3
"""Generate a large real-kernel MPTCP trace for benchmarking the analyzer.

Why: parser/checker performance must be measured on realistic input: one MPTCP connection with
two subflows, wire-sized segments (offloads off) and a short snaplen (128, headers + options
only), as a capture from a busy link would be.  Output goes to bench/out/ (git-ignored):
``large.pcap`` plus its ``large.json`` sidecar.  Needs root; see analyzer/lab/.

    sudo python3 bench/make_large_trace.py                 # >= 300k packets, ~1 min
    sudo python3 bench/make_large_trace.py --min-packets 1000000 --c2s-mib 1200
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _load_lab() -> ModuleType:
    """The package's kernel lab (analyzer.lab, `mptcp-analyze lab`)."""
    import analyzer.lab

    return analyzer.lab


def count_packets(pcap: Path) -> int:
    """Packet count: capinfos when installed (fast), else walk the records in Python."""
    if shutil.which("capinfos"):
        proc = subprocess.run(["capinfos", "-M", "-c", "-T", "-r", str(pcap)], capture_output=True,
                              text=True, timeout=120, check=False)
        if proc.returncode == 0 and proc.stdout.strip():
            return int(proc.stdout.split()[-1])
    count, off = 0, 24
    with pcap.open("rb") as fh:
        data = fh.read()
    little = data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")
    while off + 16 <= len(data):
        off += 16 + int.from_bytes(data[off + 8:off + 12], "little" if little else "big")
        count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    """Build the trace, then check it really has enough packets."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--out-dir", type=Path, default=HERE / "out")
    ap.add_argument("--name", default="large")
    ap.add_argument("--c2s-mib", type=int, default=420, help="client->server MiB (bulk direction)")
    ap.add_argument("--s2c-mib", type=int, default=8, help="server->client MiB")
    ap.add_argument("--min-packets", type=int, default=300_000)
    ap.add_argument("--snaplen", type=int, default=128)
    ap.add_argument("--rate", default="", help="optional tbf rate on both paths, e.g. 2gbit")
    ns = ap.parse_args(argv)
    os.chdir(REPO)  # the sidecar's commands are relative to the repository root
    lab = _load_lab()
    reason = lab.lab_unavailable_reason()
    if reason:
        print(f"make_large_trace: cannot run: {reason}", file=sys.stderr)
        return 2
    cmd = "sudo python3 bench/make_large_trace.py" + (" " + " ".join(argv) if argv else "")
    cfg = lab.LabConfig(
        name=ns.name, out_dir=ns.out_dir, mode="subflow", c2s_bytes=ns.c2s_mib << 20,
        s2c_bytes=ns.s2c_mib << 20, seed=7, snaplen=ns.snaplen, capture="any",
        capture_filter="tcp", immediate=False, buffer_kib=262144, timeout=150.0,
        rate={1: ns.rate, 2: ns.rate} if ns.rate else {}, command=cmd,
        description=f"Benchmark trace: one MPTCP connection, two subflows, {ns.c2s_mib} MiB up / "
                    f"{ns.s2c_mib} MiB down, snaplen {ns.snaplen}, offloads off, tcp-only filter.")
    t0 = time.monotonic()
    try:
        meta = lab.run_lab(cfg)
    except lab.LabError as exc:
        print(f"make_large_trace: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - t0
    pcap = ns.out_dir / f"{ns.name}.pcap"
    packets = count_packets(pcap)
    drops = [d.get("dropped", 0) for d in meta["capture"]["tcpdump"]]
    conn = meta["connections"][0]
    print(f"{pcap}: {packets} packets, {pcap.stat().st_size} bytes, subflows={conn['subflows']}, "
          f"tcpdump drops={drops}, generated in {elapsed:.1f} s")
    if any(drops):
        print("make_large_trace: warning: tcpdump dropped packets; the trace has holes "
              "(try --rate 2gbit)", file=sys.stderr)
    if packets < ns.min_packets:
        print(f"make_large_trace: only {packets} packets (< {ns.min_packets}); raise --c2s-mib",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
