"""tcpdump as an independent oracle for the option codec.

For every capture in tests/data/tcpdump (tcpdump's own MPTCP tests, see the README there) each
packet is read with dpkt, its TCP options are decoded with :func:`walk_tcp_options`, and every
field that tcpdump printed for that packet in ``NAME.out`` is compared with ours. The tests count
the fields they compared so that they cannot pass by comparing nothing.

tcpdump prints DSS values as they are on the wire (a 4-byte Data ACK as a 32-bit number), which is
also what :class:`~analyzer.mptcp.Dss` stores.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dpkt
import pytest

from analyzer.mptcp import (
    REASON_NAMES,
    AddAddr,
    Dss,
    MalformedOption,
    MpCapable,
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
    dss_checksum_ok,
    idsn_from_key,
    token_from_key,
)
from analyzer.tcp_options import TcpOptions, walk_tcp_options

DATA = Path(__file__).parent / "data" / "tcpdump"
CAPTURES = sorted(p.stem for p in DATA.glob("*.pcap"))


# --- reading the pcaps with dpkt ------------------------------------------------------------------------


@dataclass
class TcpPacket:
    number: int  # 1-based, as in tcpdump's output
    src: str
    dst: str
    flags: int
    options: TcpOptions
    payload: bytes


def _network_layer(linktype: int, frame: bytes) -> dpkt.Packet | None:
    if linktype == dpkt.pcap.DLT_EN10MB:
        layer = dpkt.ethernet.Ethernet(frame).data
    elif linktype == dpkt.pcap.DLT_LINUX_SLL:
        layer = dpkt.sll.SLL(frame).data
    elif linktype in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        layer = dpkt.loopback.Loopback(frame).data
    elif linktype in (101, 12, 14):  # LINKTYPE_RAW and the BSDs' DLT_RAW values
        layer = dpkt.ip6.IP6(frame) if frame[0] >> 4 == 6 else dpkt.ip.IP(frame)
    else:
        raise AssertionError(f"link type {linktype} not handled by this test")
    return layer if isinstance(layer, dpkt.ip.IP | dpkt.ip6.IP6) else None


def read_capture(name: str) -> Iterator[tuple[int, TcpPacket | None]]:
    with (DATA / f"{name}.pcap").open("rb") as f:
        reader = dpkt.pcap.UniversalReader(f)
        linktype = reader.datalink()
        for number, (_ts, frame) in enumerate(reader, start=1):
            ip = _network_layer(linktype, frame)
            if ip is None or not isinstance(ip.data, dpkt.tcp.TCP):
                yield number, None
                continue
            tcp = ip.data
            opts = bytes(tcp.opts)
            src = str(ipaddress.ip_address(ip.src))
            dst = str(ipaddress.ip_address(ip.dst))
            yield (
                number,
                TcpPacket(number, src, dst, tcp.flags, walk_tcp_options(opts, 0, len(opts)), tcp.data),
            )


# --- reading tcpdump's text -----------------------------------------------------------------------------

_PACKET_LINE = re.compile(r"^\s*(\d+)\s+\d{4}-\d\d-\d\d \d")


def read_out(name: str) -> dict[int, str]:
    """Packet number -> tcpdump's text for it (``-v`` continuation lines joined)."""
    packets: dict[int, str] = {}
    current: int | None = None
    for line in (DATA / f"{name}.out").read_text().splitlines():
        match = _PACKET_LINE.match(line)
        if match:
            current = int(match.group(1))
            packets[current] = line
        elif current is not None and line.strip():
            packets[current] += " " + line.strip()
    return packets


def option_items(text: str) -> list[str]:
    """The comma-separated items of ``options [...]``, brackets and braces kept together."""
    start = text.find("options [")
    if start < 0:
        return []
    items: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text[start + len("options [") :]:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            if depth == 0:
                break
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(current))
            current = []
        else:
            current.append(ch)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


# --- comparing one MPTCP option with tcpdump's text -----------------------------------------------------

