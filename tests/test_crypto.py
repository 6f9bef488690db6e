"""MPTCP crypto against the vectors of shared/mptcp-rules.md section 2.4 (TV-1 to TV-7).

Every vector there was computed with Python's hashlib/hmac; the Linux kernel vectors (TV-1) come
from net/mptcp/crypto_test.c, the v0 token pairs from the gureya/mptcp-assignment README, and the
"real trace" values from tcpdump's mptcp-v0 / mptcp-aa-v1 captures (tests/data/tcpdump).
"""

from __future__ import annotations

import hashlib
import hmac
import random
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.mptcp import (
    AddAddr,
    ChecksumAccumulator,
    Dss,
    add_addr_hmac,
    add_addr_hmac_digest,
    dss_checksum,
    dss_checksum_ok,
    idsn_from_key,
    join_ack_hmac,
    join_hmac,
    join_synack_truncated_hmac,
    key_sha,
    parse_option,
    token_from_key,
)

KEY_A = 0x0102030405060708
KEY_B = 0x1112131415161718
R_A = 0xA1A2A3A4
R_B = 0xB1B2B3B4


def _u(ascii_text: str) -> int:
    return int.from_bytes(ascii_text.encode(), "big")


# --- TV-1: Linux crypto_test.c HMAC-SHA256 vectors (ASCII key1‖key2, ASCII nonce1‖nonce2) ----------


@pytest.mark.parametrize(
    ("key", "msg", "expected"),
    [
        ("0b0b0b0b0b0b0b0b", "48692054", "8385e24fb4235ac37556b6b886db106284a1da671699f46db1f235ec622dcafa"),
        ("aaaaaaaaaaaaaaaa", "dddddddd", "2c5e219164ff1dca1c4a92318d847bb6b9d44492984e1eb71aff9022f71046e9"),
        ("0102030405060708", "cdcdcdcd", "e73b9ba9969969cefb04aa0d6df18ec2fcc075b6f23b4d8c4da736a5dbbc6e7d"),
    ],
)
def test_join_hmac_linux_kernel_vectors(key: str, msg: str, expected: str) -> None:
    digest = join_hmac(_u(key[:8]), _u(key[8:]), _u(msg[:4]), _u(msg[4:]), version=1)
    assert digest.hex() == expected


# --- TV-2 / TV-3: key -> token / IDSN ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "digest", "token", "idsn"),
    [
        (
            0x0102030405060708,
            "66840dda154e8a113c31dd0ad32f7f3a366a80e8136979d8f5a101d3d29d6f72",
            0x66840DDA,
            0xF5A101D3D29D6F72,
        ),
        (
            0xDEADBEEFCAFEF00D,
            "3214d3b4c40973dee1004995924fb89ccb003113433a0101485be4380370c6fd",
            0x3214D3B4,
            0x485BE4380370C6FD,
        ),
        (KEY_B, None, 0xCCAD45AC, 0x535BEEA38E087C8E),
    ],
)
def test_v1_token_and_idsn(key: int, digest: str | None, token: int, idsn: int) -> None:
    if digest is not None:
        assert key_sha(key, 1).hex() == digest
    assert token_from_key(key) == token
    assert token_from_key(key, version=1) == token
    assert idsn_from_key(key) == idsn


@pytest.mark.parametrize(
    ("key", "digest", "token", "idsn"),
    [
        (0x0102030405060708, "dd5783bcf1e9002bc00ad5b83a95ed6e4ebb4ad5", 0xDD5783BC, 0x3A95ED6E4EBB4AD5),
        (0xDEADBEEFCAFEF00D, "5f54c7d00090a1dcd1e057f10cea86c2f9d67ff2", 0x5F54C7D0, 0x0CEA86C2F9D67FF2),
    ],
)
def test_v0_token_and_idsn(key: int, digest: str, token: int, idsn: int) -> None:
    assert key_sha(key, 0).hex() == digest
    assert token_from_key(key, version=0) == token
    assert idsn_from_key(key, version=0) == idsn


@pytest.mark.parametrize(
    ("key", "token"),
    [
        (0xC58478A9DD4BDC20, 1187499290),
        (0x1D1D262C4CB328FD, 3453009450),
        (0x5686675606032088, 2308765430),
        (0x0DA4D294F8B537F8, 3611618124),
        (0x4348F3A7FCE3992B, 1243844425),
        (0x50CFB4EDC26FB300, 229917286),
    ],
)
def test_v0_token_matches_gureya_trace_analysis(key: int, token: int) -> None:
    assert token_from_key(key, version=0) == token


