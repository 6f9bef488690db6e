"""Property tests for the option codec and the TCP option walker.

Two invariants, the second borrowed from h11's fuzz harness:

* build -> parse is the identity for every option value the constructors accept, and
  parse -> build gives back the input bytes, whatever they were;
* parsing or walking arbitrary bytes never raises and only returns the declared types.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.mptcp import (
    OPTION_TYPES,
    AddAddr,
    Dss,
    MalformedOption,
    MpCapable,
    MpExperimental,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MptcpOption,
    MpTcpRst,
    RemoveAddr,
    UnknownMptcpOption,
    parse_option,
)
from analyzer.tcp_options import TcpOptions, walk_tcp_options

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
addresses = st.one_of(
    st.integers(0, 2**32 - 1).map(IPv4Address),
    st.integers(0, 2**128 - 1).map(IPv6Address),
)


@st.composite
def mp_capables(draw: st.DrawFn) -> MpCapable:
    present = draw(st.integers(0, 4))  # how many optional fields, in wire order
    values = [draw(u64), draw(u64), draw(u16), draw(u16)]
    fields: list[int | None] = [v if i < present else None for i, v in enumerate(values)]
    return MpCapable(draw(st.integers(0, 15)), draw(u8), *fields)


@st.composite
def dsses(draw: st.DrawFn) -> Dss:
    flags = draw(u8)  # every combination of F m M a A and the reserved bits
    data_ack = draw(u64 if flags & 0x02 else u32) if flags & 0x01 else None
    dsn = ssn = data_len = checksum = None
    if flags & 0x04:
        dsn = draw(u64 if flags & 0x08 else u32)
        ssn = draw(u32)
        data_len = draw(st.one_of(st.just(0), st.just(1), u16))
        checksum = draw(st.none() | u16)
    return Dss(flags, data_ack, dsn, ssn, data_len, checksum, draw(st.integers(0, 15)))


@st.composite
def add_addrs(draw: st.DrawFn) -> AddAddr:
    address = draw(addresses)
    port = draw(st.none() | u16)
    if draw(st.booleans()):
        return AddAddr(draw(u8), address, port, v0=True)
    echo = draw(st.booleans())
    reserved = draw(st.integers(0, 7) if echo else st.sampled_from([0, 1, 4, 5, 6, 7]))
    return AddAddr(draw(u8), address, port, echo, draw(st.none() | u64), False, reserved)


@st.composite
def unknowns(draw: st.DrawFn) -> UnknownMptcpOption:
    subtype = draw(st.integers(9, 14))
    body = draw(st.binary(max_size=37))
    raw = bytes((30, 3 + len(body), subtype << 4 | draw(st.integers(0, 15)))) + body
    return UnknownMptcpOption(subtype, raw)


valid_options: st.SearchStrategy[MptcpOption] = st.one_of(
    mp_capables(),
    st.builds(MpJoinSyn, st.booleans(), u8, u32, u32, st.integers(0, 7)),
    st.builds(MpJoinSynAck, st.booleans(), u8, u64, u32, st.integers(0, 7)),
    st.builds(MpJoinAck, st.binary(min_size=20, max_size=20), st.integers(0, 0xFFF)),
    dsses(),
    add_addrs(),
    st.builds(RemoveAddr, st.lists(u8, min_size=1, max_size=37).map(tuple), st.integers(0, 15)),
    st.builds(MpPrio, st.booleans(), st.none() | u8, st.integers(0, 7)),
    st.builds(MpFail, u64, st.integers(0, 0xFFF)),
    st.builds(MpFastclose, u64, st.integers(0, 0xFFF)),
    st.builds(MpTcpRst, st.integers(0, 15), u8),
    st.builds(MpExperimental, st.binary(max_size=37), st.integers(0, 15)),
    unknowns(),
)


@settings(max_examples=2000)
@given(valid_options)
def test_build_then_parse_is_identity(opt: MptcpOption) -> None:
    raw = opt.build()
    assert raw[0] == 30
    assert raw[1] == len(raw) == opt.length
    assert raw[2] >> 4 == opt.subtype
    assert parse_option(raw) == opt


@st.composite
def framed_options(draw: st.DrawFn) -> bytes:
    """Bytes with a correct kind and length byte and any subtype and contents."""
    length = draw(st.integers(3, 40))
    return bytes((30, length, draw(u8))) + draw(st.binary(min_size=length - 3, max_size=length - 3))


@settings(max_examples=3000)
@given(st.one_of(framed_options(), st.binary(max_size=48)))
def test_parse_never_raises_and_builds_back_the_input(raw: bytes) -> None:
    opt = parse_option(raw)
    assert isinstance(opt, OPTION_TYPES)
    assert opt.build() == raw
    assert parse_option(opt.build()) == opt
    if isinstance(opt, MalformedOption):
        assert opt.reason
    else:
        assert opt.length == len(raw) == raw[1]


@settings(max_examples=2000)
@given(
    buf=st.binary(max_size=70),
    start=st.integers(0, 70),
    end=st.integers(0, 70),
    captured=st.none() | st.integers(0, 80),
)
def test_walker_never_raises_on_arbitrary_bytes(buf: bytes, start: int, end: int, captured: int | None) -> None:
    opts = walk_tcp_options(buf, start, end, captured)
    assert isinstance(opts, TcpOptions)
    assert all(isinstance(opt, OPTION_TYPES) for opt in opts.mptcp)
    assert not (opts.malformed is not None and opts.truncated)


@st.composite
def option_areas(draw: st.DrawFn) -> tuple[bytes, list[MptcpOption]]:
    """A TCP option area built from valid options, NOP padding and a final EOL."""
    opts = draw(st.lists(valid_options, max_size=4))
    area = b""
    for opt in opts:
        area += b"\x01" * draw(st.integers(0, 3)) + opt.build()
    if draw(st.booleans()):
        area += b"\x00" + draw(st.binary(max_size=8))  # anything after EOL is ignored
    return area, opts


@settings(max_examples=1000)
@given(option_areas(), st.binary(max_size=24))
def test_walker_returns_every_option_of_a_well_formed_area(
    area_opts: tuple[bytes, list[MptcpOption]], lead: bytes
) -> None:
    area, expected = area_opts
    buf = lead + area
    opts = walk_tcp_options(buf, len(lead), len(buf))
    assert opts.mptcp == expected
    assert opts.malformed is None and not opts.truncated
    for cut in range(len(lead), len(buf)):
        partial = walk_tcp_options(buf, len(lead), len(buf), cut)
        assert partial.malformed is None
        assert partial.mptcp == expected[: len(partial.mptcp)]
