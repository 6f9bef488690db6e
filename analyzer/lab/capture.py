"""tcpdump around a run: started in the capture namespace (client or router), stopped with its statistics."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

from analyzer.lab.config import PATHS, LabError
from analyzer.lab.netns import Lab, read_until
from analyzer.lab.pcapfile import merge_pcaps

Dump = tuple[subprocess.Popen[bytes], bytearray]


def capture_parts(lab: Lab, pcap: Path) -> list[tuple[str, Path]]:
    """(interface, file) of every tcpdump the run needs.

    Router: only the router's link to the server, where every packet passes once (``-i any`` in a router
    would record each forwarded packet twice, on the way in and on the way out).
    """
    if lab.rtr:
        return [("rs1", pcap)]
    if lab.cfg.capture == "any":
        return [("any", pcap)]
    return [(f"cli{p}", pcap.with_name(f".{pcap.stem}.cli{p}.pcap")) for p in PATHS]


def start_tcpdump(lab: Lab, iface: str, out: Path) -> Dump:
    """Start tcpdump in the capture namespace and wait until it is really capturing."""
    cfg = lab.cfg
    argv = ["tcpdump", "-i", iface, "-n", "-U", "-Z", "root", "-s", str(cfg.snaplen),
            "-B", str(cfg.buffer_kib), "-w", str(out)]
    if cfg.immediate:
        argv.append("--immediate-mode")
    if iface == "any" and cfg.link_type:
        argv += ["-y", cfg.link_type]
    if cfg.capture_filter:
        argv.append(cfg.capture_filter)
    proc = lab.spawn(argv, lab.capture_ns, stdout=False)
    buf = bytearray()
    assert proc.stderr is not None
    if not read_until(proc.stderr.fileno(), b"listening on", 15.0, buf):
        raise LabError(f"tcpdump on {iface} did not start: {buf.decode(errors='replace')}")
    return proc, buf


def stop_tcpdump(dump: Dump) -> dict[str, Any]:
    """SIGINT (flushes the file) and parse tcpdump's closing statistics."""
    proc, buf = dump
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=5)
    text = (bytes(buf) + (err or b"")).decode(errors="replace")
    stats: dict[str, Any] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[1] == "packets":
            stats[parts[2]] = int(parts[0])  # captured / received / dropped
        elif "listening on" in line:
            stats["banner"] = line.strip()
    return stats


def finish_capture(lab: Lab, pcap: Path, parts: list[tuple[str, Path]]) -> None:
    """Per-interface captures merged into ``pcap`` by timestamp, the parts removed."""
    if len(parts) > 1 or parts[0][1] != pcap:
        merge_pcaps(pcap, [out for _, out in parts])
        for _, out in parts:
            out.unlink(missing_ok=True)
