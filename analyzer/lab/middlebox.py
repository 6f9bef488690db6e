"""What the lab does to packets on a path: tbf shaping, nftables random loss, path failure, payload corruption.

Loss and failure rules live in the server namespace (c2s packets are lost after the client-side capture
point, s2c packets before it); corruption lives in the client namespace, before the TCP checksum is filled in.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

from analyzer.lab.config import LabError, tbf_burst
from analyzer.lab.kernel import netstat_counters
from analyzer.lab.netns import Lab


def set_path(lab: Lab, path: int, up: bool) -> None:
    """Fail ``path`` or bring it back (``--link-down-method nft``: see _path_blackhole).

    Down: both veths go down; the kernel drops the path's routes and qdisc backlog, and every send on its subflows
    fails locally (the client's table answers "unreachable", the server has no route), so
    nothing is sent on the path: the subflows' TCP retransmissions fail until the path is back,
    and the MPTCP retransmit timer reinjects the unacknowledged data on the other subflow.
    Up: links up, the client's source route is added again (connected routes come back by
    themselves; addresses are kept, for IPv6 through keep_addr_on_down).
    """
    if lab.cfg.link_down_method == "nft":
        path_blackhole(lab, path, up)
        return
    state = "up" if up else "down"
    lab.ip(lab.cli, "link", "set", "dev", f"cli{path}", state)
    lab.ip(lab.srv, "link", "set", "dev", f"srv{path}", state)
    if up:
        for fam in (4, 6):
            lab.path_route(path, fam)

def path_blackhole(lab: Lab, path: int, up: bool) -> None:
    """``--link-down-method nft``: the path stays up but the server namespace drops all of its
    traffic, both ways (client-to-server after the capture point: the capture shows the lost
    segments; server-to-client before it: the capture shows nothing)."""
    table = f"madown{path}"
    if up:
        lab.run("nft", "delete", "table", "inet", table, ns=lab.srv)
        return
    ruleset = (f"table inet {table} {{\n"
               "  chain pre { type filter hook prerouting priority -310; policy accept;\n"
               f'    iifname "srv{path}" drop; }}\n'
               "  chain post { type filter hook postrouting priority 310; policy accept;\n"
               f'    oifname "srv{path}" drop; }}\n'
               "}\n")
    lab.run("nft", "-f", "-", ns=lab.srv, input_text=ruleset)


def shaping(lab: Lab) -> None:
    """Optional tbf rate limit (both directions) and nftables random loss on a path."""
    cfg = lab.cfg
    if cfg.rate and shutil.which("tc") is None:
        raise LabError("--rate needs tc (iproute2) installed")
    for p, rate in sorted(cfg.rate.items()):
        far = (lab.rtr, f"rc{p}") if lab.rtr else (lab.srv, f"srv{p}")
        for ns, dev in ((lab.cli, f"cli{p}"), far):
            lab.run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate,
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
    lab.run("nft", "-f", "-", ns=lab.srv, input_text=ruleset)


# Overwritten bytes: 8 bytes from TCP header byte 100, always payload (a TCP header is at most 60
# bytes long and only packets of more than CORRUPT_MIN_LEN bytes are counted).
CORRUPT_OFFSET = 100
CORRUPT_PATTERN = b"CORRUPT!"
CORRUPT_MIN_LEN = 300


def corruption(lab: Lab) -> None:
    """``--corrupt PATH=N``: a middlebox that rewrites payload bytes of one data packet.

    The nftables rule sits in the client namespace's postrouting hook, which runs before the
    TCP checksum is computed (TCP hands CHECKSUM_PARTIAL packets down and the TX checksum is
    off on the veths, so the kernel fills it in just before the packet leaves): the corrupted
    packet has a valid TCP checksum, the receiver accepts it and only the DSS checksum shows
    the damage. tcpdump (client namespace) records the packet as it leaves, corrupted.
    ``numgen inc`` counts only packets that passed the earlier conditions, so exactly the Nth
    data packet (retransmissions included) on the path is hit, once.
    """
    cfg = lab.cfg
    if not cfg.corrupt:
        return
    if shutil.which("nft") is None:
        raise LabError("--corrupt needs nftables (nft) installed")
    pattern = int.from_bytes(CORRUPT_PATTERN, "big")
    rules = [f'oifname "cli{p}" meta l4proto tcp meta length > {CORRUPT_MIN_LEN} '
             f"numgen inc mod 1000000000 {nth - 1} "
             f"@th,{CORRUPT_OFFSET * 8},{8 * len(CORRUPT_PATTERN)} set {pattern:#x} counter"
             for p, nth in sorted(cfg.corrupt.items())]
    ruleset = ("table inet macorrupt {\n"
               "  chain post { type filter hook postrouting priority 300; policy accept;\n    "
               + "\n    ".join(rules) + "\n  }\n}\n")
    lab.run("nft", "-f", "-", ns=lab.cli, input_text=ruleset)

def corruption_report(lab: Lab) -> dict[str, Any]:
    """How many packets the --corrupt rules rewrote (nft counters), per path."""
    out = lab.run("nft", "-j", "list", "table", "inet", "macorrupt", ns=lab.cli).stdout
    hits: dict[str, int] = {}
    for item in json.loads(out).get("nftables", []):
        rule = item.get("rule")
        if not rule:
            continue
        path = next((e["match"]["right"][3:] for e in rule["expr"]
                     if "match" in e and e["match"].get("left") == {"meta": {"key": "oifname"}}), "?")
        hits[path] = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
    return hits

def mptcp_mib(lab: Lab) -> dict[str, dict[str, int]]:
    """Non-zero MPTcpExt counters of both ends (the kernel's own count of MP_FAIL, resets...)."""
    result: dict[str, dict[str, int]] = {}
    for role, ns in (("client", lab.cli), ("server", lab.srv)):
        counters = netstat_counters(lab.read_proc(ns, "/proc/net/netstat")).get("MPTcpExt", {})
        result[role] = {name: value for name, value in counters.items() if value}
    return result
