"""What one lab run is made of: the configuration, the address plan and the constants shared by both sides.

Why a module of its own: the host side (namespaces, capture) and the programs that run inside the namespaces
both need the same address plan and kernel constants, and neither should import the other.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

IPPROTO_MPTCP = 262
SOL_MPTCP = 284
MPTCP_INFO = 1
MPTCP_TCPINFO = 2
MPTCP_SUBFLOW_ADDRS = 3
MPTCP_INFO_FLAG_FALLBACK = 0x1
TCP_FASTOPEN = 23  # server: TFO queue length on the listener
TCP_FASTOPEN_CONNECT = 30  # client: connect() returns at once, the first write goes in the SYN
TCPI_OPT_SYN_DATA = 0x20  # tcp_info.tcpi_options: data in our SYN was acked / SYN data accepted
TFO_SYSCTL = "3"  # net.ipv4.tcp_fastopen: client (1) + server (2)
TFO_COUNTERS = ("TCPFastOpenActive", "TCPFastOpenActiveFail", "TCPFastOpenPassive",
                "TCPFastOpenPassiveFail", "TCPFastOpenCookieReqd", "TCPFastOpenListenOverflow")
SYNCOOKIES_SYSCTL = "2"  # net.ipv4.tcp_syncookies=2: answer every SYN with a cookie, queue or not

SUBNET4 = "10.210.{path}.{host}"
SUBNET6 = "fd00:210:{path}::{host}"
CLIENT_HOST = 1
SERVER_HOST = 2
ROUTER_HOST = 254
ROUTER_SERVER_LINK = 101  # router topology: the one link between router and server is "path" 101
DEFAULT_PORT = 5201
DEFAULT_BUFFER_KIB = 65536
PAUSED_RCVBUF = 4096  # SO_RCVBUF of a server that pauses reading (receiver_pause): the window closes fast
FIRST_CHUNK = 1000  # bytes the client sends before waiting for the extra subflows
DATA_CHUNK = 1 << 20  # generator granularity (see DataStream)
SEND_CHUNK = 64 * 1024
PATHS = (1, 2)

LINKTYPE_NAMES = {1: "EN10MB", 101: "RAW", 113: "LINUX_SLL", 276: "LINUX_SLL2"}

Mode = Literal["single", "subflow", "signal"]
TfoMethod = Literal["sendto", "connect"]
LinkDownMethod = Literal["link", "nft"]
Offloads = Literal["off", "on"]
CaptureMode = Literal["any", "eth"]
Topology = Literal["direct", "router"]
PmAction = Literal["remove", "backup", "nobackup"]
PM_ACTIONS: tuple[PmAction, ...] = ("remove", "backup", "nobackup")


class LabError(RuntimeError):
    """Raised when the lab cannot be built or the traffic did not go as expected."""


@dataclass
class LabConfig:
    """Everything needed to reproduce one capture; defaults give a small two-subflow trace."""

    name: str
    out_dir: Path
    description: str = ""
    family: int = 4
    mode: Mode = "subflow"
    fallback: bool = False
    checksum: bool = False
    connections: int = 1
    c2s_bytes: int = 30_000
    s2c_bytes: int = 70_000
    seed: int = 1
    snaplen: int = 262144
    capture: CaptureMode = "any"
    link_type: str | None = None
    rate: dict[int, str] = field(default_factory=dict)
    loss: dict[int, float] = field(default_factory=dict)
    # (path, start, end): the path fails ``start`` seconds after the client starts its bulk data
    # (after the first 1000 bytes and the extra subflow) and recovers at ``end`` (middlebox.set_path)
    link_down: list[tuple[int, float, float]] = field(default_factory=list)
    link_down_method: LinkDownMethod = "link"
    # path -> N: overwrite payload bytes of the client's Nth data packet sent on the path (middlebox.corruption)
    corrupt: dict[int, int] = field(default_factory=dict)
    capture_filter: str = ""
    port: int = DEFAULT_PORT
    wait_subflows: bool = True
    # tcpdump -B: in immediate mode its ring slots are sized for the full snaplen, so 16 MiB holds only ~64
    # packets and a burst on an unpaced path overflows it on a busy machine (the lab then refuses the capture)
    buffer_kib: int = DEFAULT_BUFFER_KIB
    immediate: bool = True
    timeout: float = 60.0
    command: str | None = None
    strict: bool = True
    # "on": the veths keep their default TSO/GSO/GRO/TX-csum, so the capture shows super-segments far
    # above the MSS (and TX checksums left to the "hardware"), as on most real hosts
    offloads: Offloads = "off"
    # TCP Fast Open: a cookie connection first (recorded too), then ``connections`` connections
    # whose first data rides in the SYN (sendto(MSG_FASTOPEN) on the MPTCP socket)
    tfo: bool = False
    tfo_method: TfoMethod = "sendto"  # sendto(MSG_FASTOPEN), or TCP_FASTOPEN_CONNECT + connect() + send()
    # (action, seconds after the bulk data starts): path-manager changes on the path-2 endpoint mid-transfer
    # (remove: `ip mptcp endpoint delete` → REMOVE_ADDR; backup/nobackup: `endpoint change` → MP_PRIO)
    pm_events: list[tuple[PmAction, float]] = field(default_factory=list)
    syncookies: bool = False  # net.ipv4.tcp_syncookies=2 in the server namespace
    fullmesh: bool = False  # client endpoints on both paths with the fullmesh flag; the server signals path 2
    signal_port: int | None = None  # signal mode: the server announces path 2 with this port (ADD_ADDR port)
    # router: client ─ router ─ server, the capture runs in the router (on its link to the server)
    topology: Topology = "direct"
    # seconds the server leaves each connection unread (with a 4 KiB receive buffer) before reading it: the
    # window closes, the client probes it (zero-window probes), then the window opens again
    receiver_pause: float = 0.0

    @property
    def effective_mode(self) -> Mode:
        """The path-manager mode actually configured (fullmesh needs the server's announcement)."""
        return "signal" if self.fullmesh else self.mode

    @property
    def expected_subflows(self) -> int:
        """Subflows the configuration should produce (checked against the kernel's answer)."""
        if self.fallback or self.mode == "single":
            return 1
        if self.fullmesh:
            return len(PATHS) * len(PATHS)  # every client address to every server address
        return 2

    @property
    def bulk_events(self) -> bool:
        """Whether something is timed from the start of the bulk data (the client then announces it)."""
        return bool(self.link_down or self.pm_events)

    def server_addr(self, path: int, family: int) -> str:
        """The server's address on ``path`` (router topology: its only address, behind the router)."""
        if self.topology == "router":
            return addr(ROUTER_SERVER_LINK, SERVER_HOST, family)
        return addr(path, SERVER_HOST, family)

    def cli_args(self) -> list[str]:
        """``mptcp-analyze lab`` arguments that rebuild the same configuration."""
        args = ["-o", str(_rel(Path(self.out_dir) / f"{self.name}.pcap")), "--family", str(self.family),
                "--mode", self.mode, "--connections", str(self.connections),
                "--c2s-bytes", str(self.c2s_bytes), "--s2c-bytes", str(self.s2c_bytes),
                "--seed", str(self.seed), "--snaplen", str(self.snaplen), "--capture", self.capture,
                "--port", str(self.port)]
        if self.description:
            args += ["--description", self.description]
        flags = {"--fallback": self.fallback, "--checksum": self.checksum, "--no-wait-subflows": not self.wait_subflows,
                 "--no-immediate": not self.immediate, "--syncookies": self.syncookies, "--fullmesh": self.fullmesh}
        args += [flag for flag, on in flags.items() if on]
        if self.link_type:
            args += ["--link-type", self.link_type]
        for path, rate in sorted(self.rate.items()):
            args += ["--rate", f"{path}={rate}"]
        for path, pct in sorted(self.loss.items()):
            args += ["--loss", f"{path}={pct}"]
        for path, start, end in self.link_down:
            args += ["--link-down", f"{path}={start:g}:{end:g}"]
        if self.link_down and self.link_down_method != "link":
            args += ["--link-down-method", self.link_down_method]
        for path, nth in sorted(self.corrupt.items()):
            args += ["--corrupt", f"{path}={nth}"]
        for action, at in self.pm_events:
            args += ["--pm-event", f"{action}@{at:g}"]
        if self.signal_port is not None:
            args += ["--signal-port", str(self.signal_port)]
        if self.topology != "direct":
            args += ["--topology", self.topology]
        if self.receiver_pause:
            args += ["--receiver-pause", f"{self.receiver_pause:g}"]
        if self.capture_filter:
            args += ["--filter", self.capture_filter]
        if self.buffer_kib != DEFAULT_BUFFER_KIB:
            args += ["--buffer-kib", str(self.buffer_kib)]
        if self.offloads != "off":
            args += ["--offloads", self.offloads]
        if self.tfo:
            args.append("--tfo")
            if self.tfo_method != "sendto":
                args += ["--tfo-method", self.tfo_method]
        return args

    def command_line(self) -> str:
        """The shell command that reruns this configuration."""
        return shlex.join(["mptcp-analyze", "lab", *self.cli_args()])


def addr(path: int, host: int, family: int) -> str:
    """Address of ``host`` (1 = client, 2 = server, 254 = router) on ``path`` for the given family."""
    template = SUBNET4 if family == 4 else SUBNET6
    return template.format(path=path, host=host)


def rate_bps(rate: str) -> int:
    """Parse a tc rate such as ``20mbit`` / ``500kbit`` / ``1gbit`` / ``64000bit`` into bit/s."""
    units = {"gbit": 10**9, "mbit": 10**6, "kbit": 10**3, "bit": 1}
    low = rate.strip().lower()
    for unit, mult in units.items():
        if low.endswith(unit):
            try:
                return int(float(low[: -len(unit)]) * mult)
            except ValueError:
                break
    raise LabError(f"unsupported rate {rate!r} (use bit/kbit/mbit/gbit)")


def tbf_burst(rate: str) -> int:
    """tbf bucket of ~1 ms of traffic (at least two MTUs), so shaping really paces segments."""
    return max(3200, rate_bps(rate) // 8 // 1000)


def _rel(path: Path) -> Path:
    """``path`` relative to the current directory when it is below it (nicer commands in sidecars)."""
    full = path.resolve()
    try:
        return full.relative_to(Path.cwd())
    except ValueError:
        return full


def fmt_endpoint(ip: str, port: int) -> str:
    """``ip:port`` for IPv4, ``[ip]:port`` for IPv6 (unambiguous)."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
