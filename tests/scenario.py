"""Build crafted MPTCP packet sequences for tests, with the project's own codec.

A :class:`Scenario` plays both hosts of one MPTCP connection and records every segment as raw IPv4
(link type RAW), tracking TCP sequence numbers per subflow and data sequence numbers per side, so a
test can write a *legal* exchange in a few lines and then break exactly one thing::

    sc = Scenario()
    sf = sc.initial()                       # SYN / SYN-ACK / ACK with MP_CAPABLE (v1, keys)
    sf.send("c", b"hello")                  # DSS with Data ACK + mapping for the payload
    sf.send("s", b"world", dss=Dss(...))    # or any option list of your own
    sc.close()                              # DATA_FIN both ways, data ACKs, FIN both ways
    analysis = analyze(sc.write(tmp_path))

Sides are "c" (client, the host that opened the connection) and "s" (server).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from analyzer.mptcp import crypto
from analyzer.mptcp.options import (
    DSS_ACK,
    DSS_ACK64,
    DSS_DATA_FIN,
    DSS_DSN64,
    DSS_MAPPING,
    Dss,
    MpCapable,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MptcpOption,
)
from analyzer.mptcp.packet import ip_tcp_packet

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
LINKTYPE_RAW = 101
CLIENT_KEY = 0x0102030405060708
SERVER_KEY = 0x1112131415161718

Option = MptcpOption | bytes


def ipv4_tcp(
    src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
    options: bytes = b"", payload: bytes = b"", window: int = 65535,
) -> bytes:  # fmt: skip
    """One IPv4 packet with a TCP segment; options are padded with NOPs to a multiple of 4."""
    s, d = ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed
    return ip_tcp_packet(s, d, sport, dport, seq, ack, flags, options, payload, window=window)


def encode(options: list[Option]) -> bytes:
    return b"".join(o if isinstance(o, bytes) else o.build() for o in options)


@dataclass
class Side:
    ip: str
    key: int
    dsn: int = 0  # next DSN to send (64-bit)
    acked: int = 0  # next DSN expected from the peer (the Data ACK this side sends)
    fin_sent: bool = False


@dataclass
class SubflowBuilder:
    scenario: Scenario
    client: tuple[str, int]
    server: tuple[str, int]
    isn: dict[str, int]
    nxt: dict[str, int] = field(default_factory=dict)  # next TCP seq per sender

    def rel(self, side: str) -> int:
        return (self.nxt[side] - self.isn[side]) & MASK32

    def raw(self, side: str, flags: int, options: list[Option] = (), payload: bytes = b"",  # type: ignore[assignment]
            seq: int | None = None, ack: int | None = None) -> int:  # fmt: skip
        """Emit one segment exactly as given (seq/ack default to the tracked values); returns its frame."""
        other = "s" if side == "c" else "c"
        src, dst = (self.client, self.server) if side == "c" else (self.server, self.client)
        seq_value = self.nxt[side] if seq is None else seq
        ack_value = (self.nxt.get(other, 0) if ack is None else ack) if flags & ACK else 0
        packet = ipv4_tcp(src[0], dst[0], src[1], dst[1], seq_value, ack_value, flags, encode(list(options)), payload)
        if seq is None:
            self.nxt[side] = (self.nxt[side] + len(payload) + (1 if flags & (SYN | FIN) else 0)) & MASK32
        return self.scenario.emit(packet)

    def send(self, side: str, payload: bytes = b"", dss: Dss | None = None, extra: list[Option] = (),  # type: ignore[assignment]
             options: list[Option] | None = None, flags: int = ACK | PSH) -> int:  # fmt: skip
        """Data (or a pure ACK when ``payload`` is empty) with a DSS that maps it, unless overridden.

        ``options`` replaces every MPTCP option; ``dss`` replaces only the automatic DSS; ``extra`` adds.
        """
        sc = self.scenario
        me = sc.side(side)
        if options is None:
            if dss is None:
                dss = sc.auto_dss(side, self.rel(side), payload)
            options = [dss, *extra]
        elif extra:
            options = [*options, *extra]
        if payload and dss is not None and dss.has_mapping:
            me.dsn = max(me.dsn, 0)  # tracked by auto_dss / explicit mappings alike
        return self.raw(side, flags, options, payload)

    def ack(self, side: str, extra: list[Option] = ()) -> int:  # type: ignore[assignment]
        return self.send(side, b"", extra=extra, flags=ACK)

    def fin(self, side: str, options: list[Option] | None = None) -> int:
        sc = self.scenario
        if options is None:
            options = [sc.ack_only_dss(side)]
        return self.raw(side, FIN | ACK, options)

    def rst(self, side: str, options: list[Option] = ()) -> int:  # type: ignore[assignment]
        return self.raw(side, RST | ACK, options)


class Scenario:
    """One MPTCP connection between two hosts, built packet by packet (see the module docstring)."""

    def __init__(
        self,
        version: int = 1,
        checksum: bool = False,
        client_ip: str = "10.0.1.1",
        server_ip: str = "10.0.2.1",
        client_key: int = CLIENT_KEY,
        server_key: int = SERVER_KEY,
        server_port: int = 80,
        start: float = 1_700_000_000.0,
        step: float = 0.001,
    ) -> None:
        self.version = version
        self.checksum = checksum
        self.sides = {"c": Side(client_ip, client_key), "s": Side(server_ip, server_key)}
        for side in self.sides.values():
            side.dsn = (crypto.idsn_from_key(side.key, version) + 1) & MASK64
        self.sides["c"].acked = self.sides["s"].dsn
        self.sides["s"].acked = self.sides["c"].dsn
        self.server_port = server_port
        self.time = start
        self.step = step
        self.packets: list[tuple[float, bytes]] = []
        self.subflows: list[SubflowBuilder] = []
        self._next_port = 40000

    # ------------------------------------------------------------------ plumbing
    def side(self, name: str) -> Side:
        return self.sides[name]

    def emit(self, packet: bytes) -> int:
        self.packets.append((self.time, packet))
        self.time += self.step
        return len(self.packets)

    def wait(self, seconds: float) -> None:
        self.time += seconds

    def write(self, directory: Path, name: str = "scenario.pcap") -> str:
        path = Path(directory) / name
        with path.open("wb") as f:
            writer = dpkt.pcap.Writer(f, snaplen=65535, linktype=LINKTYPE_RAW)
            for ts, packet in self.packets:
                writer.writepkt(packet, ts)
        return str(path)

    def _port(self) -> int:
        self._next_port += 1
        return self._next_port

    # ------------------------------------------------------------------ options
    def ack_only_dss(self, side: str) -> Dss:
        return Dss(DSS_ACK | DSS_ACK64, data_ack=self.side(side).acked)

    def auto_dss(self, side: str, rel_ssn: int, payload: bytes, data_fin: bool = False) -> Dss:
        """A Linux-style DSS: 64-bit Data ACK, plus a 64-bit mapping of ``payload`` if there is one."""
        me = self.side(side)
        if not payload and not data_fin:
            return self.ack_only_dss(side)
        data_len = len(payload) + (1 if data_fin else 0)
        ssn = rel_ssn if payload else 0
        checksum = crypto.dss_checksum(me.dsn, ssn, data_len, payload) if self.checksum else None
        flags = DSS_ACK | DSS_ACK64 | DSS_MAPPING | DSS_DSN64 | (DSS_DATA_FIN if data_fin else 0)
        dss = Dss(flags, data_ack=me.acked, dsn=me.dsn, ssn=ssn, data_len=data_len, checksum=checksum)
        me.dsn = (me.dsn + data_len) & MASK64
        peer = self.side("s" if side == "c" else "c")
        peer.acked = me.dsn
        return dss

    # ------------------------------------------------------------------ building blocks
    def initial(self, client_port: int | None = None, handshake: bool = True) -> SubflowBuilder:
        """The MP_CAPABLE subflow; with ``handshake`` the three handshake segments are emitted."""
        c, s = self.side("c"), self.side("s")
        sf = SubflowBuilder(
            self, (c.ip, client_port or self._port()), (s.ip, self.server_port),
            isn={"c": 1000, "s": 5000}, nxt={"c": 1000, "s": 5000},
        )  # fmt: skip
        self.subflows.append(sf)
        if handshake:
            flags = 0x81 if self.checksum else 0x01
            syn_key = c.key if self.version == 0 else None
            sf.raw("c", SYN, [MpCapable(self.version, flags, syn_key)])
            sf.raw("s", SYN | ACK, [MpCapable(self.version, flags, s.key)])
            sf.raw("c", ACK, [MpCapable(self.version, flags, c.key, s.key)])
        return sf

    def join(
        self,
        client_ip: str = "10.0.3.1",
        server_ip: str | None = None,
        client_addr_id: int = 1,
        server_addr_id: int = 0,
        backup: bool = False,
        client_nonce: int = 0xA1A2A3A4,
        server_nonce: int = 0xB1B2B3B4,
        fourth_ack: bool = True,
    ) -> SubflowBuilder:
        """An MP_JOIN subflow opened by the client, with correct HMACs both ways and the 4th ACK."""
        c, s = self.side("c"), self.side("s")
        sf = SubflowBuilder(
            self, (client_ip, self._port()), (server_ip or s.ip, self.server_port),
            isn={"c": 70000, "s": 90000}, nxt={"c": 70000, "s": 90000},
        )  # fmt: skip
        self.subflows.append(sf)
        v = self.version
        token = crypto.token_from_key(s.key, v)
        sf.raw("c", SYN, [MpJoinSyn(backup, client_addr_id, token, client_nonce)])
        thmac = crypto.join_synack_truncated_hmac(s.key, c.key, server_nonce, client_nonce, v)
        sf.raw("s", SYN | ACK, [MpJoinSynAck(backup, server_addr_id, thmac, server_nonce)])
        sf.raw("c", ACK, [MpJoinAck(crypto.join_ack_hmac(c.key, s.key, client_nonce, server_nonce, v))])
        if fourth_ack:
            sf.ack("s")
        return sf

    def close(self, sf: SubflowBuilder | None = None) -> None:
        """Clean close: DATA_FIN from each side (each data-ACKed), then FIN both ways on every subflow."""
        sf = sf or self.subflows[0]
        for side in ("c", "s"):
            sf.raw(side, ACK, [self.auto_dss(side, 0, b"", data_fin=True)])
            sf.ack("s" if side == "c" else "c")
        for each in self.subflows:
            each.fin("c")
            each.fin("s")
            each.raw("c", ACK, [self.ack_only_dss("c")])