_SUBTYPE_NAMES = {
    "capable": Subtype.MP_CAPABLE,
    "join": Subtype.MP_JOIN,
    "dss": Subtype.DSS,
    "add-addr": Subtype.ADD_ADDR,
    "rem-addr": Subtype.REMOVE_ADDR,
    "prio": Subtype.MP_PRIO,
    "fail": Subtype.MP_FAIL,
    "fast-close": Subtype.MP_FASTCLOSE,
    "tcprst": Subtype.MP_TCPRST,
}
_MPC_LETTERS = {c: 0x80 >> i for i, c in enumerate("ABCDEFGH")}
_TCPRST_LETTERS = {"U": 0x08, "V": 0x04, "W": 0x02, "T": 0x01}


def _letters(text: str, table: dict[str, int]) -> int:
    if text == "none":
        return 0
    return sum(table[c] for c in text)


def _fullmatch(pattern: str, text: str) -> re.Match[str]:
    match = re.fullmatch(pattern, text)
    assert match, f"tcpdump text {text!r} does not match {pattern!r}"
    return match


def compare_capable(rest: str, opt: MptcpOption) -> int:
    assert isinstance(opt, MpCapable)
    m = _fullmatch(r" v(\d+) flags \[(\w+)\]( csum)?(?: \{([^}]*)\})?", rest)
    assert int(m[1]) == opt.version
    assert _letters(m[2], _MPC_LETTERS) == opt.flags
    assert bool(m[3]) == opt.checksum_required
    keys: list[int] = []
    named: dict[str, int] = {}
    for part in (m[4] or "").split(","):
        if part.startswith("0x"):
            keys.append(int(part, 16))
        elif "=" in part:
            name, value = part.split("=")
            named[name] = int(value, 0)
    assert keys == [k for k in (opt.sender_key, opt.receiver_key) if k is not None]
    assert named.get("data_len") == opt.data_len
    if "csum" in named:
        assert named["csum"] == opt.checksum
    return 3 + len(keys) + len(named)


def compare_join(rest: str, opt: MptcpOption) -> int:
    if isinstance(opt, MpJoinSyn):
        m = _fullmatch(r"( backup)? id (\d+) token 0x([0-9a-f]+) nonce 0x([0-9a-f]+)", rest)
        assert (bool(m[1]), int(m[2]), int(m[3], 16), int(m[4], 16)) == (
            opt.backup,
            opt.address_id,
            opt.token,
            opt.nonce,
        )
        return 4
    if isinstance(opt, MpJoinSynAck):
        m = _fullmatch(r"( backup)? id (\d+) hmac 0x([0-9a-f]+) nonce 0x([0-9a-f]+)", rest)
        assert (bool(m[1]), int(m[2]), int(m[3], 16), int(m[4], 16)) == (
            opt.backup,
            opt.address_id,
            opt.truncated_hmac,
            opt.nonce,
        )
        return 4
    assert isinstance(opt, MpJoinAck)
    m = _fullmatch(r" hmac 0x([0-9a-f]{40})", rest)
    assert bytes.fromhex(m[1]) == opt.hmac
    return 1


def compare_dss(rest: str, opt: MptcpOption) -> int:
    assert isinstance(opt, Dss)
    m = _fullmatch(r"( fin)?(?: ack (\d+))?(?: seq (\d+) subseq (\d+) len (\d+)(?: csum 0x([0-9a-f]+))?)?", rest)
    assert bool(m[1]) == opt.data_fin
    assert (int(m[2]) if m[2] else None) == opt.data_ack
    assert (int(m[3]) if m[3] else None) == opt.dsn
    assert (int(m[4]) if m[4] else None) == opt.ssn
    assert (int(m[5]) if m[5] else None) == opt.data_len
    assert (int(m[6], 16) if m[6] else None) == opt.checksum
    return 6


def compare_add_addr(rest: str, opt: MptcpOption) -> int:
    assert isinstance(opt, AddAddr)
    m = _fullmatch(r" (\S+) id (\d+) (\S+?)(?: hmac 0x([0-9a-f]+))?", rest)
    if opt.v0:
        label = f"v0-ip{opt.address.version}"
    elif opt.reserved == 0:
        label = "v1-echo" if opt.echo else "v1"
    else:
        label = "[bad version/echo]"
    assert m[1] == label
    assert int(m[2]) == opt.address_id
    assert m[3] == str(opt.address) + (f":{opt.port}" if opt.port is not None else "")
    assert (int(m[4], 16) if m[4] else None) == opt.hmac
    return 4 + (opt.port is not None)


