"""``xcheck``: decode the same trace with Wireshark (pyshark → tshark) and compare, packet by packet.

Both decoders see the same frame numbers. Our pass runs as usual; an observer pulls Wireshark's
packets in step with ours (memory stays flat), pairs the MPTCP options of each frame in header order
and compares every field that both decode:

* **raw option fields** (``tcp.options.mptcp.*``): subtype, version, flags, keys, token, nonces,
  HMACs, address id, addresses and port, raw DSN / SSN / data-level length / checksum, raw Data ACK,
  MP_TCPRST reason;
* **derived values** (``mptcp.*``): the token and IDSN Wireshark computes from a key, and the DSN and
  Data ACK relative to the sender's (receiver's) IDSN, which need 32 → 64-bit expansion;
* Wireshark's **"No mapping available"** expert note (with ``mptcp.analyze_mappings`` on) against our
  reassembly.

Wireshark has known MPTCP bugs. A disagreement that one of them explains is classified as such (see
:data:`KNOWN_BUGS`) with the reason we are right; everything else is an unexplained disagreement.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from analyzer.ingest.segment import Segment
from analyzer.model import Analysis, Subflow
from analyzer.mptcp import crypto
from analyzer.mptcp.datalevel import PacketLevels
from analyzer.mptcp.options import (
    DSS_ACK64,
    DSS_DSN64,
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
    UnknownMptcpOption,
)
from analyzer.pipeline import AnalysisOptions, analyze

MASK32 = 0xFFFFFFFF
MASK64 = (1 << 64) - 1
OPT = "tcp.options.mptcp."
DISPLAY_FILTER = "tcp.options.mptcp.subtype"
# Wireshark preferences for the comparison: mapping analysis on (for the "No mapping available" check),
# relative data sequence numbers on (the mptcp.dss.dsn / mptcp.ack fields).
PREFERENCES = {
    "tcp.analyze_sequence_numbers": "TRUE",
    "mptcp.analyze_mptcp": "TRUE",
    "mptcp.relative_sequence_numbers": "TRUE",
    "mptcp.analyze_mappings": "TRUE",
}
MAX_EXAMPLES = 200  # disagreements kept per known bug, and unexplained ones kept in all


@dataclass(frozen=True, slots=True)
class KnownBug:
    id: str
    title: str
    why: str  # why Wireshark is wrong and we are right


KNOWN_BUGS: dict[str, KnownBug] = {
    bug.id: bug
    for bug in (
        KnownBug(
            "ws-dsn-width-flag",
            "Wireshark picks the 32/64-bit DSN conversion by the Data ACK's width flag",
            "RFC 8684 §3.3: flag m says whether the DSN is 8 octets; flag a only concerns the Data ACK. "
            "Wireshark's DSS dissector converts the mapping's DSN with DSN_CONV_32_TO_64 unless a is set, so "
            "with m=1, a=0 it truncates a 64-bit DSN to 32 bits and re-expands it, and with m=0, a=1 it takes "
            "a 4-byte DSN as a full 64-bit number. The raw DSN on the wire agrees; only its relative value "
            "differs. We expand by m, as the RFC says.",
        ),
        KnownBug(
            "ws-missing-mapping-zero-length",
            'Wireshark reports "No mapping available" on segments without payload',
            "RFC 8684 §3.3.1: a DSS mapping maps subflow payload bytes to the data sequence space. A "
            "segment that carries no payload (pure ACK, zero-length DATA_FIN, MP_FASTCLOSE, SYN, FIN) has "
            "no byte to map, so there is no missing mapping. Wireshark's mapping analysis looks the "
            "segment up anyway and flags it.",
        ),
        KnownBug(
            "ws-two-pass-joined-subflow",
            "Two-pass dissection (tshark -2) corrupts relative DSNs and Data ACKs on joined subflows",
            "With two-pass dissection Wireshark computes the relative DSN and Data ACK of packets on joined "
            "(MP_JOIN) subflows against the other host's IDSN: each such value equals Wireshark's own "
            "widening of the raw value minus the peer's IDSN. The raw values on the wire agree with ours, "
            "and a single pass over the same packets gives our values.",
        ),
        KnownBug(
            "ws-tfo-subflow-numbering",
            "Wireshark counts the mappings' relative subflow sequence from ISN + 1 after TCP Fast Open data",
            "Linux (net/mptcp/fastopen.c) keeps data carried on the SYN outside the MPTCP sequence space and "
            "numbers the mappings' relative subflow sequence from the byte after it: the MP_CAPABLE-with-data "
            "segment is relative 1. Wireshark counts from ISN + 1 as without TFO, so it looks the following "
            "mappings up one SYN-data length off and misses some. The kernel's own account of the streams "
            "(the lab's sidecar) matches our rebuild byte for byte.",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Disagreement:
    frame: int
    field: str  # Wireshark field name
    ours: str
    wireshark: str
    bug: str | None = None  # key of KNOWN_BUGS when a known Wireshark bug explains it
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return {"frame": self.frame, "field": self.field, "ours": self.ours, "wireshark": self.wireshark,
                "known_wireshark_bug": self.bug, "note": self.note}  # fmt: skip


@dataclass
class XcheckReport:
    path: str
    tshark_version: str
    two_pass: bool
    frames: int = 0  # MPTCP frames both decoded
    options: int = 0  # option pairs compared
    fields: int = 0  # field values compared
    ours_only: int = 0  # frames with MPTCP options only we decoded
    wireshark_only: int = 0
    unexplained: list[Disagreement] = field(default_factory=list)
    unexplained_total: int = 0
    known: dict[str, list[Disagreement]] = field(default_factory=dict)
    known_total: dict[str, int] = field(default_factory=dict)
    by_field: dict[str, int] = field(default_factory=dict)  # values compared per Wireshark field

    def count(self, name: str) -> None:
        self.fields += 1
        self.by_field[name] = self.by_field.get(name, 0) + 1

    def add(self, item: Disagreement) -> None:
        if item.bug is None:
            self.unexplained_total += 1
            if len(self.unexplained) < MAX_EXAMPLES:
                self.unexplained.append(item)
            return
        self.known_total[item.bug] = self.known_total.get(item.bug, 0) + 1
        examples = self.known.setdefault(item.bug, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(item)

    @property
    def exit_code(self) -> int:
        return 1 if self.unexplained_total else 0

    def to_json(self) -> dict[str, object]:
        return {
            "schema": "mptcp-analyze-xcheck/1",
            "trace": self.path,
            "wireshark": {"tshark_version": self.tshark_version, "two_pass": self.two_pass},
            "compared": {
                "frames": self.frames,
                "options": self.options,
                "fields": self.fields,
                "by_field": dict(sorted(self.by_field.items())),
            },
            "ours_only_frames": self.ours_only,
            "wireshark_only_frames": self.wireshark_only,
            "unexplained": {"count": self.unexplained_total, "items": [d.to_json() for d in self.unexplained]},
            "known_wireshark_bugs": [
                {
                    "id": bug_id,
                    "title": KNOWN_BUGS[bug_id].title,
                    "why": KNOWN_BUGS[bug_id].why,
                    "count": self.known_total[bug_id],
                    "items": [d.to_json() for d in self.known[bug_id]],
                }
                for bug_id in self.known
            ],
        }


class XcheckError(Exception):
    """xcheck cannot run: pyshark or tshark is missing, or tshark failed on the file (a usage error)."""


class XcheckUnavailable(XcheckError):
    """pyshark or tshark is missing."""


# ---------------------------------------------------------------------- Wireshark's side


@dataclass(slots=True)
class WsPacket:
    frame: int
    tcp_len: int
    options: list[dict[str, str]]  # each MPTCP option's fields, flattened
    analysis: dict[str, str]  # mptcp.analysis fields and MPTCP expert notes, flattened
    master: bool | None


def _flatten(tree: Any, out: dict[str, str]) -> dict[str, str]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            if isinstance(value, dict | list):
                _flatten(value, out)
                if isinstance(value, list) and all(isinstance(v, str) for v in value):
                    out[key] = " ".join(value)
            else:
                out[key] = str(value)
    elif isinstance(tree, list):
        for value in tree:
            _flatten(value, out)
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def tshark_version() -> str:
    try:
        from pyshark.tshark import tshark
    except ImportError:
        raise XcheckUnavailable("xcheck needs pyshark: pip install 'mptcp-analyze[xcheck]'") from None
    try:
        return str(tshark.get_tshark_version())
    except Exception as exc:  # pyshark raises its own TSharkNotFoundException
        raise XcheckUnavailable(f"xcheck needs tshark (Wireshark's command line): {exc}") from None


def wireshark_packets(path: str, two_pass: bool = False) -> Iterator[WsPacket]:
    """Wireshark's decode of every frame with an MPTCP option, in frame order (pyshark, JSON output).

    pyshark runs in a fresh process (see :func:`_decode_isolated`); the decode starts on first use, so
    an unreadable capture is reported by our own reader first.
    """
    yield from _decode_isolated(path, two_pass)


def _pyshark_packets(path: str, two_pass: bool = False) -> Iterator[WsPacket]:
    import pyshark

    capture = pyshark.FileCapture(
        path, use_json=True, display_filter=DISPLAY_FILTER, keep_packets=False, override_prefs=PREFERENCES,
        custom_parameters=["-2"] if two_pass else None,
    )  # fmt: skip
    try:
        for packet in _guarded(capture, path):
            tcp = packet.tcp._all_fields
            options_tree = tcp.get("tcp.options_tree", {})
            options = [_flatten(opt, {}) for opt in _as_list(options_tree.get("mptcp"))]
            analysis: dict[str, str] = {}
            _flatten(tcp.get("mptcp.analysis", {}), analysis)
            for key in ("_ws.expert",):
                _flatten(tcp.get(key, {}), analysis)
            master = analysis.get("mptcp.master")
            yield WsPacket(
                frame=int(packet.frame_info.number),
                tcp_len=int(tcp.get("tcp.len", 0)),
                options=options,
                analysis=analysis,
                master=None if master is None else master == "1",
            )
    finally:
        capture.close()


def _guarded(capture: Any, path: str) -> Iterator[Any]:
    """Iterate pyshark packets, turning tshark's failures into :class:`XcheckError`."""
    iterator = iter(capture)
    while True:
        try:
            packet = next(iterator)
        except StopIteration:
            return
        except Exception as exc:  # pyshark raises TSharkCrashException and friends
            raise XcheckError(f"{path}: tshark failed: {type(exc).__name__}: {exc}") from exc
        yield packet


