"""The packet filter language: ``subflow == 2 and dss.fin``, ``option == ADD_ADDR``, ``finding``.

Grammar (keywords are case-insensitive; ``&&``, ``||`` and ``!`` work too)::

    expr  := and ("or" and)*
    and   := unary ("and" unary)*
    unary := "not" unary | "(" expr ")" | test
    test  := FIELD [OP VALUE]            OP: == != < <= > >=

A field on its own tests that it is present or true (``dss.fin``, ``finding``, ``tcp.seq``).
Fields kept in the packet index (frame, time, subflow, conn, flags, option kinds, DSS flags,
findings) are evaluated on whole numpy columns at once; the others (``dss.dsn``, ``tcp.seq``,
``ip.src`` …) need each packet decoded again, so a filter using them first narrows the rows with
the index (a DSS value needs a DSS option) and then decodes only those.

:func:`parse` raises :class:`FilterError` with the column of the problem and, for a misspelt
field, the nearest names. No textual here.
"""

from __future__ import annotations

import difflib
import ipaddress
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.ingest.segment import TH_ACK, TH_FIN, TH_PSH, TH_RST, TH_SYN, TH_URG, Segment
from analyzer.mptcp.options import AddAddr, Dss, MpCapable, MpJoinSyn, MpJoinSynAck
from tui.index import (
    DSS_ACK,
    DSS_ACK64,
    DSS_CSUM,
    DSS_DSN64,
    DSS_FIN,
    DSS_INFINITE,
    DSS_MAP,
    META_DIR,
    META_TCP,
    OPT_ADD_ADDR,
    OPT_DSS,
    OPT_MP_CAPABLE,
    OPT_MP_JOIN,
    OPT_MPTCP_ANY,
    OPTION_BITS,
    PacketIndex,
    Row,
)
from tui.store import Packet

Mask = npt.NDArray[np.bool_]


class FilterError(ValueError):
    """A filter expression that does not parse or does not make sense; ``column`` is 1-based."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} (column {column})")
        self.message = message
        self.column = column


@dataclass(slots=True)
class FilterContext:
    """What evaluating a filter needs besides the packet: the index and the analysis' results."""

    index: PacketIndex
    stop: int  # rows [0, stop) are evaluated
    subflow_conn: npt.NDArray[np.uint32] = field(default_factory=lambda: np.zeros(1, dtype=np.uint32))
    finding_frames: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    rule_frames: dict[str, npt.NDArray[np.int64]] = field(default_factory=dict)

    @property
    def first_ts(self) -> float:
        return self.index.first_ts or 0.0

    def conn_of(self, subflow: int) -> int:
        table = self.subflow_conn
        return int(table[subflow]) if subflow < len(table) else 0

    def frames_mask(self, frames: npt.NDArray[np.int64]) -> Mask:
        mask = np.zeros(self.stop, dtype=bool)
        rows = frames[(frames >= 1) & (frames <= self.stop)] - 1
        mask[rows] = True
        return mask


# --------------------------------------------------------------------------------------------- tokens
_TOKEN = re.compile(
    r"\s*(?:(?P<op>==|!=|<=|>=|<|>|&&|\|\||!|\(|\))"
    r"|(?P<str>\"[^\"]*\"|'[^']*')"
    r"|(?P<word>[A-Za-z0-9_.:\-/\[\]]+))"
)


@dataclass(slots=True, frozen=True)
class Token:
    kind: str  # "op" | "str" | "word" | "end"
    text: str
    column: int  # 1-based


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            col = pos + 1 + (len(text[pos:]) - len(text[pos:].lstrip()))
            raise FilterError(f"unexpected character {text[col - 1]!r}", col)
        kind = m.lastgroup or "word"
        start = m.start(kind)
        tokens.append(Token(kind, m.group(kind), start + 1))
        pos = m.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# --------------------------------------------------------------------------------------------- fields
