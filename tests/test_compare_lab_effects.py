"""`compare` names what a Linux router did to kernel MPTCP traffic: payload mangled, an MPTCP option stripped.

The router is a namespace with nftables (tests/helpers/router_lab.py), both ends captured at once.
Ground truth is the ruleset's own counter: exactly the packets the rule rewrote. Payload mangling
works on the forward path because the client's veth leaves the TCP checksum to "hardware"
(CHECKSUM_PARTIAL travels with the packet through the router), so the server's kernel accepts the
changed bytes and only MPTCP's DSS checksum (switched on in the client's namespace) sees them.
Needs root, ip, tcpdump, nft (``reset tcp option`` for the stripping test), ethtool and MPTCP;
skipped with the reason otherwise. A few seconds each.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.router_lab import CLIENT, Router, skip_reason, transfer

from analyzer.compare import compare
from analyzer.compare.json_out import comparison_to_json
from analyzer.pipeline import AnalysisOptions, analyze

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")

PATTERN = int.from_bytes(b"MANGLED!", "big")
NTH = 40  # the client's 40th large packet through the router is mangled (well inside the 400 kB transfer)
MANGLE = f"""table ip ma {{
  chain passing {{
    type filter hook forward priority 0; policy accept;
    ip saddr {CLIENT} meta length > 500 numgen inc mod 1000000000 {NTH - 1} @th,800,64 set {PATTERN:#x} counter
  }}
}}
"""
STRIP = f"""table ip ma {{
  chain passing {{
    type filter hook forward priority 0; policy accept;
    ip saddr {CLIENT} tcp flags syn reset tcp option mptcp counter
  }}
}}
"""


def _nft_can_reset_options() -> bool:
    """``reset tcp option`` exists from nftables 1.0.1 (and needs a kernel that has the expression)."""
    ns = f"ma-nftprobe-{id(MANGLE) & 0xFFFF}"
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
        probe = STRIP.replace("table ip ma", "table ip probe")
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"], input=probe, text=True, capture_output=True, timeout=10
        )  # fmt: skip
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10, check=False)


@pytest.fixture
def lab() -> Iterator[Router]:
    router = Router()
    try:
        yield router
    finally:
        router.cleanup()


def _effects(report: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for conn in report["connections"]:
        for sf in conn["subflows"]:
            for effect in sf["middlebox"]:
                out.setdefault(effect["effect"], []).append(effect)
    return out


def test_mangled_payload_explains_the_checksum_failure_and_mp_fail(lab: Router, tmp_path: Path) -> None:
    lab.build(MANGLE, client_sysctls=("net.mptcp.checksum_enabled=1",))
    client, server = transfer(lab, tmp_path, snaplen=0)  # whole payloads: a cut one matches by range alone
    assert lab.counter("ma", "passing", "set") == 1  # the rule rewrote exactly one packet
    report = comparison_to_json(compare(str(client), str(server)))
    effects = _effects(report)
    (modified,) = effects.pop("payload_modified")
    assert modified["count"] == 1
    (frame_b,) = modified["frames_b"]
    server_view = analyze(str(server), AnalysisOptions(check=False, stats=False))
    (failure,) = server_view.checksum_failures  # the server's kernel saw one bad mapping ...
    assert f"explains the DSS checksum failure of the mapping at frame {failure.frames[0]}" in modified["detail"]
    assert failure.frames[0] <= frame_b  # ... that began at or before the mangled packet
    assert "MP_FAIL at frame" in modified["detail"]
    assert set(effects) <= {"mss_altered"}  # nothing else differs (no NAT, no loss)
    (conn,) = report["connections"]
    assert all(sf[k]["lost"] == 0 for sf in conn["subflows"] for k in ("a_to_b", "b_to_a"))


@pytest.mark.skipif(not (skip_reason() is None and _nft_can_reset_options()), reason="nft cannot reset tcp options")
def test_stripped_mp_capable_explains_the_fallback(lab: Router, tmp_path: Path) -> None:
    lab.build(STRIP)
    client, server = transfer(lab, tmp_path)
    assert lab.counter("ma", "passing", "reset") == 1  # the client's one SYN
    report = comparison_to_json(compare(str(client), str(server)))
    (conn,) = report["connections"]
    assert conn["b"] is None  # the server saw plain TCP
    effects = _effects(report)
    (stripped,) = effects.pop("option_stripped")
    assert stripped["detail"] == "c2s MP_CAPABLE removed: explains the fallback to TCP"
    assert stripped["frames_a"] == [1] and stripped["frames_b"] == [1]  # the SYN on both sides
    assert not effects
