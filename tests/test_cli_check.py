"""`mptcp-analyze check`: exit codes, --fail-on, --junit, --sarif, --json, expectations, --jobs, directories."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from typer.testing import CliRunner

from analyzer import cli
from analyzer.ci import check as check_mod
from analyzer.ci import expect as expect_mod
from analyzer.ci.rulebook import FAMILY_ORDER
from analyzer.endpoint.builder import ACK, SYN, ConnectionBuilder, SubflowBuilder
from analyzer.mptcp import crypto
from analyzer.mptcp.options import MpJoinAck, MpJoinSyn, MpJoinSynAck
from analyzer.rules import RULES

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SAMPLE_FILES = sorted(SAMPLES.glob("*.pcap"))
AA_V1 = ROOT / "tests" / "data" / "tcpdump" / "mptcp-aa-v1.pcap"  # real capture with an ADDR-001 error, frame 13
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from a directory without pyproject.toml so the repository's own is never picked up."""
    work = tmp_path / "cwd"
    work.mkdir()
    (work / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.chdir(work)


def run(*args: str | Path) -> tuple[int, str, str]:
    result = runner.invoke(cli.app, ["check", *map(str, args)], env={"COLUMNS": "200", "NO_COLOR": "1"})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str | Path) -> tuple[int, dict[str, Any]]:
    code, out, _ = run("--json", *args)
    return code, json.loads(out)


@pytest.fixture(scope="module")
def bad_join(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, int]:
    """A legal connection plus a join whose third-ACK HMAC is zeroed (JOIN-003 at that frame)."""
    sc = ConnectionBuilder()
    sf = sc.initial()
    sf.send("c", b"hello")
    sf.send("s", b"world")
    c, s = sc.side("c"), sc.side("s")
    join = SubflowBuilder(
        sc, ("10.0.3.1", 41000), (s.ip, sc.server_port), isn={"c": 70000, "s": 90000}, nxt={"c": 70000, "s": 90000}
    )
    sc.subflows.append(join)
    r_c, r_s = 0xA1A2A3A4, 0xB1B2B3B4
    join.raw("c", SYN, [MpJoinSyn(False, 1, crypto.token_from_key(s.key, 1), r_c)])
    thmac = crypto.join_synack_truncated_hmac(s.key, c.key, r_s, r_c, 1)
    join.raw("s", SYN | ACK, [MpJoinSynAck(False, 0, thmac, r_s)])
    frame = join.raw("c", ACK, [MpJoinAck(bytes(20))])
    join.ack("s")
    sc.close()
    return sc.write(tmp_path_factory.mktemp("crafted"), "bad-join.pcap"), frame


# ---------------------------------------------------------------------- exit codes


def test_every_kernel_sample_is_clean() -> None:
    code, doc = run_json(*SAMPLE_FILES)
    assert code == 0, [t["verdict"] for t in doc["traces"] if t["verdict"]["status"] != "pass"]
    assert doc["summary"] == {"traces": len(SAMPLE_FILES), "passed": len(SAMPLE_FILES), "failed": 0, "errors": 0}
    for trace in doc["traces"]:
        assert trace["schema"] == "mptcp-analyze/1"
        assert not [f for f in trace["findings"] if f["severity"] == "error"]
        assert trace["verdict"]["status"] == "pass"


def test_directory_expands_recursively(tmp_path: Path) -> None:
    nested = tmp_path / "traces" / "deeper"
    nested.mkdir(parents=True)
    shutil.copy(SAMPLES / "single-subflow.pcap", tmp_path / "traces" / "a.pcap")
    shutil.copy(SAMPLES / "two-subflows.pcap", nested / "b.cap")
    (nested / "notes.txt").write_text("not a capture")
    code, doc = run_json(tmp_path / "traces")
    assert code == 0
    assert [Path(t["trace"]["path"]).name for t in doc["traces"]] == ["a.pcap", "b.cap"]
    code, doc = run_json(SAMPLES)
    assert code == 0
    assert len(doc["traces"]) == len(SAMPLE_FILES)


def test_real_addr_error_fails_with_exit_1() -> None:
    code, out, _ = run(AA_V1)
    assert code == 1
    assert "ADDR-001" in out
    assert "frame 13" in out
    assert "FAIL" in out


def test_crafted_join_hmac_violation_fails(bad_join: tuple[str, int]) -> None:
    path, frame = bad_join
    code, doc = run_json(path)
    assert code == 1
    failing = doc["traces"][0]["verdict"]["failing_findings"]
    join3 = [f for f in failing if f["rule"] == "JOIN-003"]
    assert join3 and frame in join3[0]["frames"]