Vector = Callable[[FilterContext], npt.NDArray[Any]]
Scalar = Callable[[Packet, FilterContext], Any]


@dataclass(slots=True, frozen=True)
class Field:
    name: str
    kind: str  # "int" | "float" | "bool" | "option" | "rule" | "ip" | "dir"
    help: str
    scalar: Scalar  # value for one packet (None = absent)
    vector: Vector | None = None  # value for all rows, if the index has it
    candidates: Vector | None = None  # rows that can have the field at all (for decoded fields)


def _col(name: str) -> Vector:
    def get(ctx: FilterContext) -> npt.NDArray[Any]:
        return ctx.index.column(name, ctx.stop)

    return get


def _bits(name: str, bits: int) -> Vector:
    def get(ctx: FilterContext) -> npt.NDArray[Any]:
        return np.asarray((ctx.index.column(name, ctx.stop) & bits) != 0, dtype=bool)

    return get


def _row_bits(attr: str, bits: int) -> Scalar:
    def get(packet: Packet, ctx: FilterContext) -> Any:
        return bool(getattr(packet.row, attr) & bits)

    return get


def _tcp_only(get: Callable[[Row], Any]) -> Scalar:
    def scalar(packet: Packet, ctx: FilterContext) -> Any:
        return get(packet.row) if packet.row.is_tcp else None

    return scalar


def _seg(get: Callable[[Segment], Any]) -> Scalar:
    def scalar(packet: Packet, ctx: FilterContext) -> Any:
        seg = packet.segment
        return None if seg is None else get(seg)

    return scalar


def _first_opt(kind: type, attr: str) -> Scalar:
    def scalar(packet: Packet, ctx: FilterContext) -> Any:
        seg = packet.segment
        if seg is None or seg.options is None:
            return None
        for opt in seg.options.mptcp:
            if type(opt) is kind:
                value = getattr(opt, attr)
                if value is not None:
                    return value
        return None

    return scalar


def _token(packet: Packet, ctx: FilterContext) -> Any:
    seg = packet.segment
    if seg is None or seg.options is None:
        return None
    for opt in seg.options.mptcp:
        if type(opt) is MpJoinSyn:
            return opt.token
    return None


def _any_port(seg: Segment) -> tuple[int, int]:
    return (seg.sport, seg.dport)


def _any_addr(seg: Segment) -> tuple[Any, Any]:
    return (ipaddress.ip_address(seg.src), ipaddress.ip_address(seg.dst))


def _conn_vector(ctx: FilterContext) -> npt.NDArray[Any]:
    sf = ctx.index.column("subflow", ctx.stop)
    table = ctx.subflow_conn
    return table[np.minimum(sf, len(table) - 1)]


def _time_vector(ctx: FilterContext) -> npt.NDArray[Any]:
    return ctx.index.column("ts", ctx.stop) - ctx.first_ts


def _frame_vector(ctx: FilterContext) -> npt.NDArray[Any]:
    return np.arange(1, ctx.stop + 1, dtype=np.int64)


def _finding_vector(ctx: FilterContext) -> npt.NDArray[Any]:
    return ctx.frames_mask(ctx.finding_frames)


def _finding_scalar(packet: Packet, ctx: FilterContext) -> Any:
    frames = ctx.finding_frames
    i = int(np.searchsorted(frames, packet.frame))
    return bool(i < len(frames) and frames[i] == packet.frame)


_TCP = _bits("meta", META_TCP)
_DSS = _bits("opts", OPT_DSS)
_DSS_MAP = _bits("dss", DSS_MAP)
_DSS_ACK = _bits("dss", DSS_ACK)
_DSS_CSUM = _bits("dss", DSS_CSUM)

