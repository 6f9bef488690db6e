"""Checks for the bundled real-kernel samples and for the lab that makes them.

Why: the analyzer's tests trust samples/*.json as ground truth, so the sidecars must be complete
and the pcaps readable; and the lab itself must keep producing correct traces on a real kernel.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import dpkt
import pytest
from helpers.lab import load_lab

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
REQUIRED_SAMPLES = {"single-subflow", "two-subflows", "add-addr", "ipv6", "fallback", "checksum", "multi-conn"}
TOP_KEYS = {"name", "description", "command", "kernel", "link_type", "connections", "capture"}
CONN_KEYS = {"client", "server", "mptcp", "subflows", "c2s", "s2c"}
LINKTYPES = {"EN10MB": 1, "LINUX_SLL": 113, "LINUX_SLL2": 276}
MPTCP_KIND = 30


def _load_lab() -> ModuleType:
    return load_lab()


def _packets(pcap: Path) -> Iterator[tuple[int, bytes]]:
    """(datalink, frame) for every record, read with dpkt."""
    with pcap.open("rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        dl = reader.datalink()
        for _ts, buf in reader:
            yield dl, buf


def _tcp(dl: int, buf: bytes) -> tuple[Any, dpkt.tcp.TCP] | None:
    """The IP layer and TCP segment of a frame, or None for anything else."""
    if dl == LINKTYPES["LINUX_SLL2"]:
        frame: Any = dpkt.sll2.SLL2(buf)
    elif dl == LINKTYPES["LINUX_SLL"]:
        frame = dpkt.sll.SLL(buf)
    elif dl == LINKTYPES["EN10MB"]:
        frame = dpkt.ethernet.Ethernet(buf)
    else:
        raise AssertionError(f"unexpected datalink {dl}")
    ip = frame.data
    if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(ip.data, dpkt.tcp.TCP):
        return ip, ip.data
    return None


def _addr(ip: Any, raw: bytes) -> str:
    fam = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
    return socket.inet_ntop(fam, raw)


def _mptcp_syn_tuples(pcap: Path) -> set[tuple[str, int, str, int]]:
    """4-tuples of SYNs (without ACK) that carry a TCP option of kind 30 (MPTCP)."""
    out = set()
    for dl, buf in _packets(pcap):
        got = _tcp(dl, buf)
        if got is None:
            continue
        ip, tcp = got
        if not tcp.flags & dpkt.tcp.TH_SYN or tcp.flags & dpkt.tcp.TH_ACK:
            continue
        if any(kind == MPTCP_KIND for kind, _ in dpkt.tcp.parse_opts(tcp.opts)):
            out.add((_addr(ip, ip.src), tcp.sport, _addr(ip, ip.dst), tcp.dport))
    return out


def _payload_from(pcap: Path, client_ips: set[str]) -> tuple[int, int]:
    """TCP payload bytes client→server and server→client (retransmissions included)."""
    up = down = 0
    for dl, buf in _packets(pcap):
        got = _tcp(dl, buf)
        if got is None:
            continue
        ip, tcp = got
        if _addr(ip, ip.src) in client_ips:
            up += len(tcp.data)
        else:
            down += len(tcp.data)
    return up, down


SIDECARS = sorted(SAMPLES.glob("*.json"))


def test_required_samples_present() -> None:
    names = {p.stem for p in SIDECARS}
    assert names >= REQUIRED_SAMPLES, f"missing samples: {REQUIRED_SAMPLES - names}"


@pytest.mark.parametrize("sidecar", SIDECARS, ids=[p.stem for p in SIDECARS])
def test_sidecar_complete_and_pcap_readable(sidecar: Path) -> None:
    meta = json.loads(sidecar.read_text())
    assert meta.keys() >= TOP_KEYS, TOP_KEYS - meta.keys()
    assert meta["name"] == sidecar.stem
    assert meta["connections"], "sidecar lists no connection"
    for conn in meta["connections"]:
        assert conn.keys() >= CONN_KEYS, CONN_KEYS - conn.keys()
        assert isinstance(conn["mptcp"], bool)
        assert conn["subflows"] >= 1
        for direction in ("c2s", "s2c"):
            assert conn[direction]["bytes"] > 0
            assert len(conn[direction]["sha256"]) == 64
            int(conn[direction]["sha256"], 16)
    assert {"snaplen", "interfaces"} <= meta["capture"].keys()
    pcap = sidecar.with_suffix(".pcap")
    assert pcap.exists(), f"{pcap.name} missing"
    frames = list(_packets(pcap))
    assert frames, "empty capture"
    assert frames[0][0] == LINKTYPES[meta["link_type"]]
    assert len(frames) == meta["capture"]["packets"]
    # every TCP frame must decode (full snaplen: nothing truncated in the samples)
    assert sum(1 for dl, buf in frames if _tcp(dl, buf) is not None) > 10
    # each MPTCP connection shows one MP_CAPABLE/MP_JOIN SYN per kernel-reported subflow
    expected_syns = sum(c["subflows"] for c in meta["connections"] if c["mptcp"])
    expected_syns += sum(1 for c in meta["connections"] if not c["mptcp"])  # fallback: MPC SYN only
    # lab --corrupt: subflows the server reset after MP_FAIL are gone from the kernel's list
    expected_syns += int(meta["lab"].get("corrupt", {}).get("mib", {}).get("server", {}).get("MPRstTx", 0))
    assert len(_mptcp_syn_tuples(pcap)) == expected_syns


def _netns_skip_reason() -> str | None:
    try:
        lab = _load_lab()
    except Exception as exc:  # pragma: no cover - import problems are reported as skip reason
        return f"cannot import analyzer.lab: {exc}"
    reason: str | None = lab.lab_unavailable_reason()
    return reason


@pytest.mark.netns
def test_fresh_two_subflow_trace(tmp_path: Path) -> None:
    reason = _netns_skip_reason()
    if reason:
        pytest.skip(f"netns lab unavailable: {reason}")
    lab = _load_lab()
    cfg = lab.LabConfig(
        name="fresh",
        out_dir=tmp_path,
        mode="subflow",
        c2s_bytes=70_000,
        s2c_bytes=30_000,
        seed=4242,
        rate={1: "50mbit", 2: "50mbit"},
        timeout=20.0,
    )
    meta = lab.run_lab(cfg)

    assert json.loads((tmp_path / "fresh.json").read_text()) == meta
    (conn,) = meta["connections"]
    assert conn["mptcp"] is True
    assert conn["subflows"] == 2  # as reported by the kernel (MPTCP_SUBFLOW_ADDRS/TCPINFO)
    # what the two programs actually sent, re-derived independently from the seeds
    want_c2s = lab.expected_sha256(lab.c2s_seed(4242, 0), 70_000)
    want_s2c = lab.expected_sha256(lab.s2c_seed(4242, want_c2s), 30_000)
    assert conn["c2s"] == {"bytes": 70_000, "sha256": want_c2s}
    assert conn["s2c"] == {"bytes": 30_000, "sha256": want_s2c}

    pcap = tmp_path / "fresh.pcap"
    syns = _mptcp_syn_tuples(pcap)
    assert len(syns) == 2, syns
    client_ips = {t[0] for t in syns}
    assert client_ips == {"10.210.1.1", "10.210.2.1"}
    up, down = _payload_from(pcap, client_ips)
    assert up >= 70_000 and down >= 30_000
    kernel_sfs = conn["kernel"]["client"]["after_acked"]["subflows"]
    kernel_tuples = {(sf["local"], sf["remote"]) for sf in kernel_sfs}
    pcap_tuples = {(f"{a}:{b}", f"{c}:{d}") for a, b, c, d in syns}
    assert kernel_tuples == pcap_tuples
