#!/usr/bin/env python3
"""Regenerate the bundled real-kernel MPTCP sample captures (samples/*.pcap + *.json).

Why: the analyzer's tests and docs rely on small traces made by the actual Linux stack; this
script is the single, reproducible recipe for them: each sample is a scenario of the package's lab
(`mptcp-analyze lab`, analyzer/lab/) with a fixed seed. Needs root and MPTCP.

    sudo python3 samples/make_samples.py            # all samples
    sudo python3 samples/make_samples.py --only two-subflows --only ipv6
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from analyzer import lab

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZE_BUDGET = 2 * 1024 * 1024  # all committed samples together

# sample name → (lab scenario, options that differ from the scenario's preset). The descriptions say what
# each committed trace shows; the sizes and pacing are the scenarios' own.
SAMPLES: dict[str, tuple[str, dict[str, Any]]] = {
    "single-subflow": ("single", {}),
    "two-subflows": ("two-paths", dict(
        description="Client 'subflow' endpoint on path 2: MP_JOIN from 10.210.2.1 to the server's "
                    "initial address 10.210.1.2; data on both subflows (paths shaped to 20 Mbit/s).")),
    "add-addr": ("add-addr", {}),
    "ipv6": ("ipv6", dict(
        description="Two subflows over IPv6 (fd00:210:1::1 -> fd00:210:1::2, join from "
                    "fd00:210:2::1). Captured as Linux cooked v1 (LINUX_SLL).",
        link_type="LINUX_SLL")),
    "fallback": ("fallback", {}),
    "checksum": ("checksum", dict(
        description="net.mptcp.checksum_enabled=1 on both hosts, two subflows: MP_CAPABLE A bit, "
                    "DSS with checksum (MPC data length 24).")),
    "multi-conn": ("many-connections", dict(
        description="Three concurrent MPTCP connections to the same server port, two subflows "
                    "each (client 'subflow' endpoint on path 2); 70 kB up so each join carries "
                    "some data, 20 kB down (initial subflow only).",
        connections=3)),
    "lossy": ("lossy", dict(
        description="Two subflows with 3% random loss (nftables numgen, SYNs exempt) on both "
                    "paths in both directions: retransmissions, SACK, possible reinjection. "
                    "c2s drops happen after the capture point (lost segment visible), s2c drops "
                    "before it (hole in the capture).")),
    "path-failure": ("path-failure", dict(
        description="Two subflows, both paths paced to 1 Mbit/s; 50 ms into the client's bulk data "
                    "path 2 fails (nftables drops everything on it, both ways, in the server "
                    "namespace) and recovers 950 ms later. The join subflow's segments reach the "
                    "capture and are lost after it; the kernel reinjects the unacknowledged data on "
                    "the initial subflow; once the path is back the join retransmits its queue "
                    "(already delivered) and both subflows close with FIN.")),
    "tfo": ("tfo", dict(
        description="TCP Fast Open (net.ipv4.tcp_fastopen=3 on both hosts, TCP_FASTOPEN on the MPTCP "
                    "listener, sendto(MSG_FASTOPEN) on the client). Connection 1 asks for the cookie "
                    "(empty TFO option in the SYN, cookie in the SYN/ACK); connection 2 sends its "
                    "first 1,000 bytes in the SYN. No mapping covers them: Linux keeps them just before "
                    "IDSN + 1, and numbers the mappings' relative subflow sequence from the byte after "
                    "them.")),
    "mp-fail": ("mp-fail", dict(
        description="DSS checksums on, two subflows; a middlebox (nftables in the client's postrouting, before the "
                    "TCP checksum is computed) overwrites 8 payload bytes of the client's 3rd data packet on path 1. "
                    "The server's DSS checksum fails: it resets the initial subflow with MP_FAIL + MP_TCPRST "
                    "(reason 0x06) and discards the bytes; the client sends the data again on the join. The "
                    "rebuilt stream is the good copy, not the captured corrupted one.",
        c2s_bytes=30_000, s2c_bytes=2_000, corrupt={1: 3})),
}

# Fixed per sample, so that adding a sample never changes another one's payload.
SEEDS = {"add-addr": 1, "checksum": 2, "fallback": 3, "ipv6": 4, "lossy": 5, "multi-conn": 6,
         "single-subflow": 7, "two-subflows": 8, "path-failure": 9, "tfo": 10, "mp-fail": 11}


def make(name: str, out_dir: Path) -> dict[str, Any]:
    """Build one sample and return its sidecar."""
    scenario, options = SAMPLES[name]
    cfg = lab.scenario_config(scenario, out_dir / f"{name}.pcap", seed=SEEDS[name],
                              command=f"sudo python3 samples/make_samples.py --only {name}", **options)
    return dict(lab.run_lab(cfg))


def summary_line(side: dict[str, Any]) -> str:
    """One line per sample: size, packets, subflows and per-subflow payload per the kernel."""
    parts = []
    for conn in side["connections"]:
        per_sf = ""
        kernel = conn.get("kernel")
        if kernel:
            sfs = kernel["client"]["at_end"]["subflows"]
            per_sf = " [" + ", ".join(f"{s['local']} tx={s.get('bytes_sent')} rx={s.get('bytes_received')}"
                                     for s in sfs) + "]"
            reinjected = kernel["client"]["at_end"]["info"].get("bytes_retrans")
            if reinjected:
                per_sf += f" mptcp_bytes_retrans={reinjected}"
        parts.append(f"mptcp={conn['mptcp']} subflows={conn['subflows']}{per_sf}")
    cap = side["capture"]
    return (f"{side['name']:15s} {cap['file_bytes']:8d} B {cap['packets']:5d} pkts {side['link_type']:10s} "
            + "; ".join(parts))


def main(argv: list[str] | None = None) -> int:
    """CLI: build all (or --only) samples into samples/, then print a summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--only", action="append", choices=sorted(SAMPLES), help="build just these")
    ap.add_argument("--out-dir", type=Path, default=HERE)
    ns = ap.parse_args(argv)
    os.chdir(REPO)  # commands recorded in the sidecars are relative to the repository root
    reason = lab.lab_unavailable_reason()
    if reason:
        print(f"make_samples: cannot run: {reason}", file=sys.stderr)
        return 2
    names = ns.only or list(SAMPLES)
    for name in names:
        try:
            side = make(name, ns.out_dir)
        except lab.LabError as exc:
            print(f"make_samples: {name}: {exc}", file=sys.stderr)
            return 1
        print(summary_line(side), flush=True)
    total = sum(p.stat().st_size for p in ns.out_dir.glob("*.pcap")) + sum(
        p.stat().st_size for p in ns.out_dir.glob("*.json"))
    print(f"total pcap+json size: {total} bytes (budget {SIZE_BUDGET})")
    return 0 if total < SIZE_BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
