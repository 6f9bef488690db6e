"""Run the sans-IO endpoint against the Linux kernel's MPTCP over a TUN device, on a real clock.

Why: an endpoint that only talks to itself in the simulator proves little; the kernel is the
reference implementation. Layout (one network namespace ``ma-tun-<pid>-<n>``, created here):

* a TUN device ``matun0`` in the namespace carries the kernel-side addresses ``10.210.1.1/24``
  and ``10.210.2.1/24`` (IPv6 ``fd00:210:1::1/64``, ``fd00:210:2::1/64``); the endpoint owns
  ``.2`` in each subnet, so everything the kernel sends to the endpoint goes out of the TUN;
* the kernel MPTCP socket (``IPPROTO_MPTCP``) is created while this thread is inside the
  namespace (a socket stays in the namespace it was made in), as is the TUN file descriptor;
* one ``select`` loop moves packets between the TUN and the endpoint, drives the endpoint's
  timers and runs the kernel-side application (non-blocking socket), all in this process.

Capture: tcpdump on the TUN inside the namespace (raw IP link type). The kernel's MPTcpExt
counters come from ``nstat -a -z -s -j`` in the namespace, before and after.
"""

from __future__ import annotations

import ctypes
import enum
import errno
import fcntl
import hashlib
import json
import os
import random
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final

from analyzer.endpoint.config import EndpointConfig, LocalAddress, Misbehave, Role
from analyzer.endpoint.connection import MptcpConnection
from analyzer.endpoint.events import Connected, ConnectionClosed, DataReceived, EndOfStream, SubflowAdded
from analyzer.endpoint.segment import Address, DecodeError, decode_packet, encode_packet
from analyzer.endpoint.sim import address_pairs

__all__ = [
    "FAILURE_COUNTER_WORDS",
    "InteropConfig",
    "InteropResult",
    "KernelRole",
    "addresses",
    "count_records",
    "failure_counters_moved",
    "run_interop",
    "unavailable_reason",
]

IPPROTO_MPTCP: Final = 262
TUNSETIFF: Final = 0x400454CA
IFF_TUN: Final = 0x0001
IFF_NO_PI: Final = 0x1000
CLONE_NEWNET: Final = 0x40000000
TUN_NAME: Final = "matun0"
PORT: Final = 5201
# Whole packets (the TUN's MTU is 1500) with a small snaplen: in immediate mode libpcap's ring has one
# snaplen-sized slot per packet, and -s 0 (256 KiB) would leave a 32 MiB buffer only ~128 slots.
SNAPLEN: Final = 2048
# MPTcpExt counters whose name contains one of these count something that went wrong: HMAC and
# checksum failures, MP_FAIL, drops, mismatching or missing mappings, rejected joins, fallbacks
# (and infinite mappings), socket errors. Resets (MPRstTx/Rx) are not here: a fault run resets on purpose.
FAILURE_COUNTER_WORDS: Final = (
    "Fail", "Drop", "Mismatch", "NotMatching", "NoMatch", "NoToken", "Rejected", "Err", "Corruption",
    "Fallback", "Infinite", "NoDSS", "Blackhole",
)  # fmt: skip

_libc = ctypes.CDLL(None, use_errno=True)


class KernelRole(enum.Enum):
    SERVER = "server"  # the endpoint connects to a kernel listener
    CLIENT = "client"  # a kernel socket connects to the endpoint


@dataclass(slots=True)
class InteropConfig:
    c2s_bytes: int = 1 << 20  # client to server
    s2c_bytes: int = 1 << 20
    kernel: KernelRole = KernelRole.SERVER
    paths: int = 2  # address pairs; with 2 the second subflow is opened as ``announce`` says
    # Second path: False = the side that connected opens it (the endpoint joins from its second address,
    # or the kernel client has a ``subflow`` endpoint); True = the server announces its second address
    # (the kernel with ``ip mptcp endpoint ... signal``, the endpoint with ADD_ADDR) and the client joins it.
    announce: bool = False
    ipv6: bool = False
    checksum: bool = False  # net.mptcp.checksum_enabled in the namespace, and the endpoint asks too
    capture: Path | None = None  # tcpdump on the TUN into this file
    timeout: float = 30.0
    seed: int = 1
    misbehave: frozenset[Misbehave] = frozenset()
    fastclose: bool = False  # the endpoint ends with MP_FASTCLOSE instead of DATA_FIN
    port: int = PORT  # the server's port (kernel listener or endpoint)
    tun: str = TUN_NAME  # the TUN device's name (inside the fresh namespace, so it cannot clash)


