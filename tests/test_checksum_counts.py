"""Every checksummed mapping is counted once in HalfFlow.checksums, also one still open at the end of the capture.

A mapping whose held bytes were released past the hold cap (HOLD_CAP) leaves the hold but its checksum stays
open; at the end of the capture it is not verifiable and must be counted so (it once was not).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.endpoint.builder import ConnectionBuilder
from analyzer.mptcp import crypto
from analyzer.mptcp.options import Dss
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.reassembly import mapper

MAPPED = 0x0F  # Data ACK, 64-bit Data ACK, mapping, 64-bit DSN


def _partial_mappings(tmp_path: Path, count: int, sent: int, size: int = 2000) -> str:
    """``count`` checksummed mappings of ``size`` bytes, each with only its first ``sent`` bytes captured."""
    b = ConnectionBuilder(checksum=True)
    sf = b.initial()
    me = b.side("c")
    for i in range(count):
        payload = bytes([i]) * size
        dsn, ssn = me.dsn, sf.rel("c")
        csum = crypto.dss_checksum(dsn, ssn, size, payload)
        sf.send("c", payload[:sent], dss=Dss(MAPPED, data_ack=me.acked, dsn=dsn, ssn=ssn, data_len=size, checksum=csum))
        sf.nxt["c"] = (sf.nxt["c"] + size - sent) & 0xFFFFFFFF  # the rest of the mapping is not in the capture
        me.dsn = dsn + size
    return b.write(tmp_path)


@pytest.mark.parametrize("hold_cap", [mapper.HOLD_CAP, 3000])
def test_open_checksums_at_the_end_are_unverifiable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hold_cap: int
) -> None:
    monkeypatch.setattr(mapper, "HOLD_CAP", hold_cap)  # 3000: the oldest mappings' bytes leave the hold early
    half = analyze(_partial_mappings(tmp_path, 3, 1500), AnalysisOptions()).connections[0].subflows[0].halves[0]
    assert half.mappings == 3
    assert half.checksums == (0, 0, 3)


def test_complete_mappings_are_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapper, "HOLD_CAP", 3000)
    half = analyze(_partial_mappings(tmp_path, 3, 2000), AnalysisOptions()).connections[0].subflows[0].halves[0]
    assert half.checksums == (3, 0, 0)
