"""Corpora on Dask: `check --dask`, `summarise` to partitioned Parquet, and a worker that dies.

The cluster runs the same per-trace functions as one process, so its results must be identical, in
the same order; a trace whose worker dies is retried once and then an input error, never dropped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from analyzer import cli
from analyzer.ci import check, cluster, corpus
from analyzer.findings import Severity
from analyzer.pipeline import AnalysisOptions, analyze

dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
duckdb = pytest.importorskip("duckdb")
pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SAMPLE_FILES = sorted(str(p) for p in SAMPLES.glob("*.pcap"))
TCPDUMP = ROOT / "tests" / "data" / "tcpdump"
runner = CliRunner()


# LocalCluster worker processes from a fork server rather than spawned (the default): starts and restarts take
# less time. Never a plain fork: this process runs threads (the module's in-process cluster), and a child
# forked while one of them held an I/O or logging lock hangs forever in its first log line.
def forked_workers() -> Any:
    return dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two in-process workers (threads): quick to start, and the scheduler is the real one."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as local, distributed.Client(local) as c:  # fmt: skip
        yield c


@pytest.fixture(autouse=True)
def _cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a directory without pyproject.toml so the repository's expectations are never picked up."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)


def run_cli(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, list(map(str, args)), env={"COLUMNS": "200", "NO_COLOR": "1"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


# --- check ---------------------------------------------------------------------------------------


def test_cluster_results_match_the_single_process_run(client: Any) -> None:
    entries = check.expand_inputs([str(SAMPLES), str(TCPDUMP)])
    local = check.check_inputs(entries, None, Severity.INFO, want_document=True)
    done: list[tuple[int, int]] = []
    remote = check.check_inputs(
        entries, None, Severity.INFO, want_document=True,
        executor=cluster.DaskExecutor(client, progress=lambda n, total: done.append((n, total))),
    )  # fmt: skip
    assert [r.path for r in remote] == [r.path for r in local] == [e for e in entries if isinstance(e, str)]
    assert [r.findings for r in remote] == [r.findings for r in local]
    assert sum(len(r.findings) for r in local) > 0  # the comparison saw findings, not only empty lists
    code = check.exit_code(local)
    assert json.dumps(check.report_json(remote, Severity.INFO, code)) == json.dumps(
        check.report_json(local, Severity.INFO, code)
    )
    assert done[-1] == (len(local), len(local)) and len(done) == len(local)  # the bar was fed per trace


def test_cli_dask_local_gives_the_same_json_junit_and_sarif(tmp_path: Path) -> None:
    paths = [*SAMPLE_FILES[:4], str(TCPDUMP / "mptcp-aa-v1.pcap")]  # the tcpdump one has an ADDR-001 error
    outputs = {}
    for mode, extra in (("jobs", ["--jobs", "1"]), ("dask", ["--dask", "local", "--jobs", "2"])):
        junit, sarif = tmp_path / f"{mode}.xml", tmp_path / f"{mode}.sarif"
        with forked_workers():
            code, out, _ = run_cli("check", "--no-expect", "--json", "--junit", junit, "--sarif", sarif, *extra, *paths)
        outputs[mode] = (code, out, _timeless(junit.read_text()), sarif.read_text())
    assert outputs["dask"] == outputs["jobs"]
    assert outputs["jobs"][0] == check.EXIT_FAIL
    assert [t["trace"]["path"] for t in json.loads(outputs["dask"][1])["traces"]] == paths


def _timeless(junit: str) -> str:
    """JUnit carries each trace's analysis time; everything else must match."""
    return re.sub(r'(time|timestamp)="[^"]*"', r'\1=""', junit)


def test_missing_dask_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # `import distributed` now raises ImportError
    code, _, err = run_cli("check", "--dask", "local", SAMPLE_FILES[0])
    assert code == check.EXIT_USAGE
    assert err.count("\n") == 1 and "dask.distributed" in err and "mptcp-analyze[dask]" in err


def test_unreachable_scheduler_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    code, _, err = run_cli("check", "--dask", "tcp://127.0.0.1:1", SAMPLE_FILES[0])
    assert code == check.EXIT_USAGE
    assert err.count("\n") == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in err


