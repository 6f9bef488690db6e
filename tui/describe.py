"""One-line descriptions of packets: TCP flags, the MPTCP summary, and the row's colour class.

Pure functions over the analyzer's decoded values; no textual here.
"""

from __future__ import annotations

import ipaddress

from analyzer.ingest.decode import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    SKIP_LABELS,
    Skip,
    network_offset,
)
from analyzer.ingest.segment import TH_ACK, TH_CWR, TH_ECE, TH_FIN, TH_PSH, TH_RST, TH_SYN, TH_URG
from analyzer.mptcp.options import (
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
)
from tui.index import (
    OPT_ADD_ADDR,
    OPT_MALFORMED,
    OPT_MP_CAPABLE,
    OPT_MP_FAIL,
    OPT_MP_FASTCLOSE,
    OPT_MP_JOIN,
    OPT_MP_PRIO,
    OPT_MP_TCPRST,
    OPT_MPTCP_ANY,
    OPT_REMOVE_ADDR,
    OPT_TCP_MALFORMED,
    OPT_UNKNOWN,
    Row,
)

_FLAG_LETTERS = ((TH_SYN, "S"), (TH_FIN, "F"), (TH_RST, "R"), (TH_PSH, "P"), (TH_URG, "U"), (TH_ECE, "E"),
                 (TH_CWR, "W"))  # fmt: skip


def tcp_flags(flags: int) -> str:
    """tcpdump's notation: ``S``, ``S.``, ``.``, ``P.``, ``F.``, ``R`` (``.`` is ACK)."""
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    if flags & TH_ACK:
        text += "."
    return text or "none"


def flag_names(flags: int) -> str:
    names = [name for bit, name in ((TH_SYN, "SYN"), (TH_ACK, "ACK"), (TH_FIN, "FIN"), (TH_RST, "RST"),
                                    (TH_PSH, "PSH"), (TH_URG, "URG"), (TH_ECE, "ECE"), (TH_CWR, "CWR"))
             if flags & bit]  # fmt: skip
    return ", ".join(names) or "none"


def row_kind(row: Row) -> str:
    """Colour class of a row, from the index alone: the most telling option kind it carries."""
    if not row.is_tcp:
        return "other"
    opts = row.opts
    if opts & (OPT_MALFORMED | OPT_TCP_MALFORMED | OPT_UNKNOWN):
        return "malformed"
    if opts & (OPT_MP_FAIL | OPT_MP_FASTCLOSE | OPT_MP_TCPRST) or row.flags & TH_RST:
        return "reset"
    if opts & OPT_MP_CAPABLE:
        return "capable"
    if opts & OPT_MP_JOIN:
        return "join"
    if opts & (OPT_ADD_ADDR | OPT_REMOVE_ADDR):
        return "addr"
    if opts & OPT_MP_PRIO:
        return "prio"
    if row.flags & (TH_SYN | TH_FIN):
        return "control"
    if opts & OPT_MPTCP_ANY:
        return "dss"
    return "tcp"


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


DsnBases = tuple[int | None, int | None]  # (IDSN of the packet's sender, IDSN of its peer)


def relative(value: int, idsn: int | None, wide: bool) -> int:
    """A DSN or Data ACK relative to the IDSN it counts from (the first data byte is 1), in its own width."""
    if idsn is None:
        return value
    return (value - idsn) & ((1 << 64) - 1 if wide else 0xFFFFFFFF)


