"""The lab's network: namespaces, veth paths, addresses and routing, and the processes started in them.

Two topologies. ``direct``: client and server namespaces joined by two veth paths. ``router``: client ─
router ─ server, the client's two paths end in the router, which forwards over one link to the server
(the capture then runs in the router). Everything the lab creates is remembered and torn down by
``Lab.cleanup`` (namespaces deleted, processes stopped by PID), also when a run fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from analyzer.lab.config import (
    CLIENT_HOST,
    PATHS,
    ROUTER_HOST,
    ROUTER_SERVER_LINK,
    SERVER_HOST,
    SYNCOOKIES_SYSCTL,
    TFO_SYSCTL,
    LabConfig,
    LabError,
    addr,
)

_lab_counter = itertools.count()
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding analyzer/


def program_argv(*args: str) -> list[str]:
    """Command line of one in-namespace program (analyzer.lab.programs) with this interpreter."""
    return [sys.executable, "-m", "analyzer.lab.programs", *args]


def child_env() -> dict[str, str]:
    """The environment for children: this very copy of the package first on the path (not another install)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def read_until(fd: int, needle: bytes, timeout: float, buf: bytearray) -> bool:
    """Read from a pipe fd into ``buf`` until ``needle`` appears; False on EOF/timeout."""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return False
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        buf.extend(chunk)
    return True


