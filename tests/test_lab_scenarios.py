"""Every `mptcp-analyze lab` scenario, run now on the real kernel, against its own sidecar and the analyzer.

Why: the lab is the source of the ground truth the analyzer is judged by. For each scenario in
`mptcp-analyze lab --list` these tests run the command exactly as a script would (small preset, a few
seconds), then check (a) the trace's streams as rebuilt by `mptcp-analyze --json` equal the SHA-256 the
programs recorded, per connection and direction, (b) the analyzer reports no error (on a real kernel trace
an error is an analyzer bug, except where the scenario itself breaks a rule on the wire), and (c) the
scenario's defining feature is really in the capture, read with dpkt, independently of the analyzer.
Needs root, ip, tcpdump, tc, nft and net.mptcp.enabled=1; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
import pytest

from analyzer.interop_cli import LAB_SCENARIOS
from analyzer.lab import SCENARIOS, lab_unavailable_reason
from analyzer.pipeline import analyze
from analyzer.report.json_out import analysis_to_json

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
# the names scripts rely on (issue 12's contract); the interop scenarios come with the TUN runner
CONTRACT = {
    "single",
    "two-paths",
    "add-addr",
    "remove-addr",
    "backup",
    "path-failure",
    "lossy",
    "checksum",
    "fallback",
    "ipv6",
    "many-connections",
    "tfo",
    "offload-on",
    "mp-fail",
    "syncookies",
    "fullmesh",
    "add-addr-port",
    "router",
    "endpoint-client",
    "endpoint-server",
}
MPTCP_KIND, TFO_KIND = 30, 34
MP_CAPABLE, MP_JOIN, ADD_ADDR, REMOVE_ADDR, MP_PRIO, MP_FAIL, MP_TCPRST = 0, 1, 3, 4, 5, 6, 8


def _cli(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=REPO,
        check=False,
    )


def _skip_reason() -> str | None:
    reason = lab_unavailable_reason()
    if reason is None:
        for tool in ("tc", "nft", "ss"):
            if subprocess.run(["which", tool], capture_output=True, check=False).returncode:
                return f"{tool} not installed (the scenarios pace, drop and corrupt with tc and nftables)"
    return reason


REASON = _skip_reason()
needs_lab = pytest.mark.skipif(REASON is not None, reason=f"needs the netns lab (root, ip, tcpdump, MPTCP): {REASON}")


# --------------------------------------------------------------------------------------------------
# the capture, read independently of the analyzer
# --------------------------------------------------------------------------------------------------


@dataclass
class Packet:
    src: str
    dst: str
    sport: int
    dport: int
    flags: int
    ttl: int
    payload: int
    options: list[tuple[int, bytes]]
    window: int = -1

    def mptcp(self) -> Iterator[tuple[int, bytes]]:
        """(subtype, option body) of every MPTCP option."""
        for kind, body in self.options:
            if kind == MPTCP_KIND and body:
                yield body[0] >> 4, body


@dataclass
class Run:
    name: str
    pcap: Path
    sidecar: dict[str, Any]
    analysis: dict[str, Any]
    packets: list[Packet] = field(default_factory=list)

    def subtypes(self, subtype: int) -> list[tuple[Packet, bytes]]:
        return [(p, body) for p in self.packets for st, body in p.mptcp() if st == subtype]

    def connection(self, client: str) -> dict[str, Any]:
        """The analyzer's connection whose initial subflow has this client endpoint."""
        for conn in self.analysis["connections"]:
            initial = next((sf for sf in conn["subflows"] if sf["kind"] == "initial"), conn["subflows"][0])
            if initial["client"] == client:
                return conn
        raise AssertionError(f"{self.name}: no connection from {client} in the analysis")


