"""`compare` explains what a middlebox did: one simulated box per effect, frames checked against the box's own log."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from helpers.captures import frames_of

from analyzer.compare import compare
from analyzer.compare.json_out import comparison_to_json
from analyzer.endpoint.middlebox import MiddleboxEffect, MiddleboxSpec
from analyzer.endpoint.network import LinkSpec
from analyzer.endpoint.sim import CapturePoint, SimConfig, SimResult, run

PATHS = [LinkSpec(rate=20e6, delay=0.010), LinkSpec(rate=10e6, delay=0.025)]


def through_box(tmp_path: Path, *effects: MiddleboxEffect, checksum: bool = False) -> tuple[Path, Path, SimResult]:
    cfg = SimConfig(
        output=tmp_path / "client.pcap", paths=PATHS, c2s_bytes=80_000, s2c_bytes=20_000, seed=5,
        middlebox=MiddleboxSpec(frozenset(effects)), checksum=checksum,
    )  # fmt: skip
    client = run(cfg)
    server = run(replace(cfg, output=tmp_path / "server.pcap", capture=CapturePoint.SERVER))
    assert client.middlebox_log, "the box must have done something"
    return client.pcap, server.pcap, client


def effects(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [m for c in report["connections"] for sf in c["subflows"] for m in sf["middlebox"] if m["effect"] == name]


def all_effects(report: dict[str, Any]) -> set[str]:
    return {m["effect"] for c in report["connections"] for sf in c["subflows"] for m in sf["middlebox"]}


def no_loss(report: dict[str, Any]) -> bool:
    return all(sf[k]["lost"] == 0 for c in report["connections"] for sf in c["subflows"] for k in ("a_to_b", "b_to_a"))


def test_stripped_mp_capable_explains_the_fallback(tmp_path: Path) -> None:
    client, server, result = through_box(tmp_path, MiddleboxEffect.STRIP_MPTCP)
    report = comparison_to_json(compare(str(client), str(server)))
    (conn,) = report["connections"]
    assert conn["b"] is None  # the server saw plain TCP
    (stripped,) = effects(report, "option_stripped")
    assert "MP_CAPABLE removed" in stripped["detail"] and "fallback" in stripped["detail"]
    assert stripped["frames_a"] == frames_of(client, [a.before for a in result.middlebox_log])
    assert stripped["frames_b"] == frames_of(server, [p for a in result.middlebox_log for p in a.after])
    assert all_effects(report) == {"option_stripped"} and no_loss(report)


def test_rewritten_sequence_numbers(tmp_path: Path) -> None:
    client, server, _ = through_box(tmp_path, MiddleboxEffect.REWRITE_SEQ)
    report = comparison_to_json(compare(str(client), str(server)))
    (conn,) = report["connections"]
    assert conn["match"] == "keys"
    found = effects(report, "sequence_rewritten")
    assert len(found) == len(conn["subflows"]) == 2  # every subflow, client direction only
    offset = MiddleboxSpec(frozenset()).seq_offset
    for sf, effect in zip(conn["subflows"], found, strict=True):
        assert f"c2s sequence numbers shifted by {offset:+d}" in effect["detail"]
        assert effect["frames_a"] == [first_frame(client, sf["a_endpoints"])]
    assert all_effects(report) == {"sequence_rewritten"} and no_loss(report)


def first_frame(path: Path, endpoints: str) -> int:
    from analyzer.pipeline import AnalysisOptions, analyze

    analysis = analyze(str(path), AnalysisOptions(check=False, stats=False))
    return next(
        sf.first_frame for c in analysis.connections for sf in c.subflows if f"{sf.client} → {sf.server}" == endpoints
    )


def test_nat(tmp_path: Path) -> None:
    client, server, result = through_box(tmp_path, MiddleboxEffect.NAT)
    report = comparison_to_json(compare(str(client), str(server)))
    (conn,) = report["connections"]
    assert conn["match"] == "keys" and [sf["b"] for sf in conn["subflows"]] == [1, 2]
    found = effects(report, "address_rewritten")
    assert [e["detail"].split("↔ ")[1].split(":")[0] for e in found] == ["198.51.100.1", "198.51.100.2"]
    syns = [a for a in result.middlebox_log if a.before[33] & 0x12 == 0x02]  # client SYNs (IPv4 + TCP flags)
    assert [e["frames_a"] for e in found] == [frames_of(client, [a.before]) for a in syns]
    assert [e["frames_b"] for e in found] == [frames_of(server, list(a.after)) for a in syns]
    assert all_effects(report) == {"address_rewritten"} and no_loss(report)


def test_split_segments(tmp_path: Path) -> None:
    client, server, result = through_box(tmp_path, MiddleboxEffect.SPLIT)
    report = comparison_to_json(compare(str(client), str(server)))
    found = effects(report, "segment_split")
    assert sum(e["count"] for e in found) == len(result.middlebox_log)
    assert sorted(f for e in found for f in e["frames_a"]) == frames_of(
        client, [a.before for a in result.middlebox_log]
    )
    pieces = [p for a in result.middlebox_log for p in a.after]
    assert sorted(f for e in found for f in e["frames_b"]) == frames_of(server, pieces)
    assert all_effects(report) == {"segment_split"} and no_loss(report)


def test_corrupted_payload_explains_checksum_failure_and_mp_fail(tmp_path: Path) -> None:
    client, server, result = through_box(tmp_path, MiddleboxEffect.CORRUPT, checksum=True)
    report = comparison_to_json(compare(str(client), str(server)))
    (modified,) = effects(report, "payload_modified")
    (action,) = result.middlebox_log
    assert modified["frames_a"] == frames_of(client, [action.before])
    assert modified["frames_b"] == frames_of(server, list(action.after))
    assert "DSS checksum failure" in modified["detail"] and "MP_FAIL" in modified["detail"]


def test_nat_and_new_sequence_numbers_without_handshakes_match_by_dsn(tmp_path: Path) -> None:
    """B starts after every handshake: no keys, no tokens, other addresses and ISNs; the DSN space still matches."""
    import dpkt

    client, server, _ = through_box(tmp_path, MiddleboxEffect.NAT, MiddleboxEffect.REWRITE_SEQ)
    late = tmp_path / "late.pcap"
    with server.open("rb") as src, late.open("wb") as dst:
        writer = dpkt.pcap.Writer(dst, linktype=101, snaplen=65535)
        for n, (ts, data) in enumerate(dpkt.pcap.Reader(src), start=1):
            if n > 100:
                writer.writepkt(data, ts=ts)
    report = comparison_to_json(compare(str(client), str(late)))
    (conn,) = report["connections"]
    assert conn["match"] == "dsn" and conn["b"] == 1
    matched = [sf for sf in conn["subflows"] if sf["b"] is not None]
    assert matched and no_loss(report)  # packets before B began are not called lost
    assert {"address_rewritten", "sequence_rewritten"} <= all_effects(report)


def test_split_seen_from_the_other_end(tmp_path: Path) -> None:
    """Swapped captures: still a split (the server's capture holds the pieces), frames on the right sides."""
    client, server, result = through_box(tmp_path, MiddleboxEffect.SPLIT)
    report = comparison_to_json(compare(str(server), str(client)))
    found = effects(report, "segment_split")
    assert sum(e["count"] for e in found) == len(result.middlebox_log)
    pieces = [p for a in result.middlebox_log for p in a.after]
    assert sorted(f for e in found for f in e["frames_a"]) == frames_of(server, pieces)
    assert sorted(f for e in found for f in e["frames_b"]) == frames_of(
        client, [a.before for a in result.middlebox_log]
    )
    assert all_effects(report) == {"segment_split"} and no_loss(report)


def test_altered_mp_capable(tmp_path: Path) -> None:
    client, server, result = through_box(tmp_path, MiddleboxEffect.ALTER_MPC, checksum=True)
    report = comparison_to_json(compare(str(client), str(server)))
    found = effects(report, "option_altered")
    assert [e["detail"] for e in found] == ["c2s MP_CAPABLE changed"]
    assert found[0]["frames_a"] == frames_of(client, [a.before for a in result.middlebox_log])
    assert found[0]["frames_b"] == frames_of(server, [p for a in result.middlebox_log for p in a.after])
    assert all_effects(report) == {"option_altered"}
