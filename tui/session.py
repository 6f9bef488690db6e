"""One inspected trace: runs the analysis with the inspector's observers and answers the views.

The session owns the packet index (filled from the capture reader's records, offsets included),
the packet store that reads packets back by offset, the plot collector and the follow spool. A
gzip capture cannot be read at random, so its decompressed bytes are copied to a temporary file as
the analysis reads them (the records' offsets count in that stream); the store reads that copy.
:meth:`Session.run` is blocking (the app calls it in a thread worker) and reports progress through a
callback; everything else reads what the run has produced so far.
No textual here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from analyzer.findings import Finding
from analyzer.ingest.capture import GZIP_MAGIC, CaptureError
from analyzer.model import Analysis, Connection, Subflow
from analyzer.mptcp.options import Dss
from analyzer.pipeline import AnalysisOptions, analyze
from tui.collect import DsnAnchors, FollowSpool, PlotCollector
from tui.filter import FilterContext
from tui.flows import FlowTree, build_tree, live_tree
from tui.index import DSS_MAP, META_DIR, IndexObserver, PacketIndex
from tui.store import PacketStore

PROGRESS_INTERVAL = 0.25  # seconds between progress reports while loading
UI_YIELD = 0.15  # seconds the analysis pauses after each key or mouse event
MAPPING_LOOKBACK = 20000  # rows searched back for the DSS mapping that covers a payload


class Cancelled(Exception):
    """The app is closing: stop the analysis."""


@dataclass(slots=True)
class Progress:
    packets: int
    fraction: float | None
    tree: FlowTree


class Session:
    def __init__(self, path: str, spool_cap: int | None = None) -> None:
        if path == "-":
            raise CaptureError("the inspector needs a file (it reads packets again); stdin cannot be used")
        if not os.path.exists(path):
            raise CaptureError(f"{path}: no such file")
        if os.path.isdir(path):
            raise CaptureError(f"{path}: is a directory, not a capture file")
        self.path = path
        self.name = os.path.basename(path)
        try:
            with open(path, "rb") as f:
                self.compressed = f.read(2) == GZIP_MAGIC
        except OSError as exc:
            raise CaptureError(f"{path}: cannot open: {exc.strerror or exc}") from None
        self._copy: BinaryIO | None = None
        self.data_path = path  # the file the index's offsets point into
        if self.compressed:
            fd, self.data_path = tempfile.mkstemp(prefix="mptcp-inspector-", suffix=".pcap")
            self._copy = os.fdopen(fd, "wb")
        self.index = PacketIndex()
        self.plots = PlotCollector()
        self.anchors = DsnAnchors()  # 64-bit DSNs the detail pane expands near
        self.spool = FollowSpool() if spool_cap is None else FollowSpool(spool_cap)
        self.observer = IndexObserver(self.index, tick=self._tick)
        self.store = PacketStore(self.index, self.data_path, self._flush_copy)
        self._bytes_done = 0  # of the file on disk (compressed bytes for a gzip capture)
        self.analysis: Analysis | None = None
        self.error: str | None = None
        self.findings_by_frame: dict[int, list[Finding]] = {}
        self.finding_frames: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)
        self.rule_frames: dict[str, npt.NDArray[np.int64]] = {}
        self.subflow_conn: npt.NDArray[np.uint32] = np.zeros(1, dtype=np.uint32)
        self.load_seconds = 0.0
        self._on_progress: Callable[[Progress], None] | None = None
        self._cancelled: Callable[[], bool] = lambda: False
        self._last_report = 0.0
        self._yield_until = 0.0
        self._running = False
        self._close_requested = False
        self._size = os.path.getsize(path) or 1

    # -- loading ------------------------------------------------------------------------------
    def run(
        self,
        on_progress: Callable[[Progress], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Analysis:
        """Analyse the trace (blocking). Raises :class:`CaptureError` or :class:`Cancelled`."""
        self._on_progress = on_progress
        self._cancelled = cancelled or (lambda: False)
        self._last_report = time.monotonic() - PROGRESS_INTERVAL * 0.6
        started = time.perf_counter()
        options = AnalysisOptions(
            observers=[self.observer, self.plots, self.anchors],
            stream_writer=self.spool.factory,
            progress=self._progress,
            on_record=self.observer.on_record,
            uncompressed_copy=self._copy,
        )
        self._running = True
        try:
            analysis = analyze(self.path, options)
        finally:
            self._running = False
            if self._close_requested:
                self._close_now()
        if self._close_requested:
            raise Cancelled
        self.load_seconds = time.perf_counter() - started
        self._finish(analysis)
        return analysis

    def yield_to_ui(self, seconds: float = UI_YIELD) -> None:
        """Ask the analysis thread to pause for a moment (the user pressed a key: answer it first)."""
        self._yield_until = time.monotonic() + seconds

    def step_aside(self) -> float:
        """Called often by background work: while the UI handles input, wait (one interpreter lock)."""
        now = time.monotonic()
        while now < self._yield_until:
            time.sleep(0.005)
            now = time.monotonic()
        return now

    def _progress(self, done: int, _total: int | None) -> None:
        self._bytes_done = done
        self._tick()

    def _flush_copy(self) -> None:
        """Make the gzip copy's bytes so far readable (the analysis thread writes it)."""
        copy = self._copy
        if copy is not None:
            with contextlib.suppress(ValueError):  # closed: everything was written
                copy.flush()

    def _tick(self) -> None:
        if self._close_requested or self._cancelled():
            raise Cancelled
        now = self.step_aside()
        if self._on_progress is None or now - self._last_report < PROGRESS_INTERVAL:
            return
        self._last_report = now
        done = self._bytes_done if self.compressed else self.observer.last_offset
        fraction = min(1.0, done / self._size)
        self._on_progress(Progress(self.index.count, fraction, live_tree(list(self.observer.subflows.values()))))

    def _finish(self, analysis: Analysis) -> None:
        self._flush_copy()
        by_frame: dict[int, list[Finding]] = {}
        rules: dict[str, list[int]] = {}
        for finding in analysis.findings:
            for frame in finding.frames:
                by_frame.setdefault(frame, []).append(finding)
                rules.setdefault(finding.rule, []).append(frame)
        self.findings_by_frame = by_frame
        self.finding_frames = np.array(sorted(by_frame), dtype=np.int64)
        self.rule_frames = {rule: np.unique(np.array(frames, dtype=np.int64)) for rule, frames in rules.items()}
        top = max(self.observer.subflows, default=0)
        table = np.zeros(top + 1, dtype=np.uint32)
        bases = {}
        for conn in analysis.connections:
            for sf in conn.subflows:
                if sf.id <= top:
                    table[sf.id] = conn.id
                for direction in (0, 1):
                    side = sf.sender(direction)
                    bases[sf.key(direction)] = (conn.sides[side].idsn, conn.sides[1 - side].idsn)
        self.store.dsn_bases = bases  # one assignment: the view never sees half of them
        self.subflow_conn = table
        self.analysis = analysis

    def tree(self) -> FlowTree:
        if self.analysis is not None:
            return build_tree(self.analysis.connections, self.analysis.tcp_flows, final=True)
        return live_tree(list(self.observer.subflows.values()))

    # -- queries ------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self.analysis is not None

    def subflow(self, sf_id: int) -> Subflow | None:
        return self.observer.subflows.get(sf_id)

    def connection(self, conn_id: int) -> Connection | None:
        if self.analysis is None:
            return None
        return next((c for c in self.analysis.connections if c.id == conn_id), None)

    def filter_context(self, stop: int | None = None) -> FilterContext:
        return FilterContext(
            index=self.index,
            stop=self.index.count if stop is None else stop,
            subflow_conn=self.subflow_conn,
            finding_frames=self.finding_frames,
            rule_frames=self.rule_frames,
        )

    def subflow_rows(self, subflow_ids: tuple[int, ...], stop: int | None = None) -> npt.NDArray[np.bool_]:
        """Mask of the rows that belong to any of the given subflows."""
        column = self.index.column("subflow", stop)
        return np.isin(column, np.array(subflow_ids, dtype=np.uint32))

    def find_mapping(self, frame: int, sf_id: int, direction: int) -> tuple[int, Dss] | None:
        """The latest DSS mapping sent on this subflow direction at or before ``frame``."""
        index = self.index
        stop = frame
        start = max(0, stop - MAPPING_LOOKBACK)
        sf = index.values("subflow", start, stop)
        meta = index.values("meta", start, stop)
        dss = index.values("dss", start, stop)
        hits = np.flatnonzero((sf == sf_id) & ((meta & META_DIR) == direction) & ((dss & DSS_MAP) != 0))
        for i in hits[::-1][:64]:
            packet = self.store.packet(start + int(i) + 1)
            seg = packet.segment
            if seg is None or seg.options is None:
                continue
            for opt in seg.options.mptcp:
                if type(opt) is Dss and opt.dsn is not None and opt.data_len:
                    return packet.frame, opt
        return None

    def close(self) -> None:
        """Release files; while :meth:`run` is still going, it stops and closes them itself."""
        self._close_requested = True
        if not self._running:
            self._close_now()

    def _close_now(self) -> None:
        self.store.close()
        self.spool.close()
        if self._copy is not None:
            self._copy.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.data_path)
