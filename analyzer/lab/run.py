"""One lab run from configuration to files: check the configuration, build, capture, tear down, write the sidecar."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from analyzer.lab import middlebox
from analyzer.lab.config import PATHS, LabConfig, LabError, rate_bps
from analyzer.lab.kernel import counter_deltas, netstat_counters
from analyzer.lab.netns import Lab, preflight
from analyzer.lab.pm import configure_pm
from analyzer.lab.sidecar import build_sidecar, pair
from analyzer.lab.traffic import traffic

COUNTER_FILES = ("/proc/net/netstat", "/proc/net/snmp")


def check_link_down(windows: Sequence[tuple[int, float, float]]) -> None:
    """Reject --link-down windows that are malformed or overlap on one path."""
    by_path: dict[int, list[tuple[float, float]]] = {}
    for path, start, end in windows:
        if path not in PATHS or not 0 <= start < end:
            raise LabError(f"bad --link-down window {path}={start}:{end} (need PATH 1 or 2, 0 <= START < END)")
        by_path.setdefault(path, []).append((start, end))
    for path, spans in by_path.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start <= end:
                raise LabError(f"--link-down windows on path {path} overlap")


def validate(cfg: LabConfig) -> None:
    """Every configuration error is found before a namespace exists."""
    if cfg.family not in (4, 6):
        raise LabError("family must be 4 or 6")
    if not 0 < cfg.port < 65536 or cfg.connections < 1 or cfg.c2s_bytes < 1 or cfg.s2c_bytes < 1:
        raise LabError("port must be 1..65535; connections, c2s_bytes and s2c_bytes at least 1")
    for rate in cfg.rate.values():
        rate_bps(rate)
    check_link_down(cfg.link_down)
    for path, nth in cfg.corrupt.items():
        if path not in PATHS or nth < 1:
            raise LabError(f"bad --corrupt {path}={nth} (need PATH 1 or 2, N >= 1)")
    needs_nft = cfg.loss or cfg.corrupt or (cfg.link_down and cfg.link_down_method == "nft")
    if needs_nft and shutil.which("nft") is None:
        raise LabError("--loss, --corrupt and --link-down-method nft need nftables (nft) installed")
    for action, at in cfg.pm_events:
        if at < 0:
            raise LabError(f"bad --pm-event {action}@{at} (the time must be >= 0)")
        if cfg.mode == "single" or cfg.fallback:
            raise LabError("--pm-event acts on the path-2 endpoint: it needs --mode subflow or signal")
    if cfg.signal_port is not None and (cfg.mode != "signal" or not 0 < cfg.signal_port < 65536
                                        or cfg.signal_port == cfg.port):
        raise LabError("--signal-port needs --mode signal and a port in 1..65535 other than --port")
    if cfg.fullmesh and (cfg.mode == "single" or cfg.fallback or cfg.signal_port is not None):
        raise LabError("--fullmesh needs a multipath mode and no --signal-port")
    if cfg.topology == "router":
        if cfg.mode == "signal" or cfg.fullmesh:
            raise LabError("--topology router: the server has one address, so --mode signal/--fullmesh do not apply")
        if cfg.loss or cfg.link_down or cfg.corrupt:
            raise LabError("--topology router does not support --loss, --link-down or --corrupt")


def counters(lab: Lab) -> dict[str, dict[str, dict[str, int]]]:
    """Every netstat/snmp counter of each namespace, by role."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for role, ns in lab.namespaces().items():
        groups: dict[str, dict[str, int]] = {}
        for path in COUNTER_FILES:
            groups.update(netstat_counters(lab.read_proc(ns, path)))
        out[role] = groups
    return out


