"""A deterministic discrete-event simulation: two endpoints, N paths, a capture file.

Virtual time only: an event heap ordered by (time, sequence number). Every random draw comes from
a ``random.Random`` seeded from :attr:`SimConfig.seed` and a fixed label, so the same
configuration writes the same capture byte for byte.

Addresses: path ``i`` (1-based) joins client ``10.0.i.1`` and server ``10.0.i.2`` (IPv6:
``fd00:0:i::1`` / ``::2``). A packet travels on the highest-numbered path of its two addresses, so a
join from the client's primary address to an address the server announced on path 2 uses path 2.

The applications are simple: the client writes ``c2s_bytes`` at once and closes (DATA_FIN), the
server writes ``s2c_bytes`` when connected and closes when the client's stream ended. With
``client_abort`` the client does not close but fast-closes once everything was exchanged.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from analyzer.endpoint.config import EndpointConfig, LocalAddress, Misbehave, Role, SchedulerName, TcpTuning
from analyzer.endpoint.connection import MptcpConnection
from analyzer.endpoint.events import (
    Connected,
    ConnectionClosed,
    DataReceived,
    EndOfStream,
    Event,
    SubflowAdded,
)
from analyzer.endpoint.middlebox import Middlebox, MiddleboxAction, MiddleboxSpec
from analyzer.endpoint.network import Link, LinkSpec
from analyzer.endpoint.pcapout import CaptureFormat, CaptureWriter
from analyzer.endpoint.segment import Address, encode_packet

__all__ = ["Action", "CapturePoint", "Drop", "SimConfig", "SimResult", "StreamTruth", "run"]

SERVER_PORT = 5201
ProgressCallback = Callable[[float], None]


class CapturePoint(enum.Enum):
    CLIENT = "client"  # packets as the client sends and receives them
    SERVER = "server"
    MIDDLE = "middle"  # a tap in the middle of every path (sees packets that are lost later)


class ActionKind(enum.Enum):
    LINK_DOWN = "link-down"  # arg: path number (1-based)
    LINK_UP = "link-up"
    REMOVE_ADDRESS = "remove-address"  # server withdraws the address with this ID
    SET_BACKUP = "set-backup"  # client marks its subflow with this ID as backup (MP_PRIO)


@dataclass(frozen=True, slots=True)
class Action:
    """Done once the server has received ``at_fraction`` of the client's data."""

    at_fraction: float
    kind: ActionKind
    arg: int


@dataclass(slots=True)
class SimConfig:
    output: Path
    paths: list[LinkSpec] = field(default_factory=lambda: [LinkSpec(), LinkSpec()])
    c2s_bytes: int = 100_000
    s2c_bytes: int = 25_000
    seed: int = 1
    capture: CapturePoint = CapturePoint.CLIENT
    fmt: CaptureFormat = CaptureFormat.PCAP
    checksum: bool = False
    scheduler: SchedulerName = SchedulerName.LOWEST_RTT
    client_joins: bool = True  # the client opens a subflow from its address on each extra path
    server_announces: bool = False  # the server announces its address on each extra path instead
    backup_paths: frozenset[int] = frozenset()  # extra paths whose subflows start as backup
    server_mptcp: bool = True
    client_abort: bool = False  # MP_FASTCLOSE at the end instead of DATA_FIN
    actions: tuple[Action, ...] = ()
    client_misbehave: frozenset[Misbehave] = frozenset()
    server_misbehave: frozenset[Misbehave] = frozenset()
    ipv6: bool = False
    tcp: TcpTuning = field(default_factory=TcpTuning)
    max_time: float = 600.0
    middlebox: MiddleboxSpec | None = None  # a box on every path, between the client's and the server's capture
    max_events: int = 5_000_000
    receive_buffer: int = 4 << 20  # each endpoint's connection-level receive buffer (small: window-limited runs)


@dataclass(frozen=True, slots=True)
class StreamTruth:
    """One direction: what the application wrote and what the other application read."""

    sent_bytes: int
    sent_sha256: str
    received_bytes: int
    received_sha256: str

    @property
    def intact(self) -> bool:
        return self.sent_bytes == self.received_bytes and self.sent_sha256 == self.received_sha256


@dataclass(frozen=True, slots=True)
class Drop:
    """A packet the network lost: ground truth for comparing the client's and the server's capture."""

    time: float
    path: int  # 1-based
    direction: str  # "c2s" | "s2c"
    reason: str
    packet: bytes  # as the sender handed it to the network (the bytes its capture holds)