# --- a worker that dies --------------------------------------------------------------------------


def dying_check(attempts: Path) -> Callable[[check.TraceJob], check.TraceResult]:
    """``check_trace``, except that ``doomed*`` kills its worker process every time and ``flaky*`` once.

    Defined in a closure so that cloudpickle ships it by value to the worker processes.
    """

    def run(job: check.TraceJob) -> check.TraceResult:
        name = Path(job.path).name
        runs = len(list(attempts.glob(f"{name}.*")))
        (attempts / f"{name}.{runs}").touch()
        if name.startswith("doomed") or (name.startswith("flaky") and runs == 0):
            os._exit(1)
        return check.check_trace(job)

    return run


def test_a_dead_worker_is_retried_once_then_an_input_error(tmp_path: Path) -> None:
    corpus_dir, attempts = tmp_path / "traces", tmp_path / "attempts"
    corpus_dir.mkdir()
    attempts.mkdir()
    names = ["a.pcap", "doomed.pcap", "b.pcap", "flaky.pcap", "c.pcap"]
    for name, source in zip(names, SAMPLE_FILES, strict=False):
        shutil.copy(source, corpus_dir / name)
    jobs = check.make_jobs([str(corpus_dir / n) for n in names], None, Severity.ERROR, False)
    with forked_workers(), cluster.connect(cluster.LOCAL, workers=2) as client:  # worker processes, as --dask local
        outs = list(cluster.DaskExecutor(client)(dying_check(attempts), jobs))
    results = [check.lost_result(job, o) if isinstance(o, check.Lost) else o for job, o in zip(jobs, outs, strict=True)]
    runs = Counter(p.name.rsplit(".", 1)[0] for p in attempts.iterdir())
    assert runs["doomed.pcap"] == 2  # its first run and exactly one retry
    # flaky died once and recovered; a result still on a worker when that worker dies is recomputed by Dask,
    # so an innocent trace may run more than once, but it is never reported lost
    assert runs["flaky.pcap"] >= 2 and all(runs[n] >= 1 for n in names)
    assert [r.path for r in results] == [j.path for j in jobs]  # nothing dropped, input order kept
    doomed = results[1]
    assert doomed.status is check.Status.ERROR
    assert doomed.error is not None and doomed.error.startswith(jobs[1].path) and "worker" in doomed.error
    assert "2 runs" in doomed.error
    assert [r.status for i, r in enumerate(results) if i != 1] == [check.Status.PASS] * 4  # flaky recovered
    assert check.exit_code(results) == check.EXIT_USAGE


def test_a_task_that_raises_is_an_internal_error(client: Any) -> None:
    def broken(job: check.TraceJob) -> check.TraceResult:
        raise RuntimeError("boom")

    jobs = check.make_jobs(SAMPLE_FILES[:2], None, Severity.ERROR, False)
    outs = list(cluster.DaskExecutor(client)(broken, jobs))
    assert all(isinstance(o, check.Lost) and o.internal and "RuntimeError: boom" in o.message for o in outs)
    assert check.lost_result(jobs[0], outs[0]).status is check.Status.INTERNAL


# --- summarise -----------------------------------------------------------------------------------


def expected_rows() -> tuple[int, Counter[str]]:
    """Connections and findings per rule across the samples, from the single-process analysis itself."""
    connections, rules = 0, Counter[str]()
    for path in SAMPLE_FILES:
        analysis = analyze(path, AnalysisOptions(stats=False))
        connections += len(analysis.connections)
        rules.update(f.rule for f in analysis.findings)
    return connections, rules


