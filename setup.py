"""Build the optional compiled hot path (analyzer/ingest/_fastdecode.pyx) with Cython.

Why optional: the pure-Python modules are the reference and work everywhere; a machine without a
C compiler (or without Cython) still installs the package, it just runs the pure path.
"""

from __future__ import annotations

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


def _extensions() -> list:  # type: ignore[type-arg]
    try:
        from Cython.Build import cythonize
    except ImportError:
        print("mptcp-analyze: Cython is missing; the compiled hot path is not built", file=sys.stderr)
        return []
    from setuptools import Extension

    ext = Extension("analyzer.ingest._fastdecode", ["analyzer/ingest/_fastdecode.pyx"], optional=True,
                    extra_compile_args=["-O2"])
    return cythonize([ext], language_level=3, quiet=True)


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