def compare_rem_addr(rest: str, opt: MptcpOption) -> int:
    assert isinstance(opt, RemoveAddr)
    m = _fullmatch(r" id((?: \d+)+)", rest)
    assert tuple(int(x) for x in m[1].split()) == opt.address_ids
    return len(opt.address_ids)


def compare_prio(rest: str, opt: MptcpOption) -> int:
    assert isinstance(opt, MpPrio)
    m = _fullmatch(r" (backup|non-backup)(?: id (\d+))?", rest)
    assert (m[1] == "backup") == opt.backup
    assert (int(m[2]) if m[2] else None) == opt.address_id
    return 2


def compare_fail(rest: str, opt: MptcpOption) -> int:
    assert isinstance(opt, MpFail)
    assert int(_fullmatch(r" seq (\d+)", rest)[1]) == opt.dsn
    return 1


def compare_fast_close(rest: str, opt: MptcpOption) -> int:
    assert isinstance(opt, MpFastclose)
    assert int(_fullmatch(r" key 0x([0-9a-f]+)", rest)[1], 16) == opt.receiver_key
    return 1


def compare_tcprst(rest: str, opt: MptcpOption) -> int:
    assert isinstance(opt, MpTcpRst)
    m = _fullmatch(r" flags \[(\w+)\] reason (.+)", rest)
    assert _letters(m[1], _TCPRST_LETTERS) == opt.flags
    assert m[2] == REASON_NAMES[opt.reason]
    return 2


_COMPARE = {
    "capable": compare_capable,
    "join": compare_join,
    "dss": compare_dss,
    "add-addr": compare_add_addr,
    "rem-addr": compare_rem_addr,
    "prio": compare_prio,
    "fail": compare_fail,
    "fast-close": compare_fast_close,
    "tcprst": compare_tcprst,
}


def compare_mptcp(item: str, opt: MptcpOption) -> int:
    """Assert that tcpdump's ``mptcp ...`` item describes ``opt``; return the number of fields compared."""
    m = _fullmatch(r"mptcp (\d+) ([a-z-]+)(.*)", item)
    length, name, rest = int(m[1]), m[2], m[3]
    assert length == opt.length
    assert _SUBTYPE_NAMES[name] == opt.subtype
    if rest.startswith("[bad opt]"):
        assert isinstance(opt, MalformedOption)
        return 3
    assert not isinstance(opt, MalformedOption), opt
    return 2 + _COMPARE[name](rest, opt)


def compare_standard(item: str, opts: TcpOptions) -> int:
    if match := re.fullmatch(r"mss (\d+)", item):
        assert opts.mss == int(match[1])
    elif match := re.fullmatch(r"wscale (\d+)", item):
        assert opts.wscale == int(match[1])
    elif item == "sackOK":
        assert opts.sack_permitted
    elif match := re.fullmatch(r"TS val (\d+) ecr (\d+)", item):
        assert opts.timestamp == (int(match[1]), int(match[2]))
    elif item in ("nop", "eol"):
        return 0
    else:
        raise AssertionError(f"tcpdump option {item!r} is not handled by this test")
    return 1


# --- the tests ------------------------------------------------------------------------------------------


def test_every_capture_has_its_out_file() -> None:
    assert CAPTURES == [
        "mptcp-aa-echo",
        "mptcp-aa-v1",
        "mptcp-dss-oobr",
        "mptcp-fclose",
        "mptcp-tcprst",
        "mptcp-v0",
        "mptcp-v1",
    ]
    for name in CAPTURES:
        assert (DATA / f"{name}.out").is_file()
    assert (DATA / "LICENSE.tcpdump").is_file()


# (MPTCP fields compared, MPTCP options) per capture; 2,538 fields in all.
ORACLE_COUNTS = {
    "mptcp-aa-echo": (28, 4),
    "mptcp-aa-v1": (176, 23),
    "mptcp-dss-oobr": (3, 1),
    "mptcp-fclose": (62, 9),
    "mptcp-tcprst": (8, 2),
    "mptcp-v0": (2107, 266),
    "mptcp-v1": (154, 20),
}


def test_oracle_counts_cover_every_capture() -> None:
    assert set(ORACLE_COUNTS) == set(CAPTURES)
    assert sum(fields for fields, _ in ORACLE_COUNTS.values()) == 2538