@dataclass(frozen=True, slots=True)
class InteropResult:
    c2s_sent: str  # SHA-256 of what the client wrote
    c2s_received: str  # SHA-256 of what the server read
    s2c_sent: str
    s2c_received: str
    c2s_bytes: int  # bytes the server read
    s2c_bytes: int
    subflows: int  # subflows the endpoint saw established
    endpoint_close: str | None  # ConnectionClosed reason at the endpoint
    kernel_eof: bool  # the kernel application read end-of-stream (or its socket failed: kernel_error)
    kernel_error: str | None  # the error the kernel socket returned, e.g. ECONNRESET after MP_FASTCLOSE
    nstat_before: dict[str, int]
    nstat_after: dict[str, int]
    duration: float
    capture: Path | None
    namespace: str
    capture_dropped: int | None  # packets tcpdump said the kernel dropped (None: no capture)
    tun_stats: dict[str, int]  # the TUN's counters as the kernel sees it (tx = towards the endpoint)
    client: str | None = None  # the initial subflow's client endpoint, "ip:port" ([v6]:port)
    server: str | None = None

    @property
    def intact(self) -> bool:
        return self.c2s_sent == self.c2s_received and self.s2c_sent == self.s2c_received

    def nstat_delta(self) -> dict[str, int]:
        """MPTcpExt counters that changed during the run."""
        keys = set(self.nstat_before) | set(self.nstat_after)
        delta = {k: self.nstat_after.get(k, 0) - self.nstat_before.get(k, 0) for k in keys}
        return {k: v for k, v in sorted(delta.items()) if v}


def failure_counters_moved(delta: dict[str, int]) -> dict[str, int]:
    """The counters in ``delta`` whose name says a failure (see :data:`FAILURE_COUNTER_WORDS`)."""
    return {k: v for k, v in delta.items() if any(w in k for w in FAILURE_COUNTER_WORDS)}


def unavailable_reason() -> str | None:
    """Why interop cannot run here (None when it can): root, /dev/net/tun, ip, MPTCP."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and a TUN device)"
    if not os.path.exists("/dev/net/tun"):
        return "no /dev/net/tun"
    for tool in ("ip", "nstat", "tcpdump"):
        if not _which(tool):
            return f"{tool} not installed"
    try:
        if Path("/proc/sys/net/mptcp/enabled").read_text().strip() != "1":
            return "net.mptcp.enabled is not 1"
    except OSError:
        return "kernel without MPTCP (/proc/sys/net/mptcp missing)"
    return None


def _which(tool: str) -> bool:
    return any(os.access(os.path.join(d, tool), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep))


# ---------------------------------------------------------------------- namespaces
_counter = 0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


@contextmanager
def namespace() -> Iterator[str]:
    """A fresh ``ma-tun-<pid>-<n>`` namespace with loopback up; deleted on exit, also on errors."""
    global _counter
    _counter += 1
    name = f"ma-tun-{os.getpid()}-{_counter}"
    _ip("netns", "add", name)
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10, check=False)


@contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace ``name`` (file descriptors made here stay in it)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:  # pragma: no cover - would leave the thread astray
                err = ctypes.get_errno()
                raise OSError(err, f"setns back: {os.strerror(err)}")
    finally:
        os.close(target)
        os.close(home)


def open_tun(ifname: str) -> int:
    """A non-blocking TUN file descriptor (IFF_TUN | IFF_NO_PI: raw IP packets, no header)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TUN | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


def addresses(paths: int, ipv6: bool) -> tuple[list[Address], list[Address]]:
    """(kernel addresses, endpoint addresses), one pair per path, inside the lab's 10.210/16 and fd00:210::/32."""
    return address_pairs(paths, ipv6, "10.210", "fd00:210")


