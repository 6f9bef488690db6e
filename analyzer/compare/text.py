"""The rich text report of a comparison, readable at 80 columns and without colour when piped."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from analyzer.compare.model import Comparison, DirectionStats, SubflowMatch

FRAMES_SHOWN = 6


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _frames(frames: list[int]) -> str:
    shown = ",".join(str(f) for f in frames[:FRAMES_SHOWN])
    more = len(frames) - FRAMES_SHOWN
    return (shown or "-") + (f",… (+{more})" if more > 0 else "")


def _direction_row(table: Table, label: str, stats: DirectionStats) -> None:
    owd = stats.owd_ms
    table.add_row(
        label, str(stats.packets), str(stats.lost), str(stats.reordered),
        f"{_ms(owd['min'])}/{_ms(owd['median'])}/{_ms(owd['p95'])}/{_ms(owd['max'])}",
    )  # fmt: skip


def _subflow(console: Console, sf: SubflowMatch) -> None:
    console.print(f"  subflow A#{sf.a} ↔ B#{sf.b if sf.b is not None else '-'}")
    console.print(f"    A {sf.a_endpoints}")
    if sf.b is None:
        console.print("    not seen in B (no packets to compare)")
        return
    console.print(f"    B {sf.b_endpoints}")
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for column in ("    dir", "packets", "lost", "reord", "OWD ms min/med/p95/max"):
        table.add_column(column, justify="right" if column != "    dir" else "left")
    c2s_is_ab = sf.a_is_client_side is not False
    _direction_row(table, f"    A→B ({'c2s' if c2s_is_ab else 's2c'})", sf.a_to_b)
    _direction_row(table, f"    B→A ({'s2c' if c2s_is_ab else 'c2s'})", sf.b_to_a)
    console.print(table)
    for stats, label in ((sf.a_to_b, "A→B"), (sf.b_to_a, "B→A")):
        if stats.lost_frames:
            side = "A" if label == "A→B" else "B"
            console.print(f"    lost {label}: frames of {side} {_frames(stats.lost_frames)}", highlight=False)
    for effect in sf.middlebox:
        times = f" ×{effect.count}" if effect.count > 1 else ""
        console.print(f"    [bold]{effect.effect}[/]{times}: {effect.detail}", highlight=False)
        console.print(f"      frames A {_frames(effect.frames_a)}  B {_frames(effect.frames_b)}", highlight=False)


def render(console: Console, comparison: Comparison) -> None:
    console.print(f"[bold]A[/] {comparison.path_a}\n[bold]B[/] {comparison.path_b}", highlight=False)
    offset = comparison.clock_offset_s
    console.print(
        "clock offset B−A: " + ("unknown (one-way delays assume 0)" if offset is None else f"{offset * 1e3:+.3f} ms"),
        highlight=False,
    )
    for error in comparison.errors:
        console.print(f"[yellow]capture problem[/] {error}", highlight=False)
    if not comparison.connections:
        console.print("no MPTCP connection in A")
    for conn in comparison.connections:
        a = f"A#{conn.a}" if conn.a is not None else "A (plain TCP)"
        b = f"B#{conn.b}" if conn.b is not None else "B (no MPTCP connection)"
        console.print(f"\n[bold]Connection {a} ↔ {b}[/] matched by {conn.match}", highlight=False)
        for sf in conn.subflows:
            _subflow(console, sf)
    if comparison.unmatched_b:
        console.print(f"\nB connections not matched: {', '.join(map(str, comparison.unmatched_b))}")
