"""What happened to each connection, in sentences: a verdict and a timeline, computed from the model.

The analysis already knows the facts (stalls and retransmissions from the statistics stage, reinjections
and holes from the reassembler, refused joins and fallbacks from the tracker, checksum failures, findings);
this module only puts them in order and says what they mean, so a kernel engineer reads the conclusion
instead of assembling it from tables. It never re-reads packets. Every sentence names its frames; ``t`` is
seconds since the trace's first packet (for findings, placed between the nearest frames whose time is known).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Sequence

from analyzer.findings import Severity
from analyzer.model import (
    CLIENT,
    SERVER,
    Analysis,
    Connection,
    Diagnosis,
    DiagnosisEvent,
    Stall,
    StreamSummary,
    Subflow,
    data_fin_frame,
    subflow_established,
)
from analyzer.mptcp.options import REASON_NAMES
from analyzer.rules import RULES

MAX_EVENTS = 40  # sentences per connection; the rest are counted in the last one
ARROW = {CLIENT: "c→s", SERVER: "s→c"}
WINDOW_SHARE = 0.10  # a receive-window limit is said from this share of the sending time ...
WINDOW_MIN_S = 0.010  # ... and this long in all (a sub-millisecond full window in slow start is no story)
WINDOW_VERDICT_MIN_S = 0.100  # verdict only for a lasting limit: one full window in a short transfer is a sentence
WINDOW_VERDICT_SHARE = 0.25  # and named in the verdict from this share
_CAUSE_WORDS = {
    "synack": "the SYN/ACK refused MPTCP",
    "no-dss": "options stripped on the path",
    "infinite-mapping": "infinite mapping",
}


def diagnose(analysis: Analysis) -> dict[int, Diagnosis]:
    """connection id → its diagnosis, for every connection of the analysis."""
    return {conn.id: _Diagnoser(analysis, conn).run() for conn in analysis.connections}


class _Diagnoser:
    def __init__(self, analysis: Analysis, conn: Connection) -> None:
        self.analysis = analysis
        self.conn = conn
        self.t0 = analysis.trace.first_time or 0.0
        self.events: list[DiagnosisEvent] = []
        self.verdict: list[str] = []
        self.streams = analysis.streams.get(conn.id)
        anchors = sorted(
            {(sf.first_frame, sf.first_time) for sf in conn.subflows}
            | {(sf.last_frame, sf.last_time) for sf in conn.subflows if sf.last_frame}
        )
        self._frames = [frame for frame, _ in anchors]
        self._times = [time for _, time in anchors]

    def run(self) -> Diagnosis:
        self._start()
        self._joins()
        self._fallback()
        self._stalls()
        self._window()
        self._reinjections()
        self._nat()
        self._streams()
        self._close()
        self._errors()
        events = sorted(self.events, key=lambda e: (e.t, e.frames[0] if e.frames else 0))
        if len(events) > MAX_EVENTS:
            rest = len(events) - MAX_EVENTS + 1
            last = events[MAX_EVENTS - 1]
            events = [*events[: MAX_EVENTS - 1], DiagnosisEvent(last.t, last.frames, f"… and {rest} more", "more")]
        verdict = "; ".join(self.verdict) or self._healthy()
        if self.verdict and self.streams is not None and all(s.complete for s in self.streams if s.length):
            verdict += "; data complete both ways" if all(s.length for s in self.streams) else "; data complete"
        return Diagnosis(verdict=verdict, events=tuple(events))

    # ------------------------------------------------------------------ helpers
    def add(self, time: float, frames: Sequence[int | None], text: str, kind: str) -> None:
        named = tuple(sorted({f for f in frames if f is not None}))
        if not named and self.conn.first_frame:
            named = (self.conn.first_frame,)
        self.events.append(DiagnosisEvent(max(0.0, time - self.t0), named, text, kind))

    def time_of(self, frame: int) -> float:
        """A frame's time, from the nearest frames whose time the model holds (subflow first/last)."""
        if not self._frames:
            return self.t0
        i = bisect_left(self._frames, frame)
        if i < len(self._frames) and self._frames[i] == frame:
            return self._times[i]
        if i == 0:
            return self._times[0]
        if i == len(self._frames):
            return self._times[-1]
        f0, f1, t0, t1 = self._frames[i - 1], self._frames[i], self._times[i - 1], self._times[i]
        return t0 + (t1 - t0) * (frame - f0) / (f1 - f0)

    def rel(self, time: float) -> str:
        return f"{time - self.t0:.3f} s"

    def sender(self, sf: Subflow, direction: int) -> str:
        return "client" if sf.sender(direction) == CLIENT else "server"

    def _healthy(self) -> str:
        if self.streams is None or not any(s.length for s in self.streams):
            return "no data exchanged"
        state = ", ".join(
            f"{ARROW[side]} {s.length:,} B {'complete' if s.complete else 'incomplete'}"
            for side, s in enumerate(self.streams)
            if s.length
        )
        count = sum(1 for sf in self.conn.subflows if subflow_established(sf))
        return f"healthy: {count} subflow(s), {state}"

    # ------------------------------------------------------------------ facts
    def _start(self) -> None:
        conn = self.conn
        first = conn.initial_subflow or (conn.subflows[0] if conn.subflows else None)
        if first is None:
            return
        version = f"MPTCP v{conn.version}" if conn.version is not None else "MPTCP"
        how = "" if first.syn_seen else " (captured after its handshake)"
        self.add(
            first.first_time, [first.first_frame], f"{version} connection {first.client} → {first.server}{how}", "start"
        )

    def _joins(self) -> None:
        for sf in self.conn.subflows:
            if sf.kind != "join":
                continue
            ids = sf.halves[CLIENT].address_id
            label = f"subflow {sf.id} ({sf.client} → {sf.server}{'' if ids is None else f', address id {ids}'})"
            if subflow_established(sf):
                backup = " as a backup path" if sf.backup else ""
                self.add(sf.first_time, sf.join_frames[:3], f"{label} joined{backup}", "join")
                continue
            if sf.syn_seen:  # without its SYN the capture cannot tell a refusal from a late start
                self._refused_join(sf, label)

    def _refused_join(self, sf: Subflow, label: str) -> None:
        rsts = sorted((h.rst_frame, i) for i, h in enumerate(sf.halves) if h.rst_frame is not None)
        frames: list[int | None] = [*sf.join_frames[:3]]
        if rsts:
            frame, who = rsts[0]
            frames.append(frame)
            by = "refused by the responder" if who == SERVER else "abandoned by its initiator"
            if sf.reset_reason is not None:
                name = REASON_NAMES.get(sf.reset_reason, "unknown reason").lower()
                why = f"MP_TCPRST reason {sf.reset_reason:#04x}, {name}"
            else:
                why = "a plain TCP RST"
            if sf.join_synack_hmac_ok is False or sf.join_ack_hmac_ok is False:
                why += "; the join's HMAC did not verify"
            text = f"the join {label} was {by} ({why})"
            self.add(sf.last_time, frames, text, "join-refused")
        elif not sf.synack_seen:
            text = f"the join {label} got no SYN/ACK in the capture"
            self.add(sf.first_time, frames or [sf.first_frame], text, "join-refused")
        elif sf.join_synack_hmac is None:
            text = f"the join {label} was answered by a SYN/ACK without MP_JOIN: the responder refused it"
            self.add(sf.first_time, frames, text, "join-refused")
        else:
            text = f"the join {label} did not complete: no data-level traffic followed its handshake"
            self.add(sf.first_time, frames, text, "join-refused")
        self.verdict.append(f"join refused (subflow {sf.id})")

    def _fallback(self) -> None:
        conn = self.conn
        failures = [f for f in self.analysis.checksum_failures if f.connection == conn.id]
        fail_text = ""
        if conn.mp_fails:
            frame, time = conn.mp_fails[0]
            fail_text = f"MP_FAIL at frame {frame}"
            if failures:
                fail_text += (
                    f" (DSS checksum failure at frame {failures[0].frames[0]} on subflow "
                    f"{failures[0].subflow}: the data was changed on the path, middlebox interference)"
                )
            if not conn.fallback:
                self.add(
                    time,
                    [frame, *(failures[0].frames[:2] if failures else ())],
                    f"{fail_text}; no fallback followed in the capture",
                    "mp_fail",
                )
        elif failures:
            first = failures[0]
            self.add(
                self.time_of(first.frames[0]) if first.frames else self.t0,
                list(first.frames[:3]),
                f"DSS checksum failed on subflow {first.subflow} ({len(failures)} mapping(s)): the data was "
                "changed on the path",
                "checksum",
            )
        if not conn.fallback:
            return
        at_frame = conn.fallback_frame
        time = conn.fallback_time if conn.fallback_time is not None else self.time_of(at_frame or conn.first_frame)
        cause = conn.fallback_cause
        at = f" at frame {at_frame}" if at_frame is not None else ""
        if cause == "synack":
            text = (
                f"fell back to TCP{at}: {conn.fallback_reason}; the server does not speak MPTCP, or a middlebox "
                "on the path stripped the option"
            )
        elif cause == "no-dss":
            text = (
                f"fell back to TCP{at}: options stripped on the path, data arrived without DSS after the "
                "MP_CAPABLE handshake"
            )
        elif cause == "infinite-mapping":
            after = f" after {fail_text}" if fail_text else ""
            text = f"fell back to TCP{at}{after}: an infinite mapping, the rest of the data maps one to one"
        else:
            text = f"fell back to TCP{at}: {conn.fallback_reason or 'reason unknown'}"
        extra = [f for f, _ in conn.mp_fails[:2]] + [f for c in failures[:1] for f in c.frames[:2]]
        self.add(time, [at_frame, *extra], text, "fallback")
        self.verdict.append("fell back to TCP" + (f" ({_CAUSE_WORDS[cause]})" if cause in _CAUSE_WORDS else ""))

    def _stalls(self) -> None:
        for sf in self.conn.subflows:
            stalls = [stall for half in sf.halves for stall in half.stalls]
            for direction, half in enumerate(sf.halves):
                for stall in half.stalls:
                    self._stall(sf, direction, stall)
            recovered = sum(1 for stall in stalls if stall.end_frame is not None)
            if recovered:
                what = "a stall" if recovered == 1 else f"{recovered} stalls"
                self.verdict.append(f"subflow {sf.id} recovered from {what}")
            if recovered < len(stalls):
                self.verdict.append(f"subflow {sf.id} stalled until the end")

    def _stall(self, sf: Subflow, direction: int, stall: Stall) -> None:
        waited = (stall.end - stall.start) * 1000
        until = (
            self.rel(stall.end) if stall.end_frame is not None else f"the end of its capture ({self.rel(stall.end)})"
        )
        rtx = ""
        if stall.retransmissions:
            rtx = f", {stall.retransmissions} retransmission(s)"
            if stall.backoffs:
                rtx += f", the timeout backing off {stall.backoffs} time(s) (RTO)"
        text = (
            f"subflow {sf.id} stalled from {self.rel(stall.start)} to {until}: the {self.sender(sf, direction)}'s "
            f"data saw no ACK progress for {waited:,.0f} ms{rtx}"
        )
        self.add(stall.start, [stall.start_frame, *stall.frames, stall.end_frame], text, "stall")

    def _window(self) -> None:
        """The receive window held the sender back: only from windows the capture can scale (analyzer.rwnd)."""
        for limit in self.conn.window_limits:
            if not limit.periods or limit.share < WINDOW_SHARE or limit.limited < WINDOW_MIN_S:
                continue
            sender, receiver = ("client", "server") if limit.side == CLIENT else ("server", "client")
            share = round(limit.share * 100)
            text = (
                f"the receive window limited throughput {share} % of the time ({ARROW[limit.side]}): the "
                f"{sender}'s data filled the window the {receiver} advertised {limit.periods:,} time(s), "
                f"{limit.limited * 1000:,.0f} ms of its {limit.active * 1000:,.0f} ms of sending"
            )
            time = limit.start if limit.start is not None else self.time_of(limit.frames[0])
            self.add(time, list(limit.frames[:6]), text, "window")
            if limit.share >= WINDOW_VERDICT_SHARE and limit.limited >= WINDOW_VERDICT_MIN_S:
                self.verdict.append(f"{ARROW[limit.side]} receive-window limited ({share} %)")

    def _reinjections(self) -> None:
        if self.streams is None:
            return
        stalls = {
            sf.id: [(stall, sf.sender(direction)) for direction, h in enumerate(sf.halves) for stall in h.stalls]
            for sf in self.conn.subflows
        }
        for side, stream in enumerate(self.streams):
            for (src, dst), count in sorted(stream.reinjections.items()):
                span = stream.reinjection_spans.get((src, dst))
                if span is None:
                    continue
                first_time, first_frame, last_time, last_frame = span
                text = f"{count / 1000:,.1f} kB of subflow {src}'s {ARROW[side]} data were re-sent on subflow {dst}"
                during = [s for s, s_side in stalls.get(src, []) if s_side == side and s.start <= first_time <= s.end]
                if during:
                    delay = (first_time - during[0].start) * 1000
                    text += f" during its stall, starting {delay:,.0f} ms after it began (reinjection)"
                elif last_time - first_time < 0.0005:
                    text += f" at {self.rel(first_time)} (reinjection)"
                else:
                    text += f" between {self.rel(first_time)} and {self.rel(last_time)} (reinjection)"
                self.add(first_time, [first_frame, last_frame], text, "reinjection")

    def _nat(self) -> None:
        """A join whose address id was announced with one address but that came from another: NAT on the path."""
        for ann in self.conn.announcements:
            if ann.kind != "add" or ann.address is None:
                continue
            for sf in self.conn.subflows:
                if sf.kind != "join" or sf.sender(CLIENT) != ann.sender:
                    continue
                source = sf.client.rsplit(":", 1)[0].strip("[]")
                if sf.halves[CLIENT].address_id in ann.address_ids and source != ann.address:
                    who = "client" if ann.sender == CLIENT else "server"
                    text = (
                        f"the {who} announced {ann.address} as address id {ann.address_ids[0]} (ADD_ADDR) but "
                        f"its join with that id came from {source}: a NAT on the path"
                    )
                    self.add(sf.first_time, [ann.frame, sf.first_frame], text, "nat")

    def _streams(self) -> None:
        if self.streams is None:
            return
        for side, stream in enumerate(self.streams):
            if stream.complete or not (stream.length or stream.bytes) or self.conn.fastclose_frame is not None:
                continue
            self._incomplete(side, stream)

    def _incomplete(self, side: int, stream: StreamSummary) -> None:
        name = f"the {ARROW[side]} stream"
        last = max((sf.last_frame for sf in self.conn.subflows), default=self.conn.first_frame)
        last_time = max((sf.last_time for sf in self.conn.subflows), default=self.t0)
        if stream.holes:
            seen = [h[2] for h in stream.hole_list if h[2] is not None]
            frames: list[int | None] = [f for f, _ in seen[:4]]
            time = seen[0][1] if seen else last_time
            if self.analysis.trace.truncated_packets:
                snaplen = self.analysis.trace.snaplen
                why = f"payload cut by the capture's snaplen {snaplen} (capture loss, not network loss)"
            else:
                acks = self.conn.data_ack_progress[1 - side]
                acked = max(acks.values()) if acks else None
                covered = sum(1 for off, length, _ in stream.hole_list if acked is not None and off + length <= acked)
                if covered == len(stream.hole_list):
                    why = "the receiver's Data ACK covered them, so they arrived: capture loss, not network loss"
                elif covered:
                    why = (
                        f"{covered} of them acknowledged by the receiver's Data ACK (capture loss); the rest were "
                        "never acknowledged in the capture (lost on the path, or the capture ended first)"
                    )
                else:
                    why = (
                        "never acknowledged by the receiver's Data ACK in the capture: lost before the receiver, or "
                        "the capture ended first"
                    )
            text = (
                f"{name} is incomplete: {stream.holes} hole(s), {stream.hole_bytes:,} bytes the capture does not "
                f"have; {why}"
            )
            self.add(time, frames or [last], text, "incomplete")
            self.verdict.append(f"{ARROW[side]} incomplete ({stream.holes} hole(s))")
        elif stream.length > stream.bytes and self.analysis.trace.truncated_packets:
            text = f"{name} is incomplete: payload cut by the capture's snaplen {self.analysis.trace.snaplen}"
            self.add(last_time, [last], text, "incomplete")
            self.verdict.append(f"{ARROW[side]} cut by snaplen")
        elif not stream.data_fin:
            who = "client" if side == CLIENT else "server"
            text = f"{name} has no DATA_FIN in the capture: the {who} had not closed it, or the capture ended first"
            if self.conn.fallback:
                text = f"{name} has no FIN in the capture: still open, or the capture ended first"
            self.add(last_time, [last], text, "open")
            self.verdict.append(f"{ARROW[side]} not closed in the capture")

    def _close(self) -> None:
        conn = self.conn
        if conn.fastclose_frame is not None:
            who = "client" if conn.fastclose_sender == CLIENT else "server"
            self.add(
                self.time_of(conn.fastclose_frame),
                [conn.fastclose_frame],
                f"the {who} aborted the connection with MP_FASTCLOSE",
                "fastclose",
            )
            self.verdict.append("aborted (MP_FASTCLOSE)")
            return
        fins = [data_fin_frame(conn, side) for side in (CLIENT, SERVER)]
        if all(f is not None for f in fins):
            frames = [f for f in fins if f is not None]
            self.add(self.time_of(max(frames)), frames, "clean data-level close: DATA_FIN from both sides", "close")
        running = [sf for sf in conn.subflows if subflow_established(sf)]
        reset = [sf for sf in running if sf.end in ("rst", "mp_tcprst")]
        for sf in reset:
            frame = min(h.rst_frame for h in sf.halves if h.rst_frame is not None)
            who = "client" if sf.sender([h.rst_frame for h in sf.halves].index(frame)) == CLIENT else "server"
            why = (
                ""
                if sf.reset_reason is None
                else (
                    f" with MP_TCPRST reason {sf.reset_reason:#04x}, "
                    f"{REASON_NAMES.get(sf.reset_reason, 'unknown reason').lower()}"
                    + (" (transient)" if sf.reset_transient else "")
                )
            )
            self.add(self.time_of(frame), [frame], f"the {who} reset subflow {sf.id}{why}", "reset")
        if reset and len(reset) == len(running) and not all(f is not None for f in fins):
            self.verdict.append("reset")

    def _errors(self) -> None:
        groups: dict[str, list[int]] = {}
        counts: Counter[str] = Counter()
        for finding in self.analysis.findings:
            if finding.connection != self.conn.id or finding.severity != Severity.ERROR:
                continue
            counts[finding.rule] += 1
            groups.setdefault(finding.rule, []).extend(finding.frames[:3])
        for rule, frames in groups.items():
            meta = RULES.get(rule)
            title = meta.title if meta else rule
            first = min(frames) if frames else self.conn.first_frame
            self.add(self.time_of(first), frames[:6], f"protocol error {rule} ×{counts[rule]}: {title}", "error")
        if counts:
            self.verdict.insert(0, f"{sum(counts.values())} protocol error(s) ({', '.join(sorted(counts))})")
