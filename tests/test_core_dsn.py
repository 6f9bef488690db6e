"""One data level per connection side (issue 16): one 32 → 64-bit expansion, one value everywhere.

Why: each stage used to expand 32-bit DSNs and Data ACKs itself, near its own reference, so the CSV, the
plots, the TUI and the checker could show different 64-bit values for one DSN. Now
``analyzer/mptcp/datalevel.py`` is the only caller of ``expand32`` (the endpoint, a separate model that
another change unifies, aside) and every stage reads the values the pipeline's first observer published.
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

from typer.testing import CliRunner

from analyzer import cli
from analyzer.datalevels import DataLevels
from analyzer.endpoint.builder import ConnectionBuilder
from analyzer.ingest.segment import Segment
from analyzer.model import Subflow
from analyzer.mptcp.datalevel import DataLevel
from analyzer.mptcp.options import Dss
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.plot import PlotCollector, figure
from analyzer.seqnum import MASK64
from tests.helpers.pcapgen import Framed
from tui.collect import PlotCollector as TuiPlotCollector

ROOT = Path(__file__).resolve().parents[1]
V0_TRACE = ROOT / "tests" / "data" / "tcpdump" / "mptcp-v0.pcap"  # Linux mptcp.org v0: 32-bit DSNs and ACKs
THE_EXPANSION = "analyzer/mptcp/datalevel.py"
NOT_YET = ("analyzer/endpoint/",)  # the reference endpoint keeps its own model until it is unified


def _calls_of(path: Path, name: str) -> list[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if called == name:
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and any(alias.name == name for alias in node.names):
            lines.append(node.lineno)
    return lines


def test_expand32_is_called_in_the_data_level_module_only() -> None:
    sites = []
    for package in ("analyzer", "tui"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == THE_EXPANSION or rel == "analyzer/seqnum.py" or rel.startswith(NOT_YET):
                continue
            sites += [f"{rel}:{line}" for line in _calls_of(path, "expand32")]
    assert sites == [], f"32 → 64-bit expansion outside {THE_EXPANSION}: read the data levels instead"
    assert _calls_of(ROOT / THE_EXPANSION, "expand32"), "the data level no longer expands (test out of date?)"


# ------------------------------------------------------------------------------- the data level itself
def test_reference_is_the_highest_end_mapped_else_idsn_plus_one() -> None:
    idsn = 0xAAAA_0000_FFFF_FF00
    level = DataLevel(idsn)
    assert level.reference() == idsn + 1 and level.anchored
    first = level.expand((idsn + 1) & 0xFFFFFFFF)
    assert first == idsn + 1
    level.note_mapping(first, 0x200, False, True)  # crosses the 32-bit boundary of the low half
    assert level.reference() == idsn + 1 + 0x200
    assert level.expand((idsn + 0x300) & 0xFFFFFFFF) == idsn + 0x300  # carried into the high half
    # three gigabytes later (far from IDSN + 1, near the highest end): only the highest end gives the truth
    far = idsn + 3 * (1 << 30)
    level.note_mapping(far - 0x100, 0x100, False, True)
    assert level.expand((far + 5) & 0xFFFFFFFF) == far + 5
    assert DataLevel(idsn).expand((far + 5) & 0xFFFFFFFF) != far + 5  # what an IDSN-only expansion says


def test_without_anchor_the_first_value_stands_in_and_is_flagged() -> None:
    level = DataLevel()
    assert level.reference() is None and not level.anchored
    assert level.expand(1000) == 1000
    level.note_mapping(1000, 10, True, anchored=False)
    assert not level.anchored and level.known_end() is None and level.data_fin is None
    assert level.expand(1005) == 1005
    level.learn_idsn(0x1234_0000_0000_0000)  # the keys arrive: the guess goes, IDSN + 1 is the reference
    assert level.anchored and level.reference() == 0x1234_0000_0000_0001


def test_data_ack_expands_near_the_acknowledged_sides_data() -> None:
    level = DataLevel()
    assert level.expand_ack(5) is None  # nothing to expand near
    level.note_ack(0x7_0000_0010)  # a 64-bit Data ACK anchors the space for later 32-bit ones
    assert level.expand_ack(0x20) == 0x7_0000_0020
    level.note_mapping(0x9_0000_0000, 100, True, anchored=True)
    assert level.expand_ack(0x40) == 0x9_0000_0040 and level.data_fin == 0x9_0000_0000 + 99
    level.note_ack(0x6_0000_0000)  # older: the highest stays
    assert level.acked == 0x7_0000_0010


# ------------------------------------------------------------------------------- one value everywhere
class _Witness:
    """An observer after the data levels: records each mapping's published 64-bit DSN by frame."""

    def __init__(self) -> None:
        self.dsn: dict[int, int] = {}
        self.levels: object = None

    def attach_levels(self, packet: object, level: object) -> None:
        self.levels = packet

    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        packet = self.levels
        assert packet is not None
        for opt in seg.options.mptcp if seg.options is not None else ():
            if isinstance(opt, Dss) and opt.dsn is not None and opt.data_len:
                known = packet.known_dsn(opt)  # type: ignore[attr-defined]
                if known is not None:
                    self.dsn[seg.frame] = known

    def finish(self, analysis: object) -> None:
        return None


