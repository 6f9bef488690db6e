#!/usr/bin/env python3
"""Long fuzz run over the analyzer's harnesses (tests/helpers/fuzzing.py), seeded from tests/fuzz_corpus/.

    python3 tools/fuzz.py                      # every harness, 60 s each, seed 1
    python3 tools/fuzz.py option walker -s 600 --seed 7
    python3 tools/fuzz.py pipeline --atheris   # coverage-guided, when atheris is installed
    MPTCP_ANALYZE_PURE=1 python3 tools/fuzz.py walker --atheris -- -runs=5000000 -max_len=4096

Without atheris the loop is a plain seeded mutator (bit flips, interesting bytes, cuts, splices); with
``--atheris`` (and atheris importable) libFuzzer drives one harness instead. A crash prints the input's hex
and saves it under tests/fuzz_corpus/crashes/; exit status 1. Counts per harness are printed at the end.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.fuzzing import CORPUS, HARNESSES, mutate, seeds  # noqa: E402


def run_mutator(kind: str, seconds: float, rng: random.Random) -> tuple[int, list[bytes]]:
    """Mutate seeds (and inputs that passed) for ``seconds``; returns (inputs run, crashing inputs)."""
    harness = HARNESSES[kind]
    pool = seeds(kind)
    crashes: list[bytes] = []
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(64):
            data = mutate(rng.choice(pool), rng)
            count += 1
            try:
                harness(data)
            except Exception:  # a crash is what we are looking for
                crashes.append(data)
                print(f"[{kind}] crash on {data[:200].hex()}…\n{traceback.format_exc()}", file=sys.stderr)
                continue
            if len(pool) < 2000 and rng.random() < 0.01:
                pool.append(data)  # keep some survivors: mutations of mutations reach deeper
    return count, crashes


def run_atheris(kind: str, libfuzzer_args: list[str]) -> None:
    """Coverage-guided run of one harness; new inputs go to a scratch corpus, never into tests/."""
    import tempfile

    import atheris  # type: ignore[import-not-found]

    harness = HARNESSES[kind]
    atheris.instrument_all()  # the analyzer is imported already: instrument what is loaded
    work = Path(tempfile.mkdtemp(prefix=f"mptcp-fuzz-{kind}-"))
    for number, data in enumerate(seeds(kind)):
        (work / f"seed-{number}").write_bytes(data)
    print(f"[{kind}] corpus {work}", file=sys.stderr)
    atheris.Setup([sys.argv[0], *libfuzzer_args, str(work)], lambda data: harness(bytes(data)))
    atheris.Fuzz()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("harness", nargs="*", choices=[*sorted(HARNESSES), []], help="default: all")
    parser.add_argument("-s", "--seconds", type=float, default=60.0, help="per harness (mutator mode)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--atheris", action="store_true", help="use atheris (libFuzzer) for the one harness given")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    libfuzzer_args = argv[cut + 1 :]  # after --: libFuzzer flags, e.g. -runs=1000000
    kinds = args.harness or sorted(HARNESSES)
    if args.atheris:
        try:
            import atheris  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            print("atheris is not installed; running the built-in mutator instead", file=sys.stderr)
        else:
            run_atheris(kinds[0], libfuzzer_args)
            return 0
    rng = random.Random(args.seed)
    failed = False
    for kind in kinds:
        started = time.monotonic()
        count, crashes = run_mutator(kind, args.seconds, rng)
        rate = count / max(time.monotonic() - started, 1e-9)
        print(f"{kind:9} {count:>10,} inputs  {rate:>9,.0f}/s  {len(crashes)} crashes")
        if crashes:
            failed = True
            out = CORPUS / "crashes"
            out.mkdir(exist_ok=True)
            for number, data in enumerate(crashes[:20]):
                (out / f"{kind}-{args.seed}-{number}.bin").write_bytes(data)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