def option_summary(opt: MptcpOption, flags: int, bases: DsnBases | None = None) -> str:
    """A short one-line description of one MPTCP option, as in the packet list.

    ``bases``: DSNs and Data ACKs are shown relative to these IDSNs (None: as on the wire).
    """
    syn = bool(flags & TH_SYN)
    sender, peer = bases or (None, None)
    t = type(opt)
    if t is Dss:
        assert isinstance(opt, Dss)
        parts = ["DSS"]
        if opt.dsn is not None:
            parts.append(f"dsn={relative(opt.dsn, sender, opt.dsn64)}")
            parts.append(f"ssn={opt.ssn}")
            parts.append(f"len={opt.data_len}")
            if opt.data_len == 0:
                parts.append("INFINITE")
        if opt.data_ack is not None:
            parts.append(f"ack={relative(opt.data_ack, peer, opt.ack64)}")
        if opt.checksum is not None:
            parts.append(f"csum={opt.checksum:#06x}")
        if opt.data_fin:
            parts.append("DATA_FIN")
        return " ".join(parts)
    if t is MpCapable:
        assert isinstance(opt, MpCapable)
        stage = "SYN/ACK" if syn and flags & TH_ACK else "SYN" if syn else "ACK"
        text = f"MP_CAPABLE v{opt.version} {stage}"
        if opt.sender_key is not None:
            text += f" key={_hex(opt.sender_key, 16)}"
        if opt.receiver_key is not None:
            text += f" peer={_hex(opt.receiver_key, 16)}"
        if opt.data_len is not None:
            text += f" len={opt.data_len}"
        if opt.flags & 0x80:
            text += " csum"
        return text
    if t is MpJoinSyn:
        assert isinstance(opt, MpJoinSyn)
        return f"MP_JOIN SYN token={_hex(opt.token, 8)} nonce={_hex(opt.nonce, 8)} id={opt.address_id}" + (
            " backup" if opt.backup else ""
        )
    if t is MpJoinSynAck:
        assert isinstance(opt, MpJoinSynAck)
        return f"MP_JOIN SYN/ACK hmac={_hex(opt.truncated_hmac, 16)} nonce={_hex(opt.nonce, 8)} id={opt.address_id}" + (
            " backup" if opt.backup else ""
        )
    if t is MpJoinAck:
        assert isinstance(opt, MpJoinAck)
        return f"MP_JOIN ACK hmac={opt.hmac[:8].hex()}…"
    if t is AddAddr:
        assert isinstance(opt, AddAddr)
        addr = f"[{opt.address}]" if opt.address.version == 6 and opt.port is not None else str(opt.address)
        text = f"ADD_ADDR{' echo' if opt.echo else ''} id={opt.address_id} {addr}"
        if opt.port is not None:
            text += f":{opt.port}"
        if opt.hmac is not None:
            text += f" hmac={_hex(opt.hmac, 16)}"
        return text
    if t is RemoveAddr:
        assert isinstance(opt, RemoveAddr)
        return "REMOVE_ADDR ids=" + ",".join(str(i) for i in opt.address_ids)
    if t is MpPrio:
        assert isinstance(opt, MpPrio)
        return f"MP_PRIO backup={int(opt.backup)}" + (f" id={opt.address_id}" if opt.address_id is not None else "")
    if t is MpFail:
        assert isinstance(opt, MpFail)
        return f"MP_FAIL dsn={relative(opt.dsn, peer, True)}"
    if t is MpFastclose:
        assert isinstance(opt, MpFastclose)
        return f"MP_FASTCLOSE key={_hex(opt.receiver_key, 16)}"
    if t is MpTcpRst:
        assert isinstance(opt, MpTcpRst)
        reason = REASON_NAMES.get(opt.reason, f"reason {opt.reason}")
        return f"MP_TCPRST {reason}" + (" transient" if opt.flags & 0x01 else "")
    if t is MpExperimental:
        return "MP_EXPERIMENTAL"
    if t is UnknownMptcpOption:
        assert isinstance(opt, UnknownMptcpOption)
        return f"MPTCP subtype {opt.subtype:#x}"
    if t is MalformedOption:
        assert isinstance(opt, MalformedOption)
        name = subtype_name(opt.subtype, "MPTCP")
        return f"MALFORMED {name}: {opt.reason}"
    return type(opt).__name__


def subtype_name(subtype: int | None, default: str) -> str:
    if subtype is None:
        return default
    try:
        return Subtype(subtype).name
    except ValueError:
        return default


def skip_summary(reason: Skip) -> str:
    return SKIP_LABELS.get(reason, "not decoded")


ETHERTYPES = {0x0806: "ARP", 0x88CC: "LLDP", 0x8035: "RARP", 0x88E5: "MACsec", 0x8863: "PPPoE discovery",
              0x8864: "PPPoE", 0x8847: "MPLS", 0x0842: "Wake-on-LAN"}  # fmt: skip
IP_PROTOCOLS = {1: "ICMP", 2: "IGMP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMPv6", 89: "OSPF", 132: "SCTP",
                136: "UDP-Lite"}  # fmt: skip


def other_summary(link_type: int, data: bytes, reason: Skip) -> str:
    """What a frame the analyzer skipped is, as far as a glance at its headers tells."""
    if reason == Skip.NOT_IP:
        ethertype = _ethertype(link_type, data)
        if ethertype is not None:
            return ETHERTYPES.get(ethertype, f"ethertype {ethertype:#06x}")
    if reason == Skip.NOT_TCP:
        net = network_offset(link_type, data)
        if not isinstance(net, Skip):
            off, version = net
            try:
                if version == 4:
                    proto = data[off + 9]
                    src, dst = (
                        ipaddress.ip_address(data[off + 12 : off + 16]),
                        ipaddress.ip_address(data[off + 16 : off + 20]),
                    )
                else:
                    proto = data[off + 6]
                    src, dst = (
                        ipaddress.ip_address(data[off + 8 : off + 24]),
                        ipaddress.ip_address(data[off + 24 : off + 40]),
                    )
            except (IndexError, ValueError):
                return skip_summary(reason)
            return f"{src} → {dst} {IP_PROTOCOLS.get(proto, f'IP protocol {proto}')}"
    return skip_summary(reason)


def _ethertype(link_type: int, data: bytes) -> int | None:
    if link_type == LINKTYPE_ETHERNET and len(data) >= 14:
        return int.from_bytes(data[12:14], "big")
    if link_type == LINKTYPE_LINUX_SLL2 and len(data) >= 2:
        return int.from_bytes(data[0:2], "big")
    if link_type == LINKTYPE_LINUX_SLL and len(data) >= 16:
        return int.from_bytes(data[14:16], "big")
    return None