def preflight() -> None:
    """Fail early, with a clear message, if this machine cannot run the lab."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, veth, tcpdump): run it with sudo")
    if not Path("/proc/self/ns/net").exists():
        raise LabError("network namespaces are not available (no /proc/self/ns/net)")
    for tool in ("ip", "tcpdump"):
        if shutil.which(tool) is None:
            raise LabError(f"required tool '{tool}' not found in PATH")
    try:
        enabled = Path("/proc/sys/net/mptcp/enabled").read_text().strip()
    except OSError as exc:
        raise LabError("kernel has no MPTCP support (/proc/sys/net/mptcp missing)") from exc
    if enabled != "1":
        raise LabError("MPTCP is disabled (net.mptcp.enabled != 1)")


def lab_unavailable_reason() -> str | None:
    """None if the lab can run here, else a human-readable reason (used for pytest skips)."""
    try:
        preflight()
    except LabError as exc:
        return str(exc)
    return None


class Lab:
    """The namespaces of one run; a context manager that always tears everything down."""

    PATHS = PATHS

    def __init__(self, cfg: LabConfig) -> None:
        self.cfg = cfg
        tag = f"{os.getpid()}-{next(_lab_counter)}"
        self.cli = f"ma-cli-{tag}"
        self.srv = f"ma-srv-{tag}"
        self.rtr = f"ma-rtr-{tag}" if cfg.topology == "router" else None
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self.devices: dict[str, list[str]] = {}  # namespace → the veths the lab put there
        self.notes: dict[str, Any] = {}

    @property
    def capture_ns(self) -> str:
        """Where tcpdump runs: the client, or the router in the middle."""
        return self.rtr or self.cli

    def namespaces(self) -> dict[str, str]:
        """Role → namespace name, for the sidecar."""
        roles = {"client": self.cli, "server": self.srv}
        if self.rtr:
            roles["router"] = self.rtr
        return roles

    # -- plumbing ---------------------------------------------------------------------------
    def run(self, *argv: str, ns: str | None = None, input_text: str | None = None,
            timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one command (optionally inside a namespace) with a timeout."""
        cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
        try:
            proc = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout,
                                  check=False, env=child_env())
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"command timed out after {timeout:g} s: {shlex.join(cmd)}") from exc
        if check and proc.returncode != 0:
            raise LabError(f"command failed ({proc.returncode}): {shlex.join(cmd)}: {proc.stderr.strip()}")
        return proc

    def ip(self, ns: str, *argv: str) -> None:
        """``ip -n NS ...``."""
        self.run("ip", "-n", ns, *argv)

    def spawn(self, argv: Sequence[str], ns: str, stdout: bool = True) -> subprocess.Popen[bytes]:
        """Start a long-running process in ``ns``; remembered so cleanup can stop it by PID."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                                stderr=subprocess.PIPE, env=child_env())
        self._procs.append(proc)
        return proc

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Stop our processes (by PID) and delete our namespaces; never raises, not even on a second Ctrl-C."""
        with _signals_deferred():
            for proc in self._procs:
                if proc.poll() is None:
                    try:
                        proc.send_signal(signal.SIGINT)
                        proc.wait(timeout=3)
                    except (subprocess.TimeoutExpired, OSError):
                        proc.kill()
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            proc.wait(timeout=3)
                for stream in (proc.stdout, proc.stderr):
                    if stream:
                        stream.close()
            self._procs.clear()
            for ns in reversed(self._namespaces):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)
            self._namespaces.clear()

    # -- topology -----------------------------------------------------------------------------
    def _add_namespace(self, ns: str, sysctls: dict[str, str]) -> None:
        try:
            self.run("ip", "netns", "add", ns)
        except LabError as exc:
            raise LabError(f"cannot create network namespace {ns} (network namespaces unavailable?): {exc}") from exc
        self._namespaces.append(ns)
        self.devices[ns] = []
        self.ip(ns, "link", "set", "lo", "up")
        for key, val in sysctls.items():
            self.run("sysctl", "-qw", f"{key}={val}", ns=ns)

    def _sysctls(self, role: str) -> dict[str, str]:
        cfg = self.cfg
        sysctls = {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
                   "net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0",
                   # a path taken down by --link-down keeps its IPv6 addresses, like IPv4 does
                   "net.ipv6.conf.all.keep_addr_on_down": "1",
                   "net.ipv6.conf.default.keep_addr_on_down": "1"}
        if role == "router":
            sysctls.update({"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"})
            return sysctls
        sysctls["net.mptcp.checksum_enabled"] = "1" if cfg.checksum else "0"
        if cfg.tfo:
            sysctls["net.ipv4.tcp_fastopen"] = TFO_SYSCTL
        if role == "server" and cfg.syncookies:
            sysctls["net.ipv4.tcp_syncookies"] = SYNCOOKIES_SYSCTL
        return sysctls

    def _veth(self, ns_a: str, dev_a: str, ns_b: str, dev_b: str) -> None:
        """One veth pair, created inside ``ns_a`` with its peer moved straight into ``ns_b``
        (the host's own interfaces are never touched)."""
        self.ip(ns_a, "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
        self.devices[ns_a].append(dev_a)
        self.devices[ns_b].append(dev_b)

    def _address(self, ns: str, dev: str, path: int, host: int) -> None:
        if self.cfg.offloads == "off":
            self.ip(ns, "link", "set", dev, "gso_max_segs", "1")
        self.ip(ns, "addr", "add", f"{addr(path, host, 4)}/24", "dev", dev)
        self.ip(ns, "-6", "addr", "add", f"{addr(path, host, 6)}/64", "dev", dev, "nodad")
        self.ip(ns, "link", "set", dev, "up")

    def build(self) -> None:
        """Create namespaces, veth paths, addresses and routing (offloads: see set_offloads)."""
        self._add_namespace(self.cli, self._sysctls("client"))
        if self.rtr:
            self._add_namespace(self.rtr, self._sysctls("router"))
        self._add_namespace(self.srv, self._sysctls("server"))
        first_hop = self.rtr or self.srv
        for p in self.PATHS:
            far = f"rc{p}" if self.rtr else f"srv{p}"
            self._veth(self.cli, f"cli{p}", first_hop, far)
            self._address(self.cli, f"cli{p}", p, CLIENT_HOST)
            self._address(first_hop, far, p, ROUTER_HOST if self.rtr else SERVER_HOST)
        if self.rtr:
            self._veth(self.rtr, f"rs{1}", self.srv, "srv1")
            self._address(self.rtr, "rs1", ROUTER_SERVER_LINK, ROUTER_HOST)
            self._address(self.srv, "srv1", ROUTER_SERVER_LINK, SERVER_HOST)
            for fam in (4, 6):
                self.ip(self.srv, f"-{fam}", "route", "add", "default", "via",
                        addr(ROUTER_SERVER_LINK, ROUTER_HOST, fam), "dev", "srv1")
                # the server is not on a connected subnet any more: the client's first connect() (no source
                # address yet) needs a route in the main table; path 1, as in the direct topology
                self.ip(self.cli, f"-{fam}", "route", "add", "default", "via", addr(1, ROUTER_HOST, fam), "dev", "cli1")
        # Paths are chosen by the *client's* address, so every subflow is symmetric: the client
        # routes by source (its path-2 subflow to the server's path-1 address leaves on path 2),
        # the server by destination (plain connected routes bring the answer back on path 2).
        for p in self.PATHS:
            table = str(100 + p)
            for fam in (4, 6):
                self.ip(self.cli, f"-{fam}", "rule", "add", "from", addr(p, CLIENT_HOST, fam),
                        "table", table, "pref", table)
                self.path_route(p, fam)
                # While the path is down (--link-down) the kernel deletes the route above; this one
                # then answers "unreachable", so the path's packets are not sent at all instead of
                # leaking onto the other path through the main table.
                self.ip(self.cli, f"-{fam}", "route", "add", "unreachable", "default", "metric", "65535",
                        "table", table)
        self.notes["offloads"] = self.set_offloads(self.cfg.offloads == "on")

    def path_route(self, path: int, family: int) -> None:
        """The client's source-routing default route for ``path`` (re-added after a link-down)."""
        gateway = addr(path, ROUTER_HOST if self.rtr else SERVER_HOST, family)
        self.ip(self.cli, f"-{family}", "route", "replace", "default", "via", gateway,
                "dev", f"cli{path}", "table", str(100 + path))

    def set_offloads(self, on: bool) -> dict[str, Any]:
        """TSO/GSO/GRO/TX-csum off on every veth (ethtool if present, else SIOCETHTOOL ioctl), or all on.

        On, the capture shows super-segments far above the MSS, cut anew when retransmitted, as on most
        real hosts.
        """
        method = "ethtool" if shutil.which("ethtool") and not on else "ioctl"
        result: dict[str, Any] = {"method": method, "state": "on"} if on else {"method": method, "gso_max_segs": 1}
        for ns in self.namespaces().values():
            devs = self.devices[ns]
            if method == "ethtool":
                for dev in devs:
                    self.run("ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off", ns=ns)
                continue
            proc = self.run(*program_argv("offload", *(["--on"] if on else []), *devs), ns=ns, check=False)
            if proc.returncode != 0:
                raise LabError(f"could not turn offloads {'on' if on else 'off'} in {ns}: {proc.stdout}{proc.stderr}")
            result[ns.split("-")[1]] = json.loads(proc.stdout)
        return result

    def drain(self, timeout: float) -> bool:
        """Wait until neither end has a TCP socket left other than listeners and TIME-WAIT.

        The programs have exited by now, but the kernel may still be finishing orphaned subflows
        (a subflow that was down retransmits its data and its FIN only at its next RTO).
        """
        deadline = time.monotonic() + timeout
        while True:
            busy = [self.run("ss", "-Htan", "state", "all", "exclude", "listening", "exclude", "time-wait",
                             ns=ns, check=False).stdout.strip() for ns in (self.cli, self.srv)]
            if not any(busy) or time.monotonic() >= deadline:
                return not any(busy)
            time.sleep(0.05)

    def read_proc(self, ns: str, path: str) -> str:
        """A /proc/net file as seen inside ``ns`` (the counters there are per namespace)."""
        return self.run("cat", path, ns=ns).stdout


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while tearing down, so a second Ctrl-C cannot leave namespaces behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {sig: signal.signal(sig, lambda s, _f: pending.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if pending:
            signal.raise_signal(pending[0])
