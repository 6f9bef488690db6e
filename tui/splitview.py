"""Text of the split view's rows (no terminal): fixed columns per capture, then delay and effect labels.

Wide terminals show one line per row, A's packet and B's side by side; narrow ones two lists stacked,
one per capture, each line carrying the delay and labels too so that either list reads on its own.
"""

from __future__ import annotations

from analyzer.compare.align import Packet, Row
from tui.describe import tcp_flags

SIDE_BY_SIDE = 120  # columns from which A and B share a line
GAP = {
    "lost": "── lost on the way ──",
    "uncaptured": "(not while this capture ran)",
    "extra": "(seen on the other side only)",
    "split": "┆",
    "coalesced": "┆",
}
OWD_WIDTH = 8


def frame_width(rows: list[Row]) -> int:
    largest = max((p.frame for r in rows for p in (r.a, r.b) if p is not None), default=1)
    return max(5, len(str(largest)))


def side_width(fw: int) -> int:
    return fw + 1 + 9 + 1 + 4 + 1 + 9 + 1 + 5 + 1 + 9


def side_header(fw: int, label: str) -> str:
    return f"{label + ' No.':>{fw}} {'Time':<9} {'Flg':<4} {'Seq':>9} {'Len':>5} {'MPTCP':<9}"


def side_text(packet: Packet | None, row: Row, fw: int, other_side: bool) -> str:
    """One capture's columns of ``row``; where it has no packet, why (``other_side``: the packet is there)."""
    width = side_width(fw)
    if packet is None:
        why = GAP.get(row.kind, "") if other_side or row.kind in ("split", "coalesced") else ""
        return f"{why:^{width}}"
    return (
        f"{packet.frame:>{fw}} {_time(packet.time):<9} {tcp_flags(packet.flags):<4} {packet.seq:>9} "
        f"{packet.length:>5} {packet.options[:9]:<9}"
    )


def _time(seconds: float) -> str:
    """Seconds since the capture began, in 9 columns (µs while they fit)."""
    for digits in (6, 5, 4, 3):
        text = f"{seconds:.{digits}f}"
        if len(text) <= 9:
            return text
    return f"{seconds:.0f}"


def owd_text(row: Row) -> str:
    return f"{row.owd_ms:>{OWD_WIDTH}.3f}" if row.owd_ms is not None else " " * OWD_WIDTH


def marks_text(row: Row) -> str:
    return " ".join(row.marks)


def both_line(row: Row, fw: int) -> str:
    """A's packet │ delay │ B's packet │ labels."""
    a = side_text(row.a, row, fw, row.b is not None)
    b = side_text(row.b, row, fw, row.a is not None)
    return f"{a} │{owd_text(row)} │ {b} │ {marks_text(row)}"


def one_line(row: Row, fw: int, side: str) -> str:
    """One capture's packet, the delay and the labels (the stacked layout)."""
    packet, other = (row.a, row.b) if side == "a" else (row.b, row.a)
    return f"{side_text(packet, row, fw, other is not None)} {owd_text(row)} {marks_text(row)}"


def both_header(fw: int) -> str:
    return f"{side_header(fw, 'A')} │{'OWD ms':>{OWD_WIDTH}} │ {side_header(fw, 'B')} │ effects"


def one_header(fw: int, side: str, path: str) -> str:
    return f"{side_header(fw, side.upper())} {'OWD ms':>{OWD_WIDTH}} effects · {path}"
