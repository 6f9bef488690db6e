"""``plot --kind owd``: one-way delay over time, per subflow and direction, from two vantage points.

One capture cannot tell one-way delay: it takes the packets of the same traffic seen at two points. The
pairs and the clock offset are compare's (:mod:`analyzer.compare.engine`), so the plotted points are exactly
the delays ``compare`` summarises as ``owd_ms``. Time is seconds since capture A's first packet, on A's clock.
"""

from __future__ import annotations

from analyzer.compare.model import Comparison, DirectionStats, SubflowMatch
from analyzer.plot import Figure, Series


def owd_figure(comparison: Comparison, connection: int, a_first_time: float | None) -> Figure:
    """The one-way delay series of A's connection ``connection`` (ValueError when B did not see it)."""
    match = next((c for c in comparison.connections if c.a == connection), None)
    if match is None or not any(sf.b is not None for sf in match.subflows):
        raise ValueError(f"connection {connection} of {comparison.path_a} has no match in {comparison.path_b}")
    offset = comparison.clock_offset_s
    note = (
        f"B's clock {offset * 1e3:+.3f} ms from A's, corrected"
        if offset is not None
        else "clock offset unknown (one direction only): not corrected"
    )
    fig = Figure(f"Connection {connection}: one-way delay per subflow ({note})", "time (s, A's clock)", "OWD (ms)")
    t0 = a_first_time or 0.0
    for sf in match.subflows:
        if sf.b is None:
            continue
        for label, stats in _directions(sf):
            xs = [t - t0 for t, _ in stats.owd_series]
            ys = [d * 1e3 for _, d in stats.owd_series]
            fig.series.append(Series(f"subflow {sf.a} {label}", xs, ys, "points"))
    return fig


def _directions(sf: SubflowMatch) -> list[tuple[str, DirectionStats]]:
    """(label, stats) of both directions: A→B and B→A, named c→s / s→c when the orientation is known."""
    if sf.a_is_client_side is None:
        names = ("A→B", "B→A")
    elif sf.a_is_client_side:
        names = ("c→s (A→B)", "s→c (B→A)")
    else:
        names = ("s→c (A→B)", "c→s (B→A)")
    return [(names[0], sf.a_to_b), (names[1], sf.b_to_a)]
