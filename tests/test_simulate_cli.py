"""``mptcp-analyze simulate``: the command the endpoint package registers on a typer app."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from analyzer.endpoint.cli import parse_duration, parse_rate, parse_size, register
from analyzer.endpoint.faults import FAULTS
from analyzer.endpoint.scenarios import SCENARIOS
from analyzer.pipeline import analyze


def make_app() -> tuple[typer.Typer, set[str]]:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test root (keeps `simulate` a sub-command)."""

    commands: set[str] = {"report"}
    register(app, commands)
    return app, commands


def invoke(*args: str) -> tuple[int, str]:
    app, _ = make_app()
    result = CliRunner().invoke(app, ["simulate", *args])
    return result.exit_code, result.output


def test_register_adds_the_command_name() -> None:
    _, commands = make_app()
    assert commands == {"report", "simulate"}


def test_issue_example_command_line(tmp_path: Path) -> None:
    out = tmp_path / "trace.pcap"
    code, text = invoke("--paths", "2", "--bytes", "200K", "--loss", "0.01", "--delay", "10ms,40ms",
                        "--seed", "7", "-o", str(out))  # fmt: skip
    assert code == 0, text
    assert "intact" in text and "204800 bytes" in text
    analysis = analyze(str(out))
    assert len(analysis.connections) == 1 and len(analysis.connections[0].subflows) == 2


def test_list_faults_names_every_fault_and_rule() -> None:
    code, text = invoke("--list-faults")
    assert code == 0
    for fault in FAULTS.values():
        assert fault.name in text and fault.rule in text


def test_list_scenarios() -> None:
    code, text = invoke("--list-scenarios")
    assert code == 0
    for name in SCENARIOS:
        assert name in text


@pytest.mark.parametrize("scenario", ["fallback", "checksum"])
def test_scenarios_run_from_the_command_line(scenario: str, tmp_path: Path) -> None:
    code, text = invoke("--scenario", scenario, "--bytes", "50K", "-o", str(tmp_path / "s.pcapng"),
                        "--format", "pcapng", "--capture", "middle")  # fmt: skip
    assert code == 0, text
    assert text.count("intact") == 2


def test_fault_from_the_command_line(tmp_path: Path) -> None:
    code, text = invoke("--fault", "bad-join-ack-hmac", "-o", str(tmp_path / "f.pcap"), "-q")
    assert code == 0 and text == ""
    assert (tmp_path / "f.pcap").stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--scenario", "nope"), "unknown scenario"),
        (("--fault", "nope"), "unknown fault"),
        (("--bytes", "lots"), "not a size"),
        (("--delay", "soon"), "not a duration"),
        (("--down", "9@1s"), "there are 2 paths"),
        (("--scenario", "lossy", "--fault", "bad-join-ack-hmac"), "cannot be combined"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    code, text = invoke(*args, "-o", str(tmp_path / "x.pcap"))
    assert code == 2
    assert message in text


def test_unit_parsers() -> None:
    assert parse_size("1M") == 1 << 20 and parse_size("500K") == 512_000 and parse_size("1000") == 1000
    assert parse_rate("20M") == 20e6 and parse_rate("100k") == 100e3
    assert parse_duration("10ms") == pytest.approx(0.01) and parse_duration("2s") == 2.0
    assert parse_duration("250us") == pytest.approx(250e-6) and parse_duration("40") == pytest.approx(0.04)


def test_outage_option_takes_a_path_down(tmp_path: Path) -> None:
    code, text = invoke("--bytes", "300K", "--down", "2@50ms", "-o", str(tmp_path / "d.pcap"), "--seed", "3")
    assert code == 0, text
    assert text.count("intact") == 2