@dataclass(frozen=True, slots=True)
class SimResult:
    pcap: Path
    c2s: StreamTruth
    s2c: StreamTruth
    subflows: int  # subflows that completed their handshake (client view)
    packets: int  # records in the capture
    packets_sent: int  # packets both endpoints handed to the network
    packets_dropped: int
    duration: float  # virtual seconds until the last event
    client_close: str | None  # ConnectionClosed reason at the client
    server_close: str | None
    log: tuple[str, ...]  # endpoint events, "time side event"
    drops: tuple[Drop, ...] = ()  # every packet the paths dropped, in order
    middlebox_log: tuple[MiddleboxAction, ...] = ()  # every change the middlebox made

    @property
    def completed(self) -> bool:
        return self.c2s.intact and self.s2c.intact


def address_pairs(
    paths: int, ipv6: bool, v4_net: str = "10.0", v6_net: str = "fd00:0"
) -> tuple[list[Address], list[Address]]:
    """One address pair per path: (``.1`` side, ``.2`` side) of ``V4_NET.i.0/24`` or ``V6_NET:i::/64``."""
    first: list[Address] = []
    second: list[Address] = []
    for i in range(1, paths + 1):
        if ipv6:
            first.append(ipaddress.IPv6Address(f"{v6_net}:{i}::1"))
            second.append(ipaddress.IPv6Address(f"{v6_net}:{i}::2"))
        else:
            first.append(ipaddress.IPv4Address(f"{v4_net}.{i}.1"))
            second.append(ipaddress.IPv4Address(f"{v4_net}.{i}.2"))
    return first, second


@dataclass(frozen=True, slots=True)
class _Arrive:
    side: Role
    packet: bytes


@dataclass(frozen=True, slots=True)
class _Timer:
    side: Role
    at: float


@dataclass(frozen=True, slots=True)
class _Tap:
    packet: bytes


_SimEvent = _Arrive | _Timer | _Tap


@dataclass(slots=True)
class _App:
    """The application on one side."""

    role: Role
    data: bytes
    received: bytearray = field(default_factory=bytearray)
    peer_done: bool = False
    closed_reason: str | None = None
    subflows: int = 0
    aborted: bool = False


