"""CI-sized fuzzing (hypothesis): mutated seeds and raw bytes through every harness of tests/helpers/fuzzing.py.

The long run is ``python3 tools/fuzz.py`` (see README); this file keeps a few thousand inputs so CI stays
within a minute or two. A failing input is printed by hypothesis; add it to tests/fuzz_corpus/.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.fuzzing import HARNESSES, mutate, seeds

SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "derandomize": True}
BUDGET = {"option": 1000, "walker": 800, "reader": 300, "pipeline": 150}


def _mutated(kind: str) -> st.SearchStrategy[bytes]:
    corpus = seeds(kind)
    assert corpus, f"no seeds for {kind}"
    return st.builds(
        lambda seed, rng_seed, rounds: _apply(seed, rng_seed, rounds),
        st.sampled_from(corpus), st.integers(0, 2**32 - 1), st.integers(1, 8),
    )  # fmt: skip


def _apply(seed: bytes, rng_seed: int, rounds: int) -> bytes:
    rng = random.Random(rng_seed)
    for _ in range(rounds):
        seed = mutate(seed, rng)
    return seed


@pytest.mark.parametrize("kind", sorted(HARNESSES))
def test_mutated_seeds_never_break_a_harness(kind: str) -> None:
    @settings(max_examples=BUDGET[kind], **SETTINGS)  # type: ignore[arg-type]
    @given(_mutated(kind))
    def run(data: bytes) -> None:
        HARNESSES[kind](data)

    run()


@pytest.mark.parametrize("kind", ["option", "walker", "reader"])
def test_raw_bytes_never_break_a_harness(kind: str) -> None:
    @settings(max_examples=BUDGET[kind] // 2, **SETTINGS)  # type: ignore[arg-type]
    @given(st.binary(max_size=300))
    def run(data: bytes) -> None:
        HARNESSES[kind](data)

    run()


def test_the_seed_corpus_itself_is_clean() -> None:
    """Every seed passes its harness unmutated (else the corpus hides a bug or a harness is wrong)."""
    for kind, harness in HARNESSES.items():
        for seed in seeds(kind):
            harness(seed)


def test_the_mutator_changes_its_input() -> None:
    rng = random.Random(7)
    seed = bytes(range(64))
    assert sum(mutate(seed, rng) != seed for _ in range(50)) >= 45
