"""The programs the lab starts inside its namespaces: the MPTCP server, the client and the offload switch.

Run as ``python3 -m analyzer.lab.programs server|client|offload ARGS``. Each prints one JSON line
(its report) on stdout; the host side reads it. Stdlib only, so a namespace needs nothing installed.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from analyzer.lab.config import (
    FIRST_CHUNK,
    IPPROTO_MPTCP,
    MPTCP_TCPINFO,
    PAUSED_RCVBUF,
    SEND_CHUNK,
    TCP_FASTOPEN,
    TCP_FASTOPEN_CONNECT,
    fmt_endpoint,
)
from analyzer.lab.data import DataStream, c2s_seed, s2c_seed
from analyzer.lab.kernel import (
    TCP_NOT_CONNECTED,
    kernel_snapshot,
    kernel_subflow_count,
    mptcp_info,
    subflow_array,
)


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
    pause = float(params.get("receiver_pause") or 0.0)
    if pause:  # before listen(): the window scale of accepted connections follows the small buffer
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PAUSED_RCVBUF)
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
            if pause:  # leave the data unread: the client's window closes and it probes it
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, PAUSED_RCVBUF)
                time.sleep(pause)
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
            infos = subflow_array(sock, MPTCP_TCPINFO, 256)
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
            rec: dict[str, Any] = {
                "index": index, "client": fmt_endpoint(local[0], local[1]),
                "server": fmt_endpoint(peer[0], peer[1]),
                "sent": {"bytes": sent, "sha256": h.hexdigest()},
                "received": {"bytes": rx_n, "sha256": rx_sha},
                "subflows_after_wait": waited,
                "kernel_after_acked": snap_acked, "kernel_at_end": snap_end,
            }
            if tfo:
                rec["tfo"] = {"role": "cookie" if index == 0 else "data-in-syn", "sendto_copied": syn_copied}
            results[index] = rec
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



def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to one program: ``server JSON``, ``client JSON`` or ``offload [--on] DEV...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "server":
        return _server_main(json.loads(args[1]))
    if len(args) == 2 and args[0] == "client":
        return _client_main(json.loads(args[1]))
    if args and args[0] == "offload":
        return _offload_main(args[1:])
    print("usage: python3 -m analyzer.lab.programs server JSON | client JSON | offload [--on] DEV...",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
