"""One pass over a capture: records → segments → tracker (→ later stages), then the model.

Stages that need every segment (the tracker now; reassembly and the checker later) subscribe as
``SegmentObserver``s so the file is still read exactly once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, runtime_checkable

from analyzer.datalevels import DataLevels
from analyzer.diagnosis import diagnose
from analyzer.facts import FactLog
from analyzer.findings import FindingSink, Severity
from analyzer.ingest.capture import CaptureError, open_capture, read_records
from analyzer.ingest.decode import LINK_TYPE_NAMES, SKIP_LABELS, SUPPORTED_LINK_TYPES, Skip, decode_segment
from analyzer.ingest.record import Record
from analyzer.ingest.segment import Segment
from analyzer.limits import DEFAULT_LIMITS, Limits, limit_message
from analyzer.model import Analysis, Connection, Subflow, TraceSummary
from analyzer.reassembly.mapper import Reassembler, WriterFactory
from analyzer.results import Contribution, assemble
from analyzer.tracker import HeldSyn, Tracker, awaits_grouping

ProgressCallback = Callable[[int, int | None], None]  # (bytes read so far, total bytes or None)
PROGRESS_EVERY = 1 << 14  # packets between progress callbacks


class SegmentObserver(Protocol):
    """A stage that sees every TCP segment after the tracker placed it in its subflow.

    An observer with ``attach_levels(packet, level)`` is handed the data levels (analyzer.datalevels)
    before the pass: ``packet`` holds the current segment's 64-bit DSN and Data ACK, ``level(conn, side)``
    a connection side's data level. It reads them and never expands a 32-bit value itself.
    """

    def on_segment(self, seg: Segment, subflow: Subflow, direction: int) -> None: ...

    def finish(self, analysis: Analysis) -> None: ...


@runtime_checkable
class Contributor(Protocol):
    """A built-in stage whose end-of-pass results the model shows: it returns them and never writes them in."""

    def on_segment(self, seg: Segment, subflow: Subflow, direction: int) -> None: ...

    def results(self, analysis: Analysis) -> Contribution: ...


@contextlib.contextmanager
def _stage_guard(stage: object, trace: TraceSummary) -> Iterator[None]:
    """A bug in one stage's end-of-trace work is reported and costs only that stage's results."""
    try:
        yield
    except Exception as exc:
        trace.errors.append(f"internal error in {type(stage).__name__} at the end: {type(exc).__name__}: {exc}")


@dataclass
class AnalysisOptions:
    observers: list[SegmentObserver] = field(default_factory=list)
    progress: ProgressCallback | None = None
    per_rule_limit: int | None = None  # overrides limits.max_findings_per_rule
    assume: frozenset[str] = frozenset()  # findings.ASSUMPTIONS the user vouches for (check/report --assume)
    reassemble: bool = True
    check: bool = True  # run the RFC 8684 rule families (analyzer.checker)
    stats: bool = True  # RTT, throughput and Data ACK timelines (analyzer.stats)
    buffer_cap: int | None = None  # overrides limits.max_out_of_order_bytes
    limits: Limits = DEFAULT_LIMITS  # every resource bound (analyzer.limits)
    stream_writer: WriterFactory | None = None  # receives every stream's bytes in order (follow)
    # Sees every record (TCP or not) before it is decoded: the TUI indexes file offsets from it.
    on_record: Callable[[Record], None] | None = None
    # A gzip capture's decompressed bytes are copied here as they are read (records' offsets count in them).
    uncompressed_copy: BinaryIO | None = None


class UnsupportedLinkType(CaptureError):
    """Every interface of the capture uses a link type we cannot decode."""


def analyze(path: str, options: AnalysisOptions | None = None) -> Analysis:
    """Analyse one capture file (``-`` = stdin). Raises :class:`CaptureError` only if nothing is readable."""
    options = options or AnalysisOptions()
    stream, info = open_capture(path, options.uncompressed_copy)
    try:
        return _run(stream, info, options)
    finally:
        if path != "-":
            stream.close()


def _run(stream, info, options: AnalysisOptions) -> Analysis:  # type: ignore[no-untyped-def]
    limits = _effective_limits(options)
    sink = FindingSink(limits.max_findings_per_rule, frozenset(options.assume))
    facts: FactLog | None = [] if options.check else None  # nobody judges them without the checker
    tracker = Tracker(sink, limits, facts)
    trace = TraceSummary(path=info.path, assumed=sorted(options.assume))
    skipped: dict[Skip, int] = {}
    # The data levels see each segment first and expand its DSN and Data ACK once; every later stage reads them.
    levels = DataLevels()
    observers: list[SegmentObserver | Contributor] = [levels]
    reassembler: Reassembler | None = None
    if options.reassemble:
        reassembler = Reassembler(facts, limits.max_out_of_order_bytes, options.stream_writer)
        reassembler.piece_cap = limits.max_out_of_order_pieces
        reassembler.max_mappings = limits.max_mappings
        observers.append(reassembler)
    if options.stats:
        from analyzer.rwnd import WindowLimitCollector
        from analyzer.stats import StatsCollector

        observers.append(StatsCollector())
        observers.append(WindowLimitCollector())
    if options.check:
        from analyzer.checker import Checker

        observers.append(Checker(sink, facts))
    observers.extend(options.observers)
    for observer in observers:
        attach = getattr(observer, "attach_levels", None)
        if attach is not None:
            attach(levels.packet, levels.level)
    progress = options.progress
    link_types_seen: set[int] = set()
    frame = 0
    tcp_packets = 0
    truncated = 0
    first_time: float | None = None
    ts = 0.0
    records = read_records(stream, info, limits)
    track = tracker.on_segment
    observe: list[Callable[[Segment, Subflow, int], None]] = [observer.on_segment for observer in observers]
    forgetters: list[Callable[[Subflow], None]] = [
        hook for observer in observers if (hook := getattr(observer, "forget", None)) is not None
    ]

    ungrouped = Ungrouped(limits)

    def observe_one(seg: Segment, subflow: Subflow, direction: int) -> None:
        nonlocal observe
        current = None
        try:
            for current in observe:
                current(seg, subflow, direction)
        except Exception as exc:  # a bug in one stage must not stop the analysis of the rest
            observe = _drop_failed_stage(observe, current, exc, seg.frame, trace)

    def replay(subflow: Subflow) -> None:
        for seg, direction in ungrouped.take(subflow):
            observe_one(seg, subflow, direction)

    def deliver(placed: tuple[Subflow, int] | None, seg: Segment) -> None:
        """Hand one placed segment to every stage still running, once its subflow is grouped (see Ungrouped)."""
        if placed is None:
            return
        if tracker.just_evicted:
            for sf in tracker.just_evicted:
                ungrouped.drop(sf)
            _forget(tracker, forgetters)
        subflow, direction = placed
        if (
            subflow.connection is None
            and subflow.mptcp_seen
            and awaits_grouping(subflow)
            and ungrouped.hold(seg, subflow, direction)
        ):
            if not ungrouped.full:
                return
            ungrouped.full = False  # a handshake-less subflow is grouped now; a join goes on ungrouped
            tracker.group_now(subflow)
            replay(subflow)
            return
        if ungrouped.waiting and subflow.id in ungrouped.waiting:
            replay(subflow)  # grouped by this segment or an earlier one (its keys came): what it held goes first
        observe_one(seg, subflow, direction)

    on_record = options.on_record
    for record in records:
        frame, _offset, ts, link_type, data, origlen = record
        if on_record is not None:
            on_record(record)
        if first_time is None:
            first_time = ts
        if link_type not in link_types_seen:
            link_types_seen.add(link_type)
        seg = decode_segment(frame, ts, link_type, data)
        if not isinstance(seg, Skip):
            tcp_packets += 1
            if origlen > len(data) and seg.payload_len > seg.captured_payload_len:
                truncated += 1
            placed = track(seg, link_type)
            if placed is None:  # a tracking limit was reached (reported at the end), a bare SYN held, or ...
                promoted = tracker.take_promoted()
                if promoted is not None:  # ... the next packet of a held SYN's flow: the SYN goes first
                    syn = _decode_held(promoted)
                    deliver(tracker.replay(promoted, syn), syn)
                    placed = track(seg)
            if placed is not None:
                deliver(placed, seg)
        else:
            skipped[seg] = skipped.get(seg, 0) + 1
        if progress is not None and frame % PROGRESS_EVERY == 0:
            progress(info.progress(), info.size)
    if frame and link_types_seen and not (link_types_seen & SUPPORTED_LINK_TYPES):
        names = ", ".join(str(lt) for lt in sorted(link_types_seen))
        raise UnsupportedLinkType(f"{info.path}: unsupported link type {names}; nothing could be decoded")
    for held in tracker.take_held():  # SYNs never answered: modelled now, listed like any half-open flow
        seg = _decode_held(held)
        deliver(tracker.replay(held, seg), seg)
    tracker.resolve_grouping()
    for subflow in ungrouped.subflows():  # grouped at last: the stages see them before they finish
        replay(subflow)
    tracker.finish()
    trace.file_format = info.file_format
    trace.compressed = info.compressed
    trace.packets = frame
    trace.tcp_packets = tcp_packets
    trace.mptcp_packets = tracker.mptcp_packets
    trace.truncated_packets = truncated
    trace.first_time = first_time
    trace.last_time = ts if frame else None
    trace.link_types = sorted({LINK_TYPE_NAMES.get(lt, f"LINKTYPE_{lt}") for lt in link_types_seen})
    trace.skipped = {SKIP_LABELS[reason]: count for reason, count in sorted(skipped.items())}
    trace.errors = list(info.errors) + trace.errors  # capture problems first, then internal errors
    snaplens = {iface.snaplen for iface in info.interfaces if iface.snaplen}
    trace.snaplen = min(snaplens) if snaplens else None
    for message in info.errors:
        sink.add("CAPTURE-001", message, severity=Severity.WARNING)
    connections = _number_connections(tracker.connections, sink)
    _report_tracker_limits(tracker, limits, trace, sink)
    ungrouped.report(limits, trace, sink)
    analysis = Analysis(
        trace=trace,
        connections=connections,
        tcp_flows=[sf for sf in tracker.subflows if sf.connection is None],
        findings=sink.findings,
    )
    running = [observer for observer in observers if observer.on_segment in observe]  # a failed stage's partial
    contributions: list[Contribution] = []  # results are not reported
    for stage in running:  # the stages that learn what the report shows: their results, written in by assemble()
        if isinstance(stage, Contributor):
            with _stage_guard(stage, trace):
                contributions.append(stage.results(analysis))
    assemble(analysis, contributions)
    for observer in running:  # then the rest (the rule families' end-of-trace checks read the assembled model)
        if not isinstance(observer, Contributor):
            with _stage_guard(observer, trace):
                observer.finish(analysis)
    if reassembler is not None and reassembler.on_segment in observe:
        _report_stream_limits(reassembler, connections, limits, trace, sink)
    if sink.suppressed:
        total = sum(sink.suppressed.values())
        trace.errors.append(
            limit_message(
                "max_findings_per_rule", limits.max_findings_per_rule,
                f"{total} further findings of {len(sink.suppressed)} rule(s) were counted, not listed",
            )
        )  # fmt: skip
    analysis.suppressed_findings = dict(sink.suppressed)
    analysis.findings.sort(key=lambda f: (f.frames[0] if f.frames else 0, -f.severity))
    try:
        analysis.diagnoses = diagnose(analysis)
    except Exception as exc:  # the diagnosis explains the rest; it must never cost the rest
        trace.errors.append(f"internal error in the diagnosis: {type(exc).__name__}: {exc}")
    return analysis


class Ungrouped:
    """Segments of MPTCP subflows not grouped yet, held back from the stages and replayed once grouped.

    Why: a join whose MP_CAPABLE was not captured (or not yet), or a subflow captured without its handshake,
    is only tied to its connection later (keys seen, or at the end of the trace); the stages that saw its
    first segments without a connection skipped every connection-level rule on them. Bounded per subflow
    (max_ungrouped_segments) and in bytes (max_ungrouped_bytes): past them :attr:`full` is set for the caller.
    """

    def __init__(self, limits: Limits) -> None:
        self.max_segments = limits.max_ungrouped_segments
        self.max_bytes = limits.max_ungrouped_bytes
        self.waiting: dict[int, tuple[Subflow, list[tuple[Segment, int]]]] = {}  # subflow id, arrival order
        self.bytes = 0
        self.full = False
        self.passed: set[int] = set()  # overflowed joins: delivered ungrouped from there on, never held again
        self.first_overflow: tuple[int, int] | None = None  # (frame, subflow id)

    def hold(self, seg: Segment, sf: Subflow, direction: int) -> bool:
        """Keep the segment (True), or False when this subflow overflowed before and is passed on."""
        if sf.id in self.passed:
            return False
        entry = self.waiting.get(sf.id)
        if entry is None:
            entry = self.waiting[sf.id] = (sf, [])
        entry[1].append((seg, direction))
        self.bytes += len(seg.data)
        if len(entry[1]) >= self.max_segments or self.bytes > self.max_bytes:
            self.full = True
            if sf.join_token is not None:  # a join waits for its keys: no early decision, say so
                self.passed.add(sf.id)
                if self.first_overflow is None:
                    self.first_overflow = (entry[1][0][0].frame, sf.id)
        return True

    def take(self, sf: Subflow) -> list[tuple[Segment, int]]:
        entry = self.waiting.pop(sf.id, None)
        if entry is None:
            return []
        self.bytes -= sum(len(seg.data) for seg, _ in entry[1])
        return entry[1]

    def drop(self, sf: Subflow) -> None:
        """A half-open subflow the tracker summarised: what it held goes with it."""
        self.take(sf)

    def subflows(self) -> list[Subflow]:
        return [sf for sf, _ in self.waiting.values()]

    def report(self, limits: Limits, trace: TraceSummary, sink: FindingSink) -> None:
        if self.first_overflow is None:
            return
        frame, subflow = self.first_overflow
        what = (
            f"{len(self.passed)} join subflow(s) whose token was not known yet (first: subflow {subflow}) were "
            "passed on ungrouped past the bound: their segments were checked without their connection "
            f"(bounded also by max_ungrouped_bytes={limits.max_ungrouped_bytes})"
        )
        _limit_hit(trace, sink, limit_message("max_ungrouped_segments", limits.max_ungrouped_segments, what), frame)


def _decode_held(held: HeldSyn) -> Segment:
    """A held SYN's segment, decoded again from its bytes (it decoded before, so it is a Segment again)."""
    seg = decode_segment(held.frame, held.ts, held.link_type, held.data)
    assert not isinstance(seg, Skip)
    return seg


