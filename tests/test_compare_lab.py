"""`compare` on real kernel traffic captured at both ends at once, through a Linux router that NATs,
clamps the MSS and drops large client segments at random (nftables in a namespace of its own).

Ground truth: nftables' drop counter (only client data segments are dropped, so every drop happens
before the server has read the whole stream, i.e. while both captures run), the SNAT address and port
range, and the clamped MSS. Needs root, ip, tcpdump, nft, ethtool and net.mptcp.enabled=1; skipped with
the reason otherwise. About 3 s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.router_lab import CLIENT, PUBLIC, Router, skip_reason, transfer

from analyzer.compare import compare
from analyzer.compare.json_out import comparison_to_json

CLAMP = 1200
RULES = f"""table ip ma {{
  chain passing {{
    type filter hook forward priority 0; policy accept;
    tcp flags syn tcp option maxseg size set {CLAMP}
    ip saddr {CLIENT} meta length > 500 numgen random mod 25 == 0 counter drop
  }}
  chain translate {{
    type nat hook postrouting priority 100; policy accept;
    oifname "rs" ip saddr {CLIENT} meta l4proto tcp snat to {PUBLIC}:40000-40100
  }}
}}
"""

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")


@pytest.fixture
def router() -> Iterator[Router]:
    lab = Router()
    try:
        lab.build(RULES)
        yield lab
    finally:
        lab.cleanup()


def _subflow(report: dict[str, Any]) -> dict[str, Any]:
    (conn,) = report["connections"]
    assert conn["match"] == "keys"  # MP_CAPABLE keys survive the NAT
    (sf,) = conn["subflows"]
    return sf  # type: ignore[no-any-return]


def test_kernel_traffic_through_a_nat_router(router: Router, tmp_path: Path) -> None:
    client, server = transfer(router, tmp_path)
    drops = router.counter("ma", "passing", "drop")
    report = comparison_to_json(compare(str(client), str(server)))
    sf = _subflow(report)
    assert sf["a_to_b_is"] == "c2s"
    assert drops > 0 and sf["a_to_b"]["lost"] == drops  # exactly the router's drops
    assert sf["b_to_a"]["lost"] == 0 and sf["a_to_b"]["unmatched_downstream"] == 0
    assert abs(report["clock_offset_s"]) < 0.005  # one host, one clock
    effects = {m["effect"]: m for m in sf["middlebox"]}
    nat = effects.pop("address_rewritten")
    public = nat["detail"].split("↔ ")[1]
    assert public.startswith(f"{PUBLIC}:") and 40000 <= int(public.rsplit(":", 1)[1]) <= 40100
    assert nat["frames_a"] == [1] and nat["frames_b"] == [1]  # the SYN on both sides
    clamped = [m for name, m in effects.items() if name == "mss_altered"]
    assert clamped and f"became {CLAMP}" in clamped[0]["detail"]
    assert set(effects) == {"mss_altered"}  # nothing else was done to the packets