_FIELD_LIST: list[Field] = [
    Field("frame", "int", "frame number", lambda p, c: p.frame, _frame_vector),
    Field("time", "float", "seconds since the first packet", lambda p, c: p.row.ts - c.first_ts, _time_vector),
    Field("subflow", "int", "subflow number (0: not TCP)", lambda p, c: p.row.subflow, _col("subflow")),
    Field("conn", "int", "MPTCP connection number (0: none)", lambda p, c: c.conn_of(p.row.subflow), _conn_vector),
    Field(
        "dir", "dir", "c2s or s2c (subflow client → server and back)", _tcp_only(lambda r: r.direction), _col("meta")
    ),
    Field("len", "int", "TCP payload length", _tcp_only(lambda r: r.plen), _col("plen")),
    Field("tcp", "bool", "the frame is a TCP segment", _row_bits("meta", META_TCP), _TCP),
    Field("mptcp", "bool", "carries any MPTCP option", _row_bits("opts", OPT_MPTCP_ANY), _bits("opts", OPT_MPTCP_ANY)),
    Field("option", "option", "an MPTCP option kind: " + ", ".join(OPTION_BITS), lambda p, c: p.row.opts, _col("opts")),
    Field(
        "finding",
        "rule",
        "frame named by a finding (finding == DSS-004 for one rule)",
        _finding_scalar,
        _finding_vector,
    ),
    Field("syn", "bool", "TCP SYN flag", _row_bits("flags", TH_SYN), _bits("flags", TH_SYN)),
    Field("fin", "bool", "TCP FIN flag", _row_bits("flags", TH_FIN), _bits("flags", TH_FIN)),
    Field("rst", "bool", "TCP RST flag", _row_bits("flags", TH_RST), _bits("flags", TH_RST)),
    Field("ack", "bool", "TCP ACK flag", _row_bits("flags", TH_ACK), _bits("flags", TH_ACK)),
    Field("psh", "bool", "TCP PSH flag", _row_bits("flags", TH_PSH), _bits("flags", TH_PSH)),
    Field("urg", "bool", "TCP URG flag", _row_bits("flags", TH_URG), _bits("flags", TH_URG)),
    Field("tcp.flags", "int", "TCP flags byte", _tcp_only(lambda r: r.flags), _col("flags")),
    Field("dss", "bool", "carries a DSS option", _row_bits("opts", OPT_DSS), _DSS),
    Field("dss.fin", "bool", "DSS with DATA_FIN", _row_bits("dss", DSS_FIN), _bits("dss", DSS_FIN)),
    Field("dss.map", "bool", "DSS with a mapping", _row_bits("dss", DSS_MAP), _DSS_MAP),
    Field("dss.infinite", "bool", "infinite mapping", _row_bits("dss", DSS_INFINITE), _bits("dss", DSS_INFINITE)),
    Field("dss.dsn64", "bool", "8-byte DSN", _row_bits("dss", DSS_DSN64), _bits("dss", DSS_DSN64)),
    Field("dss.ack64", "bool", "8-byte Data ACK", _row_bits("dss", DSS_ACK64), _bits("dss", DSS_ACK64)),
    Field("dss.dsn", "int", "mapping's data sequence number (as sent)", _first_opt(Dss, "dsn"), candidates=_DSS_MAP),
    Field("dss.ssn", "int", "mapping's relative subflow sequence number", _first_opt(Dss, "ssn"), candidates=_DSS_MAP),
    Field("dss.len", "int", "mapping's data-level length", _first_opt(Dss, "data_len"), candidates=_DSS_MAP),
    Field("dss.ack", "int", "Data ACK (as sent)", _first_opt(Dss, "data_ack"), candidates=_DSS_ACK),
    Field("dss.csum", "int", "DSS checksum", _first_opt(Dss, "checksum"), candidates=_DSS_CSUM),
    Field("token", "int", "MP_JOIN SYN token", _token, candidates=_bits("opts", OPT_MP_JOIN)),
    Field(
        "key",
        "int",
        "MP_CAPABLE sender's key",
        _first_opt(MpCapable, "sender_key"),
        candidates=_bits("opts", OPT_MP_CAPABLE),
    ),
    Field(
        "addr.id",
        "int",
        "ADD_ADDR address id",
        _first_opt(AddAddr, "address_id"),
        candidates=_bits("opts", OPT_ADD_ADDR),
    ),
    Field(
        "join.hmac",
        "int",
        "MP_JOIN SYN/ACK truncated HMAC",
        _first_opt(MpJoinSynAck, "truncated_hmac"),
        candidates=_bits("opts", OPT_MP_JOIN),
    ),
    Field("tcp.seq", "int", "TCP sequence number", _seg(lambda s: s.seq), candidates=_TCP),
    Field("tcp.ack", "int", "TCP acknowledgment number", _seg(lambda s: s.ack), candidates=_TCP),
    Field("tcp.win", "int", "TCP window (unscaled)", _seg(lambda s: s.window), candidates=_TCP),
    Field("tcp.srcport", "int", "TCP source port", _seg(lambda s: s.sport), candidates=_TCP),
    Field("tcp.dstport", "int", "TCP destination port", _seg(lambda s: s.dport), candidates=_TCP),
    Field("port", "int", "either TCP port", _seg(_any_port), candidates=_TCP),
    Field("ip.src", "ip", "IP source address", _seg(lambda s: ipaddress.ip_address(s.src)), candidates=_TCP),
    Field("ip.dst", "ip", "IP destination address", _seg(lambda s: ipaddress.ip_address(s.dst)), candidates=_TCP),
    Field("ip.addr", "ip", "either IP address", _seg(_any_addr), candidates=_TCP),
]
FIELDS: dict[str, Field] = {f.name: f for f in _FIELD_LIST}
ALIASES = {"sf": "subflow", "connection": "conn", "rule": "finding", "frame.number": "frame",
           "tcp.len": "len", "sport": "tcp.srcport", "dport": "tcp.dstport", "tcp.port": "port",
           "direction": "dir", "opt": "option", "findings": "finding"}  # fmt: skip

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}  # fmt: skip