def _read(pcap: Path) -> list[Packet]:
    out = []
    with pcap.open("rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        dl = reader.datalink()
        for _ts, buf in reader:
            frame: Any = {276: dpkt.sll2.SLL2, 113: dpkt.sll.SLL, 1: dpkt.ethernet.Ethernet}[dl](buf)
            ip = frame.data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            fam = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
            tcp = ip.data
            out.append(
                Packet(
                    socket.inet_ntop(fam, ip.src),
                    socket.inet_ntop(fam, ip.dst),
                    tcp.sport,
                    tcp.dport,
                    tcp.flags,
                    ip.hlim if fam == socket.AF_INET6 else ip.ttl,
                    len(tcp.data),
                    list(dpkt.tcp.parse_opts(tcp.opts)),
                    tcp.win,
                )
            )
    return out


_RUNS: dict[str, Run] = {}
DROPPED = "tcpdump dropped"  # the lab refuses an incomplete capture; on a loaded machine one retry is fair


@pytest.fixture
def lab_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The scenario run once (through the CLI, as scripts do) and analysed once, shared by its three tests.

    The analysis is `mptcp-analyze --json`'s document, built in-process (one interpreter start less per
    scenario).
    """
    name: str = request.param
    if name not in _RUNS:
        out = tmp_path_factory.mktemp("lab") / f"{name}.pcap"
        proc = _cli("lab", name, "-o", str(out))
        if proc.returncode and DROPPED in proc.stderr:
            proc = _cli("lab", name, "-o", str(out))
        assert proc.returncode == 0, f"lab {name} failed: {proc.stderr.strip()}"
        run = _make_run(name, out)
        if name == "lossy" and not _resent(run):
            # random loss (nft numgen) may hit nothing in a short run: one more run, then the test judges
            again = out.with_name(f"{name}-again.pcap")
            proc = _cli("lab", name, "-o", str(again))
            assert proc.returncode == 0, f"lab {name} failed: {proc.stderr.strip()}"
            run = _make_run(name, again)
        _RUNS[name] = run
    return _RUNS[name]


def _make_run(name: str, out: Path) -> Run:
    sidecar = json.loads(out.with_suffix(".json").read_text())
    report = json.loads(json.dumps(analysis_to_json(analyze(str(out)))))
    return Run(name, out, sidecar, report, _read(out))


def _resent(run: Run) -> int:
    """Retransmissions: the kernel's counter, or bytes the capture shows sent again on a subflow (nstat's
    snapshot can miss those of a short run on a loaded machine; the captured bytes cannot)."""
    nstat = run.sidecar["nstat"]
    retrans = sum(nstat[side].get("Tcp", {}).get("RetransSegs", 0) for side in ("client", "server"))
    resent = sum(half["retransmitted_bytes"] for conn in run.analysis["connections"] for sf in conn["subflows"]
                 for half in (sf["c2s"], sf["s2c"]))  # fmt: skip
    return retrans + resent


# --------------------------------------------------------------------------------------------------
# what each scenario is for
# --------------------------------------------------------------------------------------------------


def _subflow_count(run: Run) -> list[int]:
    return [len(run.connection(c["client"])["subflows"]) for c in run.sidecar["connections"]]


def _single(run: Run) -> None:
    assert run.subtypes(MP_CAPABLE) and not run.subtypes(MP_JOIN)
    assert _subflow_count(run) == [1]


def _two_paths(run: Run) -> None:
    senders = {p.src for p in run.packets if p.payload and p.src.startswith("10.210.") and p.src.endswith(".1")}
    assert senders == {"10.210.1.1", "10.210.2.1"}, "client data on both paths"
    assert _subflow_count(run) == [2]


def _add_addr(run: Run) -> None:
    ann = [a for a in run.connection(run.sidecar["connections"][0]["client"])["announcements"] if a["kind"] == "add"]
    assert [(a["sender"], a["address"], a["port"]) for a in ann] == [("server", "10.210.2.2", None)]
    assert run.sidecar["link_type"] == "EN10MB"
    assert any(p.dst == "10.210.2.2" and p.flags & dpkt.tcp.TH_SYN for p, _ in run.subtypes(MP_JOIN))


def _remove_addr(run: Run) -> None:
    removes = run.subtypes(REMOVE_ADDR)
    assert removes and all(p.src.startswith("10.210.") and p.src.endswith(".2") for p, _ in removes)
    assert {body[1] for _, body in removes} == {2}, "REMOVE_ADDR names address id 2"
    assert run.sidecar["lab"]["pm_events"]["events"][0]["action"] == "remove"


def _backup(run: Run) -> None:
    prios = run.subtypes(MP_PRIO)
    assert prios, "no MP_PRIO in the capture"
    assert all(body[0] & 1 for _, body in prios), "MP_PRIO with B=1"
    assert any(p.src == "10.210.2.1" for p, _ in prios), "sent by the client on its path-2 subflow"
    conn = run.connection(run.sidecar["connections"][0]["client"])
    assert [sf["backup"] for sf in conn["subflows"]] == [False, True]


def _path_failure(run: Run) -> None:
    events = run.sidecar["lab"]["link_down"]["events"]
    assert [(e["path"], e["state"]) for e in events] == [(2, "down"), (2, "up")]
    conn = run.connection(run.sidecar["connections"][0]["client"])
    assert conn["streams"]["c2s"]["reinjections"], "the kernel reinjected the failed path's data"


def _lossy(run: Run) -> None:
    assert _resent(run) > 0, "3 % loss both ways: the kernel retransmitted"


def _checksum(run: Run) -> None:
    conn = run.connection(run.sidecar["connections"][0]["client"])
    assert conn["checksum"] is True
    sums = [sf[d]["checksums"] for sf in conn["subflows"] for d in ("c2s", "s2c")]
    assert sum(s["ok"] for s in sums) > 0 and sum(s["bad"] for s in sums) == 0


def _fallback(run: Run) -> None:
    (side,) = run.sidecar["connections"]
    assert side["mptcp"] is False
    assert run.connection(side["client"])["fallback"] is True


def _ipv6(run: Run) -> None:
    assert all(":" in p.src for p in run.packets)
    assert _subflow_count(run) == [2]


def _many_connections(run: Run) -> None:
    assert len(run.sidecar["connections"]) == len(run.analysis["connections"]) == 4
    assert _subflow_count(run) == [2, 2, 2, 2]


def _tfo(run: Run) -> None:
    syn_data = [p for p in run.packets if p.flags & dpkt.tcp.TH_SYN and not p.flags & dpkt.tcp.TH_ACK and p.payload]
    assert syn_data and all(any(k == TFO_KIND for k, _ in p.options) for p in syn_data)
    assert [c["tfo"]["role"] for c in run.sidecar["connections"]] == ["cookie", "data-in-syn"]


def _offload_on(run: Run) -> None:
    assert max(p.payload for p in run.packets) > 1500, "TSO/GRO super-segments above the MTU"


def _mp_fail(run: Run) -> None:
    fails = run.subtypes(MP_FAIL)
    assert fails and all(p.src.endswith(".2") for p, _ in fails), "MP_FAIL from the server"
    assert run.subtypes(MP_TCPRST), "the failed subflow is reset"
    assert run.sidecar["lab"]["corrupt"]["hits"] == {"2": 1}
    assert run.sidecar["nstat"]["server"]["MPTcpExt"]["DataCsumErr"] >= 1
    assert run.sidecar["nstat"]["client"]["MPTcpExt"]["MPFailRx"] >= 1
    # the capture point is after the middlebox: the analyzer sees the checksum failure, a warning because the
    # receiver's MP_FAIL names the mapping (the capture cannot tell a sender bug from a middlebox)
    assert "CSUM-001" in {f["rule"] for f in run.analysis["findings"] if f["severity"] == "warning"}


def _syncookies(run: Run) -> None:
    server = run.sidecar["nstat"]["server"]["TcpExt"]
    assert server["SyncookiesSent"] >= 2 and server["SyncookiesRecv"] >= 2, "both SYNs answered with a cookie"
    assert _subflow_count(run) == [2]


def _fullmesh(run: Run) -> None:
    conn = run.connection(run.sidecar["connections"][0]["client"])
    pairs = {(sf["client"].rsplit(":", 1)[0], sf["server"].rsplit(":", 1)[0]) for sf in conn["subflows"]}
    assert pairs == {(f"10.210.{c}.1", f"10.210.{s}.2") for c in (1, 2) for s in (1, 2)}


def _add_addr_port(run: Run) -> None:
    conn = run.connection(run.sidecar["connections"][0]["client"])
    assert [(a["address"], a["port"]) for a in conn["announcements"] if a["kind"] == "add"] == [("10.210.2.2", 5202)]
    assert [sf["server"] for sf in conn["subflows"] if sf["kind"] == "join"] == ["10.210.2.2:5202"]


def _router(run: Run) -> None:
    assert run.sidecar["capture"]["namespace"] == "router" and run.sidecar["capture"]["interfaces"] == ["rs1"]
    up = {p.ttl for p in run.packets if p.src.startswith("10.210.") and p.src.endswith(".1")}
    down = {p.ttl for p in run.packets if p.src == "10.210.101.2"}
    assert up == {63} and down == {64}, "captured behind the router's forwarding, before the server's"
    assert _subflow_count(run) == [2]


def _zero_window(run: Run) -> None:
    closed = [
        p for p in run.packets if p.src.endswith(".2") and p.flags & dpkt.tcp.TH_ACK and not p.payload and p.window == 0
    ]
    assert closed, "the paused server advertised a zero window"
    assert any(p.src.endswith(".1") and p.payload == 1 for p in run.packets), "the client probed it with one byte"


FEATURES: dict[str, Callable[[Run], None]] = {
    "single": _single,
    "two-paths": _two_paths,
    "add-addr": _add_addr,
    "remove-addr": _remove_addr,
    "backup": _backup,
    "path-failure": _path_failure,
    "lossy": _lossy,
    "checksum": _checksum,
    "fallback": _fallback,
    "ipv6": _ipv6,
    "many-connections": _many_connections,
    "tfo": _tfo,
    "offload-on": _offload_on,
    "mp-fail": _mp_fail,
    "syncookies": _syncookies,
    "fullmesh": _fullmesh,
    "add-addr-port": _add_addr_port,
    "router": _router,
    "zero-window": _zero_window,
}
# errors the scenario itself puts on the wire (proven by the captured bytes): not analyzer bugs. mp-fail's
# CSUM-001 is only a warning: the receiver's MP_FAIL names the mapping (a middlebox or the sender, the
# capture cannot tell), so no error is expected there either.
EXPECTED_ERRORS: dict[str, set[str]] = {}


def _params() -> list[Any]:
    return [pytest.param(n, id=n) for n in SCENARIOS]


# --------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------


def test_list_is_the_contract() -> None:
    proc = _cli("lab", "--list")
    assert proc.returncode == 0
    names = proc.stdout.split()
    assert names == [*SCENARIOS, *LAB_SCENARIOS]
    assert set(names) >= CONTRACT
    assert set(FEATURES) == set(SCENARIOS), "every kernel-to-kernel scenario has its feature check"


def test_not_root_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from analyzer.cli import main

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as exc:
        main(["lab", "single", "-o", str(tmp_path / "x.pcap")])
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.count("\n") == 1 and "needs root" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args",
    [
        ["lab", "no-such-scenario", "-o", "x.pcap"],
        ["lab", "single"],
        ["lab", "single", "-o", "x.pcap", "--rate", "3=1mbit"],
        ["lab", "single", "-o", "x.pcap", "--pm-event", "remove@1"],
        ["lab", "-o", "x.pcap", "--mode", "bogus"],
    ],
)
def test_bad_options_exit_2_before_any_namespace(args: list[str]) -> None:
    proc = _cli(*args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.netns
@needs_lab
@pytest.mark.parametrize("lab_run", _params(), indirect=True)
def test_rebuilt_streams_match_the_sidecar(lab_run: Run) -> None:
    run = lab_run
    assert run.analysis["trace"]["errors"] == []
    assert len(run.analysis["connections"]) == len(run.sidecar["connections"])
    for want in run.sidecar["connections"]:
        conn = run.connection(want["client"])
        assert len(conn["subflows"]) == want["subflows"]
        for direction in ("c2s", "s2c"):
            got = conn["streams"][direction]
            assert (got["bytes"], got["sha256"], got["complete"]) == (
                want[direction]["bytes"],
                want[direction]["sha256"],
                True,
            ), f"{run.name} {want['client']} {direction}"


@pytest.mark.netns
@needs_lab
@pytest.mark.parametrize("lab_run", _params(), indirect=True)
def test_no_error_finding_on_a_real_kernel_trace(lab_run: Run) -> None:
    run = lab_run
    allowed = EXPECTED_ERRORS.get(run.name, set())
    errors = [
        (f["rule"], f["frames"][:4], f["message"])
        for f in run.analysis["findings"]
        if f["severity"] == "error" and f["rule"] not in allowed
    ]
    assert errors == []


@pytest.mark.netns
@needs_lab
@pytest.mark.parametrize("lab_run", _params(), indirect=True)
def test_the_scenario_shows_its_feature(lab_run: Run) -> None:
    FEATURES[lab_run.name](lab_run)


@pytest.mark.netns
@needs_lab
def test_ctrl_c_tears_everything_down(tmp_path: Path) -> None:
    """SIGINT mid-run: exit 130, no namespace of the run left, no child (tcpdump, programs) left."""
    out = tmp_path / "cut.pcap"
    # 2 MB at 1 Mbit/s: the run lasts ~16 s, so the signal surely lands mid-transfer (not in the teardown,
    # where signals are deferred and the run would end normally)
    # SIG_DFL in the child: the run gets SIGINT as from a terminal even when an earlier test left this
    # process ignoring it (children inherit an ignored SIGINT, and Python then installs no handler)
    proc = subprocess.Popen(
        [sys.executable, "-m", "analyzer.cli", "lab", "path-failure", "-o", str(out), "--c2s-bytes", "2000000"],
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        cwd=REPO,
    )
    mine = f"ma-cli-{proc.pid}-"
    program = ("analyzer.lab.programs", mine)  # the server or client of this run (their JSON names the lab)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _running(*program):
        time.sleep(0.05)
    assert _running(*program), "the run never started its programs"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    assert mine not in left and f"ma-srv-{proc.pid}-" not in left
    assert not _running(mine) and not _running("tcpdump", str(out))


@pytest.mark.netns
@needs_lab
@pytest.mark.parametrize("name", list(LAB_SCENARIOS))
def test_endpoint_interop_scenarios_match_their_sidecar(name: str, tmp_path: Path) -> None:
    """endpoint-client / endpoint-server: the bundled endpoint against the kernel over TUN, as lab scenarios."""
    out = tmp_path / f"{name}.pcap"
    proc = _cli("lab", name, "-o", str(out))
    if proc.returncode == 2 and "TUN" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr
    sidecar = json.loads(out.with_suffix(".json").read_text())
    analysis = json.loads(json.dumps(analysis_to_json(analyze(str(out)))))
    (want,) = sidecar["connections"]
    (conn,) = analysis["connections"]
    assert conn["subflows"][0]["client"] == want["client"] and len(conn["subflows"]) == want["subflows"] == 2
    for direction in ("c2s", "s2c"):
        got = conn["streams"][direction]
        assert (got["bytes"], got["sha256"], got["complete"]) == (
            want[direction]["bytes"],
            want[direction]["sha256"],
            True,
        ), direction
    assert [f for f in analysis["findings"] if f["severity"] == "error"] == []
    assert sidecar["failure_counters_moved"] == {}
    assert want["endpoint_role"] == ("client" if name == "endpoint-client" else "server")


def _running(*needles: str) -> bool:
    """Whether a live process has all ``needles`` on its command line (the run's programs name their
    namespace; its tcpdump, the output file)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            line = cmdline.read_bytes()
            if all(n.encode() in line for n in needles):
                return True
        except OSError:
            continue
    return False
