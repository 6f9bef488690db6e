"""The detail tree of one packet: every header field with the bytes it occupies, plus computed values.

:func:`dissect` walks link → encapsulations → IP → TCP → each TCP option → payload of a packet read
back from the file (the headers below TCP as :func:`analyzer.ingest.decode.describe_layers` found
them), naming every field and its byte range (the hex view highlights it). Where the analysis model
knows more, the tree says so: the token and IDSN a key gives, the HMAC expected for a join or an
ADD_ADDR next to the one seen, a 32-bit DSN expanded to 64 bits and made relative to the IDSN, the
DSS checksum verified when the whole mapping is in this segment, and which mapping covers the
payload. The analyzer's codec does the option parsing; this module only lays the values out.
No textual here.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from analyzer.ingest.decode import (
    LINK_TYPE_NAMES,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    Skip,
    describe_layers,
)
from analyzer.ingest.segment import TH_SYN, Segment
from analyzer.ingest.tunnels import Layer
from analyzer.model import Connection, Subflow
from analyzer.mptcp import crypto
from analyzer.mptcp.options import (
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
    parse_option,
)
from tui.collect import expand
from tui.describe import flag_names, option_summary, skip_summary, subtype_name
from tui.store import Packet

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1


@dataclass(slots=True)
class Node:
    """One line of the detail tree; ``start``/``end`` are byte offsets in the captured frame."""

    label: str
    start: int = 0
    end: int = 0
    children: list[Node] = field(default_factory=list)
    style: str = ""  # "ok" | "bad" | "warn" | "" (rendered by the widget)
    expanded: bool = False

    def add(self, label: str, start: int = -1, end: int = -1, style: str = "") -> Node:
        """A child; without a byte range it shares its parent's."""
        if start < 0:
            start, end = self.start, self.end
        child = Node(label, start, end, style=style)
        self.children.append(child)
        return child


@dataclass(slots=True)
class Context:
    """What the model knows around the packet."""

    subflow: Subflow | None = None
    first_ts: float = 0.0
    # (frame, option) of the latest DSS mapping sent on this subflow direction at or before a frame.
    find_mapping: Callable[[int, int, int], tuple[int, Dss] | None] | None = None
    # (connection, side, frame) -> the 64-bit DSN the pass saw nearest before that frame (tui.collect.DsnAnchors)
    dsn_reference: Callable[[Connection, int, int], int | None] | None = None

    @property
    def connection(self) -> Connection | None:
        return self.subflow.connection if self.subflow is not None else None


def format_abs_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def dissect(packet: Packet, ctx: Context) -> list[Node]:
    """Top-level nodes (frame, link, IP, TCP, payload) of a packet."""
    data = packet.data
    n = len(data)
    row = packet.row
    frame = Node(f"Frame {row.frame}: {n} bytes captured, {packet.origlen} on the wire")
    frame.add(f"Arrival time: {format_abs_time(row.ts)}")
    frame.add(f"Time since first packet: {row.ts - ctx.first_ts:.6f} s")
    frame.add(f"Link type: {LINK_TYPE_NAMES.get(row.link_type, row.link_type)}")
    frame.add(f"File offset: {row.offset}")
    nodes = [frame]
    if packet.error is not None:
        frame.add(packet.error, style="bad")
        return nodes
    layers, verdict = describe_layers(row.link_type, data)
    ips = [i for i, layer in enumerate(layers) if layer.name in ("IPv4", "IPv6")]
    if not ips:
        reason = verdict if isinstance(verdict, Skip) else Skip.NOT_IP
        frame.add(f"Not decoded: {skip_summary(reason)}", style="warn")
        return nodes
    # Every header the decoder passed (link, MPLS, PPPoE, GRE/ERSPAN, outer IP, UDP/VXLAN/Geneve, ...),
    # in order; the last IP header before TCP is the segment's own.
    tcp_off = layers[-1].start if layers[-1].name == "TCP" else -1
    for layer in layers:
        if layer.name == "IPv4":
            nodes.append(_ipv4(data, layer.start)[0])
        elif layer.name == "IPv6":
            nodes.append(_ipv6(data, layer.start)[0])
        elif layer.name != "TCP":
            nodes.append(_layer_node(row.link_type, data, layer))
    seg = packet.segment
    if seg is None or tcp_off < 0:
        why: Skip | Segment = packet.decoded if isinstance(packet.decoded, Skip) else verdict
        if not isinstance(why, Skip):  # the two decoders disagree: never expected, never fatal
            why = Skip.NOT_TCP
        nodes[-1].add(f"Not analysed: {skip_summary(why)}", style="warn")
        return nodes
    nodes.append(_tcp(seg, data, tcp_off, ctx, packet))
    if seg.payload_len:
        nodes.append(_payload(seg, ctx, packet))
    return nodes


