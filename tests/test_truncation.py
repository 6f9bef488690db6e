"""Cut and corrupted copies of every bundled sample: the analysis finishes, says what is damaged, and what
was read intact is analysed exactly as in the clean prefix of the file.

Offsets are a dense sample rather than every byte (each sample has thousands of records): for a seeded
choice of record boundaries, the cut lands just before, at and just after the boundary (inside the next
record header and its data), plus random offsets anywhere.
"""

from __future__ import annotations

import bisect
import random
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.damage import (
    PCAP_HEADER,
    analyze_bytes,
    assert_sound,
    byte_errors,
    fingerprint,
    flip_bits,
    record_boundaries,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "samples").glob("*.pcap"))
BOUNDARIES_PER_SAMPLE = 4
AROUND = (-3, 0, 1, 9, 17)  # bytes from a record boundary: end of the previous record, headers, first data bytes


def _cuts(data: bytes, rng: random.Random) -> list[int]:
    bounds = record_boundaries(data)
    chosen = rng.sample(bounds[1:-1], min(BOUNDARIES_PER_SAMPLE, len(bounds) - 2))
    cuts = {b + delta for b in chosen for delta in AROUND}
    cuts |= {rng.randrange(PCAP_HEADER, len(data)) for _ in range(3)}
    cuts |= {PCAP_HEADER, PCAP_HEADER + 5, len(data) - 1}
    return sorted(c for c in cuts if PCAP_HEADER <= c < len(data))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_a_cut_file_gives_the_analysis_of_its_intact_prefix(sample: Path, tmp_path: Path) -> None:
    data = sample.read_bytes()
    bounds = record_boundaries(data)
    rng = random.Random(sample.stem)
    for cut in _cuts(data, rng):
        intact = bounds[bisect.bisect_right(bounds, cut) - 1]  # last record boundary at or before the cut
        damaged = analyze_bytes(data[:cut], tmp_path, "cut.pcap")
        assert_sound(damaged)
        if cut != intact:  # a record was cut short: said so, as a capture problem
            assert damaged.trace.errors, f"cut at {cut} not reported"
            assert any(f.rule == "CAPTURE-001" for f in damaged.findings)
        clean = analyze_bytes(data[:intact], tmp_path, "prefix.pcap")
        assert fingerprint(damaged) == fingerprint(clean), f"{sample.name} cut at byte {cut}"


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_flipped_bits_never_break_the_analysis(sample: Path, tmp_path: Path) -> None:
    data = sample.read_bytes()
    bounds = record_boundaries(data)
    rng = random.Random(f"flip-{sample.stem}")
    for flips in (1, 4, 32):
        damaged = flip_bits(data, flips, rng)
        analysis = analyze_bytes(damaged, tmp_path)
        assert_sound(analysis)
        first_changed = next(i for i, (a, b) in enumerate(zip(data, damaged, strict=True)) if a != b)
        # every record before the first damaged byte was still read
        intact_records = bisect.bisect_right(bounds, first_changed) - 1
        assert analysis.trace.packets >= intact_records - 1


@pytest.mark.parametrize("rate", [1e-4, 1e-3, 1e-2])
def test_editcap_style_byte_errors_exit_0_or_1_with_the_damage_reported(rate: float, tmp_path: Path) -> None:
    """Like ``editcap -E RATE``: random bytes replaced in every sample, two seeds; checked by the CLI."""
    paths = []
    for sample in SAMPLES:
        for seed in (1, 2):
            damaged = byte_errors(sample.read_bytes(), rate, random.Random(f"{sample.stem}-{seed}-{rate}"))
            path = tmp_path / f"{sample.stem}-{seed}.pcap"
            path.write_bytes(damaged)
            paths.append(str(path))
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "check", "--no-expect", "--json", *paths],
        capture_output=True, text=True, timeout=300, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert "internal error" not in out and "CHECKER-001" not in out
