"""`compare` on real kernel traffic captured at both ends at once, through a Linux router that NATs,
clamps the MSS and drops large client segments at random (nftables in a namespace of its own).

Ground truth: nftables' drop counter (only client data segments are dropped, so every drop happens
before the server has read the whole stream, i.e. while both captures run), the SNAT address and port
range, and the clamped MSS. Needs root, ip, tcpdump, nft, ethtool and net.mptcp.enabled=1; skipped with
the reason otherwise. About 3 s.
"""

from __future__ import annotations

import itertools
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.compare import compare
from analyzer.compare.json_out import comparison_to_json

_counter = itertools.count(1)
PCAP_HEADER = 24  # bytes of an empty capture file
SERVER = "10.210.202.2"
PUBLIC = "10.210.202.1"
CLAMP = 1200

SERVER_CODE = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5201)); s.listen(1); s.settimeout(20)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(20)
while c.recv(65536):
    pass
c.sendall(b"y" * 50000); c.close()
"""
CLIENT_CODE = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262); s.settimeout(20)
s.connect(("{SERVER}", 5201))
s.sendall(b"x" * 400000); s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
"""


def _skip_reason() -> str | None:
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


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _run(*argv: str, ns: str | None = None, stdin: str | None = None) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


class Router:
    """client — router (forwarding, nftables) — server, each in a namespace named ma-cmp*-PID-N."""

    def __init__(self) -> None:
        tag = f"{os.getpid()}-{next(_counter)}"
        self.c, self.r, self.s = (f"ma-cmp{x}-{tag}" for x in "crs")
        self.dev_c, self.dev_s = f"vc{tag}"[:15], f"vs{tag}"[:15]
        self.created: list[str] = []

    def build(self) -> None:
        for ns in (self.c, self.r, self.s):
            _run("ip", "netns", "add", ns)
            self.created.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "link", "add", self.dev_c, "netns", self.c, "type", "veth", "peer", "name", "rc", "netns", self.r)
        _run("ip", "link", "add", self.dev_s, "netns", self.s, "type", "veth", "peer", "name", "rs", "netns", self.r)
        for ns, dev, address in (
            (self.c, self.dev_c, "10.210.201.1/24"), (self.r, "rc", "10.210.201.2/24"),
            (self.r, "rs", f"{PUBLIC}/24"), (self.s, self.dev_s, f"{SERVER}/24"),
        ):  # fmt: skip
            _run("ip", "-n", ns, "addr", "add", address, "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
        _run("ip", "-n", self.c, "route", "add", "default", "via", "10.210.201.2")
        _run("ip", "-n", self.s, "route", "add", "default", "via", PUBLIC)
        _run("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=self.r)
        for ns, dev in ((self.c, self.dev_c), (self.s, self.dev_s)):  # packets as on the wire, not super-segments
            _run("ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", ns=ns)
        rules = f"""table ip ma {{
  chain passing {{
    type filter hook forward priority 0; policy accept;
    tcp flags syn tcp option maxseg size set {CLAMP}
    ip saddr 10.210.201.1 meta length > 500 numgen random mod 25 == 0 counter drop
  }}
  chain translate {{
    type nat hook postrouting priority 100; policy accept;
    oifname "rs" ip saddr 10.210.201.1 meta l4proto tcp snat to {PUBLIC}:40000-40100
  }}
}}
"""
        _run("nft", "-f", "-", ns=self.r, stdin=rules)

    def drops(self) -> int:
        out = _run("nft", "list", "chain", "ip", "ma", "passing", ns=self.r)
        line = next(line for line in out.splitlines() if "counter packets" in line)
        return int(line.split("counter packets")[1].split()[0])

    def cleanup(self) -> None:
        for ns in self.created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


@pytest.fixture
def router() -> Iterator[Router]:
    lab = Router()
    try:
        lab.build()
        yield lab
    finally:
        lab.cleanup()


def _capture(ns: str, dev: str, path: Path) -> subprocess.Popen[bytes]:
    """tcpdump, returned once it says it is listening (a busy machine can take seconds to get there)."""
    # --immediate-mode: without it libpcap hands packets over a ring block at a time (or after its 1 s timeout),
    # so on an idle machine a short transfer can still sit in the ring when the capture is stopped.
    cmd = ["ip", "netns", "exec", ns, "tcpdump", "-i", dev, "--immediate-mode", "-s", "200", "-U", "-w", str(path),
           "tcp"]
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


def _transfer(lab: Router, tmp_path: Path) -> tuple[Path, Path]:
    client_pcap, server_pcap = tmp_path / "client.pcap", tmp_path / "server.pcap"
    server = subprocess.Popen(["ip", "netns", "exec", lab.s, "python3", "-c", SERVER_CODE], stdout=subprocess.PIPE)
    dumps: list[subprocess.Popen[bytes]] = []
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        dumps = [_capture(lab.c, lab.dev_c, client_pcap), _capture(lab.s, lab.dev_s, server_pcap)]
        _run("python3", "-c", CLIENT_CODE, ns=lab.c)
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


def _subflow(report: dict[str, Any]) -> dict[str, Any]:
    (conn,) = report["connections"]
    assert conn["match"] == "keys"  # MP_CAPABLE keys survive the NAT
    (sf,) = conn["subflows"]
    return sf  # type: ignore[no-any-return]


def test_kernel_traffic_through_a_nat_router(router: Router, tmp_path: Path) -> None:
    client, server = _transfer(router, tmp_path)
    drops = router.drops()
    report = comparison_to_json(compare(str(client), str(server)))
    sf = _subflow(report)
    assert sf["a_to_b_is"] == "c2s"
    assert drops > 0 and sf["a_to_b"]["lost"] == drops  # exactly the router's drops
    assert sf["b_to_a"]["lost"] == 0 and sf["a_to_b"]["unmatched_downstream"] == 0
    assert abs(report["clock_offset_s"]) < 0.005  # one host, one clock
    effects = {m["effect"]: m for m in sf["middlebox"]}
    nat = effects.pop("address_rewritten")
    public = nat["detail"].split("↔ ")[1]
    assert public.startswith(f"{PUBLIC}:") and 40000 <= int(public.rsplit(":", 1)[1]) <= 40100
    assert nat["frames_a"] == [1] and nat["frames_b"] == [1]  # the SYN on both sides
    clamped = [m for name, m in effects.items() if name == "mss_altered"]
    assert clamped and f"became {CLAMP}" in clamped[0]["detail"]
    assert set(effects) == {"mss_altered"}  # nothing else was done to the packets
