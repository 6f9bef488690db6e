"""The report path starts without importing the simulator, the kernel lab or the TUN endpoint.

Those commands are registered only when the command line names them (or asks for the command list), so
that `mptcp-analyze trace.pcap` and `check` pay for what they use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import sys
from analyzer.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
loaded = sorted(m for m in sys.modules if m.startswith(("analyzer.endpoint", "analyzer.lab", "analyzer.interop")))
print(",".join(loaded), file=sys.stderr)
"""


def _loaded(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT, check=False)
    return set(filter(None, done.stderr.strip().splitlines()[-1].split(","))) if done.stderr.strip() else set()


def test_report_loads_no_extension_module() -> None:
    assert _loaded("--json", str(ROOT / "samples" / "two-subflows.pcap")) == set()


def test_help_lists_every_command_and_loads_them() -> None:
    loaded = _loaded("--help")
    assert {"analyzer.endpoint.cli", "analyzer.lab.cli", "analyzer.interop_cli"} <= loaded


def test_lab_gets_the_endpoint_scenarios() -> None:
    from analyzer import cli
    from analyzer.lab.cli import EXTERNAL_SCENARIOS

    cli.register_extensions(["lab"])
    assert {"endpoint-client", "endpoint-server"} <= set(EXTERNAL_SCENARIOS)