def _layer_node(link_type: int, data: bytes, layer: Layer) -> Node:
    """A header below IP: the link layer or an encapsulation, laid out as the decoder described it."""
    if layer.name in ("Linux SLL", "Linux SLL2", "Loopback"):
        return _link(link_type, data, layer.end)
    node = Node(layer.summary or layer.name, layer.start, layer.end)
    for label, start, end in layer.fields:
        node.add(label, start, end)
    return node


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def _link(link_type: int, data: bytes, off: int) -> Node:
    if link_type == LINKTYPE_LINUX_SLL2:
        node = Node("Linux cooked capture v2", 0, off)
        proto, _res, ifindex, hatype, pkttype, alen = struct.unpack_from("!HHIHBB", data, 0)
        node.add(f"Protocol: {proto:#06x}", 0, 2)
        node.add(f"Interface index: {ifindex}", 4, 8)
        node.add(f"Link-layer address type: {hatype}", 8, 10)
        node.add(f"Packet type: {_PKTTYPES.get(pkttype, pkttype)}", 10, 11)
        node.add(f"Address: {_mac(data[12 : 12 + min(alen, 8)])}", 11, 20)
        return node
    if link_type == LINKTYPE_LINUX_SLL:
        node = Node("Linux cooked capture", 0, off)
        pkttype, hatype, alen = struct.unpack_from("!HHH", data, 0)
        node.add(f"Packet type: {_PKTTYPES.get(pkttype, pkttype)}", 0, 2)
        node.add(f"Link-layer address type: {hatype}", 2, 4)
        node.add(f"Address: {_mac(data[6 : 6 + min(alen, 8)])}", 4, 14)
        node.add(f"Protocol: {struct.unpack_from('!H', data, 14)[0]:#06x}", 14, 16)
        return node
    if link_type in (LINKTYPE_NULL, LINKTYPE_LOOP):
        return Node("Loopback (address family)", 0, off)
    return Node(f"Link header ({off} bytes)", 0, off)


