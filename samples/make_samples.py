#!/usr/bin/env python3
"""Regenerate the bundled real-kernel MPTCP sample captures (samples/*.pcap + *.json).

Why: the analyzer's tests and docs rely on small traces made by the actual Linux stack; this
script is the single, reproducible recipe for them.  Needs root and MPTCP (see mptcp_lab.py).

    sudo python3 samples/make_samples.py            # all samples
    sudo python3 samples/make_samples.py --only two-subflows --only ipv6
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SIZE_BUDGET = 2 * 1024 * 1024  # all committed samples together


def _load_lab() -> ModuleType:
    """Import mptcp_lab.py next to this file (samples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("mptcp_lab", HERE / "mptcp_lab.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mptcp_lab"] = mod
    spec.loader.exec_module(mod)
    return mod


lab = _load_lab()

# Both paths are shaped to 20 Mbit/s in the multi-subflow samples and each direction sends more
# than 64 KiB: the default scheduler hands data to a subflow in bursts of up to 64 KiB and on
# unshaped veths keeps picking the initial subflow, while the point of these traces is DSS
# mappings on *both* subflows.
SHAPED = {1: "20mbit", 2: "20mbit"}

SAMPLES: dict[str, dict[str, Any]] = {
    "single-subflow": dict(
        description="One MPTCP v1 connection, no extra endpoints: MP_CAPABLE handshake, MPC with "
                    "data, DSS in both directions, DATA_FIN, one subflow.",
        mode="single", c2s_bytes=20_000, s2c_bytes=40_000),
    "two-subflows": dict(
        description="Client 'subflow' endpoint on path 2: MP_JOIN from 10.210.2.1 to the server's "
                    "initial address 10.210.1.2; data on both subflows (paths shaped to 20 Mbit/s).",
        mode="subflow", c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED),
    "add-addr": dict(
        description="Server 'signal' endpoint on path 2: ADD_ADDR (with HMAC) for 10.210.2.2, "
                    "echo, then the client joins it. Per-interface Ethernet capture (EN10MB).",
        mode="signal", c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED, capture="eth"),
    "ipv6": dict(
        description="Two subflows over IPv6 (fd00:210:1::1 -> fd00:210:1::2, join from "
                    "fd00:210:2::1). Captured as Linux cooked v1 (LINUX_SLL).",
        mode="subflow", family=6, c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED,
        link_type="LINUX_SLL"),
    "fallback": dict(
        description="MPTCP client, plain TCP server (IPPROTO_TCP listener): SYN with MP_CAPABLE, "
                    "SYN/ACK without, the connection continues as regular TCP.",
        mode="single", fallback=True, c2s_bytes=20_000, s2c_bytes=40_000),
    "checksum": dict(
        description="net.mptcp.checksum_enabled=1 on both hosts, two subflows: MP_CAPABLE A bit, "
                    "DSS with checksum (MPC data length 24).",
        mode="subflow", checksum=True, c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED),
    "multi-conn": dict(
        description="Three concurrent MPTCP connections to the same server port, two subflows "
                    "each (client 'subflow' endpoint on path 2); 70 kB up so each join carries "
                    "some data, 20 kB down (initial subflow only).",
        mode="subflow", connections=3, c2s_bytes=70_000, s2c_bytes=20_000, rate=SHAPED),
    "lossy": dict(
        description="Two subflows with 3% random loss (nftables numgen, SYNs exempt) on both "
                    "paths in both directions: retransmissions, SACK, possible reinjection. "
                    "c2s drops happen after the capture point (lost segment visible), s2c drops "
                    "before it (hole in the capture).",
        mode="subflow", c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED, loss={1: 3.0, 2: 3.0}),
    "path-failure": dict(
        description="Two subflows, both paths paced to 1 Mbit/s; 50 ms into the client's bulk data "
                    "path 2 fails (nftables drops everything on it, both ways, in the server "
                    "namespace) and recovers 950 ms later. The join subflow's segments reach the "
                    "capture and are lost after it; the kernel reinjects the unacknowledged data on "
                    "the initial subflow; once the path is back the join retransmits its queue "
                    "(already delivered) and both subflows close with FIN.",
        mode="subflow", c2s_bytes=85_000, s2c_bytes=10_000, rate={1: "1mbit", 2: "1mbit"},
        link_down=[(2, 0.05, 1.0)], link_down_method="nft"),
    "tfo": dict(
        description="TCP Fast Open (net.ipv4.tcp_fastopen=3 on both hosts, TCP_FASTOPEN on the MPTCP "
                    "listener, sendto(MSG_FASTOPEN) on the client). Connection 1 asks for the cookie "
                    "(empty TFO option in the SYN, cookie in the SYN/ACK); connection 2 sends its "
                    "first 1,000 bytes in the SYN. No mapping covers them: Linux keeps them just before "
                    "IDSN + 1, and numbers the mappings' relative subflow sequence from the byte after "
                    "them.",
        mode="single", tfo=True, c2s_bytes=40_000, s2c_bytes=5_000),
    "mp-fail": dict(
        description="DSS checksums on, two subflows; a middlebox (nftables in the client's postrouting, before the "
                    "TCP checksum is computed) overwrites 8 payload bytes of the client's 3rd data packet on path 1. "
                    "The server's DSS checksum fails: it resets the initial subflow with MP_FAIL + MP_TCPRST "
                    "(reason 0x06) and discards the bytes; the client sends the data again on the join. The "
                    "rebuilt stream is the good copy, not the captured corrupted one.",
        mode="subflow", checksum=True, c2s_bytes=30_000, s2c_bytes=2_000, rate=SHAPED, corrupt={1: 3}),
}

# Fixed per sample, so that adding a sample never changes another one's payload.
SEEDS = {"add-addr": 1, "checksum": 2, "fallback": 3, "ipv6": 4, "lossy": 5, "multi-conn": 6,
         "single-subflow": 7, "two-subflows": 8, "path-failure": 9, "tfo": 10, "mp-fail": 11}


def make(name: str, out_dir: Path) -> dict[str, Any]:
    """Build one sample and return its sidecar."""
    params = dict(SAMPLES[name])
    cfg = lab.LabConfig(name=name, out_dir=out_dir, seed=SEEDS[name],
                        command=f"sudo python3 samples/make_samples.py --only {name}", **params)
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
