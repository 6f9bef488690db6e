#!/usr/bin/env python3
"""Build a two-path MPTCP lab in network namespaces and capture real Linux kernel traces.

Why: the analyzer needs ground-truth captures made by the real kernel (not hand-crafted packets),
together with a sidecar JSON that records what the applications actually sent and what the
kernel itself reports about the connection (subflow count, tokens, DSN counters).

Topology (everything lives in two namespaces created and destroyed by this module)::

    ma-cli-<pid>-<n>                           ma-srv-<pid>-<n>
      cli1 10.210.1.1/24 fd00:210:1::1/64 <-veth-> srv1 10.210.1.2/24 fd00:210:1::2/64
      cli2 10.210.2.1/24 fd00:210:2::1/64 <-veth-> srv2 10.210.2.2/24 fd00:210:2::2/64

Offloads (TSO/GSO/GRO and TX checksum) are turned off on every veth so that the capture shows
wire-sized segments with valid TCP checksums; ``--offloads on`` turns them on instead (the capture
then shows super-segments far above the MSS, as on most real hosts).  tcpdump runs in the client namespace.
``--link-down PATH=START:END`` fails a path mid-transfer (link down/up, or an nftables drop-all
with ``--link-down-method nft``) so that the kernel reinjects data on the other subflow.
``--corrupt PATH=N`` plays a payload-rewriting middlebox: it overwrites 8 payload bytes of the
client's Nth data packet on the path (with ``--checksum`` the server sees the DSS checksum fail
and answers with MP_FAIL; see Lab._corruption).
``--tfo`` turns TCP Fast Open on in both namespaces: a first connection fetches the cookie, then
the measured connections carry their first data in the SYN.

Importable (``run_lab(LabConfig(...))``) and usable as a CLI (``python3 mptcp_lab.py --help``).
The hidden sub-commands ``_server``, ``_client`` and ``_offload`` are the programs that this
module starts inside the namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import fcntl
import hashlib
import itertools
import json
import os
import random
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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

SUBNET4 = "10.210.{path}.{host}"
SUBNET6 = "fd00:210:{path}::{host}"
CLIENT_HOST = 1
SERVER_HOST = 2
DEFAULT_PORT = 5201
FIRST_CHUNK = 1000  # bytes the client sends before waiting for the extra subflows
DATA_CHUNK = 1 << 20  # generator granularity (see DataStream)
SEND_CHUNK = 64 * 1024

LINKTYPE_NAMES = {1: "EN10MB", 101: "RAW", 113: "LINUX_SLL", 276: "LINUX_SLL2"}

Mode = Literal["single", "subflow", "signal"]
TfoMethod = Literal["sendto", "connect"]
LinkDownMethod = Literal["link", "nft"]
Offloads = Literal["off", "on"]
CaptureMode = Literal["any", "eth"]

_lab_counter = itertools.count()


class LabError(RuntimeError):
    """Raised when the lab cannot be built or the traffic did not go as expected."""


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


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
    # (after the first 1000 bytes and the extra subflow) and recovers at ``end`` (Lab.set_path)
    link_down: list[tuple[int, float, float]] = field(default_factory=list)
    link_down_method: LinkDownMethod = "link"
    # path -> N: overwrite payload bytes of the client's Nth data packet sent on the path (Lab._corruption)
    corrupt: dict[int, int] = field(default_factory=dict)
    capture_filter: str = ""
    port: int = DEFAULT_PORT
    wait_subflows: bool = True
    buffer_kib: int = 16384
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

    @property
    def expected_subflows(self) -> int:
        """Subflows the configuration should produce (checked against the kernel's answer)."""
        if self.fallback or self.mode == "single":
            return 1
        return 2

    def cli_args(self) -> list[str]:
        """Arguments for this module's CLI that rebuild the same configuration."""
        args = ["--name", self.name, "--out-dir", str(_rel(Path(self.out_dir))), "--family", str(self.family),
                "--mode", self.mode, "--connections", str(self.connections),
                "--c2s-bytes", str(self.c2s_bytes), "--s2c-bytes", str(self.s2c_bytes),
                "--seed", str(self.seed), "--snaplen", str(self.snaplen), "--capture", self.capture,
                "--port", str(self.port)]
        if self.description:
            args += ["--description", self.description]
        if self.fallback:
            args.append("--fallback")
        if self.checksum:
            args.append("--checksum")
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
        if self.capture_filter:
            args += ["--filter", self.capture_filter]
        if not self.wait_subflows:
            args.append("--no-wait-subflows")
        if self.buffer_kib != 16384:
            args += ["--buffer-kib", str(self.buffer_kib)]
        if not self.immediate:
            args.append("--no-immediate")
        if self.offloads != "off":
            args += ["--offloads", self.offloads]
        if self.tfo:
            args.append("--tfo")
            if self.tfo_method != "sendto":
                args += ["--tfo-method", self.tfo_method]
        return args


def addr(path: int, host: int, family: int) -> str:
    """Address of ``host`` (1 = client, 2 = server) on ``path`` for the given family."""
    template = SUBNET4 if family == 4 else SUBNET6
    return template.format(path=path, host=host)


def rate_bps(rate: str) -> int:
    """Parse a tc rate such as ``20mbit`` / ``500kbit`` / ``1gbit`` / ``64000bit`` into bit/s."""
    units = {"gbit": 10**9, "mbit": 10**6, "kbit": 10**3, "bit": 1}
    low = rate.strip().lower()
    for unit, mult in units.items():
        if low.endswith(unit):
            return int(float(low[: -len(unit)]) * mult)
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


# --------------------------------------------------------------------------------------------
# deterministic payload
# --------------------------------------------------------------------------------------------


class DataStream:
    """Seeded pseudo-random byte stream, generated lazily so large transfers stay cheap.

    The stream is ``Random(seed).randbytes(DATA_CHUNK)`` repeated (last piece shorter), so for
    sizes up to 1 MiB it equals ``random.Random(seed).randbytes(n)``.
    """

    def __init__(self, seed: str, total: int) -> None:
        self._rng = random.Random(seed)
        self.remaining = total
        self._buf = b""
        self._pos = 0

    def read(self, n: int) -> bytes:
        """Return up to ``n`` next bytes (empty once the stream is exhausted)."""
        if self._pos >= len(self._buf):
            if self.remaining <= 0:
                return b""
            size = min(DATA_CHUNK, self.remaining)
            self._buf = self._rng.randbytes(size)
            self._pos = 0
            self.remaining -= size
        out = self._buf[self._pos:self._pos + n]
        self._pos += len(out)
        return out


def c2s_seed(seed: int, index: int) -> str:
    """Seed for the client→server data of connection ``index``."""
    return f"mptcp-lab:{seed}:{index}:c2s"


def s2c_seed(seed: int, c2s_sha256: str) -> str:
    """Seed for the server→client data: derived from what the server received (no side channel)."""
    return f"mptcp-lab:{seed}:s2c:{c2s_sha256}"


def expected_sha256(seed: str, total: int) -> str:
    """SHA-256 of a DataStream, for tests that re-derive what was sent."""
    stream, h = DataStream(seed, total), hashlib.sha256()
    while chunk := stream.read(DATA_CHUNK):
        h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# kernel introspection (runs inside the namespaces)
# --------------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _getsockopt_inout(sock: socket.socket, level: int, opt: int, buf: bytearray) -> int:
    """getsockopt() whose buffer is also an input (socket.getsockopt cannot pre-fill it)."""
    cbuf = (ctypes.c_char * len(buf)).from_buffer(buf)
    optlen = ctypes.c_uint32(len(buf))
    rc = _libc.getsockopt(sock.fileno(), level, opt, cbuf, ctypes.byref(optlen))
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return optlen.value


def _sockaddr(raw: bytes) -> str:
    """Decode a kernel sockaddr_in/sockaddr_in6 into ``ip:port``."""
    fam = struct.unpack_from("=H", raw, 0)[0]
    port = struct.unpack_from("!H", raw, 2)[0]
    if fam == socket.AF_INET:
        return fmt_endpoint(socket.inet_ntop(socket.AF_INET, raw[4:8]), port)
    if fam == socket.AF_INET6:
        return fmt_endpoint(socket.inet_ntop(socket.AF_INET6, raw[8:24]), port)
    return f"family{fam}"


def mptcp_info(sock: socket.socket) -> dict[str, Any] | None:
    """MPTCP_INFO of an MPTCP socket, or None if it fell back to TCP (or is plain TCP)."""
    try:
        raw = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 256)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOPROTOOPT, errno.EINVAL):
            return None
        raise
    if len(raw) < 43:
        return None
    sub, sig, acc, sub_max, sig_max, acc_max = struct.unpack_from("=6B", raw, 0)
    flags, token = struct.unpack_from("=II", raw, 8)
    write_seq, snd_una, rcv_nxt = struct.unpack_from("=QQQ", raw, 16)
    info: dict[str, Any] = {
        "subflows": sub, "add_addr_signal": sig, "add_addr_accepted": acc,
        "subflows_max": sub_max, "add_addr_signal_max": sig_max, "add_addr_accepted_max": acc_max,
        "flags": flags, "token": f"{token:08x}", "write_seq": write_seq, "snd_una": snd_una,
        "rcv_nxt": rcv_nxt, "csum_enabled": bool(raw[42]),
    }
    if len(raw) >= 81:
        info["retransmits"] = struct.unpack_from("=I", raw, 44)[0]
        for i, key in enumerate(("bytes_retrans", "bytes_sent", "bytes_received", "bytes_acked")):
            info[key] = struct.unpack_from("=Q", raw, 48 + 8 * i)[0]
        info["subflows_total"] = raw[80]
    if flags & MPTCP_INFO_FLAG_FALLBACK:
        return None
    return info