def _effective_limits(options: AnalysisOptions) -> Limits:
    """The options' Limits, with the older per_rule_limit / buffer_cap fields applied when given."""
    limits = options.limits
    if options.per_rule_limit is not None:
        limits = limits.replace(max_findings_per_rule=options.per_rule_limit)
    if options.buffer_cap is not None:
        limits = limits.replace(max_out_of_order_bytes=options.buffer_cap)
    return limits


def _forget(tracker: Tracker, forgetters: list[Callable[[Subflow], None]]) -> None:
    """Tell the observers which half-open subflows the tracker summarised, so their state goes too."""
    for sf in tracker.just_evicted:
        for hook in forgetters:
            hook(sf)
        tracker.release(sf)
    tracker.just_evicted.clear()


def _limit_hit(trace: TraceSummary, sink: FindingSink, message: str, frame: int, connection: int | None = None) -> None:
    """Every limit hit is said twice: a trace error (with the capture's problems) and a LIMIT-001 warning."""
    if len(trace.errors) < 1000:
        trace.errors.append(message)
    sink.add("LIMIT-001", message, [frame], connection, severity=Severity.WARNING)


def _report_tracker_limits(tracker: Tracker, limits: Limits, trace: TraceSummary, sink: FindingSink) -> None:
    if tracker.untracked_frame is not None and tracker.untracked_limit is not None:
        name = tracker.untracked_limit
        _limit_hit(
            trace, sink,
            limit_message(
                name, getattr(limits, name),
                f"from frame {tracker.untracked_frame} on, {tracker.untracked_packets} packets of new flows were "
                "counted but not analysed (flows tracked before go on)",
            ),
            tracker.untracked_frame,
        )  # fmt: skip
    if tracker.first_evicted_frame is not None:
        _limit_hit(
            trace, sink,
            limit_message(
                "max_half_open", limits.max_half_open,
                f"{tracker.evicted_subflows} flows that sent only a SYN ({tracker.evicted_connections} of them "
                f"MPTCP connections) were summarised: counted here, not listed, first at frame "
                f"{tracker.first_evicted_frame}",
            ),
            tracker.first_evicted_frame,
        )  # fmt: skip


