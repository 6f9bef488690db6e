"""What the kernel says about an MPTCP socket (getsockopt) and about a namespace (netstat counters).

Runs inside the namespaces (the socket part) and on the host side (the counter parsing): stdlib only.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from analyzer.lab.config import (
    MPTCP_INFO,
    MPTCP_INFO_FLAG_FALLBACK,
    MPTCP_SUBFLOW_ADDRS,
    MPTCP_TCPINFO,
    SOL_MPTCP,
    fmt_endpoint,
)

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


def subflow_array(sock: socket.socket, opt: int, elem: int, max_sf: int = 16) -> list[bytes]:
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
        addrs = subflow_array(sock, MPTCP_SUBFLOW_ADDRS, 256)
        infos = subflow_array(sock, MPTCP_TCPINFO, 256)
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
        infos = subflow_array(sock, MPTCP_TCPINFO, 256)
    except OSError:
        return int(info.get("subflows_total") or info["subflows"] + 1)
    return sum(1 for ti in infos if ti and ti[0] not in TCP_NOT_CONNECTED)



def tcp_ext_counters(text: str, names: Sequence[str]) -> dict[str, int]:
    """Pick ``names`` out of /proc/net/netstat's TcpExt lines (header line, then values)."""
    table = netstat_counters(text).get("TcpExt", {})
    return {name: table[name] for name in names if name in table}


def netstat_counters(text: str) -> dict[str, dict[str, int]]:
    """Every counter of /proc/net/netstat or /proc/net/snmp: {"TcpExt": {...}, "MPTcpExt": {...}, ...}.

    Both files are pairs of lines, a header ``Group: name name ...`` and ``Group: value value ...``.
    """
    out: dict[str, dict[str, int]] = {}
    lines = [line.split() for line in text.splitlines() if line.strip()]
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if not head or head[0] != values[0] or not head[0].endswith(":"):
            continue
        group: dict[str, int] = {}
        for name, value in zip(head[1:], values[1:], strict=False):
            try:
                group[name] = int(value)
            except ValueError:
                continue
        out[head[0][:-1]] = group
    return out


def counter_deltas(before: Mapping[str, Mapping[str, int]],
                   after: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """after − before, only the counters that moved (an ``nstat`` of the run)."""
    out: dict[str, dict[str, int]] = {}
    for group, table in after.items():
        moved = {name: value - before.get(group, {}).get(name, 0) for name, value in table.items()}
        moved = {name: delta for name, delta in moved.items() if delta}
        if moved:
            out[group] = moved
    return out