def _configure(ns: str, kernel: list[Address], cfg: InteropConfig) -> None:
    """Addresses on the TUN, MPTCP limits and checksum sysctl in the namespace."""
    for addr in kernel:
        prefix = 64 if addr.version == 6 else 24
        extra = ["nodad"] if addr.version == 6 else []
        _ip("-n", ns, "addr", "add", f"{addr}/{prefix}", "dev", cfg.tun, *extra)
    # a longer queue towards the endpoint: the Python reader is slower than the kernel's sender
    _ip("-n", ns, "link", "set", cfg.tun, "txqueuelen", "4096", "up")
    _ip("-n", ns, "mptcp", "limits", "set", "subflow", "4", "add_addr_accepted", "4")
    for i, addr in enumerate(kernel[1:], start=1):
        if cfg.kernel is KernelRole.CLIENT and not cfg.announce:
            _ip("-n", ns, "mptcp", "endpoint", "add", str(addr), "dev", cfg.tun, "id", str(i), "subflow")
        elif cfg.kernel is KernelRole.SERVER and cfg.announce:
            _ip("-n", ns, "mptcp", "endpoint", "add", str(addr), "dev", cfg.tun, "id", str(i), "signal")
    sysctl = ["ip", "netns", "exec", ns, "sysctl", "-q", "-w"]
    subprocess.run([*sysctl, f"net.mptcp.checksum_enabled={int(cfg.checksum)}"], check=True, timeout=10)


def read_nstat(ns: str) -> dict[str, int]:
    """Absolute MPTcpExt counters in ``ns`` (``-a`` ignores nstat's history, ``-s`` leaves it alone)."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "nstat", "-a", "-z", "-s", "-j"], check=True, capture_output=True, text=True,
        timeout=10,
    ).stdout  # fmt: skip
    table = json.loads(out).get("kernel", {})
    return {k: int(v) for k, v in table.items() if k.startswith("MPTcpExt")}


class Capture:
    """tcpdump on the TUN in a namespace (raw IP packets, packet-buffered)."""

    def __init__(self, ns: str, path: Path, tun: str = TUN_NAME) -> None:
        self.path = path
        self.dropped: int | None = None  # "packets dropped by kernel", once stopped
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "-i", tun, "--immediate-mode", "-U", "-n", "-s", str(SNAPLEN),
             "-B", "32768", "-w", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stderr is not None
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # "listening on ..." means the capture is open
            ready, _, _ = select.select([self.proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = self.proc.stderr.readline()
            if not line or b"listening on" in line:
                break

    def stop(self, at_least: int, limit: float = 10.0) -> None:
        """Stop once the file holds ``at_least`` packets (those the runner read and wrote): tcpdump
        lags on a busy machine, and on SIGINT it quits without reading what its buffer still holds."""
        end = time.monotonic() + limit
        while time.monotonic() < end and count_records(self.path) < at_least:
            time.sleep(0.05)
        time.sleep(0.1)  # packets the kernel dropped at the TUN queue were still seen by tcpdump
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - tcpdump stuck
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stderr is not None
        tail = self.proc.stderr.read().decode(errors="replace")
        self.proc.stderr.close()
        match = re.search(r"(\d+) packets? dropped by kernel", tail)
        self.dropped = int(match.group(1)) if match else None


def count_records(path: Path) -> int:
    """Packets in a classic pcap file written so far (a record cut short at the end is not counted)."""
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    if len(data) < 24:
        return 0
    order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    count, offset = 0, 24
    while offset + 16 <= len(data):
        (length,) = struct.unpack_from(order + "I", data, offset + 8)
        offset += 16 + length
        if offset > len(data):
            break
        count += 1
    return count


# ---------------------------------------------------------------------- applications
@dataclass(slots=True)
class _KernelApp:
    """The kernel side: one MPTCP socket that writes its data, reads to EOF, then closes."""

    data: bytes
    listener: socket.socket | None = None
    sock: socket.socket | None = None
    sent: int = 0
    received: bytearray = field(default_factory=bytearray)
    eof: bool = False
    shut: bool = False
    closed: bool = False
    error: str | None = None
    client: str | None = None  # the initial subflow's client endpoint ("ip:port"), once the kernel knows it

    def read_fds(self) -> list[socket.socket]:
        if self.sock is None:
            return [self.listener] if self.listener is not None else []
        return [] if self.eof or self.closed else [self.sock]

    def write_fds(self) -> list[socket.socket]:
        if self.sock is None or self.closed or self.sent >= len(self.data):
            return []
        return [self.sock]

    def on_readable(self, sock: socket.socket) -> None:
        if sock is self.listener:
            self.sock, peer = sock.accept()
            self.client = _endpoint_text(peer)
            self.sock.setblocking(False)
            self._maybe_shut()
            return
        try:
            chunk = sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as exc:
            self.error = f"recv: {exc}"
            self.eof = True
            self.sent = len(self.data)  # nothing more can be written either
            self._maybe_shut()
            return
        if chunk:
            self.received += chunk
        else:
            self.eof = True
        self._maybe_shut()

    def on_writable(self) -> None:
        assert self.sock is not None
        try:
            self.sent += self.sock.send(self.data[self.sent : self.sent + (1 << 16)])
        except BlockingIOError:
            pass
        except OSError as exc:
            self.error = f"send: {exc}"
            self.sent = len(self.data)
        self._maybe_shut()

    def _maybe_shut(self) -> None:
        """Shut the write side once all is written (DATA_FIN); close once the peer's stream ended too."""
        if self.sock is None:
            return
        if self.sent >= len(self.data) and not self.shut:
            self.shut = True
            with suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
        if self.shut and self.eof and not self.closed:
            self.closed = True
            self.sock.close()

    def close_all(self) -> None:
        for s in (self.sock, self.listener):
            if s is not None:
                with suppress(OSError):
                    s.close()


