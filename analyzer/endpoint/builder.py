"""Crafted MPTCP traces, packet by packet: write a legal exchange in a few lines, then break one thing.

The simulator (:mod:`.sim`) makes traffic the way an endpoint would; rule tests need the opposite, a
trace that is legal except for exactly the byte under test. A :class:`ConnectionBuilder` plays both
hosts of one MPTCP connection, tracks each subflow's TCP sequence numbers and each side's data
sequence numbers, and records every segment as raw IP, so the test writes only what it breaks::

    conn = ConnectionBuilder()
    sf = conn.initial()                     # SYN / SYN-ACK / ACK with MP_CAPABLE (v1, keys)
    sf.send("c", b"hello")                  # DSS with a Data ACK and the payload's mapping
    sf.send("s", b"world", dss=Dss(...))    # or any option list of your own
    conn.close()                            # DATA_FIN both ways, data ACKs, FIN both ways
    analysis = analyze(conn.write(tmp_path))

Sides are ``"c"`` (the client, which opened the connection) and ``"s"`` (the server). Packets are
``(timestamp, ip_packet)`` pairs in :attr:`ConnectionBuilder.packets`, so a test can drop or cut one
to model what a capture lost; :meth:`ConnectionBuilder.write` writes them through :mod:`.pcapout`.
IPv4 and IPv6 addresses both work (the address picks the family). Packets go through the one
encoder (:func:`analyzer.mptcp.packet.ip_tcp_packet`) and options through the codec's ``build()``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from analyzer.endpoint.pcapout import CaptureFormat, CaptureWriter
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
from analyzer.mptcp.packet import TH_ACK, TH_FIN, TH_PSH, TH_RST, TH_SYN, ip_tcp_packet

__all__ = [
    "ACK",
    "CLIENT_KEY",
    "FIN",
    "LINKTYPE_RAW",
    "MASK32",
    "MASK64",
    "PSH",
    "RST",
    "SERVER_KEY",
    "SYN",
    "ConnectionBuilder",
    "Option",
    "SideName",
    "SideState",
    "SubflowBuilder",
    "encode",
    "ip_tcp",
]

MASK32: Final = 0xFFFFFFFF
MASK64: Final = (1 << 64) - 1
FIN, SYN, RST, PSH, ACK = TH_FIN, TH_SYN, TH_RST, TH_PSH, TH_ACK
LINKTYPE_RAW: Final = 101
CLIENT_KEY: Final = 0x0102030405060708
SERVER_KEY: Final = 0x1112131415161718
START: Final = 1_700_000_000.0
STEP: Final = 0.001

Option = MptcpOption | bytes
SideName = str  # "c" or "s"


def ip_tcp(
    src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
    options: bytes = b"", payload: bytes = b"", window: int = 65535,
) -> bytes:  # fmt: skip
    """One IPv4 or IPv6 packet (by the address) with a TCP segment; options NOP-padded to 4 bytes."""
    s, d = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    return ip_tcp_packet(s, d, sport, dport, seq, ack, flags, options, payload, window=window)


def encode(options: Sequence[Option]) -> bytes:
    """The wire bytes of an option list: codec options are built, raw bytes kept as they are."""
    return b"".join(o if isinstance(o, bytes) else o.build() for o in options)


def _peer(side: SideName) -> str:
    return "s" if side == "c" else "c"


@dataclass
class SideState:
    """One host's data level: the next DSN it sends and the Data ACK it sends (both 64-bit)."""

    ip: str
    key: int
    dsn: int = 0
    acked: int = 0


@dataclass
class SubflowBuilder:
    """One TCP subflow of a :class:`ConnectionBuilder`: the next sequence number of each sender."""

    connection: ConnectionBuilder
    client: tuple[str, int]
    server: tuple[str, int]
    isn: dict[str, int]
    nxt: dict[str, int] = field(default_factory=dict)
    window: int = 65535

    def rel(self, side: SideName) -> int:
        """The relative subflow sequence number of ``side``'s next byte (what a DSS maps from)."""
        return (self.nxt[side] - self.isn[side]) & MASK32

    def raw(
        self, side: SideName, flags: int, options: Sequence[Option] = (), payload: bytes = b"",
        seq: int | None = None, ack: int | None = None,
    ) -> int:  # fmt: skip
        """Emit one segment exactly as given (seq/ack default to the tracked values); returns its frame.

        An explicit ``seq`` does not move the tracked sequence number (a re-send or a forgery).
        """
        src, dst = (self.client, self.server) if side == "c" else (self.server, self.client)
        seq_value = self.nxt[side] if seq is None else seq
        ack_value = (self.nxt.get(_peer(side), 0) if ack is None else ack) if flags & ACK else 0
        packet = ip_tcp(src[0], dst[0], src[1], dst[1], seq_value, ack_value, flags, encode(options), payload,
                        window=self.window)  # fmt: skip
        if seq is None:
            self.nxt[side] = (self.nxt[side] + len(payload) + (1 if flags & (SYN | FIN) else 0)) & MASK32
        return self.connection.emit(packet)

    def send(
        self, side: SideName, payload: bytes = b"", dss: Dss | None = None, extra: Sequence[Option] = (),
        options: Sequence[Option] | None = None, flags: int = ACK | PSH, *, dsn64: bool = True,
        ack64: bool = True,
    ) -> int:  # fmt: skip
        """Data (or a pure ACK when ``payload`` is empty) with a DSS that maps it, unless overridden.

        ``options`` replaces every MPTCP option; ``dss`` replaces only the automatic DSS; ``extra``
        adds; ``dsn64``/``ack64`` pick the automatic DSS's field sizes.
        """
        if options is None:
            if dss is None:
                dss = self.connection.auto_dss(side, self.rel(side), payload, dsn64=dsn64, ack64=ack64)
            options = [dss, *extra]
        elif extra:
            options = [*options, *extra]
        return self.raw(side, flags, options, payload)

    def ack(self, side: SideName, extra: Sequence[Option] = ()) -> int:
        return self.send(side, b"", extra=extra, flags=ACK)

    def data_fin(self, side: SideName, *, with_fin: bool = False) -> int:
        """A DATA_FIN (a mapping of length 1 at subflow offset 0) on a bare ACK, with the FIN if asked."""
        dss = self.connection.auto_dss(side, 0, b"", data_fin=True)
        return self.raw(side, ACK | (FIN if with_fin else 0), [dss])

    def fin(self, side: SideName, options: Sequence[Option] | None = None) -> int:
        if options is None:
            options = [self.connection.ack_only_dss(side)]
        return self.raw(side, FIN | ACK, options)

    def rst(self, side: SideName, options: Sequence[Option] = ()) -> int:
        return self.raw(side, RST | ACK, options)


