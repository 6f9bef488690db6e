"""check expectations (issue 11): established subflows are counted apart from attempted joins.

``require = ["join"]`` means a join that completed; a join the responder refused (MP_TCPRST after its
SYN or after its SYN/ACK) must not satisfy "the join worked".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analyzer import cli
from analyzer.endpoint.builder import ACK, RST, SYN, ConnectionBuilder, SubflowBuilder
from analyzer.mptcp import crypto
from analyzer.mptcp.options import MpJoinAck, MpJoinSyn, MpJoinSynAck, MpTcpRst

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
runner = CliRunner()


def run(*args: str | Path) -> tuple[int, str]:
    result = runner.invoke(cli.app, ["check", *map(str, args)], env={"COLUMNS": "200", "NO_COLOR": "1"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def refused_join(directory: Path, after_synack: bool) -> str:
    """One working subflow and a join the responder resets with MP_TCPRST (after the SYN, or after the 3rd ACK)."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"hello")
    sf.send("s", b"world")
    c, s = sc.side("c"), sc.side("s")
    join = SubflowBuilder(sc, ("10.0.3.1", 41000), (s.ip, sc.server_port),
                          isn={"c": 70000, "s": 90000}, nxt={"c": 70000, "s": 90000})  # fmt: skip
    sc.subflows.append(join)
    r_c, r_s = 0xA1A2A3A4, 0xB1B2B3B4
    join.raw("c", SYN, [MpJoinSyn(False, 1, crypto.token_from_key(s.key, 1), r_c)])
    if after_synack:
        thmac = crypto.join_synack_truncated_hmac(s.key, c.key, r_s, r_c, 1)
        join.raw("s", SYN | ACK, [MpJoinSynAck(False, 0, thmac, r_s)])
        join.raw("c", ACK, [MpJoinAck(crypto.join_ack_hmac(c.key, s.key, r_c, r_s, 1))])
    join.raw("s", RST | ACK, [MpTcpRst(0, 0x03)])
    sc.subflows.remove(join)  # a reset subflow sends no FIN: close the connection on the initial subflow only
    sc.close()
    return sc.write(directory, f"refused-{after_synack}.pcap")


def expect(directory: Path, text: str) -> Path:
    path = directory / "expect.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("after_synack", [False, True])
def test_refused_join_does_not_satisfy_require_join(tmp_path: Path, after_synack: bool) -> None:
    trace = refused_join(tmp_path, after_synack)
    code, out = run("--expect", expect(tmp_path, 'require = ["join"]\n'), trace)
    assert code == 1 and "required event not seen: join" in out
    assert run("--expect", expect(tmp_path, 'require = ["join_attempt"]\n'), trace)[0] == 0


@pytest.mark.parametrize("after_synack", [False, True])
def test_refused_join_is_attempted_but_not_established(tmp_path: Path, after_synack: bool) -> None:
    trace = refused_join(tmp_path, after_synack)
    assert run("--expect", expect(tmp_path, "subflows = 1\nestablished_subflows = 1\njoins = 1\n"), trace)[0] == 0
    code, out = run("--expect", expect(tmp_path, "established_subflows = 2\n"), trace)
    assert code == 1
    assert "expected 2 established subflow(s), found 1 (1 join(s) attempted but not established: subflow 2)" in out


def test_two_subflows_sample(tmp_path: Path) -> None:
    trace = SAMPLES / "two-subflows.pcap"
    toml = expect(tmp_path, 'subflows = 2\nestablished_subflows = 2\njoins = 1\nrequire = ["join"]\n')
    assert run("--expect", toml, trace)[0] == 0
    code, out = run("--expect", expect(tmp_path, "joins = 2\n"), trace)
    assert code == 1 and "expected 2 join attempt(s), found 1" in out


def test_json_verdict_counts_established_apart(tmp_path: Path) -> None:
    trace = refused_join(tmp_path, after_synack=True)
    _, out = run("--json", trace)
    verdict = json.loads(out)["traces"][0]["verdict"]
    assert verdict["subflows"] == {"seen": 2, "established": 1, "joins_attempted": 1}
    _, text = run(trace)
    assert "2 subflows (1 not established)" in text