def _subflow_array(sock: socket.socket, opt: int, elem: int, max_sf: int = 16) -> list[bytes]:
    """Read an MPTCP_TCPINFO / MPTCP_SUBFLOW_ADDRS array (struct mptcp_subflow_data header)."""
    hdr = 16
    buf = bytearray(hdr + elem * max_sf)
    struct.pack_into("=IIII", buf, 0, hdr, 0, 0, elem)
    _getsockopt_inout(sock, SOL_MPTCP, opt, buf)
    _, num, _, size_user = struct.unpack_from("=IIII", buf, 0)
    return [bytes(buf[hdr + i * size_user: hdr + (i + 1) * size_user]) for i in range(min(num, max_sf))]


def subflow_details(sock: socket.socket) -> list[dict[str, Any]]:
    """Per-subflow addresses and TCP counters as the kernel lists them (same iteration order)."""
    try:
        addrs = _subflow_array(sock, MPTCP_SUBFLOW_ADDRS, 256)
        infos = _subflow_array(sock, MPTCP_TCPINFO, 256)
    except OSError:
        return []
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(addrs):
        entry: dict[str, Any] = {"local": _sockaddr(raw[:128]), "remote": _sockaddr(raw[128:256])}
        if i < len(infos) and len(infos[i]) >= 216:
            ti = infos[i]
            entry.update(
                state=ti[0],
                options=ti[5],
                snd_mss=struct.unpack_from("=I", ti, 16)[0],
                total_retrans=struct.unpack_from("=I", ti, 100)[0],
                unacked=struct.unpack_from("=I", ti, 24)[0],
                bytes_acked=struct.unpack_from("=Q", ti, 120)[0],
                bytes_received=struct.unpack_from("=Q", ti, 128)[0],
                segs_out=struct.unpack_from("=I", ti, 136)[0],
                segs_in=struct.unpack_from("=I", ti, 140)[0],
                notsent_bytes=struct.unpack_from("=I", ti, 144)[0],
                bytes_sent=struct.unpack_from("=Q", ti, 200)[0],
                bytes_retrans=struct.unpack_from("=Q", ti, 208)[0],
            )
        out.append(entry)
    return out


def kernel_snapshot(sock: socket.socket) -> dict[str, Any]:
    """What the kernel says about this connection right now."""
    info = mptcp_info(sock)
    subflows = subflow_details(sock) if info is not None else []
    return {"mptcp": info is not None, "info": info, "subflows": subflows}


TCP_NOT_CONNECTED = (2, 3, 7)  # SYN_SENT, SYN_RECV, CLOSE: listed by the kernel but not (yet) usable


def connected_subflows(subflows: Sequence[dict[str, Any]]) -> int:
    """How many subflows in a snapshot completed their handshake (a join in SYN_SENT does not count)."""
    return sum(1 for sf in subflows if sf.get("state") not in TCP_NOT_CONNECTED)


def kernel_subflow_count(sock: socket.socket) -> int:
    """Connected subflows per the kernel (1 for a fallen-back / plain TCP socket)."""
    info = mptcp_info(sock)
    if info is None:
        return 1
    try:
        infos = _subflow_array(sock, MPTCP_TCPINFO, 256)
    except OSError:
        return int(info.get("subflows_total") or info["subflows"] + 1)
    return sum(1 for ti in infos if ti and ti[0] not in TCP_NOT_CONNECTED)


# --------------------------------------------------------------------------------------------
# in-namespace programs: server, client, offload switch
# --------------------------------------------------------------------------------------------


def _recv_all(sock: socket.socket) -> tuple[int, str]:
    """Read until EOF, returning byte count and SHA-256."""
    h, n = hashlib.sha256(), 0
    while data := sock.recv(1 << 18):
        h.update(data)
        n += len(data)
    return n, h.hexdigest()


def _send_stream(sock: socket.socket, stream: DataStream, h: Any, limit: int | None = None) -> int:
    """Send from ``stream`` (at most ``limit`` bytes), updating hash ``h``; returns bytes sent."""
    sent = 0
    while limit is None or sent < limit:
        want = SEND_CHUNK if limit is None else min(SEND_CHUNK, limit - sent)
        chunk = stream.read(want)
        if not chunk:
            break
        sock.sendall(chunk)
        h.update(chunk)
        sent += len(chunk)
    return sent