def test_key_sha_rejects_unknown_version_and_oversized_key() -> None:
    with pytest.raises(ValueError, match="version must be 0 or 1"):
        key_sha(KEY_A, 2)
    with pytest.raises(ValueError, match="64-bit"):
        token_from_key(1 << 64)
    with pytest.raises(ValueError, match="64-bit"):
        idsn_from_key(-1)


# --- TV-4 / TV-5: MP_JOIN HMACs (A initiates the join towards B) ---------------------------------------


def test_join_v1_synack_and_ack_hmacs() -> None:
    hmac_b = "864b40428762fd06fa24bb3c5ea12c1bbf6546e7aace88911139aa8f77f90286"
    hmac_a = "53037f2899475529844115fd07e665d23d3554fb8dde7551287562b1aa8e53de"
    assert join_hmac(KEY_B, KEY_A, R_B, R_A).hex() == hmac_b
    assert join_hmac(KEY_A, KEY_B, R_A, R_B).hex() == hmac_a
    assert join_synack_truncated_hmac(KEY_B, KEY_A, R_B, R_A) == 0x864B40428762FD06
    assert join_ack_hmac(KEY_A, KEY_B, R_A, R_B) == bytes.fromhex("53037f2899475529844115fd07e665d23d3554fb")
    # The SYN carries Token(B); TV-4 gives the whole option.
    assert token_from_key(KEY_B) == 0xCCAD45AC


def test_join_v0_uses_sha1_and_the_full_digest() -> None:
    assert join_hmac(KEY_B, KEY_A, R_B, R_A, version=0).hex() == "f983baffc3c12488ee5547ded1bab6f7f552859a"
    assert join_synack_truncated_hmac(KEY_B, KEY_A, R_B, R_A, version=0) == 0xF983BAFFC3C12488
    assert join_ack_hmac(KEY_A, KEY_B, R_A, R_B, version=0).hex() == "5f9d9b1144766ae5a6402e4bc813bf52fad0199b"


def test_join_hmac_key_order_matters() -> None:
    assert join_synack_truncated_hmac(KEY_A, KEY_B, R_A, R_B) != 0x864B40428762FD06


def test_join_v0_matches_tcpdump_mptcp_v0_trace() -> None:
    """tests/data/tcpdump/mptcp-v0: packets 1-3 (MP_CAPABLE keys) and 8-10 (MP_JOIN)."""
    key_client, key_server = 0x9C9EABD1E46A33B2, 0x967D2770B6960552
    nonce_client, nonce_server = 0x1B665A18, 0x33ABE9D5
    assert token_from_key(key_server, version=0) == 0xE47F0142  # SYN: join id 0 token 0xe47f0142
    assert join_synack_truncated_hmac(key_server, key_client, nonce_server, nonce_client, 0) == (0x5AB680C7884AF03D)
    assert join_ack_hmac(key_client, key_server, nonce_client, nonce_server, 0) == bytes.fromhex(
        "cb7b87f5e5f0502f43b535fb70ef6607df2e6c7a"
    )
    # The first DSS of each direction (packets 4 and 5) use IDSN + 1, sent as 32 bits.
    assert (idsn_from_key(key_server, 0) + 1) & 0xFFFF_FFFF == 3518592144
    assert (idsn_from_key(key_client, 0) + 1) & 0xFFFF_FFFF == 3576348362


# --- TV-6: ADD_ADDR HMAC (sender A, receiver B) --------------------------------------------------------


@pytest.mark.parametrize(
    ("address_id", "address", "port", "expected"),
    [
        (1, IPv4Address("10.0.2.1"), None, 0x014B3007310C639C),
        (2, IPv4Address("10.0.3.1"), 8080, 0x38276E2E6C29AD33),
        (3, IPv6Address("2001:db8::1"), None, 0x4767F845DC847183),
    ],
)
def test_add_addr_hmac(address_id: int, address: IPv4Address | IPv6Address, port: int | None, expected: int) -> None:
    assert add_addr_hmac(KEY_A, KEY_B, address_id, address, port) == expected


def test_add_addr_hmac_includes_two_zero_port_bytes_when_absent() -> None:
    assert add_addr_hmac(KEY_A, KEY_B, 1, IPv4Address("10.0.2.1"), None) == add_addr_hmac(
        KEY_A, KEY_B, 1, IPv4Address("10.0.2.1"), 0
    )


def test_add_addr_hmac_with_swapped_keys_is_the_common_bug() -> None:
    swapped = add_addr_hmac(KEY_B, KEY_A, 1, IPv4Address("10.0.2.1"), None)
    assert swapped == 0xD1F9E67A9A6A6E2E
    assert swapped != 0x014B3007310C639C