def test_csv_plot_and_tui_show_the_same_64_bit_dsn_for_a_32_bit_one(tmp_path: Path) -> None:
    """A real v0 trace (32-bit DSNs, keys captured): every view gives each mapping the same 64-bit DSN.

    Before the data levels, the CSV's ``dsn64`` stayed empty for every 32-bit DSN while ``dsn_expanded``
    had a value, and the plot and TUI collectors expanded with references of their own.
    """
    out = tmp_path / "rows.csv"
    result = CliRunner().invoke(cli.app, ["report", str(V0_TRACE), "--csv", str(out)])
    assert result.exit_code in (0, 1), result.output
    with out.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["dsn_bits"] == "32" and r["data_len"] not in ("", "0")]
    assert len(rows) > 100  # the trace carries 153 32-bit mappings
    witness, plot, tui = _Witness(), PlotCollector(), TuiPlotCollector()
    analysis = analyze(str(V0_TRACE), AnalysisOptions(observers=[witness, plot, tui]))
    for row in rows:
        assert row["dsn64"] == row["dsn_expanded"] != "", row["frame"]
        assert int(row["dsn_expanded"]) == witness.dsn[int(row["frame"])], row["frame"]
    csv_values = sorted(int(r["dsn_expanded"]) for r in rows)
    plotted = sorted(dsn for flow in plot.flows.values() for dsn, _ in flow.raw_dsn)
    assert set(csv_values) <= set(plotted)
    tui_points = {v for series in tui.series.values() for v in series.dsn.v}  # the TUI plots floats
    assert {float(v) for v in csv_values} <= tui_points
    # and the relative column is that value minus the sender's IDSN
    conn = analysis.connections[0]
    for row in rows:
        side = 0 if row["direction"] == "c2s" else 1
        idsn = conn.sides[side].idsn
        assert idsn is not None
        assert int(row["dsn_relative"]) == (int(row["dsn_expanded"]) - idsn) & MASK64


def test_both_sides_of_a_captured_connection_end_anchored() -> None:
    levels = DataLevels()
    analysis = analyze(str(V0_TRACE), AnalysisOptions(observers=[levels]))
    conn = analysis.connections[0]
    for side in (0, 1):
        level = levels.level(conn, side)
        assert level.idsn == conn.sides[side].idsn and level.anchored
        assert level.known_end() is not None


def test_plot_data_acks_agree_with_the_csv_past_two_gibibytes_of_32_bit_dsns(tmp_path: Path) -> None:
    """32-bit DSNs and Data ACKs on a connection that passes 2^31 bytes (mapping jumps of 1.5 GiB).

    The sequence graph used to expand the Data ACKs after all mappings, near the *last* mapping: the
    first ACK (101) was drawn 4 GiB too high, while the CSV said 101. Now both read the value expanded
    once, in capture order.
    """
    step = 3 << 29  # 1.5 GiB: each jump is below 2^31, the total is not
    conn = ConnectionBuilder(client_ip="10.0.0.1", server_ip="10.0.0.2", client_key=0x1111, server_key=0x2222)
    sf = conn.initial(client_port=40000)
    for n in range(3):
        if n:
            conn.side("c").dsn = (conn.side("c").dsn + step) & MASK64
        sf.send("c", b"c" * 100, dsn64=False, ack64=False)
        sf.send("s", b"s" * 10, dsn64=False, ack64=False)
    trace = Framed(conn).write_pcap(tmp_path / "far.pcap")
    truth_dsn = [1, step + 101, 2 * step + 201]
    truth_ack = [101, step + 201, 2 * step + 301]

    plot = PlotCollector()
    analysis = analyze(str(trace), AnalysisOptions(observers=[plot]))
    graph = figure(analysis, "dsn", 1, 0, plot)
    assert [int(v) for v in graph.series[0].ys] == truth_dsn
    assert [int(v) for v in graph.series[-2].ys] == truth_ack  # "Data ACK"

    out = tmp_path / "far.csv"
    CliRunner().invoke(cli.app, ["report", str(trace), "--csv", str(out)])
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["dsn_relative"]) for r in rows if r["direction"] == "c2s" and r["dsn_relative"]] == truth_dsn
    acks = [int(r["data_ack_relative"]) for r in rows if r["direction"] == "s2c" and r["data_ack_relative"]]
    assert acks == truth_ack


def test_plot_leaves_out_data_acks_nothing_could_expand(tmp_path: Path) -> None:
    """A real kernel trace cut after its handshakes: no IDSN, early 32-bit Data ACKs before the peer's data.

    Those ACKs have no 64-bit value (the CSV leaves them empty, the checker does not judge them); the
    sequence graph must not draw their 32-bit value as if it were one (it would sit ~2^61 off the DSNs).
    """
    import dpkt

    source = ROOT / "samples" / "multi-conn.pcap"
    with source.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        linktype, records = reader.datalink(), list(reader)
    cut = tmp_path / "cut.pcap"
    with cut.open("wb") as out:
        writer = dpkt.pcap.Writer(out, linktype=linktype)
        for ts, buf in records[25:]:
            writer.writepkt(buf, ts)
    plot = PlotCollector()
    analysis = analyze(str(cut), AnalysisOptions(observers=[plot]))
    near = 1 << 40  # analyzer.seqnum.DSN_LINK_DISTANCE: one data stream
    drawn = 0
    for conn in analysis.connections:
        for direction in (0, 1):
            graph = figure(analysis, "dsn", conn.id, direction, plot)
            for value in graph.series[-2].ys:  # "Data ACK", relative to the IDSN or the first DSN
                drawn += 1
                assert value < near or value > (1 << 64) - near, (conn.id, direction, value)
    assert drawn