def _server_main(params: dict[str, Any]) -> int:
    """Accept N connections; for each: read all, answer with seeded data, close cleanly."""
    fam = socket.AF_INET6 if params["family"] == 6 else socket.AF_INET
    proto = IPPROTO_MPTCP if params["mptcp"] else socket.IPPROTO_TCP
    timeout = float(params["timeout"])
    ls = socket.socket(fam, socket.SOCK_STREAM, proto)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if params.get("tfo"):
        ls.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
    ls.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", params["port"]))
    ls.listen(16)
    ls.settimeout(timeout)
    print("READY", flush=True)
    results: list[dict[str, Any]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def handle(conn: socket.socket, peer: tuple[Any, ...]) -> None:
        try:
            conn.settimeout(timeout)
            local = conn.getsockname()
            rx_n, rx_sha = _recv_all(conn)
            stream = DataStream(s2c_seed(params["seed"], rx_sha), params["s2c_bytes"])
            h = hashlib.sha256()
            tx_n = _send_stream(conn, stream, h)
            # snapshot while every subflow is still up but all our data is through, so the
            # per-subflow counters are final (after our DATA_FIN the client tears down at once)
            _wait_all_acked(conn, timeout)
            if params["settle"]:
                _wait_subflows_idle(conn, timeout)
            snap_acked = kernel_snapshot(conn)
            conn.shutdown(socket.SHUT_WR)
            tail = conn.recv(1)  # EOF: the client's DATA_FIN (it shut down before we answered)
            rec = {"client": fmt_endpoint(peer[0], peer[1]), "server": fmt_endpoint(local[0], local[1]),
                   "received": {"bytes": rx_n, "sha256": rx_sha},
                   "sent": {"bytes": tx_n, "sha256": h.hexdigest()},
                   "kernel_after_acked": snap_acked, "trailing_bytes": len(tail)}
            with lock:
                results.append(rec)
        except Exception as exc:
            with lock:
                errors.append(f"{peer}: {exc!r}")
        finally:
            conn.close()

    threads = []
    try:
        for _ in range(params["connections"] + (1 if params.get("tfo") else 0)):
            conn, peer = ls.accept()
            t = threading.Thread(target=handle, args=(conn, peer), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout)
    except OSError as exc:
        errors.append(f"accept: {exc!r}")
    finally:
        # only now: MP_JOIN SYNs are looked up through the listener, so closing it right after
        # accept() would make the kernel answer every join with a plain RST
        ls.close()
    print(json.dumps({"connections": results, "errors": errors}), flush=True)
    return 1 if errors else 0


def _wait_all_acked(sock: socket.socket, timeout: float) -> None:
    """Wait until the peer data-acked everything we wrote (incl. a DATA_FIN); MPTCP only."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = mptcp_info(sock)
        if info is None or info["snd_una"] >= info["write_seq"]:
            return
        time.sleep(0.005)


def _wait_subflows_idle(sock: socket.socket, timeout: float) -> bool:
    """Wait until no connected subflow has data unacknowledged or unsent at the TCP level.

    Data-level acks say nothing about a subflow that failed: its TCP queue still holds the data
    the kernel has since reinjected elsewhere, and it re-sends it only once its path is back (at
    its next RTO). Shutting down before that would leave the subflow to be reset by the peer
    (an orphaned socket that receives data answers with RST), so the lab waits for it.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            infos = _subflow_array(sock, MPTCP_TCPINFO, 256)
        except OSError:
            return True
        busy = [ti for ti in infos if len(ti) >= 148 and ti[0] not in TCP_NOT_CONNECTED
                and (struct.unpack_from("=I", ti, 24)[0] or struct.unpack_from("=I", ti, 144)[0])]
        if not busy:  # tcpi_unacked (packets in flight) and tcpi_notsent_bytes both zero
            return True
        time.sleep(0.01)
    return False


def _wait_subflows(sock: socket.socket, want: int, timeout: float) -> int:
    """Poll the kernel until the connection has ``want`` subflows (or time runs out)."""
    deadline = time.monotonic() + timeout
    count = kernel_subflow_count(sock)
    while count < want and time.monotonic() < deadline:
        time.sleep(0.01)
        count = kernel_subflow_count(sock)
    return count


def _client_main(params: dict[str, Any]) -> int:
    """Open N concurrent MPTCP connections; each sends seeded data, reads the reply, closes."""
    fam = socket.AF_INET6 if params["family"] == 6 else socket.AF_INET
    timeout = float(params["timeout"])
    tfo = bool(params.get("tfo"))
    total = params["connections"] + (1 if tfo else 0)
    results: list[dict[str, Any] | None] = [None] * total
    errors: list[str] = []
    start = threading.Barrier(params["connections"], timeout=timeout)
    bulk_announced = threading.Event()
    announce_lock = threading.Lock()

    def announce_bulk() -> None:
        """Tell the lab (once) that bulk data starts now: --link-down windows count from here."""
        with announce_lock:
            if params.get("announce_bulk") and not bulk_announced.is_set():
                bulk_announced.set()
                print("BULK", flush=True)

    def one(index: int, barrier: threading.Barrier | None) -> None:
        sock = socket.socket(fam, socket.SOCK_STREAM, IPPROTO_MPTCP)
        try:
            sock.settimeout(timeout)
            if barrier is not None:
                barrier.wait()
            stream = DataStream(c2s_seed(params["seed"], index), params["c2s_bytes"])
            h = hashlib.sha256()
            syn_copied = None
            if tfo and params.get("tfo_method") == "connect":
                # connect() returns at once; the first write leaves in the SYN (with a cookie)
                sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
                sock.connect((params["server"], params["port"]))
                sent = 0
            elif tfo:
                # connect and send at once: with a cookie the kernel puts the data in the SYN
                first = stream.read(FIRST_CHUNK)
                # blocking for this call: on a non-blocking socket (Python's timeouts) sendto()
                # returns EINPROGRESS instead of waiting for the handshake
                sock.settimeout(None)
                syn_copied = sock.sendto(first, socket.MSG_FASTOPEN, (params["server"], params["port"]))
                sock.settimeout(timeout)
                sock.sendall(first[syn_copied:])
                h.update(first)
                sent = len(first)
            else:
                sock.connect((params["server"], params["port"]))
                sent = 0
            sent += _send_stream(sock, stream, h, FIRST_CHUNK - sent)
            # (after the first write: with TCP_FASTOPEN_CONNECT the SYN leaves only with it)
            local, peer = sock.getsockname(), sock.getpeername()
            if tfo:
                # Data that rode in the SYN earns no Data ACK, and the client is fully established (its
                # PM opens the extra subflows) only at the server's first Data ACK: send more first.
                sent += _send_stream(sock, stream, h, FIRST_CHUNK)
            waited = None
            if params["wait_subflows"] and params["expected_subflows"] > 1:
                # The in-kernel PM opens/accepts extra subflows only once the connection is fully
                # established, i.e. after the server's first DSS (the ack of FIRST_CHUNK).
                waited = _wait_subflows(sock, params["expected_subflows"], min(timeout, 10.0))
            announce_bulk()
            sent += _send_stream(sock, stream, h)
            _wait_all_acked(sock, timeout)
            if params["settle"]:
                _wait_subflows_idle(sock, timeout)
            snap_acked = kernel_snapshot(sock)
            sock.shutdown(socket.SHUT_WR)
            rx_n, rx_sha = _recv_all(sock)
            snap_end = kernel_snapshot(sock)
            results[index] = {
                "index": index, "client": fmt_endpoint(local[0], local[1]),
                "server": fmt_endpoint(peer[0], peer[1]),
                "sent": {"bytes": sent, "sha256": h.hexdigest()},
                "received": {"bytes": rx_n, "sha256": rx_sha},
                "subflows_after_wait": waited,
                "kernel_after_acked": snap_acked, "kernel_at_end": snap_end,
            }
            if tfo:
                results[index]["tfo"] = {"role": "cookie" if index == 0 else "data-in-syn",
                                         "sendto_copied": syn_copied}
        except Exception as exc:
            errors.append(f"conn {index}: {exc!r}")
        finally:
            sock.close()

    if tfo:
        # the cookie connection runs alone and to its end, so the others find the cookie cached
        one(0, None)
    first_index = 1 if tfo else 0
    threads = [threading.Thread(target=one, args=(i, start), daemon=True) for i in range(first_index, total)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * 2)
    print(json.dumps({"connections": results, "errors": errors}), flush=True)
    return 1 if errors else 0


def tcp_ext_counters(text: str, names: Sequence[str]) -> dict[str, int]:
    """Pick ``names`` out of /proc/net/netstat's TcpExt lines (header line, then values)."""
    lines = [line.split() for line in text.splitlines() if line.startswith("TcpExt:")]
    if len(lines) < 2:
        return {}
    table = dict(zip(lines[0][1:], lines[1][1:], strict=False))
    return {name: int(table[name]) for name in names if name in table}


SIOCETHTOOL = 0x8946
# legacy ethtool "set one feature" commands: (get, set)
_ETHTOOL_FEATURES = {"tx-checksum": (0x16, 0x17), "tso": (0x1E, 0x1F), "gso": (0x23, 0x24),
                     "gro": (0x2B, 0x2C)}


def _ethtool_value(sock: socket.socket, dev: str, cmd: int, value: int = 0) -> int:
    """One SIOCETHTOOL ioctl with a struct ethtool_value (no ethtool binary needed)."""
    val = ctypes.create_string_buffer(struct.pack("=II", cmd, value), 8)
    ifr = struct.pack("16sP", dev.encode(), ctypes.addressof(val)).ljust(40, b"\0")
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)
    return int(struct.unpack("=II", val.raw)[1])