# ---------------------------------------------------------------------- the runner
def run_interop(cfg: InteropConfig) -> InteropResult:
    """One connection between the endpoint and the kernel over a TUN, in a fresh namespace."""
    rng = random.Random(f"{cfg.seed}:data")
    c2s, s2c = rng.randbytes(cfg.c2s_bytes), rng.randbytes(cfg.s2c_bytes)
    kernel_addrs, ep_addrs = addresses(max(1, cfg.paths), cfg.ipv6)
    previous = signal.getsignal(signal.SIGTERM)

    def _on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds like Ctrl-C: the namespace, tcpdump and sockets are cleaned up

    main = threading.current_thread() is threading.main_thread()  # signal handlers: main thread only
    if main:
        signal.signal(signal.SIGTERM, _on_term)
    try:
        with namespace() as ns:
            return _run_in(ns, cfg, c2s, s2c, kernel_addrs, ep_addrs)
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)


def _run_in(
    ns: str, cfg: InteropConfig, c2s: bytes, s2c: bytes, kernel_addrs: list[Address], ep_addrs: list[Address]
) -> InteropResult:
    family = socket.AF_INET6 if cfg.ipv6 else socket.AF_INET
    kernel_is_server = cfg.kernel is KernelRole.SERVER
    app = _KernelApp(s2c if kernel_is_server else c2s)
    with inside(ns):
        fd = open_tun(cfg.tun)
    try:
        # The path manager decides at socket creation whether it has work: configure first.
        _configure(ns, kernel_addrs, cfg)
        with inside(ns):
            _kernel_socket(app, family, kernel_is_server, cfg.ipv6, cfg.port)
        before = read_nstat(ns)
        own_primary_only = not kernel_is_server or cfg.announce
        endpoint_announces = not kernel_is_server and cfg.announce
        announced = [LocalAddress(a, i) for i, a in enumerate(ep_addrs) if i and endpoint_announces]
        ep_cfg = EndpointConfig(
            role=Role.CLIENT if kernel_is_server else Role.SERVER,
            addresses=[LocalAddress(a, i) for i, a in enumerate(ep_addrs[:1] if own_primary_only else ep_addrs)],
            announce=announced,
            rng=random.Random(f"{cfg.seed}:endpoint"), checksum=cfg.checksum, port=cfg.port, misbehave=cfg.misbehave,
        )  # fmt: skip
        endpoint = MptcpConnection(ep_cfg)
        start = time.monotonic()
        capture = Capture(ns, cfg.capture, cfg.tun) if cfg.capture is not None else None
        loop = _Loop(fd, endpoint, app, c2s if kernel_is_server else s2c, start, cfg.fastclose)
        try:
            _start(loop, app, kernel_is_server, kernel_addrs[0], ep_addrs[0], cfg.port)
            loop.run(start + cfg.timeout)
        except BaseException:
            if capture is not None:
                capture.stop(0)  # interrupted: do not wait for the capture to catch up
            raise
        if capture is not None:
            capture.stop(loop.packets_in + loop.packets_out)
        after = read_nstat(ns)
        tun_stats = _link_stats(ns, cfg.tun)
    finally:
        os.close(fd)
        app.close_all()
    ep_received = bytes(loop.received)
    kernel_received = bytes(app.received)
    client_got, server_got = (ep_received, kernel_received) if kernel_is_server else (kernel_received, ep_received)
    return InteropResult(
        c2s_sent=_sha(c2s), c2s_received=_sha(server_got), s2c_sent=_sha(s2c),
        s2c_received=_sha(client_got), c2s_bytes=len(server_got), s2c_bytes=len(client_got),
        subflows=loop.subflows, endpoint_close=loop.closed_reason, kernel_eof=app.eof,
        kernel_error=app.error,
        nstat_before=before, nstat_after=after, duration=time.monotonic() - start, capture=cfg.capture, namespace=ns,
        capture_dropped=capture.dropped if capture is not None else None, tun_stats=tun_stats,
        client=app.client,
        server=_endpoint_text((str(kernel_addrs[0] if kernel_is_server else ep_addrs[0]), cfg.port)),
    )  # fmt: skip


