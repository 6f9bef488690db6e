"""The command line on bad and good inputs, run as a user runs it: the ``mptcp-analyze`` script.

``analyzer.cli.main`` rewrites ``mptcp-analyze FILE`` into ``mptcp-analyze report FILE``, so these
tests go through the installed console script (or ``main()`` in a fresh interpreter when the
script is not on the path), never through typer's runner.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import pcapgen as g

from analyzer.endpoint.builder import ConnectionBuilder
from analyzer.mptcp import crypto
from analyzer.pipeline import analyze

CLIENT_KEY = 0x1122334455667788
SERVER_KEY = 0x99AABBCCDDEEFF00
ERROR_PREFIX = "mptcp-analyze: error:"


def _cli() -> list[str]:
    exe = shutil.which("mptcp-analyze", path=os.path.dirname(sys.executable)) or shutil.which("mptcp-analyze")
    if exe:
        return [exe]
    return [sys.executable, "-c", "import sys; from analyzer.cli import main; sys.argv[0] = 'mptcp-analyze'; main()"]


def run(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MPTCP_ANALYZE_DEBUG"}
    env["COLUMNS"] = "60"  # a narrow terminal must not wrap the error line
    return subprocess.run([*_cli(), *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def assert_input_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(ERROR_PREFIX), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert proc.returncode == 2
    assert proc.stdout == ""


def crafted_capture() -> g.Framed:
    conn = ConnectionBuilder(client_ip="10.0.0.1", server_ip="10.0.0.2", client_key=CLIENT_KEY,
                             server_key=SERVER_KEY, server_port=443)  # fmt: skip
    sf = conn.initial(client_port=40000, syn_options=[g.opt_mss()])
    sf.send("c", b"hello")
    sf.send("s", b"world")
    sf.data_fin("c", with_fin=True)
    return g.Framed(conn)


# ------------------------------------------------------------------------------------------ bad input


def _missing(tmp: Path) -> Path:
    return tmp / "a-capture-file-that-does-not-exist-anywhere-on-this-machine.pcap"


def _directory(tmp: Path) -> Path:
    path = tmp / "some-directory.pcap"
    path.mkdir()
    return path


def _empty(tmp: Path) -> Path:
    path = tmp / "empty.pcap"
    path.touch()
    return path


def _text(tmp: Path) -> Path:
    path = tmp / "notes.pcap"
    path.write_text("These are my notes, not a packet capture.\n" * 20)
    return path


def _short(tmp: Path) -> Path:
    path = tmp / "short.pcap"
    path.write_bytes(b"\xd4\xc3")
    return path


def _header_only_cut(tmp: Path) -> Path:
    path = tmp / "cut-header.pcap"
    path.write_bytes(g.pcap_file_header(1)[:15])
    return path


def _gzip_text(tmp: Path) -> Path:
    path = tmp / "notes.pcap.gz"
    path.write_bytes(gzip.compress(b"plain text inside gzip\n" * 10))
    return path


def _gzip_broken(tmp: Path) -> Path:
    path = tmp / "broken.pcap.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00garbage that is not deflate")
    return path


def _user0(tmp: Path) -> Path:
    return g.write_pcap(tmp / "user0.pcap", crafted_capture().packets, g.LINKTYPE_USER0)


BAD_INPUTS = {
    "missing": (_missing, ["no such file"]),
    "directory": (_directory, ["directory"]),
    "empty": (_empty, ["empty"]),
    "text": (_text, ["not a pcap or pcapng file"]),
    "two-bytes": (_short, ["too short"]),
    "cut-file-header": (_header_only_cut, ["truncated"]),
    "gzip-of-text": (_gzip_text, ["not a pcap or pcapng file"]),
    "broken-gzip": (_gzip_broken, ["cannot read"]),
    "unsupported-link-type": (_user0, ["unsupported link type 147"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
    make, fragments = BAD_INPUTS[case]
    path = make(tmp_path)
    assert_input_error(run(str(path)), str(path), *fragments)


@pytest.mark.parametrize("case", ["missing", "unsupported-link-type"])
def test_bad_input_with_json_and_explicit_report(tmp_path, case):
    make, fragments = BAD_INPUTS[case]
    path = make(tmp_path)
    assert_input_error(run("report", "--json", str(path)), *fragments)


# ------------------------------------------------------------------------------------------ JSON contract

TRACE_KEYS = {"path", "packets", "link_types", "first_time", "last_time", "errors"}
CONNECTION_KEYS = {"id", "version", "fallback", "checksum", "client", "server", "subflows", "streams"}
FINDING_KEYS = {"rule", "severity", "connection", "subflow", "frames", "message"}


def test_json_contract_on_a_crafted_trace(tmp_path):
    cap = crafted_capture()
    # damage the end so there is a finding too (a CAPTURE-001 warning for the cut last record)
    data = g.pcap_bytes(cap.packets, g.LINKTYPE_ETHERNET) + g.pcap_record(g.Packet(b"\0" * 60))[:30]
    path = tmp_path / "good.pcap"
    path.write_bytes(data)
    proc = run(str(path), "--json")
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr
    doc = json.loads(proc.stdout)

    assert doc["schema"] == "mptcp-analyze/1"
    trace = doc["trace"]
    assert trace.keys() >= TRACE_KEYS
    assert trace["path"] == str(path)
    assert trace["packets"] == len(cap.packets)
    assert trace["link_types"] == ["ETHERNET"]
    assert trace["first_time"] == pytest.approx(g.DEFAULT_START)
    assert trace["last_time"] == pytest.approx(g.DEFAULT_START + (len(cap.packets) - 1) * g.DEFAULT_STEP)
    assert len(trace["errors"]) == 1 and isinstance(trace["errors"][0], str)

    (conn,) = doc["connections"]
    assert conn.keys() >= CONNECTION_KEYS
    assert conn["id"] == 1 and conn["version"] == 1
    assert conn["fallback"] is False and conn["checksum"] is False
    assert conn["client"]["key"] == f"{CLIENT_KEY:016x}"
    assert conn["client"]["token"] == f"{crypto.token_from_key(CLIENT_KEY):08x}"
    assert conn["server"]["key"] == f"{SERVER_KEY:016x}"
    assert conn["server"]["token"] == f"{crypto.token_from_key(SERVER_KEY):08x}"
    assert conn["client"]["address"] == "10.0.0.1" and conn["server"]["address"] == "10.0.0.2"
    (sf,) = conn["subflows"]
    assert sf["client"] == "10.0.0.1:40000" and sf["server"] == "10.0.0.2:443"
    assert sf["first_frame"] == 1 and sf["last_frame"] == len(cap.packets)
    assert set(conn["streams"]) == {"c2s", "s2c"}

    assert doc["findings"], "the cut record should be reported"
    for finding in doc["findings"]:
        assert finding.keys() >= FINDING_KEYS
        assert isinstance(finding["frames"], list)
    assert any(f["rule"] == "CAPTURE-001" and f["severity"] == "warning" for f in doc["findings"])


def test_text_report_and_output_file(tmp_path):
    cap = crafted_capture()
    path = cap.write_pcap(tmp_path / "good.pcap")
    out = tmp_path / "report.json"
    proc = run("report", str(path), "--json", "-o", str(out))
    assert proc.returncode in (0, 1), proc.stderr
    assert json.loads(out.read_text())["trace"]["packets"] == len(cap.packets)
    proc = run(str(path))
    assert proc.returncode in (0, 1), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout.strip()


# ------------------------------------------------------------------------------------------ huge claims


def _sparse(path: Path, head: bytes, size: int = (1 << 31) + 4096) -> Path:
    with path.open("wb") as fh:
        fh.write(head)
    os.truncate(path, size)  # sparse: no 2 GB on disk
    return path


def _pcap_claiming_2gb(tmp: Path) -> Path:
    head = g.pcap_file_header(g.LINKTYPE_ETHERNET) + struct.pack("<IIII", 1_700_000_000, 0, 1 << 31, 1 << 31)
    return _sparse(tmp / "huge.pcap", head)


def _pcapng_claiming_2gb(tmp: Path) -> Path:
    head = g.pcapng_shb() + g.pcapng_idb(g.LINKTYPE_ETHERNET) + struct.pack("<II", 6, 1 << 31)
    return _sparse(tmp / "huge.pcapng", head)


@pytest.mark.parametrize("make", [_pcap_claiming_2gb, _pcapng_claiming_2gb], ids=["pcap", "pcapng"])
def test_record_claiming_2gb_is_a_quick_clear_error(tmp_path, make):
    path = make(tmp_path)
    assert path.stat().st_size > 1 << 31

    started = time.monotonic()
    analysis = analyze(str(path))
    assert time.monotonic() - started < 5
    assert analysis.trace.packets == 0
    assert len(analysis.trace.errors) == 1
    assert "corrupt" in analysis.trace.errors[0]

    started = time.monotonic()
    proc = run(str(path), "--json", timeout=30)
    elapsed = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # largest child so far, in KiB
    assert "Traceback" not in proc.stderr
    assert proc.returncode in (0, 1, 2), proc.stderr
    assert elapsed < 20
    assert peak_kib < 1 << 20, f"a child used {peak_kib} KiB"  # under 1 GiB: nothing near 2 GB was allocated
    doc = json.loads(proc.stdout)
    assert doc["trace"]["packets"] == 0
    assert len(doc["trace"]["errors"]) == 1 and "corrupt" in doc["trace"]["errors"][0]
