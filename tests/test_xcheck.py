"""`mptcp-analyze xcheck`: our decode against Wireshark's (pyshark → tshark), packet by packet."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzer import cli
from analyzer.ci import xcheck as xc
from analyzer.endpoint.builder import ACK, MASK32, MASK64, ConnectionBuilder
from analyzer.ingest.segment import Segment
from analyzer.model import Analysis, Subflow
from analyzer.mptcp import crypto
from analyzer.mptcp.options import (
    DSS_ACK,
    DSS_ACK64,
    DSS_DSN64,
    DSS_MAPPING,
    AddAddr,
    Dss,
    MpFail,
    MpFastclose,
    MpPrio,
    MpTcpRst,
    RemoveAddr,
)
from analyzer.pipeline import AnalysisOptions, analyze

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_FILES = sorted((ROOT / "samples").glob("*.pcap"))
TCPDUMP_FILES = sorted((ROOT / "tests" / "data" / "tcpdump").glob("*.pcap"))
runner = CliRunner()

HAVE_PYSHARK = importlib.util.find_spec("pyshark") is not None
HAVE_TSHARK = shutil.which("tshark") is not None
needs_tshark = pytest.mark.skipif(
    not (HAVE_PYSHARK and HAVE_TSHARK),
    reason="xcheck needs tshark (apt-get install tshark; .ci/run installs it) and pyshark (the test extra)",
)


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, ["xcheck", *map(str, args)], env={"COLUMNS": "200", "NO_COLOR": "1"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# ---------------------------------------------------------------------- against real tshark


@needs_tshark
@pytest.mark.parametrize("trace", SAMPLE_FILES + TCPDUMP_FILES, ids=lambda p: p.name)
def test_no_unexplained_disagreement(trace: Path) -> None:
    report = xc.xcheck(str(trace))
    assert report.unexplained_total == 0, report.unexplained[:10]
    assert report.ours_only == 0 and report.wireshark_only == 0
    assert report.frames > 0 and report.fields >= report.frames
    # single pass: the only Wireshark bug these traces show is the zero-length "missing mapping", and
    # on the TCP Fast Open sample its numbering of the mappings after the SYN data
    allowed = {"ws-missing-mapping-zero-length"}
    if trace.name == "tfo.pcap":
        allowed.add("ws-tfo-subflow-numbering")
    assert set(report.known) <= allowed


@needs_tshark
def test_zero_length_missing_mapping_is_explained() -> None:
    report = xc.xcheck(str(ROOT / "samples" / "two-subflows.pcap"))
    items = report.known["ws-missing-mapping-zero-length"]
    assert report.known_total["ws-missing-mapping-zero-length"] >= 50
    analysis = analyze(str(ROOT / "samples" / "two-subflows.pcap"), AnalysisOptions(stats=False))
    assert not [f for f in analysis.findings if f.rule == "DSS-004"]  # we find every payload byte mapped
    assert all(item.field == "mptcp.dss.missing_mapping" for item in items)


@needs_tshark
def test_two_pass_corruption_on_joined_subflows_is_explained() -> None:
    report = xc.xcheck(str(ROOT / "samples" / "two-subflows.pcap"), two_pass=True)
    assert report.unexplained_total == 0, report.unexplained[:10]
    items = report.known["ws-two-pass-joined-subflow"]
    assert {item.field for item in items} == {"mptcp.dss.dsn", "mptcp.ack"}
    single = xc.xcheck(str(ROOT / "samples" / "two-subflows.pcap"))
    assert "ws-two-pass-joined-subflow" not in single.known


def _width_scenario(tmp_path: Path) -> tuple[str, int, int, int]:
    """DSS mappings whose DSN width (m) differs from their Data ACK width (a), both ways round."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"hello")
    server, client = sc.side("s"), sc.side("c")
    payload = b"32-bit DSN, 64-bit Data ACK"
    dss = Dss(DSS_ACK | DSS_ACK64 | DSS_MAPPING, data_ack=server.acked, dsn=server.dsn & MASK32,
              ssn=sf.rel("s"), data_len=len(payload))  # fmt: skip
    short_dsn = sf.send("s", payload, dss=dss)
    server.dsn = (server.dsn + len(payload)) & MASK64
    client.acked = server.dsn
    # A 64-bit DSN with a 32-bit Data ACK, far enough from the IDSN that its upper 32 bits differ.
    idsn = crypto.idsn_from_key(client.key, 1)
    jump = next(
        k << 32 for k in range(1, 64)
        if xc.wireshark_relative((client.dsn + (k << 32)) & MASK64, idsn, 0) != (client.dsn + (k << 32) - idsn) & MASK64
    )  # fmt: skip
    client.dsn = (client.dsn + jump) & MASK64
    payload = b"64-bit DSN, 32-bit Data ACK"
    dss = Dss(DSS_ACK | DSS_MAPPING | DSS_DSN64, data_ack=client.acked & MASK32, dsn=client.dsn,
              ssn=sf.rel("c"), data_len=len(payload))  # fmt: skip
    long_dsn = sf.send("c", payload, dss=dss)
    return sc.write(tmp_path, "width.pcap"), short_dsn, long_dsn, jump