class ConnectionBuilder:
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
        start: float = START,
        step: float = STEP,
    ) -> None:
        self.version = version
        self.checksum = checksum
        self.sides = {"c": SideState(client_ip, client_key), "s": SideState(server_ip, server_key)}
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
    def side(self, name: SideName) -> SideState:
        return self.sides[name]

    def emit(self, packet: bytes) -> int:
        """Record one raw IP packet at the current time; returns its 1-based frame number."""
        self.packets.append((self.time, packet))
        self.time += self.step
        return len(self.packets)

    def wait(self, seconds: float) -> None:
        self.time += seconds

    def write(self, directory: Path | str, name: str = "crafted.pcap", fmt: CaptureFormat = CaptureFormat.PCAP) -> str:
        """Write the packets as a raw-IP capture in ``directory``; returns its path."""
        path = Path(directory) / name
        with CaptureWriter(path, fmt, epoch=0.0) as writer:
            for ts, packet in self.packets:
                writer.write(ts, packet)
        return str(path)

    def token(self, side: SideName) -> int:
        return crypto.token_from_key(self.side(side).key, self.version)

    def idsn(self, side: SideName) -> int:
        return crypto.idsn_from_key(self.side(side).key, self.version)

    def _port(self) -> int:
        self._next_port += 1
        return self._next_port

    # ------------------------------------------------------------------ options
    def ack_only_dss(self, side: SideName) -> Dss:
        return Dss(DSS_ACK | DSS_ACK64, data_ack=self.side(side).acked)

    def auto_dss(
        self, side: SideName, rel_ssn: int, payload: bytes, data_fin: bool = False, *, dsn64: bool = True,
        ack64: bool = True,
    ) -> Dss:  # fmt: skip
        """A Linux-style DSS: a Data ACK, plus a mapping of ``payload`` (or the DATA_FIN) if there is one.

        Advances the side's DSN and the peer's Data ACK past what it maps.
        """
        me = self.side(side)
        ack_flags = DSS_ACK | (DSS_ACK64 if ack64 else 0)
        data_ack = me.acked if ack64 else me.acked & MASK32
        if not payload and not data_fin:
            return Dss(ack_flags, data_ack=data_ack)
        data_len = len(payload) + (1 if data_fin else 0)
        ssn = rel_ssn if payload else 0
        checksum = crypto.dss_checksum(me.dsn, ssn, data_len, payload) if self.checksum else None
        flags = ack_flags | DSS_MAPPING | (DSS_DSN64 if dsn64 else 0) | (DSS_DATA_FIN if data_fin else 0)
        dsn = me.dsn if dsn64 else me.dsn & MASK32
        dss = Dss(flags, data_ack=data_ack, dsn=dsn, ssn=ssn, data_len=data_len, checksum=checksum)
        me.dsn = (me.dsn + data_len) & MASK64
        self.side(_peer(side)).acked = me.dsn
        return dss

    # ------------------------------------------------------------------ building blocks
    def initial(
        self, client_port: int | None = None, handshake: bool = True, *, syn_options: Sequence[Option] = (),
        isn: tuple[int, int] = (1000, 5000),
    ) -> SubflowBuilder:  # fmt: skip
        """The MP_CAPABLE subflow; with ``handshake`` the three handshake segments are emitted.

        ``syn_options`` (e.g. an MSS) go before MP_CAPABLE in the SYN and the SYN-ACK.
        """
        c, s = self.side("c"), self.side("s")
        sf = SubflowBuilder(
            self, (c.ip, client_port or self._port()), (s.ip, self.server_port),
            isn={"c": isn[0], "s": isn[1]}, nxt={"c": isn[0], "s": isn[1]},
        )  # fmt: skip
        self.subflows.append(sf)
        if handshake:
            flags = 0x81 if self.checksum else 0x01
            syn_key = c.key if self.version == 0 else None
            sf.raw("c", SYN, [*syn_options, MpCapable(self.version, flags, syn_key)])
            sf.raw("s", SYN | ACK, [*syn_options, MpCapable(self.version, flags, s.key)])
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
        sf.raw("c", SYN, [MpJoinSyn(backup, client_addr_id, self.token("s"), client_nonce)])
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
            sf.ack(_peer(side))
        for each in self.subflows:
            each.fin("c")
            each.fin("s")
            each.raw("c", ACK, [self.ack_only_dss("c")])
