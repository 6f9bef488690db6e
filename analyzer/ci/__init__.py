"""CI trace validation: ``check`` (verdicts, JUnit, SARIF, expectations), ``rules`` and ``xcheck``.

Plain logic over :func:`analyzer.pipeline.analyze`; the typer commands in :mod:`analyzer.cli` only
parse arguments and print. Nothing here writes to the terminal except :mod:`analyzer.ci.render`.
"""
