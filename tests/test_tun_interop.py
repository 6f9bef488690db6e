"""The bundled endpoint against the Linux kernel's MPTCP over a TUN device (analyzer/endpoint/tun.py).

Why: the simulator only proves the endpoint agrees with itself. Here the kernel is the peer, on a
real clock: both roles, a join on a second path (opened by either side, or after the kernel's
ADD_ADDR), checksums, IPv6; each run byte-exact both ways (SHA-256 of what each application read
against what the other wrote), closed with DATA_FIN, zero error findings from the analyzer on the
tcpdump capture of the TUN, and no MPTcpExt failure counter moved in the kernel's namespace. A bad
join HMAC must move the counter the kernel keeps for it. Needs root and /dev/net/tun; skipped with
the reason otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analyzer.cli import main
from analyzer.endpoint.config import Misbehave
from analyzer.endpoint.pcapout import CaptureWriter
from analyzer.endpoint.tun import (
    InteropConfig,
    InteropResult,
    KernelRole,
    count_records,
    failure_counters_moved,
    run_interop,
    unavailable_reason,
)
from analyzer.findings import Severity
from analyzer.model import Analysis
from analyzer.pipeline import analyze

REASON = unavailable_reason()
needs_tun = pytest.mark.skipif(REASON is not None, reason=f"needs a TUN device in a network namespace: {REASON}")
MB = 1 << 20


def _run(tmp_path: Path, **params: object) -> tuple[InteropResult, Analysis]:
    cfg = InteropConfig(capture=tmp_path / "tun.pcap", timeout=25.0, **params)  # type: ignore[arg-type]
    result = run_interop(cfg)
    return result, analyze(str(tmp_path / "tun.pcap"))


def _assert_clean(result: InteropResult, analysis: Analysis, subflows: int, sent: int) -> None:
    """Byte-exact both ways, a DATA_FIN close, no kernel failure counter, no error finding."""
    assert result.intact, result
    assert result.capture_dropped == 0
    assert (result.c2s_bytes, result.s2c_bytes) == (sent, sent)
    assert result.endpoint_close == "closed" and result.kernel_eof
    delta = result.nstat_delta()
    assert failure_counters_moved(delta) == {}
    assert not {k for k in delta if "Rst" in k or "Fastclose" in k}, delta  # a DATA_FIN close, no resets
    assert analysis.trace.errors == []
    errors = [f"{f.rule} {f.message}" for f in analysis.findings if f.severity >= Severity.ERROR]
    assert errors == []
    (conn,) = analysis.connections
    assert conn.fallback is False and conn.version == 1
    assert len(conn.subflows) == subflows
    c2s, s2c = analysis.streams[conn.id]
    assert (c2s.bytes, c2s.sha256, c2s.complete) == (sent, result.c2s_sent, True)
    assert (s2c.bytes, s2c.sha256, s2c.complete) == (sent, result.s2c_sent, True)


@pytest.mark.netns
@needs_tun
def test_endpoint_client_joins_kernel_server(tmp_path: Path) -> None:
    """Endpoint client, kernel server; the endpoint joins from its second address; 2 MiB each way."""
    result, analysis = _run(tmp_path, c2s_bytes=2 * MB, s2c_bytes=2 * MB, paths=2)
    _assert_clean(result, analysis, subflows=2, sent=2 * MB)
    delta = result.nstat_delta()
    assert delta["MPTcpExtMPCapableSYNRX"] == 1 and delta["MPTcpExtMPCapableACKRX"] == 1
    assert delta["MPTcpExtMPJoinSynRx"] == 1 and delta["MPTcpExtMPJoinAckRx"] == 1
    assert result.subflows == 2


@pytest.mark.netns
@needs_tun
def test_kernel_client_joins_endpoint_server(tmp_path: Path) -> None:
    """Kernel client (a ``subflow`` endpoint on its second address), endpoint server."""
    result, analysis = _run(tmp_path, kernel=KernelRole.CLIENT, c2s_bytes=MB, s2c_bytes=MB, paths=2)
    _assert_clean(result, analysis, subflows=2, sent=MB)
    delta = result.nstat_delta()
    assert delta["MPTcpExtMPCapableSYNTX"] == 1 and delta["MPTcpExtMPCapableSYNACKRX"] == 1
    assert delta["MPTcpExtMPJoinSynAckRx"] == 1


@pytest.mark.netns
@needs_tun
def test_endpoint_joins_address_the_kernel_announced_with_checksums(tmp_path: Path) -> None:
    """The kernel server signals its second address (ADD_ADDR); the endpoint joins it; DSS checksums on."""
    result, analysis = _run(tmp_path, c2s_bytes=MB, s2c_bytes=MB, paths=2, announce=True, checksum=True)
    _assert_clean(result, analysis, subflows=2, sent=MB)
    delta = result.nstat_delta()
    assert delta["MPTcpExtAddAddrTx"] >= 1 and delta["MPTcpExtEchoAdd"] == 1
    assert analysis.connections[0].checksum is True
    ok = sum(h.checksums[0] for sf in analysis.connections[0].subflows for h in sf.halves)
    assert ok > 100


@pytest.mark.netns
@needs_tun
def test_ipv6_kernel_client_with_checksums(tmp_path: Path) -> None:
    """Both subflows over IPv6 (fd00:210::/32), checksums on, kernel as client."""
    result, analysis = _run(
        tmp_path, kernel=KernelRole.CLIENT, c2s_bytes=MB // 2, s2c_bytes=MB // 2, paths=2, ipv6=True, checksum=True
    )
    _assert_clean(result, analysis, subflows=2, sent=MB // 2)
    assert analysis.connections[0].subflows[0].client.startswith("[fd00:210:")


@pytest.mark.netns
@needs_tun
@pytest.mark.parametrize("kernel", [KernelRole.SERVER, KernelRole.CLIENT])
def test_endpoint_fastcloses(tmp_path: Path, kernel: KernelRole) -> None:
    """Once both applications have everything, the endpoint ends with RST + MP_FASTCLOSE on every
    subflow: the kernel counts the MP_FASTCLOSE, its socket reads ECONNRESET, and nothing failed."""
    result, analysis = _run(tmp_path, kernel=kernel, c2s_bytes=300_000, s2c_bytes=300_000, paths=2, fastclose=True)
    assert result.intact and result.capture_dropped == 0
    assert result.endpoint_close == "fastclose"
    assert result.kernel_error is not None and "reset" in result.kernel_error.lower()
    delta = result.nstat_delta()
    assert failure_counters_moved(delta) == {}
    assert delta["MPTcpExtMPFastcloseRx"] >= 1
    assert [f"{f.rule} {f.message}" for f in analysis.findings if f.severity >= Severity.ERROR] == []
    assert "FC-005" in {f.rule for f in analysis.findings}
    (conn,) = analysis.connections
    c2s, s2c = analysis.streams[conn.id]
    assert (c2s.bytes, c2s.sha256) == (300_000, result.c2s_sent)
    assert (s2c.bytes, s2c.sha256) == (300_000, result.s2c_sent)


@pytest.mark.netns
@needs_tun
def test_bad_join_ack_hmac_moves_the_kernels_counter(tmp_path: Path) -> None:
    """The endpoint's third ACK of the join carries a wrong HMAC: the kernel counts it and resets the
    subflow; the data still arrives whole on the initial subflow, and the analyzer proves the fault."""
    result, analysis = _run(
        tmp_path, c2s_bytes=200_000, s2c_bytes=200_000, paths=2, misbehave=frozenset({Misbehave.BAD_JOIN_ACK_HMAC})
    )
    assert result.intact
    moved = failure_counters_moved(result.nstat_delta())
    assert moved == {"MPTcpExtMPJoinAckHMacFailure": 1}
    errors = {f.rule for f in analysis.findings if f.severity >= Severity.ERROR}
    assert errors == {"JOIN-003"}


@pytest.mark.netns
@needs_tun
def test_bad_join_synack_hmac_moves_the_kernels_counter(tmp_path: Path) -> None:
    """The endpoint server answers the kernel's join with a wrong SYN/ACK HMAC: MPJoinSynAckHMacFailure."""
    result, analysis = _run(
        tmp_path, kernel=KernelRole.CLIENT, c2s_bytes=200_000, s2c_bytes=200_000, paths=2,
        misbehave=frozenset({Misbehave.BAD_JOIN_SYNACK_HMAC}),
    )  # fmt: skip
    assert result.intact
    moved = failure_counters_moved(result.nstat_delta())
    assert moved == {"MPTcpExtMPJoinSynAckHMacFailure": 1}
    assert any(f.severity >= Severity.ERROR for f in analysis.findings)


