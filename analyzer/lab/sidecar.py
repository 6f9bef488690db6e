"""The sidecar JSON written beside each capture: the ground truth tests compare the analyzer with.

Format (scripts rely on it; fields are added, never renamed): ``connections[]`` with ``client``, ``server``,
``mptcp``, ``subflows``, ``c2s``/``s2c`` (``bytes``, ``sha256``) and the kernel's own view of the connection
(``kernel``), ``nstat`` (the namespaces' counter deltas over the run), ``capture`` and ``lab`` (how it was made).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from analyzer.lab.config import (
    CLIENT_HOST,
    PATHS,
    TCPI_OPT_SYN_DATA,
    TFO_SYSCTL,
    LabConfig,
    LabError,
    addr,
)
from analyzer.lab.data import c2s_seed, expected_sha256, s2c_seed
from analyzer.lab.kernel import connected_subflows
from analyzer.lab.middlebox import CORRUPT_MIN_LEN, CORRUPT_OFFSET, CORRUPT_PATTERN
from analyzer.lab.pcapfile import pcap_stats


def connection_record(cfg: LabConfig, cli: dict[str, Any], srv: dict[str, Any]) -> dict[str, Any]:
    """Sidecar entry for one connection; cross-checks what each side sent vs received.

    With --corrupt and checksums on a single subflow the receiver falls back (MP_FAIL, infinite
    mapping) and its application gets the rewritten bytes: the same length, other bytes. Then ``c2s``
    records what the server received (what the capture shows) and ``c2s_sent`` what the client sent.
    """
    corrupted = (bool(cfg.corrupt) and cfg.checksum and cli["sent"] != srv["received"]
                 and cli["sent"]["bytes"] == srv["received"]["bytes"])  # fmt: skip
    if (cli["sent"] != srv["received"] and not corrupted) or srv["sent"] != cli["received"]:
        raise LabError(f"data mismatch on {cli['client']}: client={cli['sent']}/{cli['received']} "
                       f"server={srv['received']}/{srv['sent']}")
    want_c2s = expected_sha256(c2s_seed(cfg.seed, cli["index"]), cfg.c2s_bytes)
    if cli["sent"]["sha256"] != want_c2s:
        raise LabError("client data does not match its seed")
    c_acked, c_end, s_acked = cli["kernel_after_acked"], cli["kernel_at_end"], srv["kernel_after_acked"]
    mptcp = bool(c_acked["mptcp"]) and bool(s_acked["mptcp"])
    # the most subflows seen at once: at the start of the bulk data (before a REMOVE_ADDR or a reset
    # closed one), when all data was acked, at the end
    subflows_seen = max(1, int(cli.get("subflows_after_wait") or 0), connected_subflows(c_acked["subflows"]),
                        connected_subflows(c_end["subflows"]))
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


def pair(cfg: LabConfig, clients: list[dict[str, Any]],
          servers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Match client and server reports by the initial subflow's client endpoint."""
    by_peer = {s["client"]: s for s in servers}
    out = []
    for cli in sorted(clients, key=lambda c: c["index"]):
        srv = by_peer.get(cli["client"])
        if srv is None:
            raise LabError(f"server never saw connection from {cli['client']}")
        out.append(connection_record(cfg, cli, srv))
    return out


def build_sidecar(cfg: LabConfig, pcap: Path, rep: dict[str, Any], notes: dict[str, Any],
                  namespaces: dict[str, str], connections: list[dict[str, Any]]) -> dict[str, Any]:
    """The whole sidecar of one run."""
    stats = pcap_stats(pcap)
    lab_command = cfg.command_line()
    sidecar: dict[str, Any] = {
        "name": cfg.name,
        "description": cfg.description,
        "command": cfg.command or lab_command,
        "lab_command": lab_command,
        "kernel": os.uname().release,
        "link_type": stats["link_type"],
        "connections": connections,
        "nstat": {"source": "/proc/net/netstat and /proc/net/snmp in each namespace, after minus before the "
                            "traffic; only counters that moved", **notes.get("nstat", {})},
        "capture": {
            "snaplen": cfg.snaplen, "interfaces": rep["interfaces"],
            "namespace": "router" if "router" in namespaces else "client",
            "filter": cfg.capture_filter, "packets": stats["packets"], "file_bytes": stats["file_bytes"],
            "linktype_number": stats["linktype_number"], "tcpdump": rep["tcpdump"],
            "offloads": notes.get("offloads", {}),
            "offloads_state": cfg.offloads,
        },
        "lab": {
            "mode": cfg.mode, "family": cfg.family, "fallback": cfg.fallback, "checksum": cfg.checksum,
            "connections": cfg.connections, "seed": cfg.seed, "port": cfg.port, "offloads": cfg.offloads,
            "topology": cfg.topology, "fullmesh": cfg.fullmesh, "signal_port": cfg.signal_port,
            "syncookies": cfg.syncookies, "receiver_pause_s": cfg.receiver_pause,
            "paths": {str(p): {"client": [addr(p, CLIENT_HOST, 4), addr(p, CLIENT_HOST, 6)],
                               "server": [cfg.server_addr(p, 4), cfg.server_addr(p, 6)],
                               "client_dev": f"cli{p}", "server_dev": f"srv{p}",
                               "rate": cfg.rate.get(p), "loss_pct": cfg.loss.get(p),
                               "link_down": [[s, e] for q, s, e in cfg.link_down if q == p]} for p in PATHS},
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
    if cfg.pm_events:
        sidecar["lab"]["pm_events"] = {
            "times": "at_s = seconds after the client started its bulk data", "bulk_start_s": rep["bulk_start_s"],
            "events": rep["pm_events"],
        }
    if cfg.syncookies:
        sidecar["lab"]["syncookies"] = {"sysctl": "net.ipv4.tcp_syncookies=2 in the server namespace: every SYN, "
                                                  "the initial subflow's and the joins', is answered with a cookie"}
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
                    f"{CORRUPT_MIN_LEN} bytes on cli<P> gets the 8 bytes at TCP header offset "
                    f"{CORRUPT_OFFSET} overwritten with {CORRUPT_PATTERN.decode()!r}; the capture "
                    "shows the corrupted copy"),
            "pattern": CORRUPT_PATTERN.decode(),
            "tcp_offset": CORRUPT_OFFSET,
            "hits": notes["corrupt_hits"],
            "mib": notes["mib"],
        }
    return sidecar