def _link_stats(ns: str, tun: str) -> dict[str, int]:
    """rx/tx packets, bytes and drops of the TUN (``ip -s -j link``); tx_dropped counts packets the
    kernel could not queue because the runner read too slowly."""
    out = subprocess.run(
        ["ip", "-n", ns, "-s", "-j", "link", "show", tun], check=True, capture_output=True, text=True, timeout=10
    ).stdout
    stats = json.loads(out)[0].get("stats64", {})
    return {f"{way}_{k}": int(v) for way in ("rx", "tx") for k, v in stats.get(way, {}).items() if isinstance(v, int)}


def _kernel_socket(app: _KernelApp, family: int, server: bool, ipv6: bool, port: int) -> None:
    """The kernel's MPTCP socket, non-blocking: a listener on ``port``, or one to connect."""
    sock = socket.socket(family, socket.SOCK_STREAM, IPPROTO_MPTCP)
    sock.setblocking(False)
    if server:
        app.listener = sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::" if ipv6 else "0.0.0.0", port))
        sock.listen(4)
    else:
        app.sock = sock


def _start(
    loop: _Loop, app: _KernelApp, kernel_is_server: bool, kernel_addr: Address, ep_addr: Address, port: int
) -> None:
    """The endpoint connects to the kernel's listener, or the kernel's socket to the endpoint."""
    if kernel_is_server:
        loop.start_client(kernel_addr, port)
        return
    assert app.sock is not None
    err = app.sock.connect_ex((str(ep_addr), port))
    if err not in (0, errno.EINPROGRESS):
        raise OSError(err, f"connect: {os.strerror(err)}")
    app.client = _endpoint_text(app.sock.getsockname())
    loop.connecting = True


