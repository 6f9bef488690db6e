"""Kernel MPTCP traffic through a Linux router namespace, captured at both ends at once (compare's lab tests).

client (10.210.201.1) — router (forwarding, an nftables ruleset the test gives) — server (10.210.202.2),
each in a namespace named ma-cmp*-PID-N that is always deleted. The client sends ``CLIENT_BYTES`` then
reads the server's ``SERVER_BYTES``; tcpdump records each end's veth.
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

_counter = itertools.count(1)
PCAP_HEADER = 24  # bytes of an empty capture file
CLIENT = "10.210.201.1"
SERVER = "10.210.202.2"
PUBLIC = "10.210.202.1"  # the router's address on the server's side
CLIENT_BYTES = 400_000
SERVER_BYTES = 50_000

SERVER_CODE = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201)); s.listen(1); s.settimeout(20)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(20)
while c.recv(65536):
    pass
c.sendall(b"y" * {SERVER_BYTES}); c.close()
"""
CLIENT_CODE = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262); s.settimeout(20)
s.connect(("{SERVER}", 5201))
s.sendall(b"x" * {CLIENT_BYTES}); s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
"""


def skip_reason() -> str | None:
    """Why the router lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "tcpdump", "nft", "ethtool"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    try:
        if Path("/proc/sys/net/mptcp/enabled").read_text().strip() != "1":
            return "MPTCP disabled (net.mptcp.enabled != 1)"
    except OSError:
        return "kernel without MPTCP"
    return None


def run_cmd(*argv: str, ns: str | None = None, stdin: str | None = None) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


class Router:
    """The three namespaces; ``build(rules)`` loads ``rules`` (an nft ruleset) into the router."""

    def __init__(self) -> None:
        tag = f"{os.getpid()}-{next(_counter)}"
        self.c, self.r, self.s = (f"ma-cmp{x}-{tag}" for x in "crs")
        self.dev_c, self.dev_s = f"vc{tag}"[:15], f"vs{tag}"[:15]
        self.created: list[str] = []

    def build(self, rules: str, client_sysctls: tuple[str, ...] = ()) -> None:
        for ns in (self.c, self.r, self.s):
            run_cmd("ip", "netns", "add", ns)
            self.created.append(ns)
            run_cmd("ip", "-n", ns, "link", "set", "lo", "up")
        run_cmd("ip", "link", "add", self.dev_c, "netns", self.c, "type", "veth", "peer", "name", "rc", "netns", self.r)
        run_cmd("ip", "link", "add", self.dev_s, "netns", self.s, "type", "veth", "peer", "name", "rs", "netns", self.r)
        for ns, dev, address in (
            (self.c, self.dev_c, f"{CLIENT}/24"), (self.r, "rc", "10.210.201.2/24"),
            (self.r, "rs", f"{PUBLIC}/24"), (self.s, self.dev_s, f"{SERVER}/24"),
        ):  # fmt: skip
            run_cmd("ip", "-n", ns, "addr", "add", address, "dev", dev)
            run_cmd("ip", "-n", ns, "link", "set", dev, "up")
        run_cmd("ip", "-n", self.c, "route", "add", "default", "via", "10.210.201.2")
        run_cmd("ip", "-n", self.s, "route", "add", "default", "via", PUBLIC)
        run_cmd("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.r)
        for setting in client_sysctls:
            run_cmd("sysctl", "-qw", setting, ns=self.c)
        for ns, dev in ((self.c, self.dev_c), (self.s, self.dev_s)):  # packets as on the wire, not super-segments
            run_cmd("ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", ns=ns)
        run_cmd("nft", "-f", "-", ns=self.r, stdin=rules)

    def counter(self, table: str, chain: str, marker: str) -> int:
        """Packets counted by the rule of ``chain`` whose text contains ``marker``."""
        out = run_cmd("nft", "list", "chain", "ip", table, chain, ns=self.r)
        line = next(line for line in out.splitlines() if "counter packets" in line and marker in line)
        return int(line.split("counter packets")[1].split()[0])

    def cleanup(self) -> None:
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


def _capture(ns: str, dev: str, path: Path, snaplen: int) -> subprocess.Popen[bytes]:
    """tcpdump, returned once it says it is listening (a busy machine can take seconds to get there)."""
    # --immediate-mode: without it libpcap hands packets over a ring block at a time (or after its 1 s timeout),
    # so on an idle machine a short transfer can still sit in the ring when the capture is stopped.
    cmd = ["ip", "netns", "exec", ns, "tcpdump", "-i", dev, "--immediate-mode", "-s", str(snaplen), "-U",
           "-w", str(path), "tcp"]  # fmt: skip
    dump = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert dump.stderr is not None
    deadline = time.monotonic() + 20
    seen = b""
    while b"listening on" not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([dump.stderr], [], [], 0.2)
        if ready:
            chunk = os.read(dump.stderr.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
    if b"listening on" not in seen:
        dump.kill()
        raise RuntimeError(f"tcpdump did not start: {seen.decode(errors='replace')}")
    return dump


def _settled(paths: list[Path], quiet: float = 0.5, limit: float = 10.0) -> None:
    """Wait until the capture files stop growing: tcpdump may lag behind on a busy machine."""
    deadline = time.monotonic() + limit
    sizes: list[int] = []
    while time.monotonic() < deadline:
        now = [p.stat().st_size if p.exists() else 0 for p in paths]
        if now == sizes and all(size > PCAP_HEADER for size in now):
            return
        sizes = now
        time.sleep(quiet)


def transfer(lab: Router, tmp_path: Path, snaplen: int = 200) -> tuple[Path, Path]:
    """One client → server → client transfer; the client's and the server's capture (cut at ``snaplen``; 0: whole)."""
    client_pcap, server_pcap = tmp_path / "client.pcap", tmp_path / "server.pcap"
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.s, "python3", "-c", SERVER_CODE], stdout=subprocess.PIPE
    )  # fmt: skip
    dumps: list[subprocess.Popen[bytes]] = []
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        dumps = [_capture(lab.c, lab.dev_c, client_pcap, snaplen), _capture(lab.s, lab.dev_s, server_pcap, snaplen)]
        run_cmd("python3", "-c", CLIENT_CODE, ns=lab.c)
        server.wait(timeout=30)
        time.sleep(0.3)  # the last ACKs
        _settled([client_pcap, server_pcap])
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        for dump in dumps:
            dump.send_signal(signal.SIGINT)
        stats = [dump.communicate(timeout=10)[1].decode() for dump in dumps]
    assert all("0 packets dropped by kernel" in text for text in stats), stats
    return client_pcap, server_pcap
