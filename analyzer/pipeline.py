"""One pass over a capture: records → segments → tracker (→ later stages), then the model.

Stages that need every segment (the tracker now; reassembly and the checker later) subscribe as
``SegmentObserver``s so the file is still read exactly once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from analyzer.diagnosis import diagnose
from analyzer.findings import FindingSink, Severity
from analyzer.ingest.capture import CaptureError, open_capture, read_records
from analyzer.ingest.decode import LINK_TYPE_NAMES, SKIP_LABELS, SUPPORTED_LINK_TYPES, Segment, Skip, decode_segment
from analyzer.model import Analysis, Connection, Subflow, TraceSummary
from analyzer.reassembly.mapper import Reassembler, WriterFactory
from analyzer.reassembly.stream import DEFAULT_BUFFER_CAP
from analyzer.tracker import Tracker

ProgressCallback = Callable[[int, int | None], None]  # (bytes read so far, total bytes or None)
PROGRESS_EVERY = 1 << 14  # packets between progress callbacks


class SegmentObserver(Protocol):
    """A stage that sees every TCP segment after the tracker placed it in its subflow."""

    def on_segment(self, seg: Segment, subflow: Subflow, direction: int) -> None: ...

    def finish(self, analysis: Analysis) -> None: ...


@dataclass
class AnalysisOptions:
    observers: list[SegmentObserver] = field(default_factory=list)
    progress: ProgressCallback | None = None
    per_rule_limit: int = 1000
    reassemble: bool = True
    check: bool = True  # run the RFC 8684 rule families (analyzer.checker)
    stats: bool = True  # RTT, throughput and Data ACK timelines (analyzer.stats)
    buffer_cap: int = DEFAULT_BUFFER_CAP  # out-of-order bytes held per stream before declaring a hole
    stream_writer: WriterFactory | None = None  # receives every stream's bytes in order (follow)


class UnsupportedLinkType(CaptureError):
    """Every interface of the capture uses a link type we cannot decode."""


def analyze(path: str, options: AnalysisOptions | None = None) -> Analysis:
    """Analyse one capture file (``-`` = stdin). Raises :class:`CaptureError` only if nothing is readable."""
    options = options or AnalysisOptions()
    stream, info = open_capture(path)
    try:
        return _run(stream, info, options)
    finally:
        if path != "-":
            stream.close()


def _run(stream, info, options: AnalysisOptions) -> Analysis:  # type: ignore[no-untyped-def]
    sink = FindingSink(options.per_rule_limit)
    tracker = Tracker(sink)
    trace = TraceSummary(path=info.path)
    skipped: dict[Skip, int] = {}
    observers: list[SegmentObserver] = []
    if options.reassemble:
        observers.append(Reassembler(sink, options.buffer_cap, options.stream_writer))
    if options.stats:
        from analyzer.stats import StatsCollector

        observers.append(StatsCollector())
    if options.check:
        from analyzer.checker import Checker

        observers.append(Checker(sink))
    observers.extend(options.observers)
    progress = options.progress
    link_types_seen: set[int] = set()
    frame = 0
    tcp_packets = 0
    truncated = 0
    first_time: float | None = None
    ts = 0.0
    records = read_records(stream, info)
    track = tracker.on_segment
    observe: list[Callable[[Segment, Subflow, int], None]] = [observer.on_segment for observer in observers]
    for ts, link_type, data, origlen in records:
        frame += 1
        if first_time is None:
            first_time = ts
        if link_type not in link_types_seen:
            link_types_seen.add(link_type)
        seg = decode_segment(frame, ts, link_type, data)
        if not isinstance(seg, Skip):
            tcp_packets += 1
            if origlen > len(data) and seg.payload_len > seg.captured_payload_len:
                truncated += 1
            subflow, direction = track(seg)
            current = None
            try:
                for current in observe:
                    current(seg, subflow, direction)
            except Exception as exc:  # a bug in one stage must not stop the analysis of the rest
                observe = _drop_failed_stage(observe, current, exc, frame, trace)
        else:
            skipped[seg] = skipped.get(seg, 0) + 1
        if progress is not None and frame % PROGRESS_EVERY == 0:
            progress(info.progress(), info.size)
    if frame and link_types_seen and not (link_types_seen & SUPPORTED_LINK_TYPES):
        names = ", ".join(str(lt) for lt in sorted(link_types_seen))
        raise UnsupportedLinkType(f"{info.path}: unsupported link type {names}; nothing could be decoded")
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
    analysis = Analysis(
        trace=trace,
        connections=connections,
        tcp_flows=[sf for sf in tracker.subflows if sf.connection is None],
        findings=sink.findings,
    )
    for observer in observers:
        if observer.on_segment not in observe:
            continue  # failed during the pass: its partial results are not reported
        try:
            observer.finish(analysis)
        except Exception as exc:
            trace.errors.append(f"internal error in {type(observer).__name__} at the end: {type(exc).__name__}: {exc}")
    analysis.suppressed_findings = dict(sink.suppressed)
    analysis.findings.sort(key=lambda f: (f.frames[0] if f.frames else 0, -f.severity))
    try:
        analysis.diagnoses = diagnose(analysis)
    except Exception as exc:  # the diagnosis explains the rest; it must never cost the rest
        trace.errors.append(f"internal error in the diagnosis: {type(exc).__name__}: {exc}")
    return analysis


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
            finding.connection = renumber.get(finding.connection, finding.connection)
    return ordered