def test_input_errors_exit_2_and_other_traces_are_still_checked(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pcap"
    garbage.write_text("this is not a capture")
    code, doc = run_json(SAMPLES / "single-subflow.pcap", tmp_path / "missing.pcap", garbage, AA_V1)
    assert code == 2  # input errors win over findings
    statuses = [t["verdict"]["status"] for t in doc["traces"]]
    assert statuses == ["pass", "error", "error", "fail"]
    assert "no such file" in doc["traces"][1]["verdict"]["error"]
    assert "not a pcap" in doc["traces"][2]["verdict"]["error"]
    code, _, err = run(tmp_path / "missing.pcap")
    assert code == 2
    assert err.strip().startswith("mptcp-analyze: error:")


def test_empty_directory_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run(tmp_path / "empty")
    assert code == 2
    assert "no capture files" in err


@pytest.mark.parametrize(
    ("fail_on", "expected"), [("error", 0), ("warning", 0), ("info", 1), ("INFO", 1), ("bogus", 2)]
)
def test_fail_on_levels(fail_on: str, expected: int) -> None:
    # fallback.pcap: one FALLBACK-001 (info), nothing above
    code, _, _ = run("--fail-on", fail_on, SAMPLES / "fallback.pcap")
    assert code == expected


def test_fail_on_warning_catches_warnings(tmp_path: Path) -> None:
    expect = tmp_path / "e.toml"
    expect.write_text('downgrade = {"ADDR-001" = "warning"}\n')
    assert run("--expect", expect, AA_V1)[0] == 0
    assert run("--expect", expect, "--fail-on", "warning", AA_V1)[0] == 1


def test_human_summary_is_concise() -> None:
    code, out, _ = run(SAMPLES / "two-subflows.pcap", SAMPLES / "lossy.pcap")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 3
    assert "1 connection, 2 subflows" in lines[0]
    assert lines[-1].startswith("2 traces: 2 passed, 0 failed")
    code, out, _ = run("-v", SAMPLES / "lossy.pcap")
    assert "DSS-012" in out


# ---------------------------------------------------------------------- reports


def test_junit_is_accepted_by_a_junit_parser(tmp_path: Path, bad_join: tuple[str, int]) -> None:
    report = tmp_path / "out.xml"
    traces = [SAMPLES / "two-subflows.pcap", AA_V1, Path(bad_join[0]), tmp_path / "missing.pcap"]
    code, _, _ = run("--junit", report, *traces)
    assert code == 2
    xml = JUnitXml.fromfile(str(report))
    suites = list(xml)
    assert [s.name for s in suites] == [str(t) for t in traces]
    families = [*FAMILY_ORDER, *sorted({r.family for r in RULES.values()} - set(FAMILY_ORDER))]
    for suite in suites[:3]:
        names = [case.name for case in suite]
        assert names == [*families, "expectations"]
        assert suite.tests == len(names)
    clean, addr, join, missing = suites
    assert clean.failures == 0 and clean.errors == 0
    addr_cases = {case.name: case for case in addr}
    failures = [r for r in addr_cases["ADDR"].result if isinstance(r, Failure)]
    assert len(failures) == 1
    assert "ADDR-001" in failures[0].message and "13" in failures[0].message
    assert "frame 13" in failures[0].text
    assert addr.failures == 1
    clean_cases = {case.name: case for case in clean}
    assert not clean_cases["CLOSE"].result  # CLOSE-007 is info: not a failure …
    assert "CLOSE-007" in (clean_cases["CLOSE"].system_out or "")  # … but reported
    assert any(isinstance(r, Skipped) for r in addr_cases["expectations"].result)
    join_failure = next(r for r in {c.name: c for c in join}["JOIN"].result if isinstance(r, Failure))
    assert "JOIN-003" in join_failure.text and str(bad_join[1]) in join_failure.text
    [case] = list(missing)
    assert case.name == "input"
    assert isinstance(case.result[0], Error)
    assert missing.errors == 1
    assert xml.failures == addr.failures + join.failures and xml.errors == 1


def test_sarif_structure(tmp_path: Path) -> None:
    out = tmp_path / "out.sarif"
    code, _, _ = run("--sarif", out, SAMPLES / "two-subflows.pcap", AA_V1, tmp_path / "missing.pcap")
    assert code == 2
    doc = json.loads(out.read_text())
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-2.1.0.json")
    [run_] = doc["runs"]
    driver = run_["tool"]["driver"]
    assert driver["name"] == "mptcp-analyze"
    rule_ids = [r["id"] for r in driver["rules"]]
    assert set(RULES) <= set(rule_ids)
    for rule in driver["rules"]:
        assert {"id", "shortDescription", "fullDescription", "defaultConfiguration"} <= set(rule)
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    results = run_["results"]
    assert results
    for result in results:
        assert {"ruleId", "level", "message", "locations"} <= set(result)
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"]
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        location = result["locations"][0]["physicalLocation"]["artifactLocation"]
        assert run_["artifacts"][location["index"]]["location"]["uri"] == location["uri"]
        assert isinstance(result["properties"]["frames"], list)
    addr = [r for r in results if r["ruleId"] == "ADDR-001"]
    assert addr and addr[0]["level"] == "error" and addr[0]["properties"]["frames"] == [13]
    assert addr[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].endswith("mptcp-aa-v1.pcap")
    notes = [r for r in results if r["ruleId"] == "CLOSE-007"]  # info, from two-subflows.pcap
    assert notes and notes[0]["level"] == "note"
    [invocation] = run_["invocations"]
    assert invocation["executionSuccessful"] is False
    assert "missing.pcap" in invocation["toolExecutionNotifications"][0]["message"]["text"]
    import jsonschema  # in the test extra: the schema check must run, never skip quietly

    minimal = {  # the parts of the SARIF 2.1.0 schema the consumers (e.g. code scanning) rely on
        "type": "object",
        "required": ["version", "runs"],
        "properties": {"runs": {"type": "array", "items": {
            "type": "object", "required": ["tool"],
            "properties": {"tool": {"type": "object", "required": ["driver"], "properties": {
                "driver": {"type": "object", "required": ["name"]}}},
                "results": {"type": "array", "items": {"type": "object", "required": ["message"], "properties": {
                    "level": {"enum": ["none", "note", "warning", "error"]},
                    "message": {"type": "object", "anyOf": [{"required": ["text"]}, {"required": ["id"]}]}}}}},
        }}},
    }  # fmt: skip
    jsonschema.validate(doc, minimal)


def test_json_has_document_and_verdict_per_trace() -> None:
    code, doc = run_json(AA_V1, SAMPLES / "single-subflow.pcap")
    assert code == 1
    assert doc["schema"] == "mptcp-analyze-check/1"
    assert doc["exit_code"] == 1
    bad, good = doc["traces"]
    assert bad["schema"] == "mptcp-analyze/1" and bad["connections"]
    assert bad["verdict"]["status"] == "fail"
    assert [f["rule"] for f in bad["verdict"]["failing_findings"]] == ["ADDR-001"]
    assert good["verdict"] == {**good["verdict"], "status": "pass", "failing_findings": []}


def test_jobs_gives_the_same_result_in_input_order() -> None:
    traces = [*SAMPLE_FILES, AA_V1]
    code1, doc1 = run_json("--jobs", "1", *traces)
    code2, doc2 = run_json("--jobs", "2", *traces)
    assert code1 == code2 == 1
    assert doc1 == doc2
    assert [t["trace"]["path"] for t in doc2["traces"]] == [str(t) for t in traces]


# ---------------------------------------------------------------------- expectations


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_expectations_met_and_unmet(tmp_path: Path) -> None:
    ok = write(tmp_path / "ok.toml", "subflows = 2\nversion = 1\nchecksum = false\nfallback = false\n"
               "min_bytes = {c2s = 80000, s2c = 80000}\nrequire = [\"join\", \"data_fin\"]\n")  # fmt: skip
    assert run("--expect", ok, SAMPLES / "two-subflows.pcap")[0] == 0
    bad = write(tmp_path / "bad.toml", "subflows = 3\nchecksum = true\nmin_bytes = {c2s = 90000}\n"
                "require = [\"add_addr\"]\n")  # fmt: skip
    code, out, _ = run("--expect", bad, SAMPLES / "two-subflows.pcap")
    assert code == 1
    assert "expected 3 subflow(s), found 2" in out
    assert "expected DSS checksums on" in out
    assert "expected at least 90,000 bytes c2s" in out
    assert "required event not seen: add_addr" in out
    code, doc = run_json("--expect", bad, SAMPLES / "two-subflows.pcap")
    unmet = doc["traces"][0]["verdict"]["expectations"]["unmet"]
    assert [u["key"] for u in unmet] == ["subflows", "checksum", "min_bytes", "require"]


def test_expectations_in_junit_and_sarif(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", "min_subflows = 2\n")
    junit, sarif = tmp_path / "r.xml", tmp_path / "r.sarif"
    code, _, _ = run("--expect", bad, "--junit", junit, "--sarif", sarif, SAMPLES / "single-subflow.pcap")
    assert code == 1
    [suite] = list(JUnitXml.fromfile(str(junit)))
    case = {c.name: c for c in suite}["expectations"]
    assert isinstance(case.result[0], Failure)
    assert "at least 2 subflow(s), found 1" in case.result[0].text
    results = json.loads(sarif.read_text())["runs"][0]["results"]
    assert [r["ruleId"] for r in results if r["level"] != "note"] == ["EXPECT-001"]  # notes are info findings


def test_sidecar_ground_truth_as_expectations(tmp_path: Path) -> None:
    """Each sample's sidecar (what the kernel reported) written as per-trace expectations: all met."""
    lines = []
    for pcap in SAMPLE_FILES:
        sidecar = json.loads(pcap.with_suffix(".json").read_text())
        conns = sidecar["connections"]
        mptcp = [c for c in conns if c["mptcp"]]
        lines.append(f'[traces."{pcap.name}"]')
        lines.append(f"fallback = {'false' if mptcp else 'true'}")
        lines.append(f"connections = {len(mptcp)}")
        if mptcp:
            # lab --corrupt: subflows the server reset after MP_FAIL are gone from the kernel's list
            reset = sidecar["lab"].get("corrupt", {}).get("mib", {}).get("server", {}).get("MPRstTx", 0)
            lines.append(f"subflows = {mptcp[0]['subflows'] + reset}")
            lines.append(f"checksum = {str(mptcp[0]['kernel']['checksum']).lower()}")
            c2s = min(c["c2s"]["bytes"] for c in mptcp)
            s2c = min(c["s2c"]["bytes"] for c in mptcp)
            lines.append(f"min_bytes = {{c2s = {c2s}, s2c = {s2c}}}")
            if all(c["subflows"] > 1 for c in mptcp):
                lines.append('require = ["join", "data_fin"]')
    expect = write(tmp_path / "sidecars.toml", "version = 1\n" + "\n".join(lines) + "\n")
    code, doc = run_json("--expect", expect, *SAMPLE_FILES)
    assert code == 0, [(t["trace"]["path"], t["verdict"]["expectations"]) for t in doc["traces"]]
    assert all(t["verdict"]["expectations"]["matched"] for t in doc["traces"])


def test_per_trace_overrides_ignore_and_downgrade(tmp_path: Path) -> None:
    expect = write(tmp_path / "e.toml", """
subflows = 2
ignore = ["GROUP-*"]

[traces."mptcp-aa-*.pcap"]
subflows = 1
ignore = ["ADDR-001"]

[traces."single-subflow.pcap"]
subflows = 1
""")  # fmt: skip
    code, doc = run_json("--expect", expect, AA_V1, SAMPLES / "single-subflow.pcap", SAMPLES / "two-subflows.pcap")
    assert code == 0, [t["verdict"] for t in doc["traces"]]
    aa = doc["traces"][0]["verdict"]
    assert [f["rule"] for f in aa["ignored_findings"]] == ["ADDR-001"]
    assert aa["expectations"]["matched"] == ["mptcp-aa-*.pcap"]
    assert "ADDR-001" not in [f["rule"] for f in doc["traces"][0]["findings"]]
    # without the override the global subflows = 2 applies to the single-subflow trace
    code, _, _ = run("--expect", expect, SAMPLES / "lossy.pcap", SAMPLES / "fallback.pcap")
    assert code == 1
    downgrade = write(tmp_path / "d.toml", '[traces."*aa-v1*"]\ndowngrade = {"ADDR-001" = "info"}\n')
    code, doc = run_json("--expect", downgrade, AA_V1)
    assert code == 0
    addr = [f for f in doc["traces"][0]["findings"] if f["rule"] == "ADDR-001"]
    assert addr[0]["severity"] == "info" and addr[0]["original_severity"] == "error"


@pytest.mark.parametrize(
    ("trace", "event", "expected"),
    [
        ("add-addr.pcap", "add_addr", 0),
        ("add-addr.pcap", "add_addr_echo", 0),
        ("single-subflow.pcap", "add_addr", 1),
        ("lossy.pcap", "reinjection", 0),
        ("single-subflow.pcap", "reinjection", 1),
        ("two-subflows.pcap", "join", 0),
        ("single-subflow.pcap", "join", 1),
        ("single-subflow.pcap", "data_fin", 0),
        ("two-subflows.pcap", "mp_prio", 1),
        ("two-subflows.pcap", "fastclose", 1),
    ],
)
def test_require_events(tmp_path: Path, trace: str, event: str, expected: int) -> None:
    expect = write(tmp_path / "e.toml", f'require = ["{event}"]\n')
    assert run("--expect", expect, SAMPLES / trace)[0] == expected


def test_require_fastclose_on_real_capture(tmp_path: Path) -> None:
    expect = write(tmp_path / "e.toml", 'require = ["fastclose"]\n')
    assert run("--expect", expect, ROOT / "tests/data/tcpdump/mptcp-fclose.pcap")[0] == 0


def test_fallback_expectation(tmp_path: Path) -> None:
    no_fallback = write(tmp_path / "a.toml", "fallback = false\n")
    code, out, _ = run("--expect", no_fallback, SAMPLES / "fallback.pcap")
    assert code == 1 and "fell back" in out
    fallback = write(tmp_path / "b.toml", "fallback = true\n")
    assert run("--expect", fallback, SAMPLES / "fallback.pcap")[0] == 0
    assert run("--expect", fallback, SAMPLES / "two-subflows.pcap")[0] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subflows = [", "invalid TOML"),
        ("subflow = 2\n", "unknown key 'subflow' (did you mean subflows?)"),
        ("version = 3\n", "version must be 0"),
        ("checksum = 'yes'\n", "checksum must be true or false"),
        ("min_subflows = 3\nmax_subflows = 2\n", "above max_subflows"),
        ('ignore = ["DSS-0012"]\n', "unknown rule 'DSS-0012'"),
        ('downgrade = {"DSS-012" = "fatal"}\n', "severity must be error, warning or info"),
        ('require = ["teleport"]\n', "unknown event 'teleport'"),
        ("min_bytes = {up = 1}\n", "unknown key(s) up"),
        ('[traces."x.pcap"]\nsubflowz = 1\n', "unknown key 'subflowz'"),
        ('[traces."x.pcap"]\ntraces = 1\n', "unknown key 'traces'"),
    ],
)
def test_invalid_expectations_exit_2(tmp_path: Path, text: str, message: str) -> None:
    expect = write(tmp_path / "bad.toml", text)
    code, out, err = run("--expect", expect, SAMPLES / "single-subflow.pcap")
    assert code == 2
    assert out == ""
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_missing_expectations_file_exit_2(tmp_path: Path) -> None:
    code, _, err = run("--expect", tmp_path / "nope.toml", SAMPLES / "single-subflow.pcap")
    assert code == 2 and "no such expectations file" in err


def test_pyproject_discovered_in_parent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "proj"
    (project / "sub" / "dir").mkdir(parents=True)
    write(project / "pyproject.toml", '[project]\nname = "p"\n\n[tool.mptcp-analyze]\nsubflows = 5\n'
          '[tool.mptcp-analyze.traces."two-*"]\nsubflows = 2\n')  # fmt: skip
    monkeypatch.chdir(project / "sub" / "dir")
    code, out, _ = run(SAMPLES / "two-subflows.pcap")
    assert code == 0
    code, out, _ = run(SAMPLES / "single-subflow.pcap")
    assert code == 1 and "expected 5 subflow(s)" in out
    assert run("--no-expect", SAMPLES / "single-subflow.pcap")[0] == 0
    # --expect may also name a pyproject.toml
    assert run("--expect", project / "pyproject.toml", SAMPLES / "single-subflow.pcap")[0] == 1
    write(project / "pyproject.toml", "[tool.mptcp-analyze]\nsubflowz = 1\n")
    code, _, err = run(SAMPLES / "single-subflow.pcap")
    assert code == 2 and "[tool.mptcp-analyze]: unknown key 'subflowz'" in err


def test_nearest_pyproject_without_table_means_no_expectations(tmp_path: Path) -> None:
    # the autouse fixture's cwd has a pyproject.toml without [tool.mptcp-analyze]
    assert expect_mod.discover() is None


def test_check_trace_is_plain_data_for_worker_processes() -> None:
    import pickle

    job = check_mod.TraceJob(str(AA_V1), expect_mod.Expectations(ignore=("CLOSE-*",)), check_mod.Severity.ERROR)
    result = check_mod.check_trace(job)
    again = pickle.loads(pickle.dumps(result))
    assert again.status is check_mod.Status.FAIL
    assert [f.rule for f in again.ignored] == ["CLOSE-004", "CLOSE-004"]
