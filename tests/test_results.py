"""The end-of-pass stages return their results; only analyzer.results.assemble writes them into the model."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from analyzer.model import Analysis
from analyzer.pipeline import AnalysisOptions, Contributor, analyze
from analyzer.reassembly.mapper import Reassembler
from analyzer.results import HalfDelivery, Reassembled, Timed, WindowLimits, assemble
from analyzer.rwnd import WindowLimitCollector
from analyzer.stats import StatsCollector

ROOT = Path(__file__).resolve().parents[1]
STAGE_MODULES = [*sorted((ROOT / "analyzer" / "reassembly").glob("*.py")), ROOT / "analyzer/stats.py",
                 ROOT / "analyzer/rwnd.py", ROOT / "analyzer/datalevels.py"]  # fmt: skip
MODEL_NAMES = {"analysis", "conn", "connection", "sf", "subflow", "half"}  # how these modules name model objects
MODEL_COLLECTIONS = {"window_limits", "streams", "checksum_failures", "data_ack_progress", "findings"}


def test_the_stages_are_contributors_without_finish() -> None:
    for stage in (Reassembler(), StatsCollector(), WindowLimitCollector()):
        assert isinstance(stage, Contributor)
        assert not hasattr(stage, "finish"), f"{type(stage).__name__} would write into the model itself"


def test_results_are_frozen() -> None:
    for value in (HalfDelivery(0, 0, 0, 0, 0, (0, 0, 0)), Reassembled(), Timed(), WindowLimits()):
        field = dataclasses.fields(value)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, None)


def _grows_a_model_collection(node: ast.AST) -> bool:
    """``x.window_limits.append(...)`` and the like."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return False
    owner = node.func.value
    grows = node.func.attr in ("append", "extend", "update", "sort")
    return grows and isinstance(owner, ast.Attribute) and owner.attr in MODEL_COLLECTIONS


def _writes_into_model(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif _grows_a_model_collection(node):
            found.append(f"{getattr(node, 'lineno', 0)}: {ast.unparse(node)}")
        for target in targets:
            for stored in target.elts if isinstance(target, ast.Tuple) else [target]:
                chain, through_attribute = stored, False
                while isinstance(chain, (ast.Attribute, ast.Subscript)):
                    through_attribute = through_attribute or isinstance(chain, ast.Attribute)
                    chain = chain.value
                if through_attribute and isinstance(chain, ast.Name) and chain.id in MODEL_NAMES:
                    found.append(f"{getattr(node, 'lineno', 0)}: {ast.unparse(stored)}")
    return found


def test_no_stage_module_writes_into_the_model() -> None:
    offenders = {
        path.name: writes for path in STAGE_MODULES if (writes := _writes_into_model(ast.parse(path.read_text())))
    }
    assert offenders == {}


def test_the_scan_catches_a_stage_writing_in() -> None:
    bad = "def finish(self, analysis):\n    for conn in analysis.connections:\n        conn.window_limits.append(1)\n"
    bad += "        half = conn.subflows[0].halves[0]\n        half.rtt = None\n"
    assert len(_writes_into_model(ast.parse(bad))) == 2


def test_assembled_model_is_what_the_stages_learned() -> None:
    analysis = analyze(str(ROOT / "samples" / "two-subflows.pcap"), AnalysisOptions())
    halves = [half for conn in analysis.connections for sf in conn.subflows for half in sf.halves]
    assert sum(half.mappings for half in halves) > 0 and any(half.rtt for half in halves)
    assert analysis.streams


def test_assemble_writes_only_what_it_is_given() -> None:
    analysis = analyze(str(ROOT / "samples" / "two-subflows.pcap"), AnalysisOptions(reassemble=False, check=False))
    empty = Analysis(analysis.trace, analysis.connections, [], [])
    before = [dataclasses.astuple(sf.halves[0]) for conn in analysis.connections for sf in conn.subflows]
    assemble(empty, [Reassembled(), Timed(), WindowLimits()])
    assert [dataclasses.astuple(sf.halves[0]) for conn in analysis.connections for sf in conn.subflows] == before
    assert empty.streams == {} and empty.checksum_failures == []
