"""The sans-IO endpoint: codec round trips, the TCP state table, and two connections over a fake link.

Option shapes follow shared/mptcp-rules.md §1 and §5 (Linux behaviour); crypto comes from the
analyzer (shared vectors are tested in test_crypto.py), so these tests check that the endpoint uses
it the right way round.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from analyzer.endpoint import (
    AddressAnnounced,
    Connected,
    ConnectionClosed,
    DataReceived,
    EndOfStream,
    EndpointConfig,
    Event,
    FellBack,
    LocalAddress,
    Misbehave,
    MptcpConnection,
    PriorityChanged,
    Role,
    SchedulerName,
    Segment,
    SubflowAdded,
    SubflowClosed,
    decode_packet,
    encode_packet,
)
from analyzer.endpoint.datalevel import DataReceiver, DataSender
from analyzer.endpoint.errors import LocalProtocolError, RemoteProtocolError
from analyzer.endpoint.mapping import ChecksumFailure, MappingTable, RecvMapping
from analyzer.endpoint.scheduler import BackupAware, LowestRtt, PathInfo, RoundRobin
from analyzer.endpoint.segment import ACK, SYN, RawOption
from analyzer.endpoint.state import TcpState, Trigger, step
from analyzer.mptcp import crypto
from analyzer.mptcp.crypto import internet_checksum
from analyzer.mptcp.options import (
    AddAddr,
    Dss,
    MalformedOption,
    MpCapable,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    RemoveAddr,
)
from analyzer.seqnum import unwrap32, unwrap64

C1 = ipaddress.IPv4Address("10.0.1.1")
C2 = ipaddress.IPv4Address("10.0.2.1")
S1 = ipaddress.IPv4Address("10.0.1.2")
S2 = ipaddress.IPv4Address("10.0.2.2")


# ---------------------------------------------------------------------------------------------- codec
def test_segment_encode_decode_round_trip_with_mptcp_options() -> None:
    seg = Segment(C1, 40000, S1, 5201, 0xFFFFFFF0, 7, ACK, 512, b"hello",
                  (Dss(0x0F, 1, 2, 3, 6, None),), timestamp=(11, 22))  # fmt: skip
    back = decode_packet(encode_packet(seg))
    assert back == seg
    assert back.mptcp[0] == Dss(0x0F, 1, 2, 3, 6, None)


def test_segment_ipv6_and_checksums_verify() -> None:
    seg = Segment(ipaddress.IPv6Address("fd00::1"), 1, ipaddress.IPv6Address("fd00::2"), 2, 1, 0, SYN, 100,
                  mptcp=(MpCapable(1, 0x01),), mss=1440, wscale=7)  # fmt: skip
    raw = encode_packet(seg)
    assert decode_packet(raw) == seg
    tcp = raw[40:]
    pseudo = raw[8:40] + len(tcp).to_bytes(4, "big") + b"\x00\x00\x00\x06"
    assert internet_checksum(pseudo + tcp) == 0


def test_ipv4_header_checksum_is_valid() -> None:
    raw = encode_packet(Segment(C1, 1, S1, 2, 0, 0, SYN, 0))
    assert internet_checksum(raw[:20]) == 0


def test_dss_without_checksum_is_followed_by_two_nops_like_linux() -> None:
    """Shared rules §1.1: Linux pads DSS without checksum with 2 NOPs, MP_PRIO with 1."""
    seg = Segment(C1, 1, S1, 2, 0, 0, ACK, 0, mptcp=(Dss(0x01, 5),))
    assert seg.options_bytes() == Dss(0x01, 5).build() + b""
    seg = Segment(C1, 1, S1, 2, 0, 0, ACK, 0, mptcp=(Dss(0x0F, 1, 2, 3, 4),))
    assert seg.options_bytes().endswith(b"\x01\x01")
    assert Segment(C1, 1, S1, 2, 0, 0, ACK, 0, mptcp=(MpPrio(True),)).options_bytes() == b"\x1e\x03\x51\x01"


def test_raw_option_reaches_the_wire_and_parses_as_malformed() -> None:
    seg = Segment(C1, 1, S1, 2, 0, 0, ACK, 0, mptcp=(RawOption(bytes((30, 3, 0x40))),))
    back = decode_packet(encode_packet(seg))
    assert isinstance(back.mptcp[0], MalformedOption)
    assert back.malformed is None  # the option list itself walks fine


def test_options_over_40_bytes_are_refused() -> None:
    seg = Segment(C1, 1, S1, 2, 0, 0, ACK, 0, mptcp=(Dss(0x0F, 1, 2, 3, 4, 5), MpFastclose(1)), timestamp=(1, 2))
    with pytest.raises(ValueError, match="more than the 40"):
        seg.options_bytes()


def test_unwrap_serial_numbers() -> None:
    assert unwrap32(5, (1 << 32) - 10) == (1 << 32) + 5
    assert unwrap32((1 << 32) - 3, 2) == -3
    assert unwrap64(7, 100) == 7


# ---------------------------------------------------------------------------------------------- state table
def test_state_table_active_and_passive_close() -> None:
    state = step(TcpState.CLOSED, Trigger.SEND_SYN)
    state = step(state, Trigger.RECV_SYNACK)
    assert state is TcpState.ESTABLISHED
    assert step(step(state, Trigger.SEND_FIN), Trigger.ACK_OF_FIN) is TcpState.FIN_WAIT_2
    assert step(step(state, Trigger.RECV_FIN), Trigger.SEND_FIN) is TcpState.LAST_ACK
    assert step(TcpState.SYN_RCVD, Trigger.RESET) is TcpState.CLOSED


def test_state_table_refuses_moves_it_does_not_list() -> None:
    with pytest.raises(LocalProtocolError, match="RECV_SYNACK is not allowed in ESTABLISHED"):
        step(TcpState.ESTABLISHED, Trigger.RECV_SYNACK)


# ---------------------------------------------------------------------------------------------- data level
def test_data_receiver_reorders_and_acks_the_data_fin() -> None:
    rx = DataReceiver(buffer_size=1000)
    assert rx.add(5, b"fghij") == b""
    assert rx.window() == 995  # out-of-order bytes use the buffer
    assert rx.add(0, b"abcde") == b"abcdefghij"
    rx.set_fin(10)
    assert rx.consume_fin()
    assert rx.ack == 11
    assert rx.add(3, b"xyz") == b""  # old duplicate


def test_data_receiver_window_never_recedes() -> None:
    rx = DataReceiver(buffer_size=100)
    first = rx.window()
    rx.add(50, b"x" * 40)
    assert rx.ack + rx.window() >= first


def test_data_sender_ignores_acks_beyond_sent_data() -> None:
    tx = DataSender()
    tx.write(b"a" * 100)
    tx.right_edge = 1000
    assert tx.take(40)[0] == 0
    assert not tx.on_data_ack(41, 1000)  # Linux ignores a Data ACK beyond what was sent (rules §5.16)
    assert tx.on_data_ack(40, 1000)
    assert tx.una == 40 and len(tx.buffer) == 60


def test_data_sender_puts_the_data_fin_on_the_last_mapping() -> None:
    tx = DataSender()
    tx.write(b"abc")
    tx.close()
    tx.right_edge = 10
    assert tx.take(10) == (0, b"abc", True)


def test_mapping_table_multi_segment_mapping_with_checksum() -> None:
    """TV-7 row 4 of the shared rules: one mapping over two segments, 64-bit DSN wrapping 2^64."""
    table = MappingTable(checksums=True)
    payload = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    table.add(RecvMapping(0x1001, 0, 27, 27, 0xFFFFFFFFFFFFFFF0, False, 0x9C3D))
    assert table.consume(0x1001, payload[:16]).pieces == []  # held until the checksum verifies
    assert table.consume(0x1011, payload[16:]).pieces == [(0, payload[:16]), (16, payload[16:])]


def test_mapping_table_detects_bad_checksum_conflicts_and_holes() -> None:
    table = MappingTable(checksums=True)
    table.add(RecvMapping(1, 0, 5, 5, 0x1122334455667788, False, 0xAAD3))
    with pytest.raises(ChecksumFailure):
        table.consume(1, b"hello")
    table = MappingTable(checksums=False)
    table.add(RecvMapping(1, 0, 10, 10, 0, False, None))
    with pytest.raises(RemoteProtocolError, match="conflicts"):
        table.add(RecvMapping(5, 100, 10, 10, 0, False, None))
    table.add(RecvMapping(1, 0, 10, 10, 0, False, None))  # an identical repeat is fine
    with pytest.raises(RemoteProtocolError, match="not covered"):
        table.consume(1, b"x" * 11)


# ---------------------------------------------------------------------------------------------- schedulers
PATHS = [PathInfo(1, 0.05, 10_000, 1400, False), PathInfo(2, 0.01, 10_000, 1400, True),
         PathInfo(3, 0.02, 0, 1400, False)]  # fmt: skip


def test_lowest_rtt_picks_the_fastest_subflow_with_room() -> None:
    assert LowestRtt().pick(PATHS, 1400) == 2


def test_round_robin_rotates() -> None:
    rr = RoundRobin()
    assert [rr.pick(PATHS, 1400) for _ in range(3)] == [1, 2, 1]


def test_backup_aware_uses_backups_only_without_regular_subflows() -> None:
    assert BackupAware().pick(PATHS, 1400) == 1
    assert BackupAware().pick(PATHS[:1], 1400) == 1
    assert BackupAware().pick([PATHS[2]], 1400) is None  # regular subflow full: wait, do not use the backup
    assert BackupAware().pick([PATHS[1]], 1400) == 2


# ---------------------------------------------------------------------------------------------- connection pair
@dataclass
class Wire:
    """Every segment that crossed the fake link, in order."""

    segments: list[Segment] = field(default_factory=list)

    def from_(self, src: ipaddress.IPv4Address) -> list[Segment]:
        return [s for s in self.segments if s.src == src]


@dataclass
class Pair:
    """A client and a server joined by an instant, lossless link (h11's ConnectionPair idea)."""

    client: MptcpConnection
    server: MptcpConnection
    wire: Wire = field(default_factory=Wire)
    events: dict[Role, list[Event]] = field(default_factory=lambda: {Role.CLIENT: [], Role.SERVER: []})
    now: float = 0.0
    drop: Callable[[Segment], bool] = lambda seg: False

    def run(self, until: float = 30.0, step_time: float = 0.001) -> None:
        """Exchange segments and fire timers until both sides are quiet (or ``until``)."""
        while self.now < until:
            moved = self._exchange()
            if not moved:
                timers = [t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None]
                if not timers:
                    return
                self.now = max(self.now + step_time, min(timers))
                for ep in (self.client, self.server):
                    timer = ep.get_timer()
                    if timer is not None and timer <= self.now:
                        ep.handle_timer(self.now)
            if self.client.finished and self.server.finished:
                self._exchange()
                return

    def _exchange(self) -> bool:
        moved = False
        for ep, peer, role in ((self.client, self.server, Role.CLIENT), (self.server, self.client, Role.SERVER)):
            for seg in ep.segments_to_send(self.now):
                moved = True
                self.wire.segments.append(seg)
                if not self.drop(seg):
                    peer.receive_segment(encode_packet(seg), self.now)
            while (event := ep.next_event()) is not None:
                self.events[role].append(event)
        if moved:
            self.now += 0.0001
        return moved

    def data(self, role: Role) -> bytes:
        return b"".join(e.data for e in self.events[role] if isinstance(e, DataReceived))


def make_pair(
    *, checksum: bool = False, server_mptcp: bool = True, client_extra: bool = False, announce: bool = False,
    client_misbehave: frozenset[Misbehave] = frozenset(), server_misbehave: frozenset[Misbehave] = frozenset(),
    backup: bool = False,
) -> Pair:  # fmt: skip
    caddrs = [LocalAddress(C1, 0)] + ([LocalAddress(C2, 1, backup=backup)] if client_extra else [])
    client = MptcpConnection(
        EndpointConfig(
            Role.CLIENT,
            caddrs,
            random.Random(1),
            checksum=checksum,
            misbehave=client_misbehave,
            scheduler=SchedulerName.BACKUP_AWARE,
        )
    )
    server = MptcpConnection(EndpointConfig(Role.SERVER, [LocalAddress(S1, 0)], random.Random(2),
                                            mptcp=server_mptcp, announce=[LocalAddress(S2, 1)] if announce else [],
                                            misbehave=server_misbehave))  # fmt: skip
    return Pair(client, server)


def transfer(pair: Pair, c2s: bytes, s2c: bytes = b"") -> None:
    pair.client.send(c2s, 0.0)
    pair.client.close(0.0)
    pair.client.connect(S1, 5201, 0.0)
    pair.run(until=0.05)
    if s2c:
        pair.server.send(s2c, pair.now)
    pair.server.close(pair.now)
    pair.run()


def mptcp_of(seg: Segment, kind: type) -> list[object]:  # type: ignore[type-arg]
    return [o for o in seg.mptcp if isinstance(o, kind)]


def test_handshake_uses_linux_mp_capable_lengths() -> None:
    """Shared rules §1.2 / §5.7: SYN 4, SYN/ACK 12, third ACK 20, first data 22."""
    pair = make_pair()
    transfer(pair, b"x" * 3000)
    client_side = pair.wire.from_(C1)
    server_side = pair.wire.from_(S1)
    syn, third, first_data = client_side[0], client_side[1], client_side[2]
    assert [o.length for o in mptcp_of(syn, MpCapable)] == [4]  # type: ignore[attr-defined]
    assert [o.length for o in mptcp_of(server_side[0], MpCapable)] == [12]  # type: ignore[attr-defined]
    assert not third.payload and [o.length for o in mptcp_of(third, MpCapable)] == [20]  # type: ignore[attr-defined]
    mpc = mptcp_of(first_data, MpCapable)[0]
    assert isinstance(mpc, MpCapable) and mpc.length == 22 and mpc.data_len == len(first_data.payload)
    assert mpc.sender_key == pair.client.keys.local_key and mpc.receiver_key == pair.server.keys.local_key
    later = client_side[3]
    dss = mptcp_of(later, Dss)[0]
    assert isinstance(dss, Dss) and dss.dsn64 and dss.has_mapping
    assert dss.dsn == (crypto.idsn_from_key(pair.client.keys.local_key) + 1 + len(first_data.payload)) % 2**64


def test_transfer_is_byte_exact_and_closes_with_data_fins() -> None:
    pair = make_pair()
    c2s, s2c = random.Random(5).randbytes(50_000), random.Random(6).randbytes(20_000)
    transfer(pair, c2s, s2c)
    assert pair.data(Role.SERVER) == c2s and pair.data(Role.CLIENT) == s2c
    assert ConnectionClosed("closed") in pair.events[Role.CLIENT]
    assert ConnectionClosed("closed") in pair.events[Role.SERVER]
    assert EndOfStream() in pair.events[Role.SERVER]
    fins = [o for s in pair.wire.segments for o in s.mptcp if isinstance(o, Dss) and o.data_fin]
    assert fins, "a DATA_FIN was sent"


def test_data_fin_without_data_uses_ssn_zero_length_one() -> None:
    """Shared rules §3.4: a DATA_FIN on a segment without payload has relative SSN 0 and length 1."""
    pair = make_pair()
    transfer(pair, b"abc", b"")
    fin_only = [o for s in pair.wire.from_(S1) for o in s.mptcp if isinstance(o, Dss) and o.data_fin]
    assert fin_only and all(o.ssn == 0 and o.data_len == 1 for o in fin_only)
    expected = (crypto.idsn_from_key(pair.server.keys.local_key) + 1) % 2**64
    assert all(o.dsn == expected for o in fin_only)


def test_data_acks_are_32_bit_until_the_peer_sent_a_64_bit_dsn() -> None:
    pair = make_pair()
    transfer(pair, b"y" * 5000, b"z" * 5000)
    client_acks = [o for s in pair.wire.from_(C1) for o in s.mptcp if isinstance(o, Dss) and o.has_ack]
    assert not client_acks[0].ack64
    assert client_acks[-1].ack64


def test_join_hmacs_and_fourth_ack() -> None:
    pair = make_pair(client_extra=True)
    transfer(pair, b"j" * 200_000)
    join_syn = next(s for s in pair.wire.segments if mptcp_of(s, MpJoinSyn))
    synack = next(s for s in pair.wire.segments if mptcp_of(s, MpJoinSynAck))
    ack = next(s for s in pair.wire.segments if mptcp_of(s, MpJoinAck))
    js, jsa, ja = mptcp_of(join_syn, MpJoinSyn)[0], mptcp_of(synack, MpJoinSynAck)[0], mptcp_of(ack, MpJoinAck)[0]
    assert isinstance(js, MpJoinSyn) and isinstance(jsa, MpJoinSynAck) and isinstance(ja, MpJoinAck)
    kc, ks = pair.client.keys.local_key, pair.server.keys.local_key
    assert js.token == crypto.token_from_key(ks) and js.address_id == 1
    assert jsa.truncated_hmac == crypto.join_synack_truncated_hmac(ks, kc, jsa.nonce, js.nonce)
    assert ja.hmac == crypto.join_ack_hmac(kc, ks, js.nonce, jsa.nonce)
    # JOIN-005: no payload from the initiator before the responder's fourth ACK.
    join_flow = [s for s in pair.wire.segments if (s.src, s.sport) == (C2, join_syn.sport) or s.dst == C2]
    fourth = next(i for i, s in enumerate(join_flow) if s.src == S1 and not s.syn)
    assert all(not s.payload for s in join_flow[:fourth] if s.src == C2)
    assert any(s.payload for s in join_flow if s.src == C2)
    assert sum(isinstance(e, SubflowAdded) for e in pair.events[Role.CLIENT]) == 2
    assert pair.data(Role.SERVER) == b"j" * 200_000


def test_bad_synack_hmac_makes_the_initiator_reset_with_mp_tcprst() -> None:
    pair = make_pair(client_extra=True, server_misbehave=frozenset({Misbehave.BAD_JOIN_SYNACK_HMAC}))
    transfer(pair, b"k" * 100_000)
    resets = [s for s in pair.wire.from_(C2) if s.rst]
    assert resets and mptcp_of(resets[0], MpTcpRst) == [MpTcpRst(0, 0x01)]
    assert not [s for s in pair.wire.from_(C2) if mptcp_of(s, MpJoinAck)]
    assert any(isinstance(e, SubflowClosed) and e.reason == "hmac" for e in pair.events[Role.CLIENT])
    assert pair.data(Role.SERVER) == b"k" * 100_000


def test_checksums_negotiated_with_the_a_bit_and_sent_on_every_mapping() -> None:
    pair = make_pair(checksum=True)
    transfer(pair, b"c" * 20_000, b"d" * 3000)
    mpcs = [o for s in pair.wire.segments for o in s.mptcp if isinstance(o, MpCapable)]
    assert all(o.checksum_required for o in mpcs)
    first = next(o for o in mpcs if o.data_len is not None)
    assert first.length == 24
    for seg in pair.wire.segments:
        for opt in seg.mptcp:
            if isinstance(opt, Dss) and opt.has_mapping:
                assert opt.checksum is not None and opt.dsn is not None and opt.ssn is not None
                assert crypto.dss_checksum_ok(opt.dsn, opt.ssn, opt.data_len or 0, seg.payload, opt.checksum)
    assert pair.data(Role.SERVER) == b"c" * 20_000


def test_fallback_when_the_server_does_not_answer_mp_capable() -> None:
    pair = make_pair(server_mptcp=False)
    transfer(pair, b"f" * 30_000, b"g" * 1000)
    assert isinstance(pair.events[Role.CLIENT][0], FellBack)
    assert Connected(mptcp=False) in pair.events[Role.CLIENT]
    assert all(not s.mptcp for s in pair.wire.segments[1:])  # only the SYN offered MP_CAPABLE
    assert pair.data(Role.SERVER) == b"f" * 30_000 and pair.data(Role.CLIENT) == b"g" * 1000
    assert ConnectionClosed("closed") in pair.events[Role.CLIENT]


def test_syn_retries_drop_mp_capable_like_linux() -> None:
    """Shared rules §5.8: after 2 unanswered SYNs with MP_CAPABLE, the SYN goes without it."""
    pair = make_pair()
    pair.drop = lambda seg: seg.syn and not seg.has_ack and bool(seg.mptcp)
    transfer(pair, b"h" * 1000)
    syns = [s for s in pair.wire.from_(C1) if s.syn]
    assert [bool(s.mptcp) for s in syns] == [True, True, False]
    assert any(isinstance(e, FellBack) for e in pair.events[Role.CLIENT])
    assert pair.data(Role.SERVER) == b"h" * 1000


def test_fastclose_sends_rst_with_the_peers_key_on_every_subflow() -> None:
    pair = make_pair(client_extra=True)
    pair.client.send(b"q" * 100_000, 0.0)
    pair.client.connect(S1, 5201, 0.0)
    pair.run(until=1.0)
    pair.client.abort(pair.now)
    pair.run(until=2.0)
    resets = [s for s in pair.wire.from_(C1) + pair.wire.from_(C2) if s.rst]
    assert len(resets) == 2
    for rst in resets:
        assert mptcp_of(rst, MpFastclose) == [MpFastclose(pair.server.keys.local_key)]
        assert len(mptcp_of(rst, MpTcpRst)) == 1
    assert ConnectionClosed("fastclose") in pair.events[Role.SERVER]


def test_add_addr_is_verified_echoed_and_joined() -> None:
    pair = make_pair(announce=True)
    transfer(pair, b"a" * 150_000)
    adds = [o for s in pair.wire.from_(S1) for o in s.mptcp if isinstance(o, AddAddr)]
    assert adds and not adds[0].echo
    kc, ks = pair.client.keys.local_key, pair.server.keys.local_key
    assert adds[0].hmac == crypto.add_addr_hmac(ks, kc, 1, S2, None)
    echoes = [o for s in pair.wire.from_(C1) for o in s.mptcp if isinstance(o, AddAddr)]
    assert echoes == [AddAddr(1, S2, None, echo=True)]
    assert AddressAnnounced(1, S2, None) in pair.events[Role.CLIENT]
    assert any(s.dst == S2 and s.syn for s in pair.wire.segments)


def test_mp_prio_reaches_the_peer() -> None:
    pair = make_pair(client_extra=True)
    pair.client.send(b"p" * 300_000, 0.0)
    pair.client.connect(S1, 5201, 0.0)
    pair.run(until=0.2)
    pair.client.set_backup(2, True, pair.now)
    pair.run(until=0.3)
    assert any(mptcp_of(s, MpPrio) == [MpPrio(True)] for s in pair.wire.from_(C2))
    assert PriorityChanged(2, True) in pair.events[Role.SERVER]


def test_remove_addr_closes_the_subflows_of_that_address() -> None:
    pair = make_pair(announce=True)
    pair.client.send(b"r" * 400_000, 0.0)
    pair.client.connect(S1, 5201, 0.0)
    pair.run(until=0.2)
    pair.server.remove_address(1, pair.now)
    pair.client.close(pair.now)
    pair.server.close(pair.now)
    pair.run()
    removes = [o for s in pair.wire.from_(S1) for o in s.mptcp if isinstance(o, RemoveAddr)]
    assert removes == [RemoveAddr((1,))]
    assert pair.data(Role.SERVER) == b"r" * 400_000


def test_send_after_close_is_our_own_error() -> None:
    pair = make_pair()
    pair.client.close(0.0)
    with pytest.raises(LocalProtocolError):
        pair.client.send(b"late", 0.0)


def test_join_with_unknown_token_is_reset_with_reason_1() -> None:
    pair = make_pair()
    pair.client.send(b"t" * 100, 0.0)
    pair.client.connect(S1, 5201, 0.0)
    pair.run(until=0.05)
    bogus = Segment(C2, 40001, S1, 5201, 1000, 0, SYN, 65535, mptcp=(MpJoinSyn(False, 3, 0xDEADBEEF, 1),))
    pair.server.receive_segment(bogus, pair.now)
    reply = pair.server.segments_to_send(pair.now)
    assert reply and reply[0].rst and mptcp_of(reply[0], MpTcpRst) == [MpTcpRst(0, 0x01)]