def test_summarise_on_the_cluster_is_read_by_pandas_polars_and_duckdb(client: Any, tmp_path: Path) -> None:
    entries = check.expand_inputs([str(SAMPLES)])
    local, remote = tmp_path / "local.parquet", tmp_path / "remote.parquet"
    corpus.summarise(entries, local, traces_per_part=3)
    counts = corpus.summarise(entries, remote, cluster.DaskExecutor(client), traces_per_part=3)
    n_connections, rules = expected_rows()
    assert counts.traces == len(SAMPLE_FILES) and counts.connections == n_connections
    assert counts.parts == -(-len(SAMPLE_FILES) // 3) and len(list((remote / "findings").glob("*.parquet"))) > 1
    for table in corpus.TABLES:
        frame = pd.read_parquet(remote / table)
        assert frame.equals(pd.read_parquet(local / table)), table
        assert list(frame.columns) == list(corpus.COLUMNS[table])
    connections = pd.read_parquet(remote / "connections")
    assert len(connections) == n_connections
    assert list(connections["trace"].drop_duplicates()) == SAMPLE_FILES  # input order across the parts
    findings = pl.read_parquet(remote / "findings" / "*.parquet")
    assert Counter(findings["rule"].to_list()) == rules
    assert findings["frames"].list.len().min() >= 1  # every finding names a frame
    fallback = duckdb.sql(f"SELECT trace FROM '{remote}/connections/*.parquet' WHERE fallback").fetchall()
    assert (str(SAMPLES / "fallback.pcap"),) in fallback


def readme_query() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- corpus-query -->\s*```sql\n(.*?)```", text, re.S)
    assert match, "README.md lost its DuckDB corpus query"
    return match.group(1)


def test_the_readme_duckdb_query_runs_on_a_summarised_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("summarise", str(SAMPLES), "-o", "corpus.parquet")
    assert code == 0, err
    assert f"{len(SAMPLE_FILES)} traces (0 unreadable)" in out
    rows = duckdb.sql(readme_query()).fetchall()
    _, rules = expected_rows()
    assert {row[0]: row[2] for row in rows} == dict(rules)
    counts = [row[2] for row in rows]
    assert counts == sorted(counts, reverse=True)  # which rules fire most, first
    traces_per_rule = {row[0]: row[3] for row in rows}
    assert all(1 <= n <= len(SAMPLE_FILES) for n in traces_per_rule.values())


def test_summarise_keeps_unreadable_traces_as_rows_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.pcap"
    bad.write_bytes(b"not a capture at all" * 10)
    out = tmp_path / "c.parquet"
    code, stdout, err = run_cli("summarise", SAMPLE_FILES[0], bad, tmp_path / "missing.pcap", "-o", out)
    assert code == check.EXIT_USAGE and "3 traces (2 unreadable)" in stdout
    assert err.count("mptcp-analyze: error:") == 2 and str(bad) in err
    traces = pd.read_parquet(out / "traces")
    assert list(traces["status"]) == ["ok", "error", "error"]
    assert traces["error"].iloc[1].startswith(str(bad))
    assert json.loads((out / corpus.MARKER).read_text())["schema"] == corpus.SCHEMA


def test_summarise_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "c.parquet"
    assert run_cli("summarise", SAMPLE_FILES[0], "-o", out)[0] == 0
    code, _, err = run_cli("summarise", SAMPLE_FILES[1], "-o", out)
    assert code == check.EXIT_USAGE and "--force" in err
    assert run_cli("summarise", SAMPLE_FILES[1], "-o", out, "--force")[0] == 0
    assert list(pd.read_parquet(out / "traces")["trace"]) == [SAMPLE_FILES[1]]
    other = tmp_path / "not-ours"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    code, _, err = run_cli("summarise", SAMPLE_FILES[1], "-o", other, "--force")
    assert code == check.EXIT_USAGE and (other / "keep.txt").exists()


def test_the_package_imports_without_dask_or_pyarrow() -> None:
    """dask and pyarrow are optional: nothing imports them until --dask or summarise asks."""
    code = (
        "import sys, analyzer.cli, analyzer.ci.cluster, analyzer.ci.corpus;"
        "print(sorted(m for m in ('dask', 'distributed', 'pyarrow', 'duckdb', 'polars') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"


def test_summarise_without_pyarrow_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code, _, err = run_cli("summarise", SAMPLE_FILES[0], "-o", tmp_path / "c.parquet")
    assert code == check.EXIT_USAGE and err.count("\n") == 1 and "pyarrow" in err
    assert not (tmp_path / "c.parquet").exists()