_PKTTYPES = {0: "to us", 1: "broadcast", 2: "multicast", 3: "to another host", 4: "sent by us"}


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header[: len(header) // 2 * 2]))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _ipv4(data: bytes, off: int) -> tuple[Node, int]:
    ver_ihl, tos, total, ident, frag, ttl, proto, csum = struct.unpack_from("!BBHHHBBH", data, off)
    ihl = (ver_ihl & 0x0F) * 4
    src = ipaddress.IPv4Address(data[off + 12 : off + 16])
    dst = ipaddress.IPv4Address(data[off + 16 : off + 20])
    node = Node(f"Internet Protocol version 4, {src} → {dst}", off, off + ihl)
    node.add(f"Version: 4, header length: {ihl} bytes", off, off + 1)
    node.add(f"DSCP: {tos >> 2}, ECN: {tos & 3}", off + 1, off + 2)
    node.add(f"Total length: {total}" + (" (0: TSO/GSO segment)" if total == 0 else ""), off + 2, off + 4)
    node.add(f"Identification: {ident:#06x} ({ident})", off + 4, off + 6)
    flags = []
    if frag & 0x4000:
        flags.append("DF")
    if frag & 0x2000:
        flags.append("MF")
    node.add(f"Flags: {', '.join(flags) or 'none'}, fragment offset: {frag & 0x1FFF}", off + 6, off + 8)
    node.add(f"Time to live: {ttl}", off + 8, off + 9)
    node.add(f"Protocol: {proto}" + (" (TCP)" if proto == 6 else ""), off + 9, off + 10)
    if len(data) >= off + ihl:
        ok = _ip_checksum(data[off : off + ihl]) == 0xFFFF
        node.add(f"Header checksum: {csum:#06x} [{'correct' if ok else 'incorrect'}]", off + 10, off + 12,
                 style="ok" if ok else "warn")  # fmt: skip
    node.add(f"Source: {src}", off + 12, off + 16)
    node.add(f"Destination: {dst}", off + 16, off + 20)
    if ihl > 20:
        node.add(f"Options ({ihl - 20} bytes)", off + 20, off + ihl)
    return node, off + ihl


def _ipv6(data: bytes, off: int) -> tuple[Node, int]:
    first, plen, nxt, hlim = struct.unpack_from("!IHBB", data, off)
    src = ipaddress.IPv6Address(data[off + 8 : off + 24])
    dst = ipaddress.IPv6Address(data[off + 24 : off + 40])
    node = Node(f"Internet Protocol version 6, {src} → {dst}", off, off + 40)
    node.add(f"Version: 6, traffic class: {(first >> 20) & 0xFF:#04x}, flow label: {first & 0xFFFFF:#07x}",
             off, off + 4)  # fmt: skip
    node.add(f"Payload length: {plen}", off + 4, off + 6)
    node.add(f"Next header: {nxt}" + (" (TCP)" if nxt == 6 else ""), off + 6, off + 7)
    node.add(f"Hop limit: {hlim}", off + 7, off + 8)
    node.add(f"Source: {src}", off + 8, off + 24)
    node.add(f"Destination: {dst}", off + 24, off + 40)
    pos = off + 40
    for _ in range(12):
        if nxt in (0, 43, 60, 135, 139, 140) and pos + 2 <= len(data):
            hlen = (data[pos + 1] + 1) * 8
            node.add(f"Extension header {nxt} ({hlen} bytes)", pos, pos + hlen)
            nxt = data[pos]
            pos += hlen
            node.end = pos
        elif nxt == 51 and pos + 2 <= len(data):
            hlen = (data[pos + 1] + 2) * 4
            node.add(f"Authentication header ({hlen} bytes)", pos, pos + hlen)
            nxt = data[pos]
            pos += hlen
            node.end = pos
        else:
            break
    return node, pos


def _tcp_checksum(seg: Segment, data: bytes, tcp_off: int) -> bool | None:
    """True/False when the whole segment was captured, else None."""
    end = seg.payload_offset + seg.payload_len
    if end > len(data):
        return None
    tcp_len = end - tcp_off
    pseudo = seg.src + seg.dst + (struct.pack("!BBH", 0, 6, tcp_len) if seg.ip_version == 4 else
                                  struct.pack("!I3xB", tcp_len, 6))  # fmt: skip
    body = pseudo + data[tcp_off:end]
    if len(body) % 2:
        body += b"\0"
    return _ip_checksum(body) == 0xFFFF


def _tcp(seg: Segment, data: bytes, tcp_off: int, ctx: Context, packet: Packet) -> Node:
    sf = ctx.subflow
    direction = packet.row.direction
    half = sf.halves[direction] if sf is not None else None
    peer = sf.halves[1 - direction] if sf is not None else None
    hdr_len = seg.payload_offset - tcp_off
    title = f"Transmission Control Protocol, {seg.sport} → {seg.dport}, len {seg.payload_len}"
    if sf is not None:
        arrow = "client → server" if direction == 0 else "server → client"
        title += f"  [subflow {sf.id}, {arrow}]"
    node = Node(title, tcp_off, seg.payload_offset, expanded=True)
    node.add(f"Source port: {seg.sport}", tcp_off, tcp_off + 2)
    node.add(f"Destination port: {seg.dport}", tcp_off + 2, tcp_off + 4)
    seq = node.add(f"Sequence number: {seg.seq}", tcp_off + 4, tcp_off + 8)
    if half is not None and half.isn is not None:
        seq.label += f" (relative {(seg.seq - half.isn) & MASK32})"
    ack = node.add(f"Acknowledgment number: {seg.ack}", tcp_off + 8, tcp_off + 12)
    if peer is not None and peer.isn is not None and seg.flags & 0x10:
        ack.label += f" (relative {(seg.ack - peer.isn) & MASK32})"
    node.add(f"Header length: {hdr_len} bytes", tcp_off + 12, tcp_off + 13)
    flags = node.add(f"Flags: {seg.flags:#04x} ({flag_names(seg.flags)})", tcp_off + 13, tcp_off + 14)
    for bit, name in ((0x80, "CWR"), (0x40, "ECE"), (0x20, "URG"), (0x10, "ACK"), (0x08, "PSH"), (0x04, "RST"),
                      (0x02, "SYN"), (0x01, "FIN")):  # fmt: skip
        flags.add(f"{name}: {'set' if seg.flags & bit else 'not set'}")
    window = node.add(f"Window: {seg.window}", tcp_off + 14, tcp_off + 16)
    if half is not None and half.wscale is not None and not seg.flags & TH_SYN:
        window.label += f" (scaled ×{1 << half.wscale} = {seg.window << half.wscale})"
    csum = struct.unpack_from("!H", data, tcp_off + 16)[0]
    verdict = _tcp_checksum(seg, data, tcp_off)
    text = {True: "correct", False: "incorrect (checksum offload on the sender?)", None: "not verifiable (cut)"}
    node.add(f"Checksum: {csum:#06x} [{text[verdict]}]", tcp_off + 16, tcp_off + 18,
             style={True: "ok", False: "warn", None: ""}[verdict])  # fmt: skip
    node.add(f"Urgent pointer: {struct.unpack_from('!H', data, tcp_off + 18)[0]}", tcp_off + 18, tcp_off + 20)
    if hdr_len > 20:
        node.children.append(_tcp_options(seg, data, tcp_off + 20, seg.payload_offset, ctx, packet))
    return node


_OPTION_NAMES = {2: "MSS", 3: "Window scale", 4: "SACK permitted", 5: "SACK", 8: "Timestamps", 30: "MPTCP",
                 34: "TCP Fast Open"}  # fmt: skip


def _tcp_options(seg: Segment, data: bytes, start: int, end: int, ctx: Context, packet: Packet) -> Node:
    node = Node(f"Options ({end - start} bytes)", start, end, expanded=True)
    limit = min(end, len(data))
    i = start
    while i < end:
        if i >= limit:
            node.add("(options cut by the capture's snaplen)", i, end, style="warn")
            break
        kind = data[i]
        if kind == 0:
            node.add("End of option list", i, i + 1)
            break
        if kind == 1:
            node.add("No-operation (NOP)", i, i + 1)
            i += 1
            continue
        if i + 1 >= limit:
            node.add(f"Option {kind}: no length byte", i, end, style="bad")
            break
        length = data[i + 1]
        if length < 2 or i + length > end:
            node.add(f"Option {kind}: bad length {length}", i, end, style="bad")
            break
        raw = data[i : min(i + length, limit)]
        if kind == 30:
            node.children.append(_mptcp_option(parse_option(raw), i, seg, ctx, packet))
        else:
            node.children.append(_plain_option(kind, raw, i))
        i += length
    return node


def _plain_option(kind: int, raw: bytes, at: int) -> Node:
    name = _OPTION_NAMES.get(kind, f"Option {kind}")
    n = len(raw)
    if kind == 2 and n == 4:
        return Node(f"MSS: {struct.unpack_from('!H', raw, 2)[0]}", at, at + n)
    if kind == 3 and n == 3:
        return Node(f"Window scale: {raw[2]} (×{1 << min(raw[2], 30)})", at, at + n)
    if kind == 8 and n == 10:
        tsval, tsecr = struct.unpack_from("!II", raw, 2)
        node = Node(f"Timestamps: TSval {tsval}, TSecr {tsecr}", at, at + n)
        node.add(f"TSval: {tsval}", at + 2, at + 6)
        node.add(f"TSecr: {tsecr}", at + 6, at + 10)
        return node
    if kind == 5 and n >= 10:
        node = Node(f"SACK: {(n - 2) // 8} block(s)", at, at + n)
        for j in range(2, n - 7, 8):
            left, right = struct.unpack_from("!II", raw, j)
            node.add(f"{left}–{right}", at + j, at + j + 8)
        return node
    return Node(f"{name} ({n} bytes)", at, at + n)


def _key_node(parent: Node, label: str, key: int, at: int, version: int) -> None:
    node = parent.add(f"{label}: {key:016x}", at, at + 8)
    v = version if version in (0, 1) else 1
    node.add(f"Token (from key): {crypto.token_from_key(key, v):08x}")
    node.add(f"IDSN (from key): {crypto.idsn_from_key(key, v)}")


def _conn_version(ctx: Context) -> int:
    conn = ctx.connection
    return conn.version if conn is not None and conn.version in (0, 1) else 1


def _mptcp_option(opt: MptcpOption, at: int, seg: Segment, ctx: Context, packet: Packet) -> Node:
    node = Node(f"MPTCP {option_summary(opt, seg.flags)}", at, at + opt.length, expanded=True)
    node.add(f"Kind: 30, length: {opt.length}", at, at + 2)
    t = type(opt)
    conn = ctx.connection
    sf = ctx.subflow
    direction = packet.row.direction
    side = direction ^ (sf.reversed if sf is not None else False)
    if t is MpCapable:
        assert isinstance(opt, MpCapable)
        node.add(f"Subtype: MP_CAPABLE (0), version {opt.version}", at + 2, at + 3)
        flags = node.add(f"Flags: {opt.flags:#04x}", at + 3, at + 4)
        for bit, name in ((0x80, "A checksum required"), (0x40, "B extensibility"), (0x20, "C no join to source"),
                          (0x01, "H HMAC-SHA256" if opt.version else "H HMAC-SHA1")):  # fmt: skip
            flags.add(f"{name}: {'set' if opt.flags & bit else 'not set'}")
        if opt.sender_key is not None:
            _key_node(node, "Sender's key", opt.sender_key, at + 4, opt.version)
        if opt.receiver_key is not None:
            _key_node(node, "Receiver's key", opt.receiver_key, at + 12, opt.version)
        if opt.data_len is not None:
            node.add(f"Data-level length: {opt.data_len}", at + 20, at + 22)
        if opt.checksum is not None:
            node.add(f"Checksum: {opt.checksum:#06x}", at + 22, at + 24)
    elif t is MpJoinSyn:
        assert isinstance(opt, MpJoinSyn)
        node.add(f"Subtype: MP_JOIN (1), backup: {int(opt.backup)}", at + 2, at + 3)
        node.add(f"Address ID: {opt.address_id}", at + 3, at + 4)
        token = node.add(f"Receiver's token: {opt.token:08x}", at + 4, at + 8)
        if conn is not None:
            owner = next((i for i, s in enumerate(conn.sides) if s.token == opt.token), None)
            if owner is not None:
                who = "client" if owner == 0 else "server"
                token.add(f"Matches connection {conn.id} ({who} token)", style="ok")
            else:
                token.add(f"Does not match connection {conn.id}'s tokens", style="warn")
        node.add(f"Sender's nonce: {opt.nonce:08x}", at + 8, at + 12)
    elif t is MpJoinSynAck:
        assert isinstance(opt, MpJoinSynAck)
        node.add(f"Subtype: MP_JOIN (1), backup: {int(opt.backup)}", at + 2, at + 3)
        node.add(f"Address ID: {opt.address_id}", at + 3, at + 4)
        hmac_node = node.add(f"Truncated HMAC: {opt.truncated_hmac:016x}", at + 4, at + 12)
        sf = ctx.subflow
        # the tracker's verdict covers the SYN/ACK whose nonce it recorded (a copy with another nonce: not checked)
        expected = sf.join_synack_hmac_expected if sf is not None and sf.join_nonces[1] == opt.nonce else None
        _verdict(hmac_node, expected, opt.truncated_hmac, lambda v: f"{v:016x}")
        node.add(f"Sender's nonce: {opt.nonce:08x}", at + 12, at + 16)
    elif t is MpJoinAck:
        assert isinstance(opt, MpJoinAck)
        node.add("Subtype: MP_JOIN (1)", at + 2, at + 3)
        hmac_node = node.add(f"HMAC: {opt.hmac.hex()}", at + 4, at + 24)
        expected_ack = ctx.subflow.join_ack_hmac_expected if ctx.subflow is not None else None
        _verdict(hmac_node, expected_ack, opt.hmac, lambda v: v.hex())
    elif t is Dss:
        assert isinstance(opt, Dss)
        _dss(node, opt, at, seg, ctx, packet, side)
    elif t is AddAddr:
        assert isinstance(opt, AddAddr)
        node.add(f"Subtype: ADD_ADDR (3), {'v0 IPVer' if opt.v0 else 'echo: ' + str(int(opt.echo))}", at + 2, at + 3)
        node.add(f"Address ID: {opt.address_id}", at + 3, at + 4)
        alen = 4 if opt.address.version == 4 else 16
        node.add(f"Address: {opt.address}", at + 4, at + 4 + alen)
        pos = at + 4 + alen
        if opt.port is not None:
            node.add(f"Port: {opt.port}", pos, pos + 2)
            pos += 2
        if opt.hmac is not None:
            hmac_node = node.add(f"Truncated HMAC: {opt.hmac:016x}", pos, pos + 8)
            _verdict(hmac_node, _expected_add_addr_hmac(conn, side, opt), opt.hmac, lambda v: f"{v:016x}")
    elif t is RemoveAddr:
        assert isinstance(opt, RemoveAddr)
        node.add("Subtype: REMOVE_ADDR (4)", at + 2, at + 3)
        for k, address_id in enumerate(opt.address_ids):
            node.add(f"Address ID: {address_id}", at + 3 + k, at + 4 + k)
    elif t is MpPrio:
        assert isinstance(opt, MpPrio)
        node.add(f"Subtype: MP_PRIO (5), backup: {int(opt.backup)}", at + 2, at + 3)
        if opt.address_id is not None:
            node.add(f"Address ID: {opt.address_id}", at + 3, at + 4)
    elif t is MpFail:
        assert isinstance(opt, MpFail)
        node.add("Subtype: MP_FAIL (6)", at + 2, at + 3)
        node.add(f"Data sequence number: {opt.dsn}", at + 4, at + 12)
    elif t is MpFastclose:
        assert isinstance(opt, MpFastclose)
        node.add("Subtype: MP_FASTCLOSE (7)", at + 2, at + 3)
        key_node = node.add(f"Receiver's key: {opt.receiver_key:016x}", at + 4, at + 12)
        if conn is not None and conn.sides[1 - side].key is not None:
            ok = conn.sides[1 - side].key == opt.receiver_key
            key_node.add("Matches the receiver's key" if ok else
                         f"Receiver's key is {conn.sides[1 - side].key:016x}", style="ok" if ok else "bad")  # fmt: skip
    elif t is MpTcpRst:
        assert isinstance(opt, MpTcpRst)
        node.add(f"Subtype: MP_TCPRST (8), flags {opt.flags:#x}" + (" (transient)" if opt.flags & 1 else ""),
                 at + 2, at + 3)  # fmt: skip
        node.add(f"Reason: {opt.reason} ({REASON_NAMES.get(opt.reason, 'unassigned')})", at + 3, at + 4)
    elif t is MalformedOption:
        assert isinstance(opt, MalformedOption)
        node.style = "bad"
        name = subtype_name(opt.subtype, "unknown subtype")
        node.add(f"Malformed {name}: {opt.reason}", style="bad")
        node.add(f"Bytes: {opt.raw.hex()}")
    else:
        node.add(f"Bytes: {opt.build().hex()}", at, at + opt.length)
    return node


def _verdict(node: Node, expected: object, seen: object, fmt: Callable[..., str]) -> None:
    if expected is None:
        node.add("Not verifiable: keys or nonces not captured")
    elif expected == seen:
        node.add(f"Expected {fmt(expected)} [correct]", style="ok")
    else:
        node.add(f"Expected {fmt(expected)} [MISMATCH]", style="bad")


def _expected_add_addr_hmac(conn: Connection | None, side: int, opt: AddAddr) -> int | None:
    """The HMAC the tracker computed for this announcement (any copy: it depends on the keys, id, address, port)."""
    if conn is None:
        return None
    address = str(opt.address)
    for ann in conn.announcements:
        if (ann.kind == "add" and ann.sender == side and ann.address_ids[:1] == (opt.address_id,)
                and ann.address == address and ann.port == opt.port and ann.hmac_expected is not None):  # fmt: skip
            return ann.hmac_expected
    return None


def _reference(ctx: Context, side: int, frame: int) -> int | None:
    conn = ctx.connection
    return None if conn is None or ctx.dsn_reference is None else ctx.dsn_reference(conn, side, frame)


def _idsn(ctx: Context, side: int) -> int | None:
    conn = ctx.connection
    return conn.sides[side].idsn if conn is not None else None


def _dss(node: Node, opt: Dss, at: int, seg: Segment, ctx: Context, packet: Packet, side: int) -> None:
    node.add("Subtype: DSS (2)", at + 2, at + 3)
    flags = node.add(f"Flags: {opt.flags:#04x}", at + 3, at + 4)
    for bit, name in ((0x10, "F DATA_FIN"), (0x08, "m DSN is 8 bytes"), (0x04, "M mapping present"),
                      (0x02, "a Data ACK is 8 bytes"), (0x01, "A Data ACK present")):  # fmt: skip
        flags.add(f"{name}: {'set' if opt.flags & bit else 'not set'}")
    pos = at + 4
    if opt.data_ack is not None:
        size = 8 if opt.ack64 else 4
        ack = node.add(f"Data ACK: {opt.data_ack}", pos, pos + size)
        idsn = _idsn(ctx, 1 - side)
        ack64 = opt.data_ack if opt.ack64 else expand(opt.data_ack, idsn, _reference(ctx, 1 - side, packet.frame))
        if not opt.ack64:
            ack.add(f"64-bit: {ack64}" + ("" if idsn is not None else " (peer IDSN unknown: not expanded)"))
        if idsn is not None:
            ack.add(f"Relative to the peer's IDSN: {(ack64 - idsn) & MASK64}")
        pos += size
    if opt.dsn is not None and opt.ssn is not None and opt.data_len is not None:
        size = 8 if opt.dsn64 else 4
        dsn_node = node.add(f"Data sequence number: {opt.dsn}", pos, pos + size)
        idsn = _idsn(ctx, side)
        dsn64 = opt.dsn if opt.dsn64 else expand(opt.dsn, idsn, _reference(ctx, side, packet.frame))
        if not opt.dsn64:
            dsn_node.add(f"64-bit: {dsn64}" + ("" if idsn is not None else " (IDSN unknown: not expanded)"))
        if idsn is not None:
            dsn_node.add(f"Relative to the sender's IDSN: {(dsn64 - idsn) & MASK64}")
        pos += size
        node.add(f"Subflow sequence number (relative): {opt.ssn}", pos, pos + 4)
        length = node.add(f"Data-level length: {opt.data_len}", pos + 4, pos + 6)
        if opt.data_len == 0:
            length.add("Infinite mapping: fallback to regular TCP (§3.3.1)", style="warn")
        elif opt.data_fin:
            length.add("Includes one unit for the DATA_FIN")
        pos += 6
        if opt.checksum is not None:
            csum = node.add(f"Checksum: {opt.checksum:#06x}", pos, pos + 2)
            _dss_checksum(csum, opt, dsn64, seg, ctx, packet)
        elif ctx.connection is not None and ctx.connection.checksum:
            node.add("No checksum, but the connection negotiated checksums", style="bad")


def _relative_seq(seg: Segment, ctx: Context, direction: int) -> int | None:
    sf = ctx.subflow
    if sf is None:
        return None
    half = sf.halves[direction]
    # mappings count from after TCP Fast Open data when the sender does (analyzer.tfo); a SYN from its ISN
    base = half.isn if seg.flags & TH_SYN else half.ssn_base()
    if base is None:
        return None
    return (seg.seq - base) & MASK32


def _dss_checksum(node: Node, opt: Dss, dsn64: int, seg: Segment, ctx: Context, packet: Packet) -> None:
    assert opt.ssn is not None and opt.data_len is not None and opt.checksum is not None
    length = opt.data_len - (1 if opt.data_fin else 0)
    rel = _relative_seq(seg, ctx, packet.row.direction)
    payload = seg.payload
    if rel == opt.ssn and length == seg.payload_len:
        if len(payload) < length:
            node.add("Not verifiable: payload cut by the capture")
            return
        ok = crypto.dss_checksum_ok(dsn64, opt.ssn, opt.data_len, payload, opt.checksum)
        if ok:
            node.add("Verified over this segment's payload [correct]", style="ok")
        else:
            expected = crypto.dss_checksum(dsn64, opt.ssn, opt.data_len, payload)
            node.add(f"Expected {expected:#06x} [MISMATCH]", style="bad")
    elif length == 0:
        node.add("Covers no payload (DATA_FIN only)")
    else:
        node.add("The mapping spans several segments; the analyzer verifies it over all of them (see findings)")


def _payload(seg: Segment, ctx: Context, packet: Packet) -> Node:
    captured = seg.captured_payload_len
    node = Node(f"Payload: {seg.payload_len} bytes" + (f" ({captured} captured)" if captured < seg.payload_len else ""),
                seg.payload_offset, seg.payload_offset + captured)  # fmt: skip
    direction = packet.row.direction
    rel = _relative_seq(seg, ctx, direction)
    if rel is not None:
        node.add(f"Relative subflow sequence: {rel}–{(rel + seg.payload_len) & MASK32}")
    sf = ctx.subflow
    conn = ctx.connection
    if sf is None or conn is None or ctx.find_mapping is None or rel is None:
        return node
    if conn.fallback:
        node.add(f"Connection fell back to TCP ({conn.fallback_reason or 'fallback'})", style="warn")
        return node
    found = ctx.find_mapping(packet.frame, sf.id, direction)
    if found is None:
        node.add("No DSS mapping found in the recent packets of this subflow direction", style="warn")
        return node
    frame, mapping = found
    assert mapping.ssn is not None and mapping.data_len is not None and mapping.dsn is not None
    m_len = mapping.data_len - (1 if mapping.data_fin else 0)
    covered = mapping.ssn <= rel and rel + seg.payload_len <= mapping.ssn + m_len
    side = sf.sender(direction)
    idsn = _idsn(ctx, side)
    dsn64 = mapping.dsn if mapping.dsn64 else expand(mapping.dsn, idsn, _reference(ctx, side, frame))
    text = f"Mapping of frame {frame}: DSN {dsn64} ← SSN {mapping.ssn}, {m_len} bytes"
    if covered:
        start = (dsn64 + rel - mapping.ssn) & MASK64
        node.add(text, style="ok")
        node.add(f"This payload is data {start}–{start + seg.payload_len}"
                 + (f" (relative {(start - idsn) & MASK64})" if idsn is not None else ""))  # fmt: skip
    else:
        node.add(text + " — does not cover this payload", style="warn")
    return node