@needs_tshark
def test_dsn_width_flag_bug_is_explained(tmp_path: Path) -> None:
    path, short_dsn, long_dsn, jump = _width_scenario(tmp_path)
    report = xc.xcheck(path)
    assert report.unexplained_total == 0, report.unexplained
    items = {item.frame: item for item in report.known["ws-dsn-width-flag"]}
    assert set(items) == {short_dsn, long_dsn}
    assert items[short_dsn].field == "mptcp.dss.dsn"
    assert items[short_dsn].ours == "1"  # the server's first data byte: IDSN + 1
    assert int(items[long_dsn].ours) == 1 + len(b"hello") + jump
    assert "m=0 a=1" in items[short_dsn].note and "m=1 a=0" in items[long_dsn].note


@needs_tshark
def test_every_option_kind_is_compared(tmp_path: Path) -> None:
    """ADD_ADDR (v4, v6, port, echo, HMAC), REMOVE_ADDR, MP_PRIO, MP_FAIL, MP_FASTCLOSE, MP_TCPRST."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"hello")
    c, s = sc.side("c"), sc.side("s")
    a6, a4 = ipaddress.ip_address("fd00::2"), ipaddress.ip_address("10.9.9.9")
    sf.send("s", options=[AddAddr(5, a6, 8080, hmac=crypto.add_addr_hmac(s.key, c.key, 5, a6, 8080))], flags=ACK)
    sf.send("c", options=[AddAddr(5, a6, 8080, echo=True)], flags=ACK)
    sf.ack("s", extra=[AddAddr(6, a4, None, hmac=crypto.add_addr_hmac(s.key, c.key, 6, a4, None))])
    sf.ack("s", extra=[RemoveAddr((5, 6))])
    sf.ack("c", extra=[MpPrio(True)])
    sf.send("s", b"world")
    sf.ack("c", extra=[MpFail(c.dsn)])
    sf.raw("s", ACK, [MpFastclose(c.key)])
    sf.rst("c", [MpTcpRst(0x01, 0x05)])
    report = xc.xcheck(sc.write(tmp_path))
    assert report.unexplained_total == 0, report.unexplained
    assert report.frames == len(sc.packets)
    compared = {name.removeprefix("tcp.options.mptcp.") for name in report.by_field}
    assert compared >= {
        "subtype", "version", "flags", "sendkey", "recvkey", "datalvllen", "rawdataack", "rawdataseqno",
        "subflowseqno", "addrid", "ipv4", "ipv6", "port", "echo", "addaddrtrunchmac", "backup.flag",
        "rst_reason", "flag_T.flag", "mptcp.expected_token", "mptcp.expected_idsn", "mptcp.dss.dsn", "mptcp.ack",
    }  # fmt: skip


@needs_tshark
def test_cli_exit_0_and_report() -> None:
    code, out, _ = run(ROOT / "samples" / "two-subflows.pcap")
    assert code == 0
    assert "no unexplained disagreements" in out
    assert "ws-missing-mapping-zero-length" in out
    assert "RFC 8684 §3.3.1" in out  # why we are right
    code, out, _ = run("--json", "--two-pass", ROOT / "samples" / "add-addr.pcap")
    assert code == 0
    doc = json.loads(out)
    assert doc["unexplained"]["count"] == 0
    assert doc["wireshark"]["two_pass"] is True
    bugs = {bug["id"]: bug for bug in doc["known_wireshark_bugs"]}
    assert bugs["ws-two-pass-joined-subflow"]["count"] > 0
    assert bugs["ws-two-pass-joined-subflow"]["items"][0]["known_wireshark_bug"] == "ws-two-pass-joined-subflow"


def test_cli_input_errors_exit_2(tmp_path: Path) -> None:
    code, _, err = run(tmp_path / "missing.pcap")
    assert code == 2 and err.startswith("mptcp-analyze: error:")
    code, _, err = run("-")
    assert code == 2 and "stdin" in err


def test_cli_without_tshark_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> str:
        raise xc.XcheckUnavailable("xcheck needs tshark (Wireshark's command line): not found")

    monkeypatch.setattr(xc, "tshark_version", unavailable)
    code, _, err = run(ROOT / "samples" / "single-subflow.pcap")
    assert code == 2 and "needs tshark" in err


# ---------------------------------------------------------------------- the comparison logic, without tshark


class _Collect:
    """Observer recording our options per frame, to fake Wireshark's decode from them."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, int, list[dict[str, str]]]] = []

    def on_segment(self, seg: Segment, sf: Subflow, direction: int) -> None:
        if seg.options is not None and seg.options.mptcp:
            fields = [
                {name: ("1" if value else "0") if isinstance(value, bool) else str(value)
                 for name, value in xc.our_fields(opt).items() if not name.startswith("mptcp.")}
                for opt in seg.options.mptcp
            ]  # fmt: skip
            self.frames.append((seg.frame, seg.payload_len, fields))

    def finish(self, analysis: Analysis) -> None:
        pass