# ---------------------------------------------------------------------- our side, as Wireshark fields


def _ws_int(text: str) -> int | None:
    text = text.strip()
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def _ws_bytes(text: str) -> str:
    return text.replace(":", "").lower()


Value = int | str | bool


def _put(fields: dict[str, Value], name: str, value: Value | None) -> None:
    """Record an optional field only when the option carries it (Wireshark shows no field for an absent one)."""
    if value is not None:
        fields[OPT + name] = value


def our_fields(opt: MptcpOption) -> dict[str, Value]:
    """Our decode of one option under Wireshark's raw field names (values normalised for comparison)."""
    fields: dict[str, Value] = {}
    subtype = getattr(opt, "subtype", None)
    if isinstance(subtype, int):
        fields[OPT + "subtype"] = int(subtype)
    if isinstance(opt, MpCapable):
        fields[OPT + "version"] = opt.version
        fields[OPT + "flags"] = opt.flags
        if opt.sender_key is not None:
            fields[OPT + "sendkey"] = opt.sender_key
            fields["mptcp.expected_token"] = crypto.token_from_key(opt.sender_key, opt.version)
            fields["mptcp.expected_idsn"] = crypto.idsn_from_key(opt.sender_key, opt.version)
        _put(fields, "recvkey", opt.receiver_key)
        _put(fields, "datalvllen", opt.data_len)
        _put(fields, "checksum", opt.checksum)
    elif isinstance(opt, MpJoinSyn):
        fields[OPT + "backup.flag"] = int(opt.backup)
        fields[OPT + "addrid"] = opt.address_id
        fields[OPT + "recvtok"] = opt.token
        fields[OPT + "sendrand"] = opt.nonce
    elif isinstance(opt, MpJoinSynAck):
        fields[OPT + "backup.flag"] = int(opt.backup)
        fields[OPT + "addrid"] = opt.address_id
        fields[OPT + "sendtrunchmac"] = opt.truncated_hmac
        fields[OPT + "sendrand"] = opt.nonce
    elif isinstance(opt, MpJoinAck):
        fields[OPT + "sendhmac"] = opt.hmac.hex()
    elif isinstance(opt, Dss):
        fields[OPT + "flags"] = opt.flags
        _put(fields, "rawdataack", opt.data_ack)
        _put(fields, "rawdataseqno", opt.dsn)
        _put(fields, "subflowseqno", opt.ssn)
        _put(fields, "datalvllen", opt.data_len)
        _put(fields, "checksum", opt.checksum)
    elif isinstance(opt, AddAddr):
        fields[OPT + "addrid"] = opt.address_id
        key = "ipv4" if isinstance(opt.address, ipaddress.IPv4Address) else "ipv6"
        fields[OPT + key] = str(opt.address)
        _put(fields, "port", opt.port)
        if not opt.v0:
            fields[OPT + "echo"] = int(opt.echo)
        _put(fields, "addaddrtrunchmac", opt.hmac)
    elif isinstance(opt, RemoveAddr):
        fields[OPT + "addrid"] = " ".join(str(i) for i in opt.address_ids)
    elif isinstance(opt, MpPrio):
        fields[OPT + "backup.flag"] = int(opt.backup)
        _put(fields, "addrid", opt.address_id)
    elif isinstance(opt, MpFail):
        fields[OPT + "rawdataseqno"] = opt.dsn
    elif isinstance(opt, MpFastclose):
        fields[OPT + "recvkey"] = opt.receiver_key
    elif isinstance(opt, MpTcpRst):
        fields[OPT + "rst_reason"] = opt.reason
        fields[OPT + "flag_T.flag"] = bool(opt.flags & 0x01)
        fields[OPT + "flag_U.flag"] = bool(opt.flags & 0x08)
        fields[OPT + "flag_V.flag"] = bool(opt.flags & 0x04)
        fields[OPT + "flag_W.flag"] = bool(opt.flags & 0x02)
    elif isinstance(opt, UnknownMptcpOption | MalformedOption) and opt.subtype is not None:
        fields[OPT + "subtype"] = opt.subtype
    return fields


