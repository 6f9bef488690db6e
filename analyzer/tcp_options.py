"""Walk the option bytes of one TCP header and decode the options the analyzer needs.

This runs for every MPTCP segment of a trace, so it works on the raw buffer with ``struct`` and
slicing. The loop advances by at least one byte per step and never reads past ``end``, so it
always terminates, and it never raises for any input.

Rules (RFC 9293 section 3.1, RFC 8684 section 3): kind 0 (EOL) ends the list, kind 1 (NOP) is one
byte, every other option has a length byte that counts the kind and length bytes. A length below
2, or an option that runs past the header, makes the list malformed and stops the walk. Bytes the
capture did not keep (snaplen) are *truncated*, which is not malformed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from analyzer.mptcp.options import KIND_MPTCP, MptcpOption, parse_option

__all__ = ["TcpOptions", "walk_tcp_options"]

KIND_EOL: Final = 0
KIND_NOP: Final = 1
KIND_MSS: Final = 2  # RFC 9293
KIND_WSCALE: Final = 3  # RFC 7323
KIND_SACK_PERMITTED: Final = 4  # RFC 2018
KIND_SACK: Final = 5  # RFC 2018
KIND_TIMESTAMP: Final = 8  # RFC 7323
KIND_FASTOPEN: Final = 34  # RFC 7413

_u16 = struct.Struct("!H").unpack_from
_timestamp = struct.Struct("!II").unpack_from


@dataclass(slots=True)
class TcpOptions:
    """The options of one TCP header. Options with a length wrong for their kind are skipped."""

    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    timestamp: tuple[int, int] | None = None  # (TSval, TSecr)
    sack_blocks: tuple[tuple[int, int], ...] = ()  # (left edge, right edge) pairs
    fastopen: bytes | None = None  # TFO cookie; b"" is a cookie request
    mptcp: list[MptcpOption] = field(default_factory=list)  # in header order
    malformed: str | None = None  # why the walk stopped early, e.g. "option length 1 at offset 3"
    truncated: bool = False  # the capture ended inside the options (snaplen): not malformed


def walk_tcp_options(buf: bytes, start: int, end: int, captured_end: int | None = None) -> TcpOptions:
    """Decode the TCP options in ``buf[start:end]`` (header bytes 20 to data offset × 4).

    ``captured_end`` (default ``end``) is where the captured bytes stop; an option that runs
    past it sets ``truncated``. Offsets in ``malformed`` count from ``start``. When the option
    that stops the walk is an MPTCP one (kind 30 with a length below 2, or running past ``end``),
    its bytes are also appended to ``mptcp`` as a :class:`~analyzer.mptcp.MalformedOption`.
    """
    out = TcpOptions()
    if start < 0:
        start = 0
    limit = end if captured_end is None else min(captured_end, end)
    if limit > len(buf):
        limit = len(buf)
    i = start
    while i < end:
        if i >= limit:
            out.truncated = True
            break
        kind = buf[i]
        if kind == KIND_EOL:
            break
        if kind == KIND_NOP:
            i += 1
            continue
        if i + 1 >= end:
            out.malformed = f"option kind {kind} at offset {i - start} has no length byte"
            if kind == KIND_MPTCP:
                out.mptcp.append(parse_option(bytes(buf[i : i + 1])))
            break
        if i + 1 >= limit:
            out.truncated = True
            break
        length = buf[i + 1]
        if length < 2:
            out.malformed = f"option length {length} at offset {i - start}"
            if kind == KIND_MPTCP:
                out.mptcp.append(parse_option(bytes(buf[i : i + 2])))
            break
        nxt = i + length
        if nxt > end:
            out.malformed = (
                f"option kind {kind} length {length} at offset {i - start} runs past the header ({end - i} bytes left)"
            )
            if kind == KIND_MPTCP:
                out.mptcp.append(parse_option(bytes(buf[i:limit])))
            break
        if nxt > limit:
            out.truncated = True
            break
        if kind == KIND_MPTCP:
            out.mptcp.append(parse_option(bytes(buf[i:nxt])))
        elif kind == KIND_TIMESTAMP:
            if length == 10:
                tsval, tsecr = _timestamp(buf, i + 2)
                out.timestamp = (tsval, tsecr)
        elif kind == KIND_MSS:
            if length == 4:
                out.mss = _u16(buf, i + 2)[0]
        elif kind == KIND_WSCALE:
            if length == 3:
                out.wscale = buf[i + 2]
        elif kind == KIND_SACK_PERMITTED:
            if length == 2:
                out.sack_permitted = True
        elif kind == KIND_SACK:
            if length >= 10 and (length - 2) % 8 == 0:
                edges = struct.unpack_from(f"!{(length - 2) // 4}I", buf, i + 2)
                out.sack_blocks = tuple(zip(edges[::2], edges[1::2], strict=True))
        elif kind == KIND_FASTOPEN:
            out.fastopen = bytes(buf[i + 2 : nxt])
        i = nxt
    return out