def _capture(cfg: LabConfig, pcap: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """Build, run and tear down; returns the traffic report, the notes and the namespaces used."""
    with Lab(cfg) as lab:
        lab.build()
        configure_pm(lab)
        middlebox.shaping(lab)
        middlebox.corruption(lab)
        before = counters(lab)
        rep = traffic(lab, pcap)
        after = counters(lab)
        notes = lab.notes
        notes["nstat"] = {role: counter_deltas(before[role], after[role]) for role in after}
        if cfg.corrupt:
            notes["corrupt_hits"] = middlebox.corruption_report(lab)
            notes["mib"] = middlebox.mptcp_mib(lab)
        return rep, notes, lab.namespaces()


def _strict_checks(cfg: LabConfig, rep: dict[str, Any], notes: dict[str, Any],
                   connections: list[dict[str, Any]]) -> None:
    """The run did what the configuration asked, or it fails (a sidecar must never lie)."""
    dropped = sum(int(t.get("dropped") or 0) for t in rep["tcpdump"])
    if dropped:
        # seen with 8 concurrent connections on unshaped veths: a burst overflows tcpdump's
        # ring (in immediate mode its slots are presumably sized for the full snaplen)
        raise LabError(f"{cfg.name}: tcpdump dropped {dropped} packets, the capture is incomplete: "
                       "pace the paths with --rate or raise --buffer-kib")
    for event in rep["link_events"] + rep["pm_events"]:
        if event.get("state", "down") == "down" and event["at_s"] + rep["bulk_start_s"] >= rep["elapsed_s"]:
            raise LabError(f"{cfg.name}: an event planned at {event['planned_s']} s ran at {event['at_s']} s, after "
                           f"the traffic ended ({rep['elapsed_s']} s): start earlier or lower --rate")
    if len([e for e in rep["link_events"] if e["state"] == "down"]) != len(cfg.link_down):
        raise LabError(f"{cfg.name}: the traffic ended before every --link-down window began")
    if len(rep["pm_events"]) != len(cfg.pm_events):
        raise LabError(f"{cfg.name}: the traffic ended before every --pm-event ran")
    for c in connections:
        # --corrupt with checksums on a single subflow: MP_FAIL makes it fall back (the kernel then says TCP)
        fell_back = bool(cfg.corrupt) and cfg.checksum and cfg.expected_subflows == 1 and not c["mptcp"]
        if c["mptcp"] == cfg.fallback and not fell_back:
            raise LabError(f"{cfg.name}: connection {c['client']} mptcp={c['mptcp']} unexpected")
        tfo = c.get("tfo")
        if tfo and tfo["role"] == "data-in-syn" and not (tfo["client_syn_data_acked"] and tfo["server_syn_data"]):
            raise LabError(f"{cfg.name}: connection {c['client']} did not carry data in its SYN "
                           f"(TCP Fast Open not used: {tfo})")
        # --corrupt: the receiver resets the corrupted subflow (MP_FAIL + MP_TCPRST), so fewer may be left
        reset = len(cfg.corrupt) if cfg.checksum and cfg.expected_subflows > 1 else 0
        if not cfg.expected_subflows - reset <= c["subflows"] <= cfg.expected_subflows:
            raise LabError(f"{cfg.name}: kernel reports {c['subflows']} subflows, expected {cfg.expected_subflows}")
    for path in cfg.corrupt:
        hits = notes["corrupt_hits"].get(str(path), 0)
        if hits != 1:
            raise LabError(f"{cfg.name}: --corrupt on path {path} rewrote {hits} packets, expected 1 "
                           "(too few data packets on the path?)")


def run_lab(cfg: LabConfig) -> dict[str, Any]:
    """Build the lab, capture one trace, write ``<name>.pcap`` + ``<name>.json``; return the sidecar."""
    preflight()
    validate(cfg)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pcap = out_dir / f"{cfg.name}.pcap"
    pcap.unlink(missing_ok=True)
    rep, notes, namespaces = _capture(cfg, pcap)
    connections = pair(cfg, rep["client"], rep["server"])
    if cfg.strict:
        _strict_checks(cfg, rep, notes, connections)
    sidecar = build_sidecar(cfg, pcap, rep, notes, namespaces, connections)
    (out_dir / f"{cfg.name}.json").write_text(json.dumps(sidecar, indent=2, sort_keys=False) + "\n")
    return sidecar