def test_add_addr_option_with_hmac_and_its_echo() -> None:
    address = IPv4Address("10.0.2.1")
    opt = AddAddr(1, address, hmac=add_addr_hmac(KEY_A, KEY_B, 1, address, None))
    assert opt.build() == bytes.fromhex("1e103001 0a000201 014b3007310c639c".replace(" ", ""))
    echo = AddAddr(1, address, echo=True)
    assert echo.build() == bytes.fromhex("1e083101 0a000201".replace(" ", ""))
    assert parse_option(opt.build()) == opt


def test_add_addr_hmac_in_tcpdump_aa_v1_trace_is_the_leftmost_64_bits() -> None:
    """mptcp-aa-v1 (Linux, February 2020, before RFC 8684 was final): packet 13's ADD_ADDR HMAC.

    It is keyed sender-first as the RFC says, but it holds the *leftmost* 64 bits of the digest,
    not the rightmost that RFC 8684 section 3.4.1 requires. A checker must flag it (ADDR-001).
    """
    key_client, key_server = 0x8F0C7C64A6A32AC1, 0x73BB150358A0AECB  # packets 3-5
    address = IPv4Address("192.168.136.225")
    on_wire = 0x669928744366716C
    assert add_addr_hmac(key_server, key_client, 1, address, None) != on_wire
    digest = hmac.new(
        key_server.to_bytes(8, "big") + key_client.to_bytes(8, "big"),
        b"\x01" + address.packed + b"\x00\x00",
        hashlib.sha256,
    ).digest()
    assert add_addr_hmac_digest(key_server, key_client, 1, address, None) == digest
    assert int.from_bytes(digest[:8], "big") == on_wire


def test_add_addr_hmac_rejects_bad_port_and_id() -> None:
    with pytest.raises(ValueError, match="port"):
        add_addr_hmac(KEY_A, KEY_B, 1, IPv4Address("10.0.2.1"), 70000)
    with pytest.raises(ValueError, match="address_id"):
        add_addr_hmac(KEY_A, KEY_B, 256, IPv4Address("10.0.2.1"), None)


# --- TV-7: DSS checksum --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "ssn", "data_len", "payload", "expected"),
    [
        (0x1122334455667788, 1, 5, [b"hello"], 0xAAD2),
        (0x1122334455667788, 1, 6, [b"hello"], 0xAAD1),  # 5 bytes + DATA_FIN
        (0x1122334455667790, 0, 1, [], 0xEEA1),  # DATA_FIN only: pseudo-header alone
        (0xFFFFFFFFFFFFFFF0, 0x1001, 27, [b"GET / HTTP/1.1\r\n", b"Host: x\r\n\r\n"], 0x9C3D),
        (0xF5A101D3D29D6F73, 1, 4, [b"abcd"], 0x01AE),  # MP_CAPABLE + data, DSN = IDSN(Key-A) + 1
    ],
)
def test_dss_checksum_vectors(dsn: int, ssn: int, data_len: int, payload: list[bytes], expected: int) -> None:
    assert dss_checksum(dsn, ssn, data_len, b"".join(payload)) == expected
    assert dss_checksum(dsn, ssn, data_len, payload) == expected
    assert dss_checksum_ok(dsn, ssn, data_len, payload, expected)
    assert not dss_checksum_ok(dsn, ssn, data_len, payload, expected ^ 0x0100)


def test_mp_capable_data_checksum_uses_idsn_plus_one() -> None:
    assert idsn_from_key(KEY_A) + 1 == 0xF5A101D3D29D6F73
    assert dss_checksum(idsn_from_key(KEY_A) + 1, 1, 4, b"abcd") == 0x01AE


def test_dss_checksum_needs_the_64_bit_dsn() -> None:
    """TV-7: the 32-bit DSS carries 0x55667788, but the pseudo-header holds the 64-bit DSN."""
    assert dss_checksum(0x1122334455667788, 1, 5, b"hello") == 0xAAD2
    assert dss_checksum(0x55667788, 1, 5, b"hello") == 0xEF38  # the classic bug
    assert not dss_checksum_ok(0x55667788, 1, 5, b"hello", 0xAAD2)


def test_dss_checksum_full_options_from_tv7() -> None:
    long_form = parse_option(bytes.fromhex("1e1c200f01020304050607081122334455667788000000010005aad2"))
    short_form = parse_option(bytes.fromhex("1e1420050506070855667788000000010005aad2"))
    assert isinstance(long_form, Dss)
    assert isinstance(short_form, Dss)
    assert (long_form.dsn, short_form.dsn) == (0x1122334455667788, 0x55667788)
    for opt in (long_form, short_form):
        assert opt.checksum == 0xAAD2
        assert opt.ssn is not None and opt.data_len is not None
        # Whatever width the option used, the checksum is over the 64-bit DSN.
        assert dss_checksum_ok(0x1122334455667788, opt.ssn, opt.data_len, b"hello", opt.checksum)