@pytest.mark.netns
@needs_tun
def test_kernel_client_joins_address_the_endpoint_announced(tmp_path: Path) -> None:
    """The endpoint server sends ADD_ADDR for its second address; the kernel client echoes it and joins."""
    result, analysis = _run(tmp_path, kernel=KernelRole.CLIENT, c2s_bytes=MB // 2, s2c_bytes=MB // 2, announce=True)
    _assert_clean(result, analysis, subflows=2, sent=MB // 2)
    delta = result.nstat_delta()
    assert delta["MPTcpExtAddAddr"] == 1 and delta["MPTcpExtEchoAddTx"] == 1 and delta["MPTcpExtMPJoinSynTx"] == 1
    assert {sf.server for sf in analysis.connections[0].subflows} == {"10.210.1.2:5201", "10.210.2.2:5201"}


@pytest.mark.netns
@needs_tun
def test_bad_add_addr_hmac_is_ignored_by_the_kernel(tmp_path: Path) -> None:
    """A wrong ADD_ADDR HMAC: the kernel neither counts the address (AddAddr stays 0) nor joins it; the
    connection carries on with one subflow, and the analyzer proves the bad HMAC."""
    result, analysis = _run(
        tmp_path, kernel=KernelRole.CLIENT, c2s_bytes=200_000, s2c_bytes=200_000, announce=True,
        misbehave=frozenset({Misbehave.BAD_ADD_ADDR_HMAC}),
    )  # fmt: skip
    assert result.intact and result.endpoint_close == "closed"
    delta = result.nstat_delta()
    assert "MPTcpExtAddAddr" not in delta and "MPTcpExtMPJoinSynTx" not in delta
    assert len(analysis.connections[0].subflows) == 1
    assert {f.rule for f in analysis.findings if f.severity >= Severity.ERROR} == {"ADDR-001"}


@pytest.mark.netns
@needs_tun
def test_bad_dss_checksum_makes_the_kernel_send_mp_fail(tmp_path: Path) -> None:
    """With checksums on, one mapping on the join subflow has a wrong checksum: the kernel counts
    DataCsumErr, answers MP_FAIL and resets that subflow; the data still arrives whole."""
    result, analysis = _run(
        tmp_path, c2s_bytes=300_000, s2c_bytes=300_000, checksum=True,
        misbehave=frozenset({Misbehave.BAD_DSS_CHECKSUM}),
    )  # fmt: skip
    assert result.intact
    assert failure_counters_moved(result.nstat_delta()) == {"MPTcpExtDataCsumErr": 1, "MPTcpExtMPFailTx": 1}
    # seen by the analyzer; a warning, since the kernel's MP_FAIL names the mapping (sender bug or path: unknown)
    assert "CSUM-001" in {f.rule for f in analysis.findings if f.severity >= Severity.WARNING}


def test_failure_counters_are_recognised_by_name() -> None:
    """Counter names that say failure are caught; ordinary progress counters are not."""
    delta = {
        "MPTcpExtMPJoinAckHMacFailure": 1, "MPTcpExtDSSNoMatchTCP": 2, "MPTcpExtInfiniteMapRx": 0,
        "MPTcpExtMPCapableSYNRX": 1, "MPTcpExtRcvWndShared": 9, "MPTcpExtOFOQueue": 4, "MPTcpExtMPRstRx": 1,
        "MPTcpExtAddAddrDrop": 1,
    }  # fmt: skip
    assert failure_counters_moved(delta) == {
        "MPTcpExtMPJoinAckHMacFailure": 1, "MPTcpExtDSSNoMatchTCP": 2, "MPTcpExtInfiniteMapRx": 0,
        "MPTcpExtAddAddrDrop": 1,
    }  # fmt: skip


@pytest.mark.netns
@needs_tun
def test_cli_listen_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``mptcp-analyze endpoint listen --json -o``: exit 0, intact, no failure counter, no analyzer error."""
    pcap = tmp_path / "listen.pcap"
    with pytest.raises(SystemExit) as exit_info:
        main(["endpoint", "listen", "--bytes", "200K", "--reply-bytes", "100K", "--json", "-o", str(pcap)])
    assert exit_info.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["intact"] is True and out["failure_counters"] == {} and out["analyzer_errors"] == []
    assert out["c2s_bytes"] == 200 * 1024 and out["s2c_bytes"] == 100 * 1024 and out["subflows"] == 2
    assert out["nstat_delta"]["MPTcpExtMPJoinSynTx"] == 1
    assert pcap.stat().st_size > 200 * 1024


def test_cli_refuses_a_host_outside_the_runner_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    """Traffic only goes to the namespace the runner makes: any other host is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as exit_info:
        main(["endpoint", "connect", "192.0.2.1", "80"])
    assert exit_info.value.code == 2
    assert "10.210.1.1" in capsys.readouterr().err


def test_count_records_ignores_a_record_cut_short(tmp_path: Path) -> None:
    """The capture is stopped only once it holds every packet the runner moved: the count must not
    include a record tcpdump is still writing."""
    path = tmp_path / "c.pcap"
    with CaptureWriter(path) as writer:
        for i in range(5):
            writer.write(float(i), bytes(40 + i))
    assert count_records(path) == 5
    path.write_bytes(path.read_bytes()[:-3])
    assert count_records(path) == 4
    assert count_records(tmp_path / "missing.pcap") == 0
