"""The per-packet stages compiled as they are (setup.py's COMPILED_MODULES) give exactly what their .py files give.

Why: the compiled twins are built from the very same source, and ``MPTCP_ANALYZE_PURE=1`` loads the .py
files instead (analyzer/__init__.py). Each path runs in its own process (a process holds one of the two),
and the ``mptcp-analyze/1`` documents of samples, tcpdump's captures and simulator traces with loss,
reordering and faults must be byte-identical. Under CI the build must have happened.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.endpoint import faults, sim
from analyzer.endpoint.network import LinkSpec

REPO = Path(__file__).resolve().parent.parent
TCPDUMP = Path("/work/shared/captures/tcpdump")
PURE = {"MPTCP_ANALYZE_PURE": "1"}
LOADED = """
import json, sys
import analyzer, analyzer.cli, analyzer.pipeline, analyzer.checker, analyzer.stats, analyzer.rwnd
print(json.dumps([m for m in analyzer.compiled_modules() if m != "analyzer.ingest._fastdecode"]))
"""
DOCUMENTS = """
import json, sys
from analyzer.pipeline import AnalysisOptions, analyze
from analyzer.report import json_out
print(json.dumps({path: json_out.dumps(analyze(path, AnalysisOptions())) for path in sys.argv[1:]}))
"""


def _compiled_modules() -> list[str]:
    """setup.py's COMPILED_MODULES as module names (read from its source: running setup.py would build)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "COMPILED_MODULES")
    paths = eval(compile(ast.Expression(node.value), "setup.py", "eval"), {})  # a literal list and a generator
    return sorted(p[:-3].replace("/", ".") for p in paths)


def _run(code: str, *args: str, env: dict[str, str] | None = None) -> object:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], env={**os.environ, **(env or {})}, cwd=REPO,
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return json.loads(done.stdout)


BUILT = _run(LOADED)
needs_build = pytest.mark.skipif(not BUILT, reason="stages not compiled (pip install builds them with gcc + Cython)")


def test_stages_are_compiled_under_ci() -> None:
    if not os.environ.get("CI"):
        pytest.skip("only enforced under CI (CI is not set)")
    assert _compiled_modules() == BUILT


@needs_build
def test_default_runs_every_listed_stage_compiled() -> None:
    assert _compiled_modules() == BUILT


def test_pure_env_loads_every_stage_from_source() -> None:
    assert _run(LOADED, env=PURE) == []


def _traces(tmp_path: Path) -> list[str]:
    paths = [str(p) for p in sorted((REPO / "samples").glob("*.pcap"))]
    paths += [str(p) for p in sorted(TCPDUMP.glob("*.pcap*"))] if TCPDUMP.is_dir() else []
    lossy = tmp_path / "loss-reorder.pcap"
    sim.run(sim.SimConfig(output=lossy, c2s_bytes=150_000, s2c_bytes=30_000, seed=5,
                          paths=[LinkSpec(loss=0.03, reorder=0.05, jitter=0.002), LinkSpec(loss=0.01)]))  # fmt: skip
    checksummed = tmp_path / "checksum-ipv6.pcap"
    sim.run(sim.SimConfig(output=checksummed, c2s_bytes=80_000, s2c_bytes=10_000, seed=2, ipv6=True, checksum=True))
    for fault in ("bad-dss-checksum", "bad-join-ack-hmac", "conflicting-mapping", "missing-mapping", "data-ack-beyond"):
        sim.run(faults.fault_config(fault, tmp_path / f"{fault}.pcap", c2s_bytes=60_000, s2c_bytes=10_000))
    return paths + [str(p) for p in sorted(tmp_path.glob("*.pcap"))]


@needs_build
def test_json_identical_compiled_and_pure(tmp_path: Path) -> None:
    traces = _traces(tmp_path)
    compiled = _run(DOCUMENTS, *traces)
    pure = _run(DOCUMENTS, *traces, env=PURE)
    assert isinstance(compiled, dict) and isinstance(pure, dict) and len(compiled) == len(traces)
    for path in traces:
        assert compiled[path] == pure[path], Path(path).name


def test_pure_stages_keep_the_compiled_decoder() -> None:
    """MPTCP_ANALYZE_PURE=stages (for the benchmark): the stages from source, the decoder as built."""
    code = "import json, analyzer.pipeline; from analyzer.ingest import decode; print(json.dumps(decode.COMPILED))"
    assert _run(LOADED, env={"MPTCP_ANALYZE_PURE": "stages"}) == []
    assert _run(code, env={"MPTCP_ANALYZE_PURE": "stages"}) == _run(code)