def _offload_main(devs: Sequence[str]) -> int:
    """Turn TX checksum, TSO, GSO and GRO off on ``devs`` in the current namespace (``--on``: on)."""
    value = 1 if devs and devs[0] == "--on" else 0
    if value:
        devs = devs[1:]
    report: dict[str, dict[str, int]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for dev in devs:
            report[dev] = {}
            for feat in ("gro", "gso", "tso", "tx-checksum"):
                get_cmd, set_cmd = _ETHTOOL_FEATURES[feat]
                with contextlib.suppress(OSError):  # not changeable here: just read it back
                    _ethtool_value(sock, dev, set_cmd, value)
                report[dev][feat] = _ethtool_value(sock, dev, get_cmd)
    print(json.dumps(report), flush=True)
    if value:  # GSO, GRO and TSO must be on (TX checksum may be fixed on some devices)
        return 0 if all(v["gso"] and v["gro"] and v["tso"] for v in report.values()) else 1
    return 0 if all(not any(v.values()) for v in report.values()) else 1


# --------------------------------------------------------------------------------------------
# pcap helpers (no third-party dependency so the lab runs anywhere)
# --------------------------------------------------------------------------------------------

PcapRecord = tuple[int, int, int, bytes]  # ts_sec, ts_frac, orig_len, data


def read_pcap(path: Path) -> tuple[bytes, int, list[PcapRecord]]:
    """Return (global header, link type, records) of a classic pcap file."""
    data = path.read_bytes()
    if len(data) < 24:
        raise LabError(f"{path}: not a pcap file (too short)")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise LabError(f"{path}: not a classic pcap file")
    linktype = struct.unpack_from(end + "I", data, 20)[0] & 0x0FFFFFFF
    records: list[PcapRecord] = []
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(end + "IIII", data, off)
        off += 16
        records.append((sec, frac, orig, data[off:off + incl]))
        off += incl
    return data[:24], linktype, records


def merge_pcaps(out: Path, inputs: Sequence[Path]) -> None:
    """Merge same-linktype pcaps by timestamp (used for per-interface Ethernet captures)."""
    header = b""
    linktype = None
    merged: list[PcapRecord] = []
    for p in inputs:
        hdr, lt, recs = read_pcap(p)
        if linktype is not None and lt != linktype:
            raise LabError(f"cannot merge link types {linktype} and {lt}")
        header, linktype = header or hdr, lt
        merged.extend(recs)
    end = "<" if header[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    merged.sort(key=lambda r: (r[0], r[1]))
    with out.open("wb") as fh:
        fh.write(header)
        for sec, frac, orig, payload in merged:
            fh.write(struct.pack(end + "IIII", sec, frac, len(payload), orig))
            fh.write(payload)


def pcap_stats(path: Path) -> dict[str, Any]:
    """Link type, packet count and size of a capture, for the sidecar."""
    _, lt, recs = read_pcap(path)
    return {"link_type": LINKTYPE_NAMES.get(lt, str(lt)), "linktype_number": lt, "packets": len(recs),
            "file_bytes": path.stat().st_size}


# --------------------------------------------------------------------------------------------
# host side: build the lab, run traffic, write pcap + sidecar
# --------------------------------------------------------------------------------------------


def _read_until(fd: int, needle: bytes, timeout: float, buf: bytearray) -> bool:
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
        raise LabError("mptcp_lab needs root (network namespaces, veth, tcpdump)")
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
    """Two namespaces + two veth paths; a context manager that always tears everything down."""

    PATHS = (1, 2)

    def __init__(self, cfg: LabConfig) -> None:
        self.cfg = cfg
        tag = f"{os.getpid()}-{next(_lab_counter)}"
        self.cli = f"ma-cli-{tag}"
        self.srv = f"ma-srv-{tag}"
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self.notes: dict[str, Any] = {}

    # -- plumbing ---------------------------------------------------------------------------
    def run(self, *argv: str, ns: str | None = None, input_text: str | None = None,
            timeout: float = 20.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one command (optionally inside a namespace) with a timeout."""
        cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
        proc = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise LabError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr.strip()}")
        return proc

    def ip(self, ns: str, *argv: str) -> None:
        """``ip -n NS ...``."""
        self.run("ip", "-n", ns, *argv)

    def spawn(self, argv: Sequence[str], ns: str, stdout: bool = True) -> subprocess.Popen[bytes]:
        """Start a long-running process in ``ns``; remembered so cleanup can stop it by PID."""
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self._procs.append(proc)
        return proc

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Stop our processes (by PID) and delete our namespaces; never raises."""
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
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)
        self._namespaces.clear()

    # -- topology -----------------------------------------------------------------------------
    def build(self) -> None:
        """Create namespaces, veth paths, addresses, routing, offloads, MPTCP PM, shaping."""
        cfg = self.cfg
        for ns in (self.cli, self.srv):
            self.run("ip", "netns", "add", ns)
            self._namespaces.append(ns)
            self.ip(ns, "link", "set", "lo", "up")
            sysctls = {"net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.default.rp_filter": "0",
                       "net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0",
                       # a path taken down by --link-down keeps its IPv6 addresses, like IPv4 does
                       "net.ipv6.conf.all.keep_addr_on_down": "1",
                       "net.ipv6.conf.default.keep_addr_on_down": "1",
                       "net.mptcp.checksum_enabled": "1" if cfg.checksum else "0"}
            if cfg.tfo:
                sysctls["net.ipv4.tcp_fastopen"] = TFO_SYSCTL
            for key, val in sysctls.items():
                self.run("sysctl", "-qw", f"{key}={val}", ns=ns)
        for p in self.PATHS:
            c_dev, s_dev = f"cli{p}", f"srv{p}"
            # created inside the client namespace, peer moved straight into the server one:
            # the host's own interfaces are never touched
            self.ip(self.cli, "link", "add", c_dev, "type", "veth", "peer", "name", s_dev, "netns", self.srv)
            for ns, dev, host in ((self.cli, c_dev, CLIENT_HOST), (self.srv, s_dev, SERVER_HOST)):
                if cfg.offloads == "off":
                    self.ip(ns, "link", "set", dev, "gso_max_segs", "1")
                self.ip(ns, "addr", "add", f"{addr(p, host, 4)}/24", "dev", dev)
                self.ip(ns, "-6", "addr", "add", f"{addr(p, host, 6)}/64", "dev", dev, "nodad")
                self.ip(ns, "link", "set", dev, "up")
        # Paths are chosen by the *client's* address, so every subflow is symmetric: the client
        # routes by source (its path-2 subflow to the server's path-1 address leaves on path 2),
        # the server by destination (plain connected routes bring the answer back on path 2).
        for p in self.PATHS:
            table = str(100 + p)
            for fam in (4, 6):
                self.ip(self.cli, f"-{fam}", "rule", "add", "from", addr(p, CLIENT_HOST, fam),
                        "table", table, "pref", table)
                self._path_route(p, fam)
                # While the path is down (--link-down) the kernel deletes the route above; this one
                # then answers "unreachable", so the path's packets are not sent at all instead of
                # leaking onto the other path through the main table.
                self.ip(self.cli, f"-{fam}", "route", "add", "unreachable", "default", "metric", "65535",
                        "table", table)
        self.notes["offloads"] = self._offloads_off() if cfg.offloads == "off" else self._offloads_on()
        self._configure_pm()
        self._shaping()
        self._corruption()

    def _path_route(self, path: int, family: int) -> None:
        """The client's source-routing default route for ``path`` (re-added after a link-down)."""
        self.ip(self.cli, f"-{family}", "route", "replace", "default", "via", addr(path, SERVER_HOST, family),
                "dev", f"cli{path}", "table", str(100 + path))

    def set_path(self, path: int, up: bool) -> None:
        """Fail ``path`` or bring it back (``--link-down-method nft``: see _path_blackhole).

        Down: both veths go down; the kernel drops the path's routes and qdisc backlog, and every send on its subflows
        fails locally (the client's table answers "unreachable", the server has no route), so
        nothing is sent on the path: the subflows' TCP retransmissions fail until the path is back,
        and the MPTCP retransmit timer reinjects the unacknowledged data on the other subflow.
        Up: links up, the client's source route is added again (connected routes come back by
        themselves; addresses are kept, for IPv6 through keep_addr_on_down).
        """
        if self.cfg.link_down_method == "nft":
            self._path_blackhole(path, up)
            return
        state = "up" if up else "down"
        self.ip(self.cli, "link", "set", "dev", f"cli{path}", state)
        self.ip(self.srv, "link", "set", "dev", f"srv{path}", state)
        if up:
            for fam in (4, 6):
                self._path_route(path, fam)

    def _path_blackhole(self, path: int, up: bool) -> None:
        """``--link-down-method nft``: the path stays up but the server namespace drops all of its
        traffic, both ways (client-to-server after the capture point: the capture shows the lost
        segments; server-to-client before it: the capture shows nothing)."""
        table = f"madown{path}"
        if up:
            self.run("nft", "delete", "table", "inet", table, ns=self.srv)
            return
        ruleset = (f"table inet {table} {{\n"
                   "  chain pre { type filter hook prerouting priority -310; policy accept;\n"
                   f'    iifname "srv{path}" drop; }}\n'
                   "  chain post { type filter hook postrouting priority 310; policy accept;\n"
                   f'    oifname "srv{path}" drop; }}\n'
                   "}\n")
        self.run("nft", "-f", "-", ns=self.srv, input_text=ruleset)

    def _link_schedule(self, t0: float, stop: threading.Event, log: list[dict[str, Any]],
                       failures: list[BaseException]) -> None:
        """Run the --link-down windows on time (seconds after ``t0``); always leaves paths up."""
        events = sorted([(start, p, False) for p, start, _ in self.cfg.link_down]
                        + [(end, p, True) for p, _, end in self.cfg.link_down])
        down: set[int] = set()
        try:
            for at, path, up in events:
                # a stop request only skips ahead to the "up" events, so no path is left down
                if not up and stop.wait(max(0.0, t0 + at - time.monotonic())):
                    continue
                if up and path not in down:
                    continue
                if up:
                    time.sleep(max(0.0, t0 + at - time.monotonic()))
                self.set_path(path, up)
                (down.add if not up else down.discard)(path)
                log.append({"path": path, "state": "up" if up else "down", "planned_s": at,
                            "at_s": round(time.monotonic() - t0, 4), "epoch": round(time.time(), 6)})
        except BaseException as exc:  # reported by traffic(); make sure nothing stays down
            failures.append(exc)
            for path in sorted(down):
                with contextlib.suppress(LabError, subprocess.SubprocessError):
                    self.set_path(path, True)

    def _drain(self, timeout: float) -> bool:
        """Wait until neither namespace has a TCP socket left other than listeners and TIME-WAIT.

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

    def _offloads_off(self) -> dict[str, Any]:
        """TSO/GSO/GRO/TX-csum off on every veth (ethtool if present, else SIOCETHTOOL ioctl)."""
        method = "ethtool" if shutil.which("ethtool") else "ioctl"
        result: dict[str, Any] = {"method": method, "gso_max_segs": 1}
        for ns, prefix in ((self.cli, "cli"), (self.srv, "srv")):
            devs = [f"{prefix}{p}" for p in self.PATHS]
            if method == "ethtool":
                for dev in devs:
                    self.run("ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off",
                             ns=ns)
            else:
                proc = self.run(sys.executable, str(Path(__file__).resolve()), "_offload", *devs, ns=ns,
                                check=False)
                if proc.returncode != 0:
                    raise LabError(f"could not turn offloads off in {ns}: {proc.stdout}{proc.stderr}")
                result[ns.split("-")[1]] = json.loads(proc.stdout)
        return result

    def _offloads_on(self) -> dict[str, Any]:
        """``--offloads on``: TSO, GSO, GRO and TX checksum on every veth (SIOCETHTOOL ioctl), as on most real
        hosts: the capture then shows super-segments far above the MSS, cut anew when retransmitted."""
        result: dict[str, Any] = {"method": "ioctl", "state": "on"}
        for ns, prefix in ((self.cli, "cli"), (self.srv, "srv")):
            devs = [f"{prefix}{p}" for p in self.PATHS]
            proc = self.run(sys.executable, str(Path(__file__).resolve()), "_offload", "--on", *devs, ns=ns,
                            check=False)
            if proc.returncode != 0:
                raise LabError(f"could not turn offloads on in {ns}: {proc.stdout}{proc.stderr}")
            result[ns.split("-")[1]] = json.loads(proc.stdout)
        return result

    def _configure_pm(self) -> None:
        """MPTCP limits and endpoints for the chosen mode."""
        cfg = self.cfg
        if cfg.mode == "single":
            cli_limits, srv_limits = ("0", "0"), ("0", "0")
        elif cfg.mode == "subflow":
            cli_limits, srv_limits = ("1", "0"), ("1", "0")
            self.ip(self.cli, "mptcp", "endpoint", "add", addr(2, CLIENT_HOST, cfg.family), "dev", "cli2",
                    "id", "2", "subflow")
        else:  # signal: the server announces its path-2 address, the client joins it
            cli_limits, srv_limits = ("1", "1"), ("1", "0")
            self.ip(self.srv, "mptcp", "endpoint", "add", addr(2, SERVER_HOST, cfg.family), "dev", "srv2",
                    "id", "2", "signal")
        self.ip(self.cli, "mptcp", "limits", "set", "subflows", cli_limits[0], "add_addr_accepted",
                cli_limits[1])
        self.ip(self.srv, "mptcp", "limits", "set", "subflows", srv_limits[0], "add_addr_accepted",
                srv_limits[1])
        self.notes["pm"] = {
            "client_endpoints": self.run("ip", "-n", self.cli, "mptcp", "endpoint", "show").stdout.strip(),
            "server_endpoints": self.run("ip", "-n", self.srv, "mptcp", "endpoint", "show").stdout.strip(),
            "client_limits": self.run("ip", "-n", self.cli, "mptcp", "limits", "show").stdout.strip(),
            "server_limits": self.run("ip", "-n", self.srv, "mptcp", "limits", "show").stdout.strip(),
        }

    def _shaping(self) -> None:
        """Optional tbf rate limit (both directions) and nftables random loss on a path."""
        cfg = self.cfg
        if cfg.rate and shutil.which("tc") is None:
            raise LabError("--rate needs tc (iproute2) installed")
        for p, rate in sorted(cfg.rate.items()):
            for ns, dev in ((self.cli, f"cli{p}"), (self.srv, f"srv{p}")):
                self.run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
                         "burst", str(tbf_burst(rate)), "latency", "100ms")
        if not cfg.loss:
            return
        if shutil.which("nft") is None:
            raise LabError("--loss needs nftables (nft) installed")
        rules_in, rules_out = [], []
        for p, pct in sorted(cfg.loss.items()):
            thresh = round(pct * 100)  # per 10000
            # applied in the server namespace, SYNs exempt so subflow setup stays deterministic:
            # c2s drops happen after the client-side capture point (the capture shows the lost
            # segment and its retransmission); s2c drops before it (the capture shows a hole).
            cond = f'meta l4proto tcp tcp flags & syn == 0 numgen random mod 10000 < {thresh} drop'
            rules_in.append(f'iifname "srv{p}" {cond}')
            rules_out.append(f'oifname "srv{p}" {cond}')
        ruleset = ("table inet malab {\n"
                   "  chain pre { type filter hook prerouting priority -300; policy accept;\n    "
                   + "\n    ".join(rules_in) + "\n  }\n"
                   "  chain post { type filter hook postrouting priority 300; policy accept;\n    "
                   + "\n    ".join(rules_out) + "\n  }\n}\n")
        self.run("nft", "-f", "-", ns=self.srv, input_text=ruleset)

    # Overwritten bytes: 8 bytes from TCP header byte 100, always payload (a TCP header is at most 60
    # bytes long and only packets of more than CORRUPT_MIN_LEN bytes are counted).
    CORRUPT_OFFSET = 100
    CORRUPT_PATTERN = b"CORRUPT!"
    CORRUPT_MIN_LEN = 300

    def _corruption(self) -> None:
        """``--corrupt PATH=N``: a middlebox that rewrites payload bytes of one data packet.

        The nftables rule sits in the client namespace's postrouting hook, which runs before the
        TCP checksum is computed (TCP hands CHECKSUM_PARTIAL packets down and the TX checksum is
        off on the veths, so the kernel fills it in just before the packet leaves): the corrupted
        packet has a valid TCP checksum, the receiver accepts it and only the DSS checksum shows
        the damage. tcpdump (client namespace) records the packet as it leaves, corrupted.
        ``numgen inc`` counts only packets that passed the earlier conditions, so exactly the Nth
        data packet (retransmissions included) on the path is hit, once.
        """
        cfg = self.cfg
        if not cfg.corrupt:
            return
        if shutil.which("nft") is None:
            raise LabError("--corrupt needs nftables (nft) installed")
        pattern = int.from_bytes(self.CORRUPT_PATTERN, "big")
        rules = [f'oifname "cli{p}" meta l4proto tcp meta length > {self.CORRUPT_MIN_LEN} '
                 f"numgen inc mod 1000000000 {nth - 1} "
                 f"@th,{self.CORRUPT_OFFSET * 8},{8 * len(self.CORRUPT_PATTERN)} set {pattern:#x} counter"
                 for p, nth in sorted(cfg.corrupt.items())]
        ruleset = ("table inet macorrupt {\n"
                   "  chain post { type filter hook postrouting priority 300; policy accept;\n    "
                   + "\n    ".join(rules) + "\n  }\n}\n")
        self.run("nft", "-f", "-", ns=self.cli, input_text=ruleset)

    def corruption_report(self) -> dict[str, Any]:
        """How many packets the --corrupt rules rewrote (nft counters), per path."""
        out = self.run("nft", "-j", "list", "table", "inet", "macorrupt", ns=self.cli).stdout
        hits: dict[str, int] = {}
        for item in json.loads(out).get("nftables", []):
            rule = item.get("rule")
            if not rule:
                continue
            path = next((e["match"]["right"][3:] for e in rule["expr"]
                         if "match" in e and e["match"].get("left") == {"meta": {"key": "oifname"}}), "?")
            hits[path] = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
        return hits

    def mptcp_mib(self) -> dict[str, dict[str, int]]:
        """Non-zero MPTcpExt counters of both namespaces (the kernel's own count of MP_FAIL, resets...)."""
        result: dict[str, dict[str, int]] = {}
        for role, ns in (("client", self.cli), ("server", self.srv)):
            lines = self.run("cat", "/proc/net/netstat", ns=ns).stdout.splitlines()
            counters: dict[str, int] = {}
            for head, values in zip(lines[::2], lines[1::2], strict=False):
                names, nums = head.split(), values.split()
                if names and names[0] == "MPTcpExt:":
                    counters = {k: int(v) for k, v in zip(names[1:], nums[1:], strict=False) if int(v)}
            result[role] = counters
        return result

    # -- capture + traffic --------------------------------------------------------------------
    def _start_tcpdump(self, iface: str, out: Path) -> tuple[subprocess.Popen[bytes], bytearray]:
        """Start tcpdump in the client namespace and wait until it is really capturing."""
        cfg = self.cfg
        argv = ["tcpdump", "-i", iface, "-n", "-U", "-Z", "root", "-s", str(cfg.snaplen),
                "-B", str(cfg.buffer_kib), "-w", str(out)]
        if cfg.immediate:
            argv.append("--immediate-mode")
        if iface == "any" and cfg.link_type:
            argv += ["-y", cfg.link_type]
        if cfg.capture_filter:
            argv.append(cfg.capture_filter)
        proc = self.spawn(argv, self.cli, stdout=False)
        buf = bytearray()
        assert proc.stderr is not None
        if not _read_until(proc.stderr.fileno(), b"listening on", 15.0, buf):
            raise LabError(f"tcpdump on {iface} did not start: {buf.decode(errors='replace')}")
        return proc, buf

    @staticmethod
    def _stop_tcpdump(proc: subprocess.Popen[bytes], buf: bytearray) -> dict[str, Any]:
        """SIGINT (flushes the file) and parse tcpdump's closing statistics."""
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

    def traffic(self, pcap: Path) -> dict[str, Any]:
        """Run server + client with tcpdump around them; return both sides' reports."""
        cfg = self.cfg
        me = str(Path(__file__).resolve())
        server_ip = addr(1, SERVER_HOST, cfg.family)
        params = {"family": cfg.family, "port": cfg.port, "seed": cfg.seed, "connections": cfg.connections,
                  "c2s_bytes": cfg.c2s_bytes, "s2c_bytes": cfg.s2c_bytes, "timeout": cfg.timeout,
                  "expected_subflows": cfg.expected_subflows, "wait_subflows": cfg.wait_subflows,
                  "server": server_ip, "mptcp": not cfg.fallback, "settle": bool(cfg.link_down),
                  "announce_bulk": bool(cfg.link_down), "tfo": cfg.tfo, "tfo_method": cfg.tfo_method}
        if cfg.capture == "any":
            parts = [("any", pcap)]
        else:
            parts = [(f"cli{p}", pcap.with_name(f".{pcap.stem}.cli{p}.pcap")) for p in self.PATHS]
        dumps = [self._start_tcpdump(iface, out) for iface, out in parts]

        server = self.spawn([sys.executable, me, "_server", json.dumps(params)], self.srv)
        sbuf = bytearray()
        assert server.stdout is not None and server.stderr is not None
        if not _read_until(server.stdout.fileno(), b"READY", 15.0, sbuf):
            server.kill()
            _, err = server.communicate(timeout=5)
            raise LabError(f"server did not start: {err.decode(errors='replace')}")
        t0, start_epoch = time.monotonic(), time.time()
        client = self.spawn([sys.executable, me, "_client", json.dumps(params)], self.cli)
        traffic_done = threading.Event()
        link_log: list[dict[str, Any]] = []
        link_failures: list[BaseException] = []
        cbuf = bytearray()
        bulk_at: float | None = None
        links: threading.Thread | None = None
        if cfg.link_down:
            # the windows count from the moment the client starts its bulk data (connection up,
            # first 1000 bytes through, extra subflow established), not from process start-up
            assert client.stdout is not None
            if _read_until(client.stdout.fileno(), b"BULK\n", cfg.timeout, cbuf):
                t_bulk = time.monotonic()
                bulk_at = t_bulk - t0
                links = threading.Thread(target=self._link_schedule,
                                         args=(t_bulk, traffic_done, link_log, link_failures), daemon=True)
                links.start()
        try:
            c_out, c_err = client.communicate(timeout=cfg.timeout * 3)
            c_out = bytes(cbuf) + c_out
            if client.returncode != 0:
                server.kill()  # it would only sit in accept() until its timeout
            s_out, s_err = server.communicate(timeout=cfg.timeout)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"traffic timed out: {exc}") from exc
        finally:
            traffic_done.set()
        elapsed = time.monotonic() - t0
        drained = None
        if links is not None:
            links.join()  # at the latest at the end of the last window: every path is up again
            if link_failures:
                raise LabError(f"--link-down failed: {link_failures[0]}")
            # a subflow that was down finishes (data, FIN) only at its next RTO after recovery
            drained = self._drain(min(cfg.timeout, 20.0))
        # let the last FIN/ACKs reach the capture (without immediate mode, TPACKET_V3 hands packets
        # over in blocks with a ~1 s timeout, and SIGINT discards a block not yet handed over)
        time.sleep(0.3 if cfg.immediate else 2.0)
        stats = [self._stop_tcpdump(p, b) for p, b in dumps]
        if cfg.capture == "eth":
            merge_pcaps(pcap, [out for _, out in parts])
            for _, out in parts:
                out.unlink(missing_ok=True)
        try:
            c_rep = json.loads(c_out.decode().strip().splitlines()[-1])
            s_rep = json.loads((bytes(sbuf) + s_out).decode().strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError) as exc:
            raise LabError(f"bad report: client={c_out[-2000:]!r} {c_err[-2000:]!r} "
                           f"server={s_out[-2000:]!r} {s_err[-2000:]!r}") from exc
        if c_rep["errors"] or s_rep["errors"] or client.returncode or server.returncode:
            raise LabError(f"traffic failed: client={c_rep['errors']} {c_err.decode()[-2000:]} "
                           f"server={s_rep['errors']} {s_err.decode()[-2000:]}")
        tfo_counters = {side: tcp_ext_counters(self.run("cat", "/proc/net/netstat", ns=ns).stdout, TFO_COUNTERS)
                        for side, ns in (("client", self.cli), ("server", self.srv))} if cfg.tfo else None
        return {"client": c_rep["connections"], "server": s_rep["connections"], "tcpdump": stats,
                "tfo_counters": tfo_counters,
                "interfaces": [iface for iface, _ in parts], "elapsed_s": round(elapsed, 3),
                "start_epoch": round(start_epoch, 6), "link_events": link_log, "drained": drained,
                "bulk_start_s": None if bulk_at is None else round(bulk_at, 4)}


def _connection_record(cfg: LabConfig, cli: dict[str, Any], srv: dict[str, Any]) -> dict[str, Any]:
    """Sidecar entry for one connection; cross-checks what each side sent vs received.

    With --corrupt and checksums on a single subflow the receiver falls back (MP_FAIL, infinite
    mapping) and its application gets the rewritten bytes: the same length, other bytes. Then ``c2s``
    records what the server received (what the capture shows) and ``c2s_sent`` what the client sent.
    """
    corrupted = (bool(cfg.corrupt) and cfg.checksum and cli["sent"] != srv["received"]
                 and cli["sent"]["bytes"] == srv["received"]["bytes"])
    if (cli["sent"] != srv["received"] and not corrupted) or srv["sent"] != cli["received"]:
        raise LabError(f"data mismatch on {cli['client']}: client={cli['sent']}/{cli['received']} "
                       f"server={srv['received']}/{srv['sent']}")
    want_c2s = expected_sha256(c2s_seed(cfg.seed, cli["index"]), cfg.c2s_bytes)
    if cli["sent"]["sha256"] != want_c2s:
        raise LabError("client data does not match its seed")
    c_acked, c_end, s_acked = cli["kernel_after_acked"], cli["kernel_at_end"], srv["kernel_after_acked"]
    mptcp = bool(c_acked["mptcp"]) and bool(s_acked["mptcp"])
    subflows_seen = max(1, connected_subflows(c_acked["subflows"]), connected_subflows(c_end["subflows"]))
    server_seen = max(1, connected_subflows(s_acked["subflows"]))
    rec: dict[str, Any] = {
        "client": cli["client"], "server": cli["server"], "mptcp": mptcp,
        "subflows": subflows_seen if mptcp else 1,
        "subflows_expected": cfg.expected_subflows,
        "subflows_server_view": server_seen if mptcp else 1,
        "c2s": srv["received"], "s2c": srv["sent"],
        "c2s_seed": c2s_seed(cfg.seed, cli["index"]), "s2c_seed": s2c_seed(cfg.seed, srv["received"]["sha256"]),
    }
    if corrupted:
        rec["c2s_sent"] = cli["sent"]
    if "tfo" in cli:
        # TCPI_OPT_SYN_DATA of the initial subflow: the client's SYN data was acked (client view),
        # SYN data was accepted from the SYN (server view)
        first = [(c_acked["subflows"] or [{}])[0], (s_acked["subflows"] or [{}])[0]]
        rec["tfo"] = dict(cli["tfo"], client_syn_data_acked=bool(int(first[0].get("options") or 0)
                                                                 & TCPI_OPT_SYN_DATA),
                          server_syn_data=bool(int(first[1].get("options") or 0) & TCPI_OPT_SYN_DATA))
    if mptcp:
        rec["kernel"] = {
            "source": "getsockopt(SOL_MPTCP, MPTCP_INFO / MPTCP_SUBFLOW_ADDRS / MPTCP_TCPINFO); "
                      "after_acked = own data all data-acked, before shutdown(SHUT_WR), every subflow "
                      "still up; at_end = client after reading EOF, before close (subflows may be "
                      "closed already, counters final)",
            "checksum": bool(c_acked["info"]["csum_enabled"]),
            # write_seq is the next DSN to send; all data acked and no DATA_FIN yet at after_acked
            "c2s_first_dsn": (c_acked["info"]["write_seq"] - cli["sent"]["bytes"]) % (1 << 64),
            "s2c_first_dsn": (s_acked["info"]["write_seq"] - srv["sent"]["bytes"]) % (1 << 64),
            "client": {"token": c_acked["info"]["token"],
                       "after_acked": {k: c_acked[k] for k in ("info", "subflows")},
                       "at_end": {k: c_end[k] for k in ("info", "subflows")}},
            "server": {"token": s_acked["info"]["token"],
                       "after_acked": {k: s_acked[k] for k in ("info", "subflows")}},
        }
    return rec


def _pair(cfg: LabConfig, clients: list[dict[str, Any]],
          servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Match client and server reports by the initial subflow's client endpoint."""
    by_peer = {s["client"]: s for s in servers}
    out = []
    for cli in sorted(clients, key=lambda c: c["index"]):
        srv = by_peer.get(cli["client"])
        if srv is None:
            raise LabError(f"server never saw connection from {cli['client']}")
        out.append(_connection_record(cfg, cli, srv))
    return out


def check_link_down(windows: Sequence[tuple[int, float, float]]) -> None:
    """Reject --link-down windows that are malformed or overlap on one path."""
    by_path: dict[int, list[tuple[float, float]]] = {}
    for path, start, end in windows:
        if path not in Lab.PATHS or not 0 <= start < end:
            raise LabError(f"bad --link-down window {path}={start}:{end} (need PATH 1 or 2, 0 <= START < END)")
        by_path.setdefault(path, []).append((start, end))
    for path, spans in by_path.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            if start <= end:
                raise LabError(f"--link-down windows on path {path} overlap")


def run_lab(cfg: LabConfig) -> dict[str, Any]:
    """Build the lab, capture one trace, write ``<name>.pcap`` + ``<name>.json``; return the sidecar."""
    preflight()
    if cfg.family not in (4, 6):
        raise LabError("family must be 4 or 6")
    if not 0 < cfg.port < 65536 or cfg.connections < 1 or cfg.c2s_bytes < 1 or cfg.s2c_bytes < 1:
        raise LabError("port must be 1..65535; connections, c2s_bytes and s2c_bytes at least 1")
    for rate in cfg.rate.values():
        rate_bps(rate)
    check_link_down(cfg.link_down)
    for path, nth in cfg.corrupt.items():
        if path not in Lab.PATHS or nth < 1:
            raise LabError(f"bad --corrupt {path}={nth} (need PATH 1 or 2, N >= 1)")
    if cfg.link_down and cfg.link_down_method == "nft" and shutil.which("nft") is None:
        raise LabError("--link-down-method nft needs nftables (nft) installed")
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pcap = out_dir / f"{cfg.name}.pcap"
    pcap.unlink(missing_ok=True)
    with Lab(cfg) as lab:
        lab.build()
        rep = lab.traffic(pcap)
        notes = lab.notes
        if cfg.corrupt:
            notes["corrupt_hits"] = lab.corruption_report()
            notes["mib"] = lab.mptcp_mib()
        namespaces = {"client": lab.cli, "server": lab.srv}
    connections = _pair(cfg, rep["client"], rep["server"])
    if cfg.strict:
        dropped = sum(int(t.get("dropped") or 0) for t in rep["tcpdump"])
        if dropped:
            # seen with 8 concurrent connections on unshaped veths: a burst overflows tcpdump's
            # ring (in immediate mode its slots are presumably sized for the full snaplen)
            raise LabError(f"{cfg.name}: tcpdump dropped {dropped} packets, the capture is incomplete: "
                           "pace the paths with --rate or raise --buffer-kib")
        for event in rep["link_events"]:
            if event["state"] == "down" and event["at_s"] + rep["bulk_start_s"] >= rep["elapsed_s"]:
                raise LabError(f"{cfg.name}: path {event['path']} went down at {event['at_s']} s, after the "
                               f"traffic ended ({rep['elapsed_s']} s): start earlier or lower --rate")
        if len([e for e in rep["link_events"] if e["state"] == "down"]) != len(cfg.link_down):
            raise LabError(f"{cfg.name}: the traffic ended before every --link-down window began")
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
                raise LabError(f"{cfg.name}: kernel reports {c['subflows']} subflows, "
                               f"expected {cfg.expected_subflows}")
        for path in cfg.corrupt:
            hits = notes["corrupt_hits"].get(str(path), 0)
            if hits != 1:
                raise LabError(f"{cfg.name}: --corrupt on path {path} rewrote {hits} packets, expected 1 "
                               "(too few data packets on the path?)")
    stats = pcap_stats(pcap)
    lab_command = shlex.join(["python3", str(_rel(Path(__file__))), *cfg.cli_args()])
    sidecar: dict[str, Any] = {
        "name": cfg.name,
        "description": cfg.description,
        "command": cfg.command or lab_command,
        "lab_command": lab_command,
        "kernel": os.uname().release,
        "link_type": stats["link_type"],
        "connections": connections,
        "capture": {
            "snaplen": cfg.snaplen, "interfaces": rep["interfaces"], "namespace": "client",
            "filter": cfg.capture_filter, "packets": stats["packets"], "file_bytes": stats["file_bytes"],
            "linktype_number": stats["linktype_number"], "tcpdump": rep["tcpdump"],
            "offloads": notes.get("offloads", {}),
            "offloads_state": cfg.offloads,
        },
        "lab": {
            "mode": cfg.mode, "family": cfg.family, "fallback": cfg.fallback, "checksum": cfg.checksum,
            "connections": cfg.connections, "seed": cfg.seed, "port": cfg.port, "offloads": cfg.offloads,
            "paths": {str(p): {"client": [addr(p, CLIENT_HOST, 4), addr(p, CLIENT_HOST, 6)],
                               "server": [addr(p, SERVER_HOST, 4), addr(p, SERVER_HOST, 6)],
                               "client_dev": f"cli{p}", "server_dev": f"srv{p}",
                               "rate": cfg.rate.get(p), "loss_pct": cfg.loss.get(p),
                               "link_down": [[s, e] for q, s, e in cfg.link_down if q == p]} for p in Lab.PATHS},
            "pm": notes.get("pm", {}), "namespaces": namespaces,
            "traffic_seconds": rep["elapsed_s"],
            "traffic_start_epoch": rep["start_epoch"],
            "data": "random.Random(seed).randbytes in 1 MiB pieces; c2s seed per connection, "
                    "s2c seed derived from the SHA-256 the server received",
        },
    }
    if cfg.tfo:
        sidecar["lab"]["tfo"] = {
            "sysctl": f"net.ipv4.tcp_fastopen={TFO_SYSCTL} in both namespaces",
            "method": cfg.tfo_method,
            "how": "server: setsockopt(IPPROTO_TCP, TCP_FASTOPEN, 16) on the MPTCP listener; client: "
                   + ("sendto(first 1000 bytes, MSG_FASTOPEN)" if cfg.tfo_method == "sendto" else
                      "setsockopt(IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1), connect(), then send()")
                   + " on each IPPROTO_MPTCP socket. Connection 0 (the cookie connection) runs alone "
                   "first: its SYN asks for a cookie; the others carry data in their SYN",
            "counters": rep["tfo_counters"],
        }
    if cfg.link_down:
        sidecar["lab"]["link_down"] = {
            "method": cfg.link_down_method,
            "how": ("ip link set dev cli<P>/srv<P> down, later up (+ client source route re-added)"
                    if cfg.link_down_method == "link" else
                    "nftables table in the server namespace dropping everything in and out of srv<P>"),
            "times": "at_s = seconds after the client started its bulk data (bulk_start_s after the "
                     "client program was started), epoch = wall clock (comparable with capture "
                     "timestamps)",
            "bulk_start_s": rep["bulk_start_s"],
            "events": rep["link_events"],
            "sockets_drained": rep["drained"],
        }
    if cfg.corrupt:
        sidecar["lab"]["corrupt"] = {
            "paths": {str(p): n for p, n in sorted(cfg.corrupt.items())},
            "how": (f"nftables rule in the client namespace's postrouting hook (before the TCP checksum is "
                    f"computed, so it stays valid): the Nth client-to-server packet longer than "
                    f"{Lab.CORRUPT_MIN_LEN} bytes on cli<P> gets the 8 bytes at TCP header offset "
                    f"{Lab.CORRUPT_OFFSET} overwritten with {Lab.CORRUPT_PATTERN.decode()!r}; the capture "
                    "shows the corrupted copy"),
            "pattern": Lab.CORRUPT_PATTERN.decode(),
            "tcp_offset": Lab.CORRUPT_OFFSET,
            "hits": notes["corrupt_hits"],
            "mib": notes["mib"],
        }
    (out_dir / f"{cfg.name}.json").write_text(json.dumps(sidecar, indent=2, sort_keys=False) + "\n")
    return sidecar


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _link_windows(items: Sequence[str]) -> list[tuple[int, float, float]]:
    """Parse repeated ``PATH=START:END`` options (seconds after the client starts its bulk data)."""
    out: list[tuple[int, float, float]] = []
    for item in items:
        path, _, span = item.partition("=")
        start, sep, end = span.partition(":")
        try:
            window = (int(path), float(start), float(end))
        except ValueError:
            window = None
        if window is None or not sep or path not in ("1", "2"):
            raise argparse.ArgumentTypeError(f"expected PATH=START:END with PATH 1 or 2, got {item!r}")
        out.append(window)
    return out


def _kv(items: Sequence[str], conv: type) -> dict[int, Any]:
    """Parse repeated ``PATH=VALUE`` options."""
    out: dict[int, Any] = {}
    for item in items:
        path, _, value = item.partition("=")
        if path not in ("1", "2") or not value:
            raise argparse.ArgumentTypeError(f"expected PATH=VALUE with PATH 1 or 2, got {item!r}")
        out[int(path)] = conv(value)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The public CLI."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--name", required=True, help="output base name (<name>.pcap / <name>.json)")
    p.add_argument("--out-dir", type=Path, default=Path("."), help="where to write the files")
    p.add_argument("--description", default="")
    p.add_argument("--family", type=int, choices=(4, 6), default=4)
    p.add_argument("--mode", choices=("single", "subflow", "signal"), default="subflow",
                   help="single: no extra subflow; subflow: client endpoint on path 2; "
                        "signal: server announces path 2 (ADD_ADDR) and the client joins")
    p.add_argument("--fallback", action="store_true", help="server is a plain TCP listener")
    p.add_argument("--checksum", action="store_true", help="net.mptcp.checksum_enabled=1 on both")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--c2s-bytes", type=int, default=30_000)
    p.add_argument("--s2c-bytes", type=int, default=70_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--snaplen", type=int, default=262144)
    p.add_argument("--capture", choices=("any", "eth"), default="any",
                   help="any: one tcpdump on -i any (cooked); eth: one per veth, merged (Ethernet)")
    p.add_argument("--link-type", help="tcpdump -y for -i any, e.g. LINUX_SLL or LINUX_SLL2")
    p.add_argument("--rate", action="append", default=[], metavar="PATH=RATE", help="tbf, e.g. 2=20mbit")
    p.add_argument("--loss", action="append", default=[], metavar="PATH=PCT", help="nft random loss")
    p.add_argument("--link-down", action="append", default=[], metavar="PATH=START:END",
                   help="path failure: take the path down START seconds after the client starts its bulk "
                        "data and back up at END (the kernel reinjects on the other subflow); repeatable. "
                        "Pace the transfer with --rate so the failure falls mid-transfer")
    p.add_argument("--link-down-method", choices=("link", "nft"), default="link",
                   help="link: ip link set down/up on both veths (sends fail locally, nothing of the "
                        "path is captured meanwhile); nft: the path stays up but the server namespace "
                        "drops all its packets (client retransmissions stay visible)")
    p.add_argument("--corrupt", action="append", default=[], metavar="PATH=N",
                   help="middlebox corruption: overwrite 8 payload bytes of the client's Nth data packet on "
                        "PATH (TCP checksum kept valid; with --checksum the DSS checksum fails: MP_FAIL)")
    p.add_argument("--tfo", action="store_true",
                   help="TCP Fast Open: net.ipv4.tcp_fastopen=3 in both namespaces, one cookie connection "
                        "first, then --connections connections whose first data rides in the SYN")
    p.add_argument("--tfo-method", choices=("sendto", "connect"), default="sendto",
                   help="sendto: sendto(MSG_FASTOPEN); connect: TCP_FASTOPEN_CONNECT, connect(), send()")
    p.add_argument("--filter", default="", help="tcpdump capture filter")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--no-wait-subflows", action="store_true",
                   help="do not hold the bulk data until the extra subflow is up")
    p.add_argument("--buffer-kib", type=int, default=16384, help="tcpdump -B")
    p.add_argument("--no-immediate", action="store_true",
                   help="no tcpdump --immediate-mode (cheaper for big captures)")
    p.add_argument("--timeout", type=float, default=60.0, help="per socket operation, seconds")
    p.add_argument("--no-strict", action="store_true", help="do not fail on subflow-count mismatch")
    p.add_argument("--offloads", choices=("off", "on"), default="off",
                   help="off (default): TSO/GSO/GRO/TX-csum off, wire-sized segments; on: the veth defaults, "
                        "the capture sees super-segments above the MSS")
    return p


def config_from_args(ns: argparse.Namespace) -> LabConfig:
    """LabConfig from parsed CLI arguments."""
    return LabConfig(
        name=ns.name, out_dir=ns.out_dir, description=ns.description, family=ns.family, mode=ns.mode,
        fallback=ns.fallback, checksum=ns.checksum, connections=ns.connections, c2s_bytes=ns.c2s_bytes,
        s2c_bytes=ns.s2c_bytes, seed=ns.seed, snaplen=ns.snaplen, capture=ns.capture,
        link_type=ns.link_type, rate=_kv(ns.rate, str), loss=_kv(ns.loss, float),
        link_down=_link_windows(ns.link_down), link_down_method=ns.link_down_method,
        corrupt=_kv(ns.corrupt, int),
        capture_filter=ns.filter, port=ns.port, wait_subflows=not ns.no_wait_subflows,
        buffer_kib=ns.buffer_kib, immediate=not ns.no_immediate, timeout=ns.timeout, strict=not ns.no_strict,
        offloads=ns.offloads, tfo=ns.tfo, tfo_method=ns.tfo_method)


def _install_signal_handlers() -> None:
    """Turn SIGTERM/SIGHUP into SystemExit so ``finally`` blocks tear the lab down."""
    def bail(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, bail)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (also dispatches the in-namespace helper programs)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "_server":
        return _server_main(json.loads(args[1]))
    if args and args[0] == "_client":
        return _client_main(json.loads(args[1]))
    if args and args[0] == "_offload":
        return _offload_main(args[1:])
    parser = build_parser()
    ns = parser.parse_args(args)
    try:
        cfg = config_from_args(ns)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    _install_signal_handlers()
    try:
        sidecar = run_lab(cfg)
    except LabError as exc:
        print(f"mptcp_lab: error: {exc}", file=sys.stderr)
        return 2
    summary = {k: sidecar[k] for k in ("name", "link_type")}
    summary["packets"] = sidecar["capture"]["packets"]
    summary["subflows"] = [c["subflows"] for c in sidecar["connections"]]
    print(json.dumps(summary))
    return 0


__all__ = ["DataStream", "Lab", "LabConfig", "LabError", "c2s_seed", "expected_sha256",
           "kernel_snapshot", "lab_unavailable_reason", "merge_pcaps", "pcap_stats", "preflight",
           "read_pcap", "run_lab", "s2c_seed"]

if __name__ == "__main__":
    sys.exit(main())
