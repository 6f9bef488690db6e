"""Exports (issue 11): 64-bit DSNs survive pandas, expanded and relative columns, documented columns, SARIF paths."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from analyzer import cli
from analyzer.export import ALL_COLUMNS, COLUMNS
from analyzer.pipeline import analyze

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
TCPDUMP = ROOT.parent / "shared" / "captures" / "tcpdump"
MASK64 = (1 << 64) - 1
runner = CliRunner()


def export(trace: Path, directory: Path) -> tuple[list[dict[str, str]], Path]:
    out_csv, out_parquet = directory / "rows.csv", directory / "rows.parquet"
    result = runner.invoke(cli.app, ["report", str(trace), "--csv", str(out_csv), "--parquet", str(out_parquet)])
    assert result.exit_code == 0, result.output
    with out_csv.open(newline="") as f:
        return list(csv.DictReader(f)), out_parquet


def documented_columns() -> list[str]:
    text = (ROOT / "docs" / "export.md").read_text()
    table = text.split("## Columns", 1)[1]
    return re.findall(r"^\| `([a-z0-9_]+)` \|", table, flags=re.MULTILINE)


def test_the_document_lists_exactly_the_columns_written(tmp_path: Path) -> None:
    rows, parquet = export(SAMPLES / "two-subflows.pcap", tmp_path)
    header = list(rows[0])
    assert documented_columns() == header == list(ALL_COLUMNS)
    assert pq.read_schema(parquet).names == header
    assert header[: len(COLUMNS)] == list(COLUMNS)  # the first columns keep their names and places


def test_64_bit_dsns_survive_pandas_read_parquet(tmp_path: Path) -> None:
    rows, parquet = export(SAMPLES / "two-subflows.pcap", tmp_path)
    df = pd.read_parquet(parquet)
    for name in ("dsn", "dsn64", "data_ack", "dsn_expanded", "dsn_relative", "data_ack_expanded"):
        assert str(df[name].dtype) == "UInt64", name
        expected = [int(r[name]) if r[name] else None for r in rows]
        got = [None if v is pd.NA else int(v) for v in df[name]]
        assert got == expected, name
    assert any(v > 1 << 53 for v in df["dsn64"].dropna())  # values where a float64 would have lost bits
    assert str(df["frame"].dtype) == "uint64"  # never null: plain numpy


def test_relative_dsns_count_from_the_idsn(tmp_path: Path) -> None:
    sidecar = json.loads((SAMPLES / "two-subflows.json").read_text())["connections"][0]
    rows, _ = export(SAMPLES / "two-subflows.pcap", tmp_path)
    doc = json.loads(runner.invoke(cli.app, ["report", str(SAMPLES / "two-subflows.pcap"), "--json"]).output)
    idsn = {
        "c2s": int(doc["connections"][0]["client"]["idsn"], 16),
        "s2c": int(doc["connections"][0]["server"]["idsn"], 16),
    }
    mapped = [r for r in rows if r["dsn_expanded"]]
    assert mapped
    for r in mapped:
        assert int(r["dsn_relative"]) == (int(r["dsn_expanded"]) - idsn[r["direction"]]) & MASK64
    for direction in ("c2s", "s2c"):
        ends = [int(r["dsn_relative"]) + int(r["data_len"]) for r in mapped if r["direction"] == direction]
        assert max(ends) == sidecar[direction]["bytes"] + 2  # bytes 1..N, then the DATA_FIN's unit
    acks = [int(r["data_ack_relative"]) for r in rows if r["data_ack_relative"] and r["direction"] == "s2c"]
    assert max(acks) == sidecar["c2s"]["bytes"] + 2


def test_flags_and_widths_are_named_consistently(tmp_path: Path) -> None:
    rows, _ = export(SAMPLES / "two-subflows.pcap", tmp_path)
    for r in rows:
        if r["data_ack"]:
            assert r["data_ack_bits"] == ("64" if r["data_ack64"] == "1" else "32")
        if r["dsn"]:
            assert r["dsn_bits"] == "64" and r["dsn64"] == r["dsn_expanded"]


@pytest.mark.skipif(not (TCPDUMP / "mptcp-v0.pcap").exists(), reason="tcpdump captures not beside the checkout")
def test_32_bit_dsns_expanded_from_the_idsn(tmp_path: Path) -> None:
    """tcpdump's v0 capture maps with 32-bit DSNs: dsn64 waits for a previous mapping, dsn_expanded does not."""
    rows, _ = export(TCPDUMP / "mptcp-v0.pcap", tmp_path)
    analysis = analyze(str(TCPDUMP / "mptcp-v0.pcap"))
    narrow = [r for r in rows if r["dsn_bits"] == "32"]
    assert narrow and all(r["dsn_expanded"] for r in narrow)
    sides = analysis.connections[0].sides
    for r in narrow:
        idsn = sides[0 if r["direction"] == "c2s" else 1].idsn
        assert idsn is not None
        assert int(r["dsn_expanded"]) & 0xFFFFFFFF == int(r["dsn"])
        assert 0 < int(r["dsn_relative"]) < 1 << 32  # within 4 GiB of the IDSN: the right high half
        assert (int(r["dsn_expanded"]) - idsn) & MASK64 == int(r["dsn_relative"])


# ---------------------------------------------------------------------- SARIF


def sarif_uris(tmp_path: Path, *args: str) -> list[dict[str, str]]:
    out = tmp_path / "out.sarif"
    runner.invoke(cli.app, ["check", "--sarif", str(out), *args])
    doc = json.loads(out.read_text())
    return [a["location"] for a in doc["runs"][0]["artifacts"]]


def test_sarif_path_of_a_symlinked_input_stays_relative(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "link.pcap").symlink_to(SAMPLES / "two-subflows.pcap")
    monkeypatch.chdir(tmp_path)
    [location] = sarif_uris(tmp_path, "traces/link.pcap")
    assert location == {"uri": "traces/link.pcap", "uriBaseId": "SRCROOT"}


def test_sarif_root_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    (repo / "captures").mkdir(parents=True)
    trace = repo / "captures" / "a b.pcap"
    trace.symlink_to(SAMPLES / "two-subflows.pcap")
    monkeypatch.chdir(tmp_path)
    [location] = sarif_uris(tmp_path, "--sarif-root", str(repo), str(trace))
    assert location == {"uri": "captures/a%20b.pcap", "uriBaseId": "SRCROOT"}
    doc = json.loads((tmp_path / "out.sarif").read_text())
    assert doc["runs"][0]["originalUriBaseIds"]["SRCROOT"]["uri"] == repo.as_uri() + "/"


def test_sarif_outside_the_root_is_an_absolute_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    [location] = sarif_uris(tmp_path, str(SAMPLES / "two-subflows.pcap"))
    assert location["uri"].startswith("file:///") and "uriBaseId" not in location