def test_dss_checksum_rejects_out_of_range_pseudo_header_fields() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        dss_checksum(1 << 64, 1, 5, b"hello")
    with pytest.raises(ValueError, match="rel_ssn"):
        dss_checksum(1, 1 << 32, 5, b"hello")
    with pytest.raises(ValueError, match="data_len"):
        dss_checksum(1, 1, 1 << 16, b"hello")
    assert not dss_checksum_ok(1, 1, 5, b"hello", 1 << 16)


# --- ChecksumAccumulator -------------------------------------------------------------------------------


def _reference_checksum(dsn: int, ssn: int, data_len: int, payload: bytes) -> int:
    """RFC 1071 done the slow, obvious way: one 16-bit word at a time with end-around carry."""
    data = dsn.to_bytes(8, "big") + ssn.to_bytes(4, "big") + data_len.to_bytes(2, "big") + b"\0\0" + payload
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_accumulator_multi_segment_odd_lengths_equals_one_shot() -> None:
    rng = random.Random(8684)
    payload = rng.randbytes(4099)
    one_shot = dss_checksum(0x0123456789ABCDEF, 77, len(payload), payload)
    assert one_shot == _reference_checksum(0x0123456789ABCDEF, 77, len(payload), payload)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(payload)), rng.randint(1, 12)))
        acc = ChecksumAccumulator()
        for lo, hi in zip([0, *cuts], [*cuts, len(payload)], strict=True):
            acc.update(payload[lo:hi])
        assert acc.nbytes == len(payload)
        assert acc.finish(0x0123456789ABCDEF, 77, len(payload)) == one_shot
        assert acc.verify(0x0123456789ABCDEF, 77, len(payload), one_shot)


def test_accumulator_single_bytes_and_empty_pieces() -> None:
    payload = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    acc = ChecksumAccumulator()
    for i in range(len(payload)):
        acc.update(b"")
        acc.update(memoryview(payload)[i : i + 1])
    assert acc.finish(0xFFFFFFFFFFFFFFF0, 0x1001, 27) == 0x9C3D


def test_accumulator_finish_does_not_consume_state() -> None:
    acc = ChecksumAccumulator()
    acc.update(b"hel")
    acc.update(b"lo")
    assert acc.finish(0x1122334455667788, 1, 5) == 0xAAD2
    assert acc.finish(0x1122334455667788, 1, 6) == 0xAAD1


def test_checksum_of_all_zero_input_is_ffff() -> None:
    assert dss_checksum(0, 0, 0, bytes(64)) == 0xFFFF
    assert _reference_checksum(0, 0, 0, bytes(64)) == 0xFFFF
    assert dss_checksum_ok(0, 0, 0, bytes(64), 0xFFFF)
    assert not dss_checksum_ok(0, 0, 0, bytes(64), 0)


def test_verification_accepts_negative_zero() -> None:
    """RFC 1071 verification sums everything; 0x0000 and 0xFFFF are both ones'-complement zero."""
    head = b"hello!"
    fix = dss_checksum(5, 1, 8, head)  # appending this word makes the sum 0xFFFF
    payload = head + fix.to_bytes(2, "big")
    assert dss_checksum(5, 1, 8, payload) == 0
    assert dss_checksum_ok(5, 1, 8, payload, 0)
    assert dss_checksum_ok(5, 1, 8, payload, 0xFFFF)


@given(
    dsn=st.integers(0, 2**64 - 1),
    ssn=st.integers(0, 2**32 - 1),
    data_len=st.integers(0, 2**16 - 1),
    pieces=st.lists(st.binary(max_size=37), max_size=8),
)
def test_checksum_matches_reference_for_any_split(dsn: int, ssn: int, data_len: int, pieces: list[bytes]) -> None:
    expected = _reference_checksum(dsn, ssn, data_len, b"".join(pieces))
    assert dss_checksum(dsn, ssn, data_len, pieces) == expected
    assert dss_checksum(dsn, ssn, data_len, b"".join(pieces)) == expected
    assert dss_checksum_ok(dsn, ssn, data_len, pieces, expected)


def test_add_addr_hmac_accepts_ip_address_objects_from_ip_address() -> None:
    assert add_addr_hmac(KEY_A, KEY_B, 3, ip_address("2001:db8::1"), None) == 0x4767F845DC847183
