"""Build the optional compiled hot path (analyzer/ingest/_fastdecode.pyx) with Cython.

Why optional: the pure-Python modules are the reference and work everywhere; a machine without a
C compiler (or without Cython) still installs the package, it just runs the pure path.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Compile extensions when possible; on any failure warn and install the pure path."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, broken toolchain, ...
            self._warn(exc)

    def build_extension(self, ext) -> None:  # type: ignore[no-untyped-def]
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    @staticmethod
    def _warn(exc: Exception) -> None:
        print(f"mptcp-analyze: the compiled hot path was not built ({exc}); using pure Python", file=sys.stderr)


# The per-packet stages, compiled as they are (plain Python in, a C extension of the same name out). Their
# .py files stay the reference: MPTCP_ANALYZE_PURE=1 loads them instead (analyzer/__init__.py).
COMPILED_MODULES = [
    "analyzer/pipeline.py",
    "analyzer/tracker.py",
    "analyzer/datalevels.py",
    "analyzer/seqnum.py",
    "analyzer/mptcp/datalevel.py",
    "analyzer/mptcp/mapindex.py",
    "analyzer/reassembly/mapper.py",
    "analyzer/reassembly/stream.py",
    "analyzer/stats.py",
    "analyzer/rwnd.py",
    *(f"analyzer/checker/{name}.py" for name in (
        "base", "observations", "dss", "dack", "csum", "fallback", "mpc", "join", "addr", "prio",
        "close", "rst", "fail", "fc", "opt",
    )),
]  # fmt: skip


def _extensions() -> list:  # type: ignore[type-arg]
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("mptcp-analyze: Cython is missing; the compiled hot path is not built", file=sys.stderr)
        return []
    from setuptools import Extension

    ext = Extension("analyzer.ingest._fastdecode", ["analyzer/ingest/_fastdecode.pyx"], optional=True,
                    extra_compile_args=["-O2"])
    stages = [
        Extension(path[:-3].replace("/", "."), [path], optional=True,
                  extra_compile_args=["-O2"])
        for path in COMPILED_MODULES
    ]  # fmt: skip
    # annotation_typing off: an annotation never turns a Python int or float into a C type, so the compiled
    # modules compute exactly what the pure ones compute.
    directives = {"annotation_typing": False, "infer_types": False, "binding": True}
    return cythonize([ext], language_level=3, quiet=True) + cythonize(
        stages, language_level=3, quiet=True, compiler_directives=directives
    )


class ParallelBuildExt(OptionalBuildExt):
    """Both cores: the stage modules are many and independent."""

    def finalize_options(self) -> None:
        super().finalize_options()
        if self.parallel is None:
            self.parallel = os.cpu_count() or 1


setup(ext_modules=_extensions(), cmdclass={"build_ext": ParallelBuildExt})
