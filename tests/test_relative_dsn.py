"""Relative DSNs (issue 11): the report and the TUI's Info column count DSNs and Data ACKs from the IDSN.

The first data byte is 1, as Wireshark numbers TCP sequence numbers; ``--absolute`` shows the raw values,
and the JSON keeps the absolute ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer.cli import main
from analyzer.endpoint.builder import ConnectionBuilder
from analyzer.mptcp.options import Dss, MpFail
from tui.describe import option_summary, relative
from tui.session import Session

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
MASK64 = (1 << 64) - 1


def report(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    monkeypatch.setenv("COLUMNS", "120")
    with pytest.raises(SystemExit) as exit_info:
        main([*args])
    assert exit_info.value.code in (0, None)
    return capsys.readouterr().out


def test_report_data_acks_relative_by_default_absolute_on_request(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = str(SAMPLES / "two-subflows.pcap")
    sidecar = json.loads((SAMPLES / "two-subflows.json").read_text())["connections"][0]
    out = report(monkeypatch, capsys, trace)
    # N bytes and the DATA_FIN acknowledged: the Data ACK points at byte N + 2
    assert f"c→s up to {sidecar['c2s']['bytes'] + 2:,}; s→c up to {sidecar['s2c']['bytes'] + 2:,}" in out
    doc = json.loads(report(monkeypatch, capsys, trace, "--json"))
    idsn = int(doc["connections"][0]["client"]["idsn"], 16)
    raw = report(monkeypatch, capsys, trace, "--absolute")
    assert f"c→s up to {(idsn + sidecar['c2s']['bytes'] + 2) & MASK64}" in raw
    assert "relative to the IDSN" not in raw


def test_mp_fail_dsn_relative_in_the_report_absolute_in_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sc = ConnectionBuilder(checksum=True)
    sf = sc.initial()
    dsn = sc.side("c").dsn  # IDSN + 1: the first data byte
    sf.send("c", b"hello, checksum")
    sf.ack("s", extra=[MpFail(dsn)])
    trace = sc.write(tmp_path)
    out = report(monkeypatch, capsys, trace)
    assert "DSN 1 (relative)" in out and str(dsn) not in out
    assert f"DSN {dsn}" in report(monkeypatch, capsys, trace, "--absolute")
    doc = json.loads(report(monkeypatch, capsys, trace, "--json"))
    assert any(f"DSN {dsn}" in event["text"] for event in doc["connections"][0]["events"])


def test_option_summary_relative_in_the_dsn_width() -> None:
    idsn_s, idsn_p = (1 << 64) - 10, 5000
    wide = Dss(0x01 | 0x02 | 0x04 | 0x08, data_ack=5001, dsn=(idsn_s + 1) & MASK64, ssn=1, data_len=10)
    assert option_summary(wide, 0x10, (idsn_s, idsn_p)) == "DSS dsn=1 ssn=1 len=10 ack=1"
    assert option_summary(wide, 0x10) == f"DSS dsn={(idsn_s + 1) & MASK64} ssn=1 len=10 ack=5001"
    narrow = Dss(0x01 | 0x04, data_ack=(5000 + 7) & 0xFFFFFFFF, dsn=((idsn_s + 3) & 0xFFFFFFFF), ssn=3, data_len=1)
    assert option_summary(narrow, 0x10, (idsn_s, idsn_p)) == "DSS dsn=3 ssn=3 len=1 ack=7"  # wraps in 32 bits
    assert relative(42, None, True) == 42
    assert option_summary(MpFail((idsn_p + 9) & MASK64), 0x10, (idsn_s, idsn_p)) == "MP_FAIL dsn=9"


def test_tui_info_column_relative_after_the_analysis() -> None:
    session = Session(str(SAMPLES / "two-subflows.pcap"))
    session.run()
    try:
        store = session.store
        infos = [store.info(store.packet(frame)) for frame in range(1, session.index.count + 1)]
        dss = [i for i in infos if i.startswith("DSS dsn=")]
        assert dss and all(int(i.split("dsn=")[1].split()[0]) <= 80_001 for i in dss)
        store.absolute = True
        raw = [store.info(store.packet(frame)) for frame in range(1, session.index.count + 1)]
        assert any(int(i.split("dsn=")[1].split()[0]) > 1 << 32 for i in raw if i.startswith("DSS dsn="))
    finally:
        session.close()