def _endpoint_text(sockaddr: tuple[Any, ...]) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Loop:
    """The select loop: TUN packets to and from the endpoint, endpoint timers, the kernel application."""

    def __init__(
        self, fd: int, endpoint: MptcpConnection, app: _KernelApp, ep_data: bytes, start: float, fastclose: bool
    ) -> None:
        self.fd = fd
        self.fastclose = fastclose  # end with MP_FASTCLOSE once both applications have all their data
        self.aborted = False
        self.ep = endpoint
        self.app = app
        self.ep_data = ep_data
        self.start = start
        self.received = bytearray()
        self.subflows = 0
        self.closed_reason: str | None = None
        self.peer_done = False
        self.connecting = False
        self.ip_id = 0
        self.packets_in = 0  # TCP packets read from the TUN (not ND/MLD: those may precede the capture)
        self.packets_out = 0  # written to the TUN
        self.linger_until: float | None = None

    def now(self) -> float:
        return time.monotonic() - self.start

    def start_client(self, server: Address, port: int) -> None:
        now = self.now()
        self.ep.send(self.ep_data, now)
        if not self.fastclose:
            self.ep.close(now)
        self.ep.connect(server, port, now)
        self._drive(now)

    def _drive(self, now: float) -> None:
        for _ in range(100):
            segments = self.ep.segments_to_send(now)
            for seg in segments:
                self.ip_id += 1
                self._write(encode_packet(seg, ip_id=self.ip_id))
            acted = self._events(now)
            if not segments and not acted:
                break

    def _write(self, packet: bytes) -> None:
        try:
            os.write(self.fd, packet)
            self.packets_out += 1
        except BlockingIOError:
            pass  # the TUN queue is full: as good as a lost packet, TCP recovers
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EINVAL):  # device going down
                raise

    def _events(self, now: float) -> bool:
        acted = False
        while (event := self.ep.next_event()) is not None:
            if isinstance(event, DataReceived):
                self.received += event.data
            elif isinstance(event, EndOfStream):
                self.peer_done = True
                if self.ep.role is Role.SERVER and not self.fastclose:
                    self.ep.close(now)
                    acted = True
            elif isinstance(event, SubflowAdded):
                self.subflows += 1
            elif isinstance(event, ConnectionClosed):
                self.closed_reason = event.reason
            elif isinstance(event, Connected) and self.ep.role is Role.SERVER:
                self.ep.send(self.ep_data, now)
                acted = True
        if self.fastclose and not self.aborted and self._all_delivered():
            self.aborted = True
            self.ep.abort(now)
            acted = True
        return acted

    def _all_delivered(self) -> bool:
        """Both applications read everything the other wrote (so the reset loses nothing)."""
        return len(self.received) >= len(self.app.data) and len(self.app.received) >= len(self.ep_data)

    def _done(self) -> bool:
        return self.ep.finished and self.app.closed

    def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self._done():
                # let the last ACKs reach the kernel before the namespace goes
                if self.linger_until is None:
                    self.linger_until = time.monotonic() + 0.1
                elif time.monotonic() >= self.linger_until:
                    return
            self._step(deadline)

    def _step(self, deadline: float) -> None:
        app = self.app
        reads: list[int | socket.socket] = [self.fd, *app.read_fds()]
        writes: list[int | socket.socket] = list(app.write_fds())
        if self.connecting and app.sock is not None:
            writes.append(app.sock)
        timer = self.ep.get_timer()
        wall = time.monotonic()
        wait = deadline - wall
        if timer is not None:
            wait = min(wait, self.start + timer - wall)
        if self.linger_until is not None:
            wait = min(wait, self.linger_until - wall)
        readable, writable, _ = select.select(reads, writes, [], max(0.0, wait))
        for r in readable:
            if r == self.fd:
                self._read_tun()
            elif isinstance(r, socket.socket):
                app.on_readable(r)
        for w in writable:
            if self.connecting and w is app.sock:
                self.connecting = False
                app.on_writable()
            elif isinstance(w, socket.socket):
                app.on_writable()
        now = self.now()
        timer = self.ep.get_timer()
        if timer is not None and now >= timer:
            self.ep.handle_timer(now)
        self._drive(now)

    def _read_tun(self) -> None:
        for _ in range(256):  # drain what is queued, then let the others run
            try:
                packet = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            now = self.now()
            try:
                decode_packet(packet)
            except DecodeError:
                continue  # not TCP (IPv6 neighbour discovery, MLD): nothing for the endpoint
            self.packets_in += 1
            self.ep.receive_segment(packet, now)
            self._drive(now)