def _report_stream_limits(
    reassembler: Reassembler, connections: list[Connection], limits: Limits, trace: TraceSummary, sink: FindingSink
) -> None:
    """A data stream whose out-of-order buffer overflowed: its gap became a hole although data may follow."""
    for conn in connections:
        for side in (0, 1):
            stream = reassembler._stream_of(conn, side)
            if stream is None or not stream.cap_hits:
                continue
            name = "client → server" if side == 0 else "server → client"
            what = (
                f"connection {conn.id} {name}: {stream.cap_hits} gap(s) declared holes before their bytes could "
                f"arrive (out-of-order buffer full, also bounded by max_out_of_order_pieces="
                f"{limits.max_out_of_order_pieces})"
            )
            frame = stream.cap_hit_frame or conn.first_frame
            _limit_hit(
                trace, sink, limit_message("max_out_of_order_bytes", limits.max_out_of_order_bytes, what), frame,
                conn.id,
            )  # fmt: skip


def _drop_failed_stage(
    observe: list[Callable[[Segment, Subflow, int], None]],
    failed: Callable[[Segment, Subflow, int], None] | None,
    exc: Exception,
    frame: int,
    trace: TraceSummary,
) -> list[Callable[[Segment, Subflow, int], None]]:
    """Drop the stage that raised and record it as a trace error; the other stages go on."""
    name = type(getattr(failed, "__self__", None)).__name__ if failed is not None else "a stage"
    trace.errors.append(
        f"internal error in {name} at frame {frame}: {type(exc).__name__}: {exc}; its results are left out "
        "(please report this trace)"
    )
    return [hook for hook in observe if hook != failed]


def _number_connections(connections: list[Connection], sink: FindingSink) -> list[Connection]:
    """Number connections by first frame; findings recorded while streaming used creation order."""
    ordered = sorted(connections, key=lambda c: c.first_frame)
    renumber = {conn.id: number for number, conn in enumerate(ordered, start=1)}
    for number, conn in enumerate(ordered, start=1):
        conn.id = number
    for finding in sink.findings:
        if finding.connection is not None:
            # A connection summarised past max_half_open is gone: its findings keep their frames, not its id.
            finding.connection = renumber.get(finding.connection)
    return ordered