# --------------------------------------------------------------------------------------------- AST
class Node:
    def vector(self, ctx: FilterContext) -> Mask | None:
        """The result for every row from the index alone, or None if packets must be decoded."""
        raise NotImplementedError

    def superset(self, ctx: FilterContext) -> Mask:
        """Rows that may match (exact where :meth:`vector` is not None)."""
        raise NotImplementedError

    def match(self, packet: Packet, ctx: FilterContext) -> bool:
        """Exact result for one decoded packet."""
        raise NotImplementedError

    @property
    def needs_packets(self) -> bool:
        raise NotImplementedError


@dataclass(slots=True)
class Not(Node):
    inner: Node

    def vector(self, ctx: FilterContext) -> Mask | None:
        inner = self.inner.vector(ctx)
        return None if inner is None else ~inner

    def superset(self, ctx: FilterContext) -> Mask:
        exact = self.vector(ctx)
        return exact if exact is not None else np.ones(ctx.stop, dtype=bool)

    def match(self, packet: Packet, ctx: FilterContext) -> bool:
        return not self.inner.match(packet, ctx)

    @property
    def needs_packets(self) -> bool:
        return self.inner.needs_packets


@dataclass(slots=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    left: Node
    right: Node

    def vector(self, ctx: FilterContext) -> Mask | None:
        a = self.left.vector(ctx)
        if a is None:
            return None
        b = self.right.vector(ctx)
        if b is None:
            return None
        return (a & b) if self.op == "and" else (a | b)

    def superset(self, ctx: FilterContext) -> Mask:
        a, b = self.left.superset(ctx), self.right.superset(ctx)
        return (a & b) if self.op == "and" else (a | b)

    def match(self, packet: Packet, ctx: FilterContext) -> bool:
        if self.op == "and":
            return self.left.match(packet, ctx) and self.right.match(packet, ctx)
        return self.left.match(packet, ctx) or self.right.match(packet, ctx)

    @property
    def needs_packets(self) -> bool:
        return self.left.needs_packets or self.right.needs_packets


@dataclass(slots=True)
class Test(Node):
    field: Field
    op: str | None = None
    value: Any = None

    @property
    def needs_packets(self) -> bool:
        return self.field.vector is None

    def vector(self, ctx: FilterContext) -> Mask | None:
        f = self.field
        if f.vector is None:
            return None
        if f.kind == "rule" and self.value is not None:
            frames = ctx.rule_frames.get(str(self.value), np.zeros(0, dtype=np.int64))
            mask = ctx.frames_mask(frames)
            return mask if self.op == "==" else ~mask
        values = f.vector(ctx)
        tcp = np.asarray((ctx.index.column("meta", ctx.stop) & META_TCP) != 0, dtype=bool)
        if f.kind == "option":
            bits = self.value if self.op is not None else OPT_MPTCP_ANY
            has = np.asarray((values & bits) != 0, dtype=bool)
            return has if self.op in (None, "==") else ~has
        if f.kind == "dir":
            values = values & META_DIR
            if self.op is None:
                return tcp
            return np.asarray(_OPS[self.op](values, self.value) & tcp, dtype=bool)
        if self.op is None:
            return np.asarray(values != 0, dtype=bool)
        result = np.asarray(_OPS[self.op](values, self.value), dtype=bool)
        if f.name in ("len", "tcp.flags"):
            result &= tcp
        return result

    def superset(self, ctx: FilterContext) -> Mask:
        exact = self.vector(ctx)
        if exact is not None:
            return exact
        assert self.field.candidates is not None
        return np.asarray(self.field.candidates(ctx), dtype=bool)

    def match(self, packet: Packet, ctx: FilterContext) -> bool:
        f = self.field
        if f.kind == "rule" and self.value is not None:
            frames = ctx.rule_frames.get(str(self.value))
            hit = frames is not None and bool(np.isin(packet.frame, frames))
            return hit if self.op == "==" else not hit
        value = f.scalar(packet, ctx)
        if f.kind == "option":
            bits = int(value)
            has = bool(bits & self.value) if self.op is not None else bool(bits & OPT_MPTCP_ANY)
            return has if self.op in (None, "==") else not has
        if value is None:
            return False
        if self.op is None:
            return bool(value) if not isinstance(value, tuple) else True
        compare = _OPS[self.op]
        if isinstance(value, tuple):  # either end (port, ip.addr)
            return (
                any(compare(v, self.value) for v in value)
                if self.op != "!="
                else all(compare(v, self.value) for v in value)
            )
        try:
            return bool(compare(value, self.value))
        except TypeError:  # IPv4 vs IPv6 ordering
            return False


# --------------------------------------------------------------------------------------------- parser
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def is_word(self, token: Token, *words: str) -> bool:
        return token.kind == "word" and token.text.lower() in words

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise FilterError("empty filter", 1)
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise FilterError(f"unexpected {token.text!r}; expected 'and', 'or' or the end", token.column)
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while (t := self.peek()).text == "||" or self.is_word(t, "or"):
            self.take()
            node = BoolOp("or", node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_unary()
        while (t := self.peek()).text == "&&" or self.is_word(t, "and"):
            self.take()
            node = BoolOp("and", node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        token = self.peek()
        if (token.kind == "op" and token.text == "!") or self.is_word(token, "not"):
            self.take()
            return Not(self.parse_unary())
        if token.kind == "op" and token.text == "(":
            self.take()
            node = self.parse_or()
            close = self.take()
            if close.text != ")":
                raise FilterError(f"missing ')' for the '(' at column {token.column}", close.column)
            return node
        return self.parse_test()

    def parse_test(self) -> Node:
        token = self.take()
        if token.kind == "end":
            raise FilterError("expected a field name at the end", token.column)
        if token.kind != "word":
            raise FilterError(f"expected a field name, found {token.text!r}", token.column)
        if self.is_word(token, "and", "or"):
            raise FilterError(f"'{token.text}' needs a test before it", token.column)
        name = token.text.lower()
        name = ALIASES.get(name, name)
        f = FIELDS.get(name)
        if f is None:
            close = difflib.get_close_matches(name, [*FIELDS, *ALIASES], n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "; press ? for the list"
            raise FilterError(f"unknown field {token.text!r}{hint}", token.column)
        op_token = self.peek()
        if op_token.kind != "op" or op_token.text not in _OPS:
            if f.kind == "option":
                raise FilterError("'option' needs a kind, e.g. option == ADD_ADDR", op_token.column)
            return Test(f)
        self.take()
        value_token = self.take()
        if value_token.kind == "end" or (value_token.kind == "op"):
            raise FilterError(f"expected a value after '{op_token.text}'", value_token.column)
        return Test(f, op_token.text, self.value(f, op_token, value_token))

    def value(self, f: Field, op: Token, token: Token) -> Any:
        raw = token.text.strip("\"'") if token.kind == "str" else token.text
        if f.kind in ("option", "rule", "dir", "bool") and op.text not in ("==", "!="):
            raise FilterError(f"'{f.name}' can only be compared with == or !=", op.column)
        if f.kind == "option":
            bit = OPTION_BITS.get(raw.upper().replace("-", "_"))
            if bit is None:
                raise FilterError(f"unknown option {raw!r}; one of {', '.join(OPTION_BITS)}", token.column)
            return bit
        if f.kind == "rule":
            return raw.upper()
        if f.kind == "dir":
            lowered = raw.lower()
            if lowered in ("c2s", "0", "client"):
                return 0
            if lowered in ("s2c", "1", "server"):
                return 1
            raise FilterError(f"'dir' is c2s or s2c, not {raw!r}", token.column)
        if f.kind == "bool":
            lowered = raw.lower()
            if lowered in ("1", "true", "yes"):
                return True
            if lowered in ("0", "false", "no"):
                return False
            raise FilterError(f"'{f.name}' is true or false, not {raw!r}", token.column)
        if f.kind == "ip":
            try:
                return ipaddress.ip_address(raw)
            except ValueError:
                raise FilterError(f"{raw!r} is not an IP address", token.column) from None
        try:
            if f.kind == "float":
                return float(raw)
            return int(raw, 0)
        except ValueError:
            kind = "a number" if f.kind == "float" else "an integer"
            raise FilterError(f"'{f.name}' needs {kind}, not {raw!r}", token.column) from None


def parse(text: str) -> Node:
    """Parse a filter expression; raises :class:`FilterError`."""
    node = _Parser(text).parse()
    _bool_fields_as_tests(node)
    return node


def _bool_fields_as_tests(node: Node) -> None:
    """``syn == false`` is ``not syn``: normalise boolean comparisons in place."""
    if isinstance(node, BoolOp):
        _bool_fields_as_tests(node.left)
        _bool_fields_as_tests(node.right)
    elif isinstance(node, Not):
        _bool_fields_as_tests(node.inner)
    elif isinstance(node, Test) and node.field.kind == "bool" and node.op is not None:
        node.op = "==" if (node.op == "==") == bool(node.value) else "!="
        node.value = True


def evaluate(node: Node, ctx: FilterContext) -> Mask | None:
    """Rows matching ``node`` when the index alone decides it, else None (see :func:`candidates`)."""
    mask = node.vector(ctx)
    if mask is None:
        return None
    return np.asarray(mask, dtype=bool)


def candidates(node: Node, ctx: FilterContext) -> npt.NDArray[np.int64]:
    """Rows that may match a filter that needs decoded packets (check each with ``node.match``)."""
    return np.flatnonzero(node.superset(ctx)).astype(np.int64)


def field_help() -> list[tuple[str, str]]:
    """(name, description) of every field, for the help screen."""
    return [(f.name, f.help) for f in _FIELD_LIST]
