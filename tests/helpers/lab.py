"""The kernel lab (analyzer.lab, `mptcp-analyze lab`) for the tests that build live traces."""

from __future__ import annotations

from types import ModuleType

import analyzer.lab


def load_lab() -> ModuleType:
    """The lab package (kept as a function: the live-trace tests turn an import failure into a skip reason)."""
    return analyzer.lab
