"""mptcp-analyze: RFC 8684 analysis of Multipath TCP captures.

The per-packet stages may be installed compiled (setup.py's COMPILED_MODULES: the same .py files built by
Cython into extension modules of the same name). The .py files stay the reference: with
``MPTCP_ANALYZE_PURE=1`` the finder below loads them instead of their compiled twins, for the whole process;
``MPTCP_ANALYZE_PURE=stages`` does so for the stages only and keeps the compiled decoder (to measure what
compiling the stages buys).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PURE_ENV = "MPTCP_ANALYZE_PURE"


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Load ``analyzer.*`` from its .py file where a compiled twin stands beside it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("analyzer."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return None
        compiled = Path(spec.origin)
        source = compiled.with_name(compiled.name.split(".", 1)[0] + ".py")
        if not source.is_file():
            return None  # an extension without a pure twin (the ingest accelerator chooses by itself)
        return importlib.util.spec_from_file_location(fullname, source)


def compiled_modules() -> list[str]:
    """The ``analyzer`` modules loaded so far that run compiled (for ``--verbose`` and the tests)."""
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if (name == "analyzer" or name.startswith("analyzer."))
        and isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)
    )


if os.environ.get(PURE_ENV, "") not in ("", "0"):  # "1" or "stages"
    sys.meta_path.insert(0, _SourceFirst())
