"""Which implementation of the per-packet hot path runs: the compiled one or the pure-Python reference.

Why a switch: the Cython module (``_fastdecode``) is an optional build product, and the pure
modules stay the reference that every result is checked against. ``MPTCP_ANALYZE_PURE=1`` forces
the pure path (tests compare both); a missing or broken extension falls back to it silently, and
``--verbose`` says so once (:func:`status`).
"""

from __future__ import annotations

import os
from types import ModuleType

PURE_ENV = "MPTCP_ANALYZE_PURE"

_reason: str | None = None


def pure_requested() -> bool:
    """True when the environment asks for the pure-Python path (any value but empty or 0)."""
    return os.environ.get(PURE_ENV, "") not in ("", "0")


def load() -> ModuleType | None:
    """The compiled module, or None (pure path) with the reason kept for :func:`status`."""
    global _reason
    if pure_requested():
        _reason = f"{PURE_ENV} is set"
        return None
    import analyzer.ingest.decode  # noqa: F401 - the compiled module builds on it: load it first
    try:
        from analyzer.ingest import _fastdecode  # type: ignore[attr-defined]
    except ImportError as exc:
        _reason = f"the compiled hot path is not built ({exc})"
        return None
    _reason = None
    module: ModuleType = _fastdecode
    return module


def status() -> str:
    """One line naming the implementation in use and, for the pure path, why."""
    from analyzer.ingest import decode

    if decode.COMPILED:
        return "hot path: compiled (analyzer.ingest._fastdecode)"
    return f"hot path: pure Python ({_reason or 'unknown reason'})"