class Simulator:
    def __init__(self, cfg: SimConfig, progress: ProgressCallback | None = None) -> None:
        self.cfg = cfg
        self.progress = progress
        seed = cfg.seed
        n = len(cfg.paths)
        caddrs, saddrs = address_pairs(n, cfg.ipv6)
        self._path_of: dict[Address, int] = {}
        for i, (c, s) in enumerate(zip(caddrs, saddrs, strict=True)):
            self._path_of[c] = self._path_of[s] = i
        self._client_addrs = set(caddrs)
        self.links: list[tuple[Link, Link]] = [
            (Link(spec, random.Random(f"{seed}:link:{i}:c2s")), Link(spec, random.Random(f"{seed}:link:{i}:s2c")))
            for i, spec in enumerate(cfg.paths)
        ]
        mtu = [spec.mtu for spec in cfg.paths]
        client_locals = [LocalAddress(caddrs[0], 0, mtu=mtu[0])]
        if cfg.client_joins:
            client_locals += [
                LocalAddress(caddrs[i], i, backup=(i + 1) in cfg.backup_paths, mtu=mtu[i]) for i in range(1, n)
            ]
        announce = [LocalAddress(saddrs[i], i, mtu=mtu[i]) for i in range(1, n)] if cfg.server_announces else []
        client_cfg = EndpointConfig(
            role=Role.CLIENT, addresses=client_locals, rng=random.Random(f"{seed}:client"), checksum=cfg.checksum,
            scheduler=cfg.scheduler, tcp=cfg.tcp, misbehave=cfg.client_misbehave, receive_buffer=cfg.receive_buffer,
        )  # fmt: skip
        server_cfg = EndpointConfig(
            role=Role.SERVER, addresses=[LocalAddress(saddrs[0], 0, mtu=mtu[0])], rng=random.Random(f"{seed}:server"),
            mptcp=cfg.server_mptcp, scheduler=cfg.scheduler, announce=announce, port=SERVER_PORT, tcp=cfg.tcp,
            misbehave=cfg.server_misbehave, receive_buffer=cfg.receive_buffer,
        )  # fmt: skip
        if cfg.server_announces and cfg.backup_paths:
            client_cfg.addresses = [LocalAddress(caddrs[0], 0, backup=False, mtu=mtu[0])]
        self.eps = {Role.CLIENT: MptcpConnection(client_cfg), Role.SERVER: MptcpConnection(server_cfg)}
        data_rng = random.Random(f"{seed}:data")
        self.apps = {
            Role.CLIENT: _App(Role.CLIENT, data_rng.randbytes(cfg.c2s_bytes)),
            Role.SERVER: _App(Role.SERVER, data_rng.randbytes(cfg.s2c_bytes)),
        }
        self.server_address = saddrs[0]
        self._heap: list[tuple[float, int, _SimEvent]] = []
        self._seq = 0
        self._timer_at: dict[Role, float | None] = {Role.CLIENT: None, Role.SERVER: None}
        self._in_flight = 0
        self._pending_actions = sorted(cfg.actions, key=lambda a: a.at_fraction)
        self._ip_id = 0
        self.now = 0.0
        self.log: list[str] = []
        self.packets_sent = 0
        self.packets_dropped = 0
        self.drops: list[Drop] = []
        self.middlebox = Middlebox(cfg.middlebox) if cfg.middlebox is not None else None
        self.writer = CaptureWriter(cfg.output, cfg.fmt)

    # ------------------------------------------------------------------ event plumbing
    def _push(self, time: float, event: _SimEvent) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (time, self._seq, event))

    def _send(self, side: Role, packet: bytes, now: float) -> None:
        src_is_client = side is Role.CLIENT
        self.packets_sent += 1
        if self.cfg.capture.value == side.value:
            self.writer.write(now, packet)
        out = [packet] if self.middlebox is None else self.middlebox.process(packet, src_is_client)
        # Route by the client's own (untranslated) addresses: before the box c2s, after it s2c.
        path = self._route(packet if src_is_client or not out else out[0])
        for wire in out:
            self._transmit(wire, packet, path, src_is_client, now)

    def _transmit(self, wire: bytes, sent: bytes, path: int, src_is_client: bool, now: float) -> None:
        link = self.links[path][0 if src_is_client else 1]
        transit = link.transmit(len(wire), now)
        if self.cfg.capture is CapturePoint.MIDDLE and transit.tap_time is not None:
            self._push(transit.tap_time, _Tap(wire))
        if transit.arrival is None:
            self.packets_dropped += 1
            self.drops.append(Drop(now, path + 1, "c2s" if src_is_client else "s2c", transit.reason or "", sent))
            return
        self._in_flight += 1
        peer = Role.SERVER if src_is_client else Role.CLIENT
        self._push(transit.arrival, _Arrive(peer, wire))

    def _route(self, packet: bytes) -> int:
        if packet[0] >> 4 == 4:
            src, dst = ipaddress.IPv4Address(packet[12:16]), ipaddress.IPv4Address(packet[16:20])
            return max(self._path_of.get(src, 0), self._path_of.get(dst, 0))
        src6, dst6 = ipaddress.IPv6Address(packet[8:24]), ipaddress.IPv6Address(packet[24:40])
        return max(self._path_of.get(src6, 0), self._path_of.get(dst6, 0))

    def _drive(self, side: Role, now: float) -> None:
        """Let one endpoint send what it has, feed its events to the application, rearm its timer."""
        ep = self.eps[side]
        for _ in range(100):
            segments = ep.segments_to_send(now)
            for seg in segments:
                self._ip_id += 1
                self._send(side, encode_packet(seg, ip_id=self._ip_id), now)
            acted = self._deliver_events(side, now)
            if not segments and not acted:
                break
        timer = ep.get_timer()
        if timer is not None and timer != self._timer_at[side]:
            self._timer_at[side] = timer
            self._push(max(timer, now), _Timer(side, timer))

    def _deliver_events(self, side: Role, now: float) -> bool:
        ep = self.eps[side]
        app = self.apps[side]
        acted = False
        while (event := ep.next_event()) is not None:
            self.log.append(f"{now:.6f} {side.value} {_describe(event)}")
            if isinstance(event, DataReceived):
                app.received += event.data
            elif isinstance(event, EndOfStream):
                app.peer_done = True
                if side is Role.SERVER:
                    ep.close(now)
                    acted = True
            elif isinstance(event, SubflowAdded):
                app.subflows += 1
            elif isinstance(event, ConnectionClosed):
                app.closed_reason = event.reason
            elif isinstance(event, Connected) and side is Role.SERVER:
                ep.send(app.data, now)
                if self.cfg.client_abort:
                    ep.close(now)  # the client will not close: the server ends its stream right away
                acted = True
        if (
            side is Role.CLIENT
            and self.cfg.client_abort
            and not app.aborted
            and app.peer_done
            and ep.sender.una >= len(app.data)
        ):
            app.aborted = True
            ep.abort(now)
            acted = True
        return acted

    def _fraction(self) -> float:
        c2s = len(self.apps[Role.CLIENT].data)
        if c2s:
            return len(self.apps[Role.SERVER].received) / c2s
        s2c = len(self.apps[Role.SERVER].data)
        return len(self.apps[Role.CLIENT].received) / s2c if s2c else 1.0

    def _run_actions(self, now: float) -> None:
        fraction = self._fraction()
        while self._pending_actions and self._pending_actions[0].at_fraction <= fraction:
            action = self._pending_actions.pop(0)
            self.log.append(f"{now:.6f} sim {action.kind.value} {action.arg}")
            if action.kind in (ActionKind.LINK_DOWN, ActionKind.LINK_UP):
                for link in self.links[action.arg - 1]:
                    link.forced_down = action.kind is ActionKind.LINK_DOWN
            elif action.kind is ActionKind.REMOVE_ADDRESS:
                self.eps[Role.SERVER].remove_address(action.arg, now)
                self._drive(Role.SERVER, now)
            elif action.kind is ActionKind.SET_BACKUP:
                self.eps[Role.CLIENT].set_backup(action.arg, True, now)
                self._drive(Role.CLIENT, now)

    # ------------------------------------------------------------------ main loop
    def run(self) -> SimResult:
        client = self.eps[Role.CLIENT]
        client.send(self.apps[Role.CLIENT].data, 0.0)
        if not self.cfg.client_abort:
            client.close(0.0)
        client.connect(self.server_address, SERVER_PORT, 0.0)
        self._drive(Role.CLIENT, 0.0)
        events = 0
        last_report = -1.0
        try:
            while self._heap:
                time, _, event = heapq.heappop(self._heap)
                if time > self.cfg.max_time:
                    break
                self.now = time
                events += 1
                if events > self.cfg.max_events:
                    break
                if isinstance(event, _Arrive):
                    self._in_flight -= 1
                    if self.cfg.capture.value == event.side.value:
                        self.writer.write(time, event.packet)
                    self.eps[event.side].receive_segment(event.packet, time)
                    self._drive(event.side, time)
                elif isinstance(event, _Timer):
                    if self._timer_at[event.side] != event.at:
                        continue  # superseded
                    self._timer_at[event.side] = None
                    self.eps[event.side].handle_timer(time)
                    self._drive(event.side, time)
                else:
                    self.writer.write(time, event.packet)
                    continue
                self._run_actions(time)
                if self.progress is not None and events % 256 == 0:
                    fraction = self._progress_fraction()
                    if fraction != last_report:
                        last_report = fraction
                        self.progress(fraction)
                if all(ep.finished for ep in self.eps.values()) and self._in_flight == 0:
                    break
        finally:
            self.writer.close()
        if self.progress is not None:
            self.progress(self._progress_fraction())
        return self._result()

    def _progress_fraction(self) -> float:
        total = len(self.apps[Role.CLIENT].data) + len(self.apps[Role.SERVER].data)
        got = len(self.apps[Role.SERVER].received) + len(self.apps[Role.CLIENT].received)
        return got / total if total else 1.0

    def _result(self) -> SimResult:
        capp, sapp = self.apps[Role.CLIENT], self.apps[Role.SERVER]
        return SimResult(
            pcap=self.cfg.output,
            c2s=_truth(capp.data, sapp.received),
            s2c=_truth(sapp.data, capp.received),
            subflows=capp.subflows,
            packets=self.writer.packets,
            packets_sent=self.packets_sent,
            packets_dropped=self.packets_dropped,
            duration=self.now,
            client_close=capp.closed_reason,
            server_close=sapp.closed_reason,
            log=tuple(self.log),
            drops=tuple(self.drops),
            middlebox_log=tuple(self.middlebox.log) if self.middlebox is not None else (),
        )


def _truth(sent: bytes, received: bytearray) -> StreamTruth:
    return StreamTruth(len(sent), hashlib.sha256(sent).hexdigest(), len(received), hashlib.sha256(received).hexdigest())


def _describe(event: Event) -> str:
    if isinstance(event, DataReceived):
        return f"DataReceived({len(event.data)} bytes)"
    return repr(event)


def run(cfg: SimConfig, progress: ProgressCallback | None = None) -> SimResult:
    """Simulate one connection as configured and write the capture to ``cfg.output``."""
    return Simulator(cfg, progress).run()