def _normalise(name: str, ours: Value, text: str) -> Value | None:
    """Wireshark's text for ``name`` in the type of our value (None if it cannot be read)."""
    if isinstance(ours, bool):
        lowered = text.strip().lower()
        return lowered in ("1", "true") if lowered in ("0", "1", "true", "false") else None
    if isinstance(ours, int):
        return _ws_int(text)
    if name.endswith("sendhmac"):
        return _ws_bytes(text)
    if name.endswith(("ipv4", "ipv6")):
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return text
    return " ".join(text.split())


def _show(value: Value | None) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "-" if value is None else str(value)


# ---------------------------------------------------------------------- comparison


def wireshark_relative(raw: int, base: int, ack64_flag: int) -> int:
    """What Wireshark shows as a relative DSN or Data ACK (its ``mptcp_convert_dsn``, relative on).

    It widens the raw value by keeping the 32 most significant bits of ``base`` (the IDSN) and OR-ing
    the raw value in, unless the DSS's a flag (Data ACK is 8 octets) is set, then subtracts ``base``.
    For the Data ACK that is right; for the DSN it should be the m flag.
    """
    value = raw if ack64_flag else (base & ~MASK32 & MASK64) | raw
    return (value - base) & MASK64


class Comparator:
    """Pipeline observer: compares each of our MPTCP segments with Wireshark's decode of the same frame."""

    def __init__(self, packets: Iterator[WsPacket], report: XcheckReport) -> None:
        self._packets = packets
        self._pending: WsPacket | None = None
        self._done = False
        self.report = report
        self.packet = PacketLevels()  # the current segment's 64-bit values (analyzer.datalevels)
        self._payload_missing: list[tuple[int, Subflow, int]] = []  # frames Wireshark says are unmapped

    def attach_levels(self, packet: PacketLevels, level: object) -> None:
        """The pipeline's data levels: our 64-bit DSN and Data ACK are the ones every stage shows."""
        self.packet = packet

    def _next(self) -> WsPacket | None:
        if self._pending is None and not self._done:
            self._pending = next(self._packets, None)
            self._done = self._pending is None
        return self._pending

    def _drain_before(self, frame: int) -> None:
        while (packet := self._next()) is not None and packet.frame < frame:
            self._pending = None
            self.report.wireshark_only += 1
            subtypes = ",".join(opt.get(OPT + "subtype", "?") for opt in packet.options)
            self.report.add(Disagreement(packet.frame, "mptcp", "no MPTCP option decoded",
                                         f"MPTCP option(s) subtype {subtypes}"))  # fmt: skip

    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        self._drain_before(seg.frame)
        ours = seg.options.mptcp if seg.options is not None else []
        packet = self._next()
        theirs = packet if packet is not None and packet.frame == seg.frame else None
        if theirs is not None:
            self._pending = None
        if not ours and theirs is None:
            return
        if theirs is None:
            self.report.ours_only += 1
            self.report.add(Disagreement(seg.frame, "mptcp", f"{len(ours)} MPTCP option(s)",
                                         "no MPTCP option decoded"))  # fmt: skip
            return
        if not ours:
            self.report.wireshark_only += 1
            self.report.add(Disagreement(seg.frame, "mptcp", "no MPTCP option decoded",
                                         f"{len(theirs.options)} MPTCP option(s)"))  # fmt: skip
            return
        self.report.frames += 1
        if len(ours) != len(theirs.options):
            self.report.add(Disagreement(seg.frame, "mptcp.options", str(len(ours)), str(len(theirs.options))))
        for opt, ws in zip(ours, theirs.options, strict=False):
            self.report.options += 1
            self._compare_option(seg, opt, ws)
            if isinstance(opt, Dss):
                self._compare_relative(seg, sf, direction, opt, ws, theirs)
        self._check_mapping_note(seg, sf, direction, theirs)

    def _compare_option(self, seg: Segment, opt: MptcpOption, ws: dict[str, str]) -> None:
        fields = our_fields(opt)
        ws_subtype = _ws_int(ws.get(OPT + "subtype", ""))
        if OPT + "subtype" in fields and ws_subtype is not None and ws_subtype != fields[OPT + "subtype"]:
            self.report.count(OPT + "subtype")
            self.report.add(Disagreement(seg.frame, OPT + "subtype", _show(fields[OPT + "subtype"]), str(ws_subtype)))
            return  # the rest would only repeat that they decode different options
        for name, ours in fields.items():
            text = ws.get(name)
            if text is None:
                continue  # a field Wireshark does not decode: nothing to compare
            theirs = _normalise(name, ours, text)
            self.report.count(name)
            if theirs != ours:
                self.report.add(Disagreement(seg.frame, name, _show(ours), _show(theirs) if theirs is not None
                                             else text))  # fmt: skip

    def _compare_relative(
        self, seg: Segment, sf: Subflow, direction: int, dss: Dss, ws: dict[str, str], packet: WsPacket
    ) -> None:
        """mptcp.dss.dsn and mptcp.ack: relative to the sender's / receiver's IDSN (needs both keys seen)."""
        conn = sf.connection
        if conn is None:
            return
        side = sf.sender(direction)
        sender, receiver = conn.sides[side], conn.sides[1 - side]
        dsn64 = self.packet.known_dsn(dss)
        if dss.dsn is not None and sender.idsn is not None and dsn64 is not None:
            text = ws.get("mptcp.dss.dsn")
            if text is not None and dss.data_len:  # an infinite mapping has no meaningful relative DSN
                self._relative(seg, "mptcp.dss.dsn", (dsn64 - sender.idsn) & MASK64, text, dss, packet,
                               raw=dss.dsn, idsn=sender.idsn, other_idsn=receiver.idsn)  # fmt: skip
        ack64 = self.packet.known_ack(dss)
        if dss.data_ack is not None and receiver.idsn is not None and ack64 is not None:
            text = ws.get("mptcp.ack")
            if text is not None:
                self._relative(seg, "mptcp.ack", (ack64 - receiver.idsn) & MASK64, text, dss, packet,
                               raw=dss.data_ack, idsn=receiver.idsn, other_idsn=sender.idsn)  # fmt: skip

    def _relative(
        self, seg: Segment, name: str, ours: int, text: str, dss: Dss, packet: WsPacket,
        raw: int, idsn: int, other_idsn: int | None,
    ) -> None:  # fmt: skip
        theirs = _ws_int(text)
        self.report.count(name)
        if theirs == ours:
            return
        bug: str | None = None
        note = ""
        m, a = int(bool(dss.flags & DSS_DSN64)), int(bool(dss.flags & DSS_ACK64))
        # Wireshark converts both the DSN and the Data ACK by the a flag (see wireshark_relative).
        if name == "mptcp.dss.dsn" and m != a and theirs == wireshark_relative(raw, idsn, a):
            bug = "ws-dsn-width-flag"
            note = f"m={m} a={a}: {8 if m else 4}-byte DSN widened as {8 if a else 4}-byte"
        elif (
            self.report.two_pass and packet.master is False and other_idsn is not None
            and theirs == wireshark_relative(raw, other_idsn, a)
        ):  # fmt: skip
            bug = "ws-two-pass-joined-subflow"
            note = "relative to the other host's IDSN"
        self.report.add(Disagreement(seg.frame, name, str(ours), _show(theirs) if theirs is not None else text,
                                     bug, note))  # fmt: skip

    def _check_mapping_note(self, seg: Segment, sf: Subflow, direction: int, packet: WsPacket) -> None:
        if "mptcp.dss.missing_mapping" not in packet.analysis:
            return
        self.report.count("mptcp.dss.missing_mapping")
        if seg.payload_len == 0:
            self.report.add(Disagreement(seg.frame, "mptcp.dss.missing_mapping", "no payload, no mapping needed",
                                         "No mapping available", "ws-missing-mapping-zero-length",
                                         "zero-length segment"))  # fmt: skip
        else:
            self._payload_missing.append((seg.frame, sf, direction))

    def finish(self, analysis: Analysis) -> None:
        self._drain_before(1 << 62)
        unmapped = {frame for f in analysis.findings if f.rule == "DSS-004" for frame in f.frames}
        for frame, sf, direction in self._payload_missing:
            fallback = sf.connection is not None and sf.connection.fallback
            if frame in unmapped or fallback or sf.halves[direction].unmapped_bytes:
                continue  # we also see payload without a mapping there
            half = sf.halves[direction]
            bug, note = (None, "")
            if half.ssn_shift:  # the mappings are numbered past TCP Fast Open data
                bug, note = "ws-tfo-subflow-numbering", f"{half.syn_payload} bytes in the SYN"
            self.report.add(Disagreement(frame, "mptcp.dss.missing_mapping", "payload covered by a mapping",
                                         "No mapping available", bug, note))  # fmt: skip


def xcheck(path: str, two_pass: bool = False) -> XcheckReport:
    """Compare our decode of ``path`` with Wireshark's. Raises XcheckUnavailable, or CaptureError."""
    version = tshark_version()
    report = XcheckReport(path=path, tshark_version=version, two_pass=two_pass)
    packets = wireshark_packets(path, two_pass)
    comparator = Comparator(packets, report)
    try:
        analyze(path, AnalysisOptions(stats=False, observers=[comparator]))
    finally:
        close = getattr(packets, "close", None)
        if close is not None:
            close()
    return report


def _decode_all(path: str, two_pass: bool) -> list[WsPacket]:
    return list(_pyshark_packets(path, two_pass))


def _decode_isolated(path: str, two_pass: bool) -> list[WsPacket]:
    """Run pyshark in a fresh process: its asyncio subprocess handling must not depend on (or be broken
    by) whatever event loops and child watchers the calling process has used before (a TUI, tests)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_decode_all, path, two_pass).result()