@pytest.mark.parametrize("name", CAPTURES)
def test_codec_agrees_with_tcpdump(name: str) -> None:
    text = read_out(name)
    packets = list(read_capture(name))
    assert len(packets) == len(text), "tcpdump printed a different number of packets"
    mptcp_fields = standard_fields = mptcp_options = 0
    for number, packet in packets:
        line = text[number]
        items = option_items(line)
        if packet is None:
            assert not items, f"packet {number}: tcpdump saw TCP options where dpkt saw no TCP"
            continue
        ours = packet.options
        assert ours.malformed is None and not ours.truncated, f"packet {number}: {ours}"
        theirs = [item for item in items if item.startswith("mptcp ")]
        assert len(theirs) == len(ours.mptcp), f"packet {number}: {theirs} vs {ours.mptcp}"
        for item, opt in zip(theirs, ours.mptcp, strict=True):
            try:
                mptcp_fields += compare_mptcp(item, opt)
            except AssertionError as e:
                raise AssertionError(f"{name} packet {number}: {item!r} vs {opt!r}: {e}") from e
            mptcp_options += 1
        for item in items:
            if not item.startswith("mptcp "):
                standard_fields += compare_standard(item, ours)
    # The exact counts: a parser or a comparison that silently stops comparing fields is caught.
    assert (mptcp_fields, mptcp_options) == ORACLE_COUNTS[name]
    assert standard_fields > 0 or name == "mptcp-tcprst"


def test_dss_oobr_yields_a_malformed_dss() -> None:
    """The fuzzer-found packet: DSS of length 3 (no flags byte), tcpdump prints "dss[bad opt]"."""
    [(_, packet)] = list(read_capture("mptcp-dss-oobr"))
    assert packet is not None
    assert packet.options.mptcp == [
        MalformedOption(Subtype.DSS, b"\x1e\x03\x20", "DSS length 3 leaves no room for the flags byte")
    ]
    assert packet.options.mss == 16396


def test_every_mptcp_subtype_in_the_captures_was_compared() -> None:
    seen: set[type] = set()
    for name in CAPTURES:
        for _, packet in read_capture(name):
            if packet is not None:
                seen.update(type(opt) for opt in packet.options.mptcp)
    assert seen >= {
        MpCapable,
        MpJoinSyn,
        MpJoinSynAck,
        MpJoinAck,
        Dss,
        AddAddr,
        RemoveAddr,
        MpFastclose,
        MpTcpRst,
        MalformedOption,
    }


def _expand(base: int, low32: int) -> int:
    """The 64-bit value nearest ``base`` whose low 32 bits are ``low32``."""
    candidate = (base & ~0xFFFF_FFFF) | low32
    for other in (candidate - 2**32, candidate + 2**32):
        if abs(other - base) < abs(candidate - base):
            candidate = other
    return candidate % 2**64


@pytest.mark.parametrize("name", ["mptcp-v0", "mptcp-fclose"])
def test_dss_checksums_in_v0_traces_verify(name: str) -> None:
    """Every DSS checksum whose mapping lies within one segment verifies with the 64-bit DSN,
    expanded from the sender's IDSN (keys from MP_CAPABLE, join addresses from the token)."""
    packets = [p for _, p in read_capture(name) if p is not None]
    key_of: dict[str, int] = {}
    for p in packets:
        for opt in p.options.mptcp:
            if isinstance(opt, MpCapable) and opt.sender_key is not None and p.flags & dpkt.tcp.TH_SYN:
                key_of[p.src] = opt.sender_key
    for p in packets:
        for opt in p.options.mptcp:
            if isinstance(opt, MpJoinSyn):
                owner = [k for k in set(key_of.values()) if token_from_key(k, 0) == opt.token]
                assert len(owner) == 1
                key_of[p.dst] = owner[0]
    verified = 0
    for p in packets:
        for opt in p.options.mptcp:
            if not (isinstance(opt, Dss) and opt.checksum is not None):
                continue
            assert opt.dsn is not None and opt.ssn is not None and opt.data_len is not None
            if opt.data_len != len(p.payload) + opt.data_fin:
                continue
            dsn64 = _expand(idsn_from_key(key_of[p.src], 0) + 1, opt.dsn)
            assert dss_checksum_ok(dsn64, opt.ssn, opt.data_len, p.payload, opt.checksum), (p.number, opt)
            verified += 1
    assert verified > 0
