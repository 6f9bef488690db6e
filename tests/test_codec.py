"""MPTCP option codec and TCP option walker: vectors TV-7/TV-8, every length rule, walker edge cases.

Encodings come from shared/mptcp-rules.md sections 1 and 2.4; layouts from RFC 8684 section 3
(RFC 6824 for the v0 ADD_ADDR and MP_PRIO forms).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from analyzer.mptcp import (
    OPTION_TYPES,
    REASON_NAMES,
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
    Subtype,
    UnknownMptcpOption,
    dss_expected_length,
    parse_option,
)
from analyzer.tcp_options import TcpOptions, walk_tcp_options

KEY_A = 0x0102030405060708
KEY_B = 0x1112131415161718


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


def roundtrip(raw: bytes) -> MptcpOption:
    """Parse, check the result builds back to the same bytes, and return it."""
    opt = parse_option(raw)
    assert opt.build() == raw
    assert opt.length == len(raw)
    assert parse_option(opt.build()) == opt
    return opt


# --- TV-7 / TV-8 encodings -----------------------------------------------------------------------------


def test_tv7_dss_64_bit_with_checksum() -> None:
    opt = roundtrip(h("1e1c200f 0102030405060708 1122334455667788 00000001 0005 aad2"))
    assert opt == Dss(flags=0x0F, data_ack=KEY_A, dsn=0x1122334455667788, ssn=1, data_len=5, checksum=0xAAD2)
    assert isinstance(opt, Dss)
    assert (opt.has_ack, opt.ack64, opt.has_mapping, opt.dsn64, opt.data_fin) == (
        True,
        True,
        True,
        True,
        False,
    )
    assert not opt.is_infinite_mapping
    assert opt.length == 28


def test_tv7_dss_32_bit_values_are_kept_as_on_the_wire() -> None:
    opt = roundtrip(h("1e142005 05060708 55667788 00000001 0005 aad2"))
    assert opt == Dss(flags=0x05, data_ack=0x05060708, dsn=0x55667788, ssn=1, data_len=5, checksum=0xAAD2)
    assert isinstance(opt, Dss)
    assert not opt.ack64 and not opt.dsn64


@pytest.mark.parametrize(
    ("hex_", "expected"),
    [
        ("1e040101", MpCapable(version=1, flags=0x01)),
        ("1e0c0101 1112131415161718", MpCapable(version=1, flags=0x01, sender_key=KEY_B)),
        (
            "1e140101 0102030405060708 1112131415161718",
            MpCapable(version=1, flags=0x01, sender_key=KEY_A, receiver_key=KEY_B),
        ),
        ("1e0c7000 1112131415161718", MpFastclose(receiver_key=KEY_B)),
        ("1e048106", MpTcpRst(flags=0x1, reason=0x06)),
        ("1e0c6000 1122334455667788", MpFail(dsn=0x1122334455667788)),
        ("1e0351", MpPrio(backup=True)),
        ("1e05400203", RemoveAddr(address_ids=(2, 3))),
        (
            "1e0c1002 ccad45ac a1a2a3a4",
            MpJoinSyn(backup=False, address_id=2, token=0xCCAD45AC, nonce=0xA1A2A3A4),
        ),
        (
            "1e103001 0a000201 014b3007310c639c",
            AddAddr(address_id=1, address=IPv4Address("10.0.2.1"), hmac=0x014B3007310C639C),
        ),
        ("1e083101 0a000201", AddAddr(address_id=1, address=IPv4Address("10.0.2.1"), echo=True)),
    ],
)
def test_tv8_encodings(hex_: str, expected: MptcpOption) -> None:
    assert roundtrip(h(hex_)) == expected
    assert expected.build() == h(hex_)


def test_mp_capable_with_data_and_checksum() -> None:
    raw = h("1e180181 0102030405060708 1112131415161718 0004 01ae")
    opt = roundtrip(raw)
    assert opt == MpCapable(1, 0x81, KEY_A, KEY_B, data_len=4, checksum=0x01AE)
    assert isinstance(opt, MpCapable)
    assert opt.checksum_required and opt.hmac_sha
    assert not opt.extensibility and not opt.no_join_to_source
    no_csum = roundtrip(h("1e160101 0102030405060708 1112131415161718 0010"))
    assert no_csum == MpCapable(1, 0x01, KEY_A, KEY_B, data_len=16)


def test_mp_capable_flag_properties() -> None:
    opt = MpCapable(version=1, flags=0xE1)
    assert (opt.checksum_required, opt.extensibility, opt.no_join_to_source, opt.hmac_sha) == (True,) * 4
    assert opt.subtype is Subtype.MP_CAPABLE


def test_mp_capable_v0_syn_carries_the_senders_key() -> None:
    opt = roundtrip(h("1e0c0081 9c9eabd1e46a33b2"))
    assert opt == MpCapable(version=0, flags=0x81, sender_key=0x9C9EABD1E46A33B2)


def test_mp_join_synack_and_ack() -> None:
    synack = roundtrip(h("1e101101 864b40428762fd06 b1b2b3b4"))
    assert synack == MpJoinSynAck(backup=True, address_id=1, truncated_hmac=0x864B40428762FD06, nonce=0xB1B2B3B4)
    ack = roundtrip(h("1e181000 53037f2899475529844115fd07e665d23d3554fb"))
    assert ack == MpJoinAck(hmac=h("53037f2899475529844115fd07e665d23d3554fb"))


def test_reserved_bits_survive_a_round_trip() -> None:
    cases = {
        "1e0c1e02 ccad45ac a1a2a3a4": MpJoinSyn(False, 2, 0xCCAD45AC, 0xA1A2A3A4, reserved=7),
        "1e181abc" + "00" * 20: MpJoinAck(bytes(20), reserved=0xABC),
        "1e0825e1 01020304": Dss(flags=0xE1, data_ack=0x01020304, reserved=5),
        "1e083501 0a000201": AddAddr(1, IPv4Address("10.0.2.1"), echo=True, reserved=2),
        "1e045f07": MpPrio(backup=True, address_id=7, reserved=7),
        "1e0c6fff 1122334455667788": MpFail(0x1122334455667788, reserved=0xFFF),
        "1e0c7123 1112131415161718": MpFastclose(KEY_B, reserved=0x123),
        "1e048f01": MpTcpRst(flags=0xF, reason=1),
        "1e0441ff": RemoveAddr((0xFF,), reserved=1),
        "1e04fa99": MpExperimental(b"\x99", nibble=0xA),
    }
    for hex_, expected in cases.items():
        assert roundtrip(h(hex_)) == expected, hex_


def test_dss_data_fin_only_and_infinite_mapping() -> None:
    fin = roundtrip(h("1e122015 00000001 00000010 00000000 0001"))
    assert isinstance(fin, Dss)
    assert fin.data_fin and fin.data_len == 1 and fin.ssn == 0 and fin.dsn == 0x10
    infinite = roundtrip(h("1e102004 00000010 00000000 0000 0000"))
    assert isinstance(infinite, Dss)
    assert infinite.is_infinite_mapping and infinite.checksum == 0
    ack_only = Dss(flags=0x01, data_ack=5)
    assert not ack_only.is_infinite_mapping and not ack_only.has_mapping


def test_add_addr_v1_layouts() -> None:
    v4 = IPv4Address("192.0.2.1")
    v6 = IPv6Address("2001:db8::1")
    for opt, length in [
        (AddAddr(1, v4, echo=True), 8),
        (AddAddr(1, v4, port=8080, echo=True), 10),
        (AddAddr(1, v4, hmac=1), 16),
        (AddAddr(1, v4, port=0, hmac=1), 18),
        (AddAddr(1, v6, echo=True), 20),
        (AddAddr(1, v6, port=1, echo=True), 22),
        (AddAddr(1, v6, hmac=2**64 - 1), 28),
        (AddAddr(1, v6, port=65535, hmac=0), 30),
    ]:
        raw = opt.build()
        assert len(raw) == opt.length == length
        assert roundtrip(raw) == opt


def test_add_addr_v1_without_echo_or_hmac_parses_for_the_checker_to_flag() -> None:
    opt = roundtrip(h("1e083001 0a000201"))
    assert opt == AddAddr(1, IPv4Address("10.0.2.1"))
    assert isinstance(opt, AddAddr)
    assert not opt.echo and opt.hmac is None


def test_add_addr_echo_with_hmac_length_keeps_the_hmac() -> None:
    opt = roundtrip(h("1e103101 0a000201 014b3007310c639c"))
    assert opt == AddAddr(1, IPv4Address("10.0.2.1"), echo=True, hmac=0x014B3007310C639C)


def test_add_addr_v0_layouts() -> None:
    """RFC 6824: the low nibble of byte 2 is IPVer; no echo, no HMAC."""
    assert roundtrip(h("1e083401 0a010202")) == AddAddr(1, IPv4Address("10.1.2.2"), v0=True)
    assert roundtrip(h("1e0a3402 0a010202 1f90")) == AddAddr(2, IPv4Address("10.1.2.2"), port=8080, v0=True)
    assert roundtrip(h("1e143603 20010db8000000000000000000000001")) == AddAddr(3, IPv6Address("2001:db8::1"), v0=True)
    assert roundtrip(h("1e163603 20010db8000000000000000000000001 0050")) == AddAddr(
        3, IPv6Address("2001:db8::1"), port=80, v0=True
    )


def test_add_addr_v0_nibble_must_agree_with_the_length() -> None:
    for hex_ in [
        "1e083601 0a010202",
        "1e143403 20010db8000000000000000000000001",
        "1e103401 0a000201 0000000000000000",
    ]:
        opt = parse_option(h(hex_))
        assert isinstance(opt, MalformedOption), hex_
        assert opt.subtype == Subtype.ADD_ADDR


def test_mp_prio_v0_with_address_id() -> None:
    assert roundtrip(h("1e045003")) == MpPrio(backup=False, address_id=3)
    assert roundtrip(h("1e0350")) == MpPrio(backup=False)


def test_mp_tcprst_flags_and_reasons() -> None:
    opt = MpTcpRst(flags=0x01, reason=0x06)
    assert opt.transient
    assert opt.reason_name == "Middlebox interference"
    assert not MpTcpRst(flags=0x0E, reason=0).transient
    assert MpTcpRst(flags=0, reason=0x42).reason_name == "unassigned reason 0x42"
    assert sorted(REASON_NAMES) == [0, 1, 2, 3, 4, 5, 6]
    assert REASON_NAMES[0x01] == "MPTCP-specific error"
    assert MpTcpRst.REASON_NAMES is REASON_NAMES


def test_experimental_and_unassigned_subtypes_are_opaque() -> None:
    assert roundtrip(h("1e03f0")) == MpExperimental(b"")
    assert roundtrip(h("1e06f1 010203")) == MpExperimental(b"\x01\x02\x03", nibble=1)
    for subtype in range(9, 15):
        raw = bytes((30, 5, subtype << 4 | 3, 0xAA, 0xBB))
        assert roundtrip(raw) == UnknownMptcpOption(subtype, raw)


def test_every_option_has_a_subtype_class_attribute() -> None:
    assert MpJoinSyn.subtype is MpJoinSynAck.subtype is MpJoinAck.subtype is Subtype.MP_JOIN
    assert Dss.subtype is Subtype.DSS
    assert AddAddr.subtype is Subtype.ADD_ADDR
    assert RemoveAddr.subtype is Subtype.REMOVE_ADDR
    assert MpPrio.subtype is Subtype.MP_PRIO
    assert MpFail.subtype is Subtype.MP_FAIL
    assert MpFastclose.subtype is Subtype.MP_FASTCLOSE
    assert MpTcpRst.subtype is Subtype.MP_TCPRST
    assert MpExperimental.subtype is Subtype.MP_EXPERIMENTAL


def test_options_are_immutable_and_hashable() -> None:
    opt = Dss(flags=0x01, data_ack=1)
    with pytest.raises(AttributeError):
        opt.flags = 0  # type: ignore[misc]
    assert len({opt, Dss(flags=0x01, data_ack=1)}) == 1


# --- length rules --------------------------------------------------------------------------------------


def _raw(subtype: int, length: int, nibble: int = 0, byte3: int = 0) -> bytes:
    body = bytes((30, length, (subtype << 4) | nibble, byte3)) + bytes(range(4, length))
    return body[:length]


V1_ADD_ADDR_LENGTHS = {8, 10, 16, 18, 20, 22, 28, 30}


@pytest.mark.parametrize(
    ("subtype", "nibble", "byte3", "valid"),
    [
        (Subtype.MP_CAPABLE, 1, 0x01, {4, 12, 20, 22, 24}),
        (Subtype.MP_CAPABLE, 0, 0x81, {4, 12, 20, 22, 24}),
        (Subtype.MP_JOIN, 0, 0, {12, 16, 24}),
        (Subtype.ADD_ADDR, 0, 0, V1_ADD_ADDR_LENGTHS),
        (Subtype.ADD_ADDR, 1, 0, V1_ADD_ADDR_LENGTHS),
        (Subtype.ADD_ADDR, 0xE, 0, V1_ADD_ADDR_LENGTHS),
        (Subtype.ADD_ADDR, 4, 0, {8, 10}),
        (Subtype.ADD_ADDR, 6, 0, {20, 22}),
        (Subtype.REMOVE_ADDR, 0, 1, set(range(4, 41))),
        (Subtype.MP_PRIO, 1, 0, {3, 4}),
        (Subtype.MP_FAIL, 0, 0, {12}),
        (Subtype.MP_FASTCLOSE, 0, 0, {12}),
        (Subtype.MP_TCPRST, 1, 6, {4}),
        (Subtype.MP_EXPERIMENTAL, 0, 0, set(range(3, 41))),
        *[(s, 0, 0, set(range(3, 41))) for s in range(9, 15)],
    ],
)
def test_valid_lengths_per_subtype(subtype: int, nibble: int, byte3: int, valid: set[int]) -> None:
    for length in range(3, 41):
        opt = parse_option(_raw(subtype, length, nibble, byte3))
        if length in valid:
            assert not isinstance(opt, MalformedOption), (length, opt)
            assert opt.build() == _raw(subtype, length, nibble, byte3)
        else:
            assert isinstance(opt, MalformedOption), (length, opt)
            assert opt.subtype == subtype


@pytest.mark.parametrize("flags", range(32))
def test_dss_length_follows_the_flags(flags: int) -> None:
    expected = dss_expected_length(flags)
    mapping = bool(flags & 0x04)
    valid = {expected, expected + 2} if mapping else {expected}
    for length in range(3, 41):
        opt = parse_option(_raw(Subtype.DSS, length, 0, flags))
        if length in valid:
            assert isinstance(opt, Dss), (length, opt)
            assert (opt.checksum is not None) == (length == expected + 2)
        else:
            assert isinstance(opt, MalformedOption), (length, opt)


def test_dss_expected_length_table() -> None:
    """shared/mptcp-rules.md section 1.4 table, without the checksum."""
    table = {0x01: 8, 0x03: 12, 0x04: 14, 0x0C: 18, 0x05: 18, 0x0D: 22, 0x07: 22, 0x0F: 26, 0x00: 4}
    for flags, length in table.items():
        assert dss_expected_length(flags) == length
        assert dss_expected_length(flags | 0xF0) == length  # F and reserved bits take no room


@pytest.mark.parametrize(
    ("hex_", "subtype", "reason"),
    [
        ("1e050100 00", Subtype.MP_CAPABLE, "MP_CAPABLE length 5 is not one of 4, 12, 20, 22, 24"),
        ("1e0d1000" + "00" * 9, Subtype.MP_JOIN, "MP_JOIN length 13 is not one of 12, 16, 24"),
        ("1e032000", None, "length byte 3 does not match the 4 bytes given"),
        ("1e0320", Subtype.DSS, "DSS length 3 leaves no room for the flags byte"),
        ("1e092001 0000000000", Subtype.DSS, "DSS length 9 does not match flags 0x01 (expected 8)"),
        ("1e0f2004" + "00" * 11, Subtype.DSS, "DSS length 15 does not match flags 0x04 (expected 14 or 16)"),
        ("1e0a2001 000000000000", Subtype.DSS, "DSS length 10 does not match flags 0x01 (expected 8)"),
        (
            "1e093001 0a00020100",
            Subtype.ADD_ADDR,
            "ADD_ADDR length 9 is not one of 8, 10, 16, 18, 20, 22, 28, 30",
        ),
        ("1e03 40", Subtype.REMOVE_ADDR, "REMOVE_ADDR length 3 carries no address ID"),
        ("1e055000 00", Subtype.MP_PRIO, "MP_PRIO length 5 is not 3 (or 4 in v0)"),
        ("1e0b6000" + "00" * 7, Subtype.MP_FAIL, "MP_FAIL length 11 is not 12"),
        ("1e0d7000" + "00" * 9, Subtype.MP_FASTCLOSE, "MP_FASTCLOSE length 13 is not 12"),
        ("1e038f", Subtype.MP_TCPRST, "MP_TCPRST length 3 is not 4"),
        ("1e058100 00", Subtype.MP_TCPRST, "MP_TCPRST length 5 is not 4"),
    ],
)
def test_malformed_reasons(hex_: str, subtype: int | None, reason: str) -> None:
    raw = h(hex_)
    opt = parse_option(raw)
    if subtype is None:  # length byte mismatch: subtype still read from byte 2
        assert opt == MalformedOption(Subtype.DSS, raw, reason)
    else:
        assert opt == MalformedOption(subtype, raw, reason)
    assert opt.build() == raw


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "0-byte option has no room for kind and length"),
        (b"\x1e", "1-byte option has no room for kind and length"),
        (b"\x1e\x02", "option length 2 leaves no room for the subtype"),
        (b"\x02\x04\x05\xb4", "option kind 2 is not MPTCP (30)"),
        (b"\x1e\x03", "length byte 3 does not match the 2 bytes given"),
    ],
)
def test_parse_option_on_too_little_or_foreign_input(raw: bytes, reason: str) -> None:
    assert parse_option(raw) == MalformedOption(None, raw, reason)


def test_parse_option_accepts_bytearray_and_memoryview() -> None:
    raw = h("1e05400203")
    assert parse_option(bytearray(raw)) == parse_option(memoryview(raw)) == RemoveAddr((2, 3))


# --- constructor invariants ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: MpCapable(version=16, flags=0),
        lambda: MpCapable(version=1, flags=256),
        lambda: MpCapable(version=1, flags=1, receiver_key=1),
        lambda: MpCapable(version=1, flags=1, sender_key=1, data_len=5),
        lambda: MpCapable(version=1, flags=1, sender_key=1, receiver_key=2, checksum=5),
        lambda: MpCapable(version=1, flags=1, sender_key=2**64),
        lambda: MpJoinSyn(False, 256, 0, 0),
        lambda: MpJoinSyn(False, 1, 2**32, 0),
        lambda: MpJoinSyn(False, 1, 0, 0, reserved=8),
        lambda: MpJoinSynAck(False, 1, 2**64, 0),
        lambda: MpJoinAck(bytes(19)),
        lambda: MpJoinAck(bytes(20), reserved=0x1000),
        lambda: Dss(flags=0x01),
        lambda: Dss(flags=0x00, data_ack=1),
        lambda: Dss(flags=0x01, data_ack=2**32),
        lambda: Dss(flags=0x04, dsn=1, ssn=1),
        lambda: Dss(flags=0x04, dsn=2**32, ssn=1, data_len=1),
        lambda: Dss(flags=0x00, dsn=1, ssn=1, data_len=1),
        lambda: Dss(flags=0x01, data_ack=1, checksum=1),
        lambda: Dss(flags=0x100),
        lambda: Dss(flags=0, reserved=16),
        lambda: AddAddr(1, IPv4Address("10.0.0.1"), port=65536),
        lambda: AddAddr(1, IPv4Address("10.0.0.1"), v0=True, hmac=1),
        lambda: AddAddr(1, IPv4Address("10.0.0.1"), v0=True, echo=True),
        lambda: AddAddr(1, IPv4Address("10.0.0.1"), reserved=2),  # nibble 4 would read as v0
        lambda: AddAddr(1, IPv4Address("10.0.0.1"), reserved=3),  # nibble 6 would read as v0
        lambda: AddAddr(1, "10.0.0.1"),  # type: ignore[arg-type]
        lambda: RemoveAddr(()),
        lambda: RemoveAddr((256,)),
        lambda: RemoveAddr(tuple(range(253))),
        lambda: MpPrio(True, address_id=256),
        lambda: MpFail(2**64),
        lambda: MpFastclose(-1),
        lambda: MpTcpRst(flags=16, reason=0),
        lambda: MpTcpRst(flags=0, reason=256),
        lambda: MpExperimental(bytes(253)),
        lambda: UnknownMptcpOption(2, h("1e032000"[:6])),
        lambda: UnknownMptcpOption(9, h("1e0490")),
    ],
)
def test_impossible_field_combinations_raise_value_error(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_remove_addr_stores_a_tuple() -> None:
    opt = RemoveAddr([1, 2])  # type: ignore[arg-type]
    assert opt.address_ids == (1, 2)
    assert opt.build() == h("1e05400102")


# --- TCP option walker ---------------------------------------------------------------------------------


def walk(options: bytes, captured: int | None = None, lead: bytes = bytes(20)) -> TcpOptions:
    """Walk ``options`` placed after a 20-byte header, as the decoder does."""
    buf = lead + options
    end = len(buf)
    return walk_tcp_options(buf, len(lead), end, None if captured is None else len(lead) + captured)


def test_walker_decodes_standard_options() -> None:
    opts = walk(h("020405b4 0402 080a0000000100000002 01 030307 050a0000000a00000014 2206aabbccdd"))
    assert opts.mss == 1460
    assert opts.sack_permitted
    assert opts.timestamp == (1, 2)
    assert opts.wscale == 7
    assert opts.sack_blocks == ((10, 20),)
    assert opts.fastopen == h("aabbccdd")
    assert opts.mptcp == []
    assert opts.malformed is None and not opts.truncated


def test_walker_sack_blocks_and_empty_fastopen() -> None:
    opts = walk(h("0101 051a 00000001 00000002 00000003 00000004 00000005 00000006 2202"))
    assert opts.sack_blocks == ((1, 2), (3, 4), (5, 6))
    assert opts.fastopen == b""


def test_walker_skips_standard_options_with_a_wrong_length() -> None:
    opts = walk(h("020505b400 0403 00 080b" + "00" * 9 + "0304 0700 0505 000000"))
    assert opts.mss is None and not opts.sack_permitted and opts.timestamp is None
    assert opts.wscale is None and opts.sack_blocks == ()
    assert opts.malformed is None


def test_walker_nop_and_eol_padding() -> None:
    dss = h("1e082001 01020304")
    opts = walk(h("0101") + dss + h("0101 00 00 00"))
    assert opts.mptcp == [Dss(flags=0x01, data_ack=0x01020304)]
    assert opts.malformed is None and not opts.truncated


def test_walker_stops_at_eol_even_before_garbage() -> None:
    opts = walk(h("00 1e 00 ff ff 01"))
    assert opts == TcpOptions()


@pytest.mark.parametrize("length", [0, 1])
def test_walker_length_below_two_is_malformed(length: int) -> None:
    opts = walk(h("0101 0101 02") + bytes((length,)) + h("05b4 0101"))
    assert opts.malformed == f"option length {length} at offset 4"
    assert opts.mss is None and not opts.truncated


def test_walker_mptcp_length_below_two_also_yields_a_malformed_option() -> None:
    opts = walk(h("0101 1e01 0000"))
    assert opts.malformed == "option length 1 at offset 2"
    assert opts.mptcp == [MalformedOption(None, h("1e01"), "length byte 1 does not match the 2 bytes given")]


def test_walker_mptcp_length_two_is_a_malformed_option() -> None:
    opts = walk(h("1e02 0101 020405b4"))
    assert opts.mptcp == [MalformedOption(None, h("1e02"), "option length 2 leaves no room for the subtype")]
    assert opts.mss == 1460
    assert opts.malformed is None


def test_walker_option_past_the_header_is_malformed() -> None:
    opts = walk(h("0101 1e0c 2001 00000000"))
    assert opts.malformed == "option kind 30 length 12 at offset 2 runs past the header (8 bytes left)"
    assert not opts.truncated
    assert len(opts.mptcp) == 1
    assert isinstance(opts.mptcp[0], MalformedOption)
    assert opts.mptcp[0].subtype == Subtype.DSS


def test_walker_kind_without_length_byte_at_the_end() -> None:
    opts = walk(h("0101 0101 0101 0102"))
    assert opts.malformed == "option kind 2 at offset 7 has no length byte"


def test_walker_truncated_by_the_capture_is_not_malformed() -> None:
    options = h("0101 080a 0000000100000002 1e14 2005 05060708 55667788 00000001 0005 aad2")
    full = walk(options)
    assert full.timestamp == (1, 2) and len(full.mptcp) == 1 and isinstance(full.mptcp[0], Dss)
    for captured in range(len(options)):
        opts = walk(options, captured=captured)
        assert opts.malformed is None
        assert opts.truncated
        assert opts.mptcp == []
        assert (opts.timestamp is not None) == (captured >= 12)


def test_walker_truncated_when_the_buffer_itself_is_short() -> None:
    buf = bytes(20) + h("020405b4 1e08 2001 0102")
    opts = walk_tcp_options(buf, 20, 20 + 12)
    assert opts.mss == 1460
    assert opts.truncated and opts.malformed is None and opts.mptcp == []


def test_walker_two_mptcp_options_in_one_header() -> None:
    """mptcp-aa-v1 packet 13: ADD_ADDR with HMAC and a DSS Data ACK after TS."""
    options = h("0101 080a 37f24a3e 7b654c0f 1e10 3001 c0a888e1 669928744366716c 1e0c 2003 ee82d29a6c3f1ad5")
    opts = walk(options)
    assert opts.timestamp == (0x37F24A3E, 0x7B654C0F)
    assert opts.mptcp == [
        AddAddr(1, IPv4Address("192.168.136.225"), hmac=0x669928744366716C),
        Dss(flags=0x03, data_ack=0xEE82D29A6C3F1AD5),
    ]
    assert opts.malformed is None


def test_walker_dss_oobr_fuzzer_case() -> None:
    """tcpdump's mptcp-dss-oobr: a DSS of length 3 followed by EOL."""
    opts = walk(h("0204400c 0402 080a2397553400000000 1e0320 00"))
    assert opts.mss == 16396 and opts.sack_permitted and opts.timestamp == (597120308, 0)
    assert opts.mptcp == [MalformedOption(Subtype.DSS, h("1e0320"), "DSS length 3 leaves no room for the flags byte")]
    assert opts.malformed is None


@pytest.mark.parametrize(
    "garbage",
    [
        h("ff"),
        h("ffff"),
        h("1e"),
        h("1eff" + "00" * 20),
        h("0a0a0a0a0a0a0a0a0a0a"),
        h("1e281000" + "11" * 36),
        bytes(range(40)),
        bytes(range(255, 215, -1)),
    ],
)
def test_walker_on_garbage_never_raises(garbage: bytes) -> None:
    opts = walk(garbage)
    assert isinstance(opts, TcpOptions)
    assert all(isinstance(opt, OPTION_TYPES) for opt in opts.mptcp)
    assert not (opts.malformed and opts.truncated)


def test_walker_accepts_memoryview_and_nonzero_start() -> None:
    buf = memoryview(bytes(34) + h("0101 1e0351 00"))
    opts = walk_tcp_options(buf, 34, len(buf))  # type: ignore[arg-type]
    assert opts.mptcp == [MpPrio(backup=True)]


def test_walker_empty_and_inverted_ranges() -> None:
    assert walk_tcp_options(b"", 0, 0) == TcpOptions()
    assert walk_tcp_options(bytes(40), 30, 20) == TcpOptions()
    assert walk_tcp_options(h("020405b4"), -3, 4).mss == 1460