def _fake_wireshark(path: str) -> list[xc.WsPacket]:
    collect = _Collect()
    analyze(path, AnalysisOptions(stats=False, observers=[collect]))
    return [xc.WsPacket(frame, length, fields, {}, None) for frame, length, fields in collect.frames]


def _compare(path: str, packets: list[xc.WsPacket], monkeypatch: pytest.MonkeyPatch) -> xc.XcheckReport:
    def fake_packets(_path: str, _two_pass: bool = False) -> Iterator[xc.WsPacket]:
        return iter(packets)

    monkeypatch.setattr(xc, "tshark_version", lambda: "fake")
    monkeypatch.setattr(xc, "wireshark_packets", fake_packets)
    return xc.xcheck(path)


@pytest.fixture
def scenario_trace(tmp_path: Path) -> str:
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"hello")
    sc.join()
    sf.send("s", b"world")
    sc.close()
    return sc.write(tmp_path)


def test_identical_decodes_agree(scenario_trace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    report = _compare(scenario_trace, _fake_wireshark(scenario_trace), monkeypatch)
    assert report.unexplained_total == 0
    assert report.frames == len(_fake_wireshark(scenario_trace))


def test_a_wrong_field_is_an_unexplained_disagreement(scenario_trace: str, monkeypatch: pytest.MonkeyPatch) -> None:
    packets = _fake_wireshark(scenario_trace)
    packets[1].options[0]["tcp.options.mptcp.sendkey"] = "42"  # SYN/ACK key
    del packets[4]  # a frame Wireshark "did not decode"
    packets.append(xc.WsPacket(10_000, 0, [{"tcp.options.mptcp.subtype": "4"}], {}, None))  # and one only it saw
    report = _compare(scenario_trace, packets, monkeypatch)
    assert report.exit_code == 1
    by_field = {(d.frame, d.field): d for d in report.unexplained}
    key = by_field[(2, "tcp.options.mptcp.sendkey")]
    assert key.wireshark == "42" and key.ours == str(0x1112131415161718) and key.bug is None
    assert (5, "mptcp") in by_field
    assert (10_000, "mptcp") in by_field
    assert report.ours_only == 1 and report.wireshark_only == 1


def test_missing_mapping_on_payload_we_mapped_is_unexplained(
    scenario_trace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    packets = _fake_wireshark(scenario_trace)
    with_payload = next(p for p in packets if p.tcp_len > 0)
    without = next(p for p in packets if p.tcp_len == 0 and p.frame > 3)
    for packet in (with_payload, without):
        packet.analysis["mptcp.dss.missing_mapping"] = ""
    report = _compare(scenario_trace, packets, monkeypatch)
    assert [d.frame for d in report.unexplained] == [with_payload.frame]
    assert [d.frame for d in report.known["ws-missing-mapping-zero-length"]] == [without.frame]


def test_wireshark_relative_reproduces_its_conversion() -> None:
    idsn = 0x1234_5678_9ABC_DEF0
    assert xc.wireshark_relative(idsn + 5, idsn, 1) == 5  # 64-bit value, no conversion
    assert xc.wireshark_relative((idsn + 5) & MASK32, idsn, 0) == 5  # 32-bit value widened by the IDSN
    assert xc.wireshark_relative((idsn + 5) & MASK32, idsn, 1) == ((idsn + 5) & MASK32) - idsn & MASK64
