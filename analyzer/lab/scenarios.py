"""The named lab scenarios: each is a preset of LabConfig's low-level options.

Presets are small (tens to a few hundred kB, a few seconds) so that a test can run every one of them;
``mptcp-analyze lab NAME --c2s-bytes ...`` scales one up. Names are a contract (``mptcp-analyze lab --list``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from analyzer.lab.config import LabConfig, LabError

# Both paths are shaped in the multi-subflow scenarios and each direction sends more than 64 KiB: the
# default scheduler hands data to a subflow in bursts of up to 64 KiB and on unshaped veths keeps picking
# the initial subflow, while the point of these traces is DSS mappings on *both* subflows.
SHAPED = {1: "20mbit", 2: "20mbit"}
# Slow enough that an event 50 ms into the bulk data falls well inside the transfer.
PACED = {1: "4mbit", 2: "4mbit"}


@dataclass(frozen=True)
class Scenario:
    """A named preset: what it shows, and the LabConfig fields it sets."""

    name: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)


def _s(name: str, description: str, **options: Any) -> Scenario:
    return Scenario(name, description, options)


_ALL = [
    _s("single", "One MPTCP v1 connection, no extra endpoints: MP_CAPABLE handshake, MPC with data, DSS in "
       "both directions, DATA_FIN, one subflow.", mode="single", c2s_bytes=20_000, s2c_bytes=40_000),
    _s("two-paths", "Client 'subflow' endpoint on path 2: MP_JOIN from 10.210.2.1 to the server's initial "
       "address; data on both subflows (paths shaped to 20 Mbit/s).",
       mode="subflow", c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED),
    _s("add-addr", "Server 'signal' endpoint on path 2: ADD_ADDR (with HMAC) for 10.210.2.2, echo, then the "
       "client joins it. Per-interface Ethernet capture (EN10MB).",
       mode="signal", c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED, capture="eth"),
    _s("remove-addr", "Server 'signal' endpoint on path 2, joined by the client; 50 ms into the bulk data the "
       "server deletes the endpoint: REMOVE_ADDR, the join subflow closes, the rest goes over path 1.",
       mode="signal", c2s_bytes=150_000, s2c_bytes=100_000, rate=PACED, pm_events=[("remove", 0.05)]),
    _s("backup", "Two subflows; 50 ms into the bulk data the client's path-2 endpoint becomes backup "
       "(ip mptcp endpoint change ... backup): MP_PRIO with B=1 on the join subflow.",
       mode="subflow", c2s_bytes=150_000, s2c_bytes=100_000, rate=PACED, pm_events=[("backup", 0.05)]),
    _s("path-failure", "Two subflows, both paths paced to 1 Mbit/s; 50 ms into the client's bulk data path 2 "
       "fails (nftables drops everything on it, both ways, in the server namespace) and recovers 950 ms "
       "later; the kernel reinjects the unacknowledged data on the initial subflow.",
       mode="subflow", c2s_bytes=85_000, s2c_bytes=10_000, rate={1: "1mbit", 2: "1mbit"},
       link_down=[(2, 0.05, 1.0)], link_down_method="nft"),
    _s("lossy", "Two subflows with 3% random loss (nftables numgen, SYNs exempt) on both paths in both "
       "directions, shaped by tbf: retransmissions, SACK, possible reinjection.",
       mode="subflow", c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED, loss={1: 3.0, 2: 3.0}),
    _s("checksum", "net.mptcp.checksum_enabled=1 on both hosts, two subflows: MP_CAPABLE A bit, DSS with "
       "checksum.", mode="subflow", checksum=True, c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED),
    _s("fallback", "MPTCP client, plain TCP server (IPPROTO_TCP listener): SYN with MP_CAPABLE, SYN/ACK "
       "without, the connection continues as regular TCP.",
       mode="single", fallback=True, c2s_bytes=20_000, s2c_bytes=40_000),
    _s("ipv6", "Two subflows over IPv6 (fd00:210:1::1 -> fd00:210:1::2, join from fd00:210:2::1).",
       mode="subflow", family=6, c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED),
    _s("many-connections", "Four concurrent MPTCP connections to the same server port, two subflows each.",
       mode="subflow", connections=4, c2s_bytes=70_000, s2c_bytes=20_000, rate=SHAPED),
    _s("tfo", "TCP Fast Open: a cookie connection, then one whose first 1,000 bytes ride in the SYN.",
       mode="single", tfo=True, c2s_bytes=40_000, s2c_bytes=5_000),
    _s("offload-on", "TSO/GSO/GRO and TX checksum offload left on (the veth defaults): the capture shows "
       "super-segments far above the MSS, as on most real hosts.",
       mode="subflow", offloads="on", c2s_bytes=150_000, s2c_bytes=150_000),
    _s("mp-fail", "DSS checksums on, two subflows; a middlebox (nftables payload rewrite in the client "
       "namespace, TCP checksum kept valid) corrupts the client's 3rd data packet on path 2: the server's DSS "
       "checksum fails, it answers with MP_FAIL and resets that subflow (MP_TCPRST); the data is reinjected "
       "on path 1, so both streams arrive intact.",
       mode="subflow", checksum=True, corrupt={2: 3}, c2s_bytes=80_000, s2c_bytes=40_000, rate=SHAPED),
    _s("syncookies", "net.ipv4.tcp_syncookies=2 in the server namespace: the MP_CAPABLE and MP_JOIN SYNs are "
       "answered with SYN cookies (the kernel rebuilds the MPTCP state from the third ACK).",
       mode="subflow", syncookies=True, c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED),
    _s("fullmesh", "Client endpoints on both paths with the fullmesh flag, the server announces path 2: every "
       "client address joins every server address (four subflows).",
       mode="subflow", fullmesh=True, c2s_bytes=120_000, s2c_bytes=120_000, rate=SHAPED),
    _s("add-addr-port", "Server 'signal' endpoint on path 2 with its own port: ADD_ADDR carries the port, "
       "the client joins 10.210.2.2 on that port (a second listener the kernel opens).",
       mode="signal", signal_port=5202, c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED),
    _s("router", "Three namespaces: client ─ router ─ server. The client's two paths end in the router, "
       "which forwards them over one link to the server; the capture runs in the router, on that link "
       "(client packets seen with TTL 63).",
       mode="subflow", topology="router", c2s_bytes=80_000, s2c_bytes=80_000, rate=SHAPED),
    _s("zero-window", "The server leaves the connection unread for 1 s with a 4 KiB receive buffer: its window "
       "closes, the client probes it (Linux: a 1-byte segment mapped at the DSN just below the Data ACK, its "
       "payload the next byte), then the window opens and the transfer ends.",
       mode="single", receiver_pause=1.0, c2s_bytes=60_000, s2c_bytes=5_000),
]
SCENARIOS: dict[str, Scenario] = {s.name: s for s in _ALL}
SEEDS = {name: 100 + i for i, name in enumerate(SCENARIOS)}  # fixed per scenario: adding one changes no other
_FIELDS = {f.name for f in fields(LabConfig)}


def scenario_config(name: str, out: Path, **overrides: Any) -> LabConfig:
    """LabConfig of scenario ``name`` writing ``out`` (DIR/NAME.pcap); ``overrides`` win over the preset."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise LabError(f"unknown lab scenario {name!r} (mptcp-analyze lab --list shows them)")
    unknown = set(overrides) - _FIELDS
    if unknown:
        raise LabError(f"unknown lab option(s): {', '.join(sorted(unknown))}")
    base = LabConfig(name=out.stem, out_dir=out.parent, description=scenario.description, seed=SEEDS[name],
                     **scenario.options)
    return replace(base, **overrides)
