"""The kernel lab (samples/mptcp_lab.py) as a module for tests: samples/ is not a package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def load_lab() -> ModuleType:
    """Import samples/mptcp_lab.py once and share it between the test modules."""
    if "mptcp_lab" in sys.modules:
        return sys.modules["mptcp_lab"]
    spec = importlib.util.spec_from_file_location("mptcp_lab", SAMPLES / "mptcp_lab.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mptcp_lab"] = mod
    spec.loader.exec_module(mod)
    return mod
