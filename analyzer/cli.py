"""Command line: thin typer commands over :mod:`analyzer.pipeline` and the report modules."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from analyzer.findings import ASSUMPTIONS
from analyzer.ingest.capture import CaptureError
from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import Analysis
from analyzer.pipeline import AnalysisOptions, SegmentObserver, analyze
from analyzer.report import json_out, text

if TYPE_CHECKING:
    from analyzer.ci.check import Executor
    from analyzer.plot import Figure

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Analyse Multipath TCP captures: subflows, connections, options, RFC 8684 findings.",
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("mptcp-analyze")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown"
        print(f"mptcp-analyze {number}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    show_version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=_print_version, help="print the version and exit")
    ] = False,
) -> None:
    """Analyse Multipath TCP captures. `mptcp-analyze TRACE` is short for `mptcp-analyze report TRACE`."""


def _fail(message: str) -> typer.Exit:
    """One clear line on stderr, exit code 2 (usage or input error)."""
    print(f"mptcp-analyze: error: {' '.join(message.split())}", file=sys.stderr)
    return typer.Exit(EXIT_USAGE)


def run_analysis(
    path: str,
    show_progress: bool = True,
    reassemble: bool = True,
    observers: list[SegmentObserver] | None = None,
    check: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    assume: frozenset[str] = frozenset(),
) -> Analysis:
    """Analyse with a progress bar on stderr when stderr is a terminal."""
    err = Console(stderr=True)
    options = AnalysisOptions(
        reassemble=reassemble, observers=list(observers or []), check=check, stats=check, limits=limits,
        assume=assume,
    )
    if not (show_progress and err.is_terminal and path != "-"):
        return analyze(path, options)
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=err, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("reading", total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        options.progress = update
        return analyze(path, options)


@app.command("report")
def report_command(
    trace: Annotated[str, typer.Argument(help="pcap/pcapng file (gzip ok), or - for stdin")],
    json_output: Annotated[bool, typer.Option("--json", help="print the mptcp-analyze/1 JSON document")] = False,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write to this file instead of stdout")] = None,
    reassembly: Annotated[
        bool, typer.Option("--reassembly/--no-reassembly", help="rebuild the data streams (default on)")
    ] = True,
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="also write one row per MPTCP packet (DSN, SSN, data ACK…)")
    ] = None,
    parquet_path: Annotated[
        Path | None, typer.Option("--parquet", help="the same per-packet rows as Parquet (needs pyarrow)")
    ] = None,
    tui: Annotated[bool, typer.Option("--tui", help="open the interactive inspector instead")] = False,
    checks: Annotated[
        bool, typer.Option("--checks/--no-checks", help="run the RFC 8684 rules and statistics (default on)")
    ] = True,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="every finding in full, repeats not collapsed")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="overwrite the -o file if it exists")] = False,
    limit: Annotated[list[str] | None, typer.Option("--limit", help=LIMIT_HELP, metavar="NAME=N")] = None,
    assume: Annotated[list[str] | None, ASSUME_OPTION] = None,
    absolute: Annotated[
        bool, typer.Option("--absolute", help="raw DSNs and Data ACKs, not relative to the IDSN")
    ] = False,
) -> None:
    """Print a report of every MPTCP connection in TRACE."""
    limits = _parse_limits(limit)
    assumed = _parse_assumptions(assume)
    if tui:
        tui_command(trace, absolute=absolute)
        return
    if verbose:
        _say_if_pure()
    extra: list[SegmentObserver] = []
    if csv_path is not None or parquet_path is not None:
        from analyzer.export import PacketExporter

        if csv_path is not None:
            extra.append(PacketExporter(csv_path, "csv"))
        if parquet_path is not None:
            if importlib.util.find_spec("pyarrow") is None:
                raise _fail("--parquet needs pyarrow: pip install 'mptcp-analyze[export]'")
            extra.append(PacketExporter(parquet_path, "parquet"))
    try:
        analysis = run_analysis(
            trace, reassemble=reassembly, observers=extra, check=checks, limits=limits, assume=assumed
        )
    except CaptureError as exc:
        raise _fail(str(exc)) from None
    if output is not None:
        _refuse_overwrite(output, force)
    out = output.open("w") if output else sys.stdout
    try:
        if json_output:
            json_out.dump(analysis, out)
            out.write("\n")
        else:
            text.render(analysis, Console(file=out), verbose=verbose, absolute=absolute)
    finally:
        if output:
            out.close()


def _say_if_pure() -> None:
    """With --verbose, one stderr line when the compiled hot path is not in use (results are the same)."""
    from analyzer.ingest import decode, speedups

    if not decode.COMPILED:
        print(f"mptcp-analyze: {speedups.status()}", file=sys.stderr)


ASSUME_OPTION = typer.Option(
    "--assume", metavar="NAME",
    help=f"vouch for an assumption (repeatable): {', '.join(ASSUMPTIONS)}; findings resting only on vouched "
         "assumptions keep their rule's severity (an error may then fail the check)",
)  # fmt: skip


def _parse_assumptions(names: list[str] | None) -> frozenset[str]:
    unknown = sorted(set(names or []) - set(ASSUMPTIONS))
    if unknown:
        raise _fail(f"--assume: unknown assumption {', '.join(unknown)} (known: {', '.join(ASSUMPTIONS)})")
    return frozenset(names or [])


LIMIT_HELP = f"change a resource bound (repeatable): {', '.join(Limits.names())}; defaults in SECURITY.md"


def _parse_limits(assignments: list[str] | None) -> Limits:
    """``--limit NAME=N`` options → Limits; a bad one is a usage error (exit 2)."""
    if not assignments:
        return DEFAULT_LIMITS
    try:
        return Limits.parse(assignments)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _refuse_overwrite(path: Path, force: bool) -> None:
    """Output files are never overwritten by accident (a trace's name never picks the path: the user does)."""
    if path.exists() and not force:
        raise _fail(f"{path} exists; --force overwrites it")


def _sibling(path: Path, tag: str) -> Path:
    """``upload.bin`` → ``upload.c2s.bin``: one file per direction for raw output."""
    return path.with_name(f"{path.stem}.{tag}{path.suffix}")


@app.command("follow")
def follow_command(
    trace: Annotated[str, typer.Argument(help="pcap/pcapng file (gzip ok)")],
    connection: Annotated[int, typer.Option("--connection", "-c", help="connection number from the report")],
    direction: Annotated[str, typer.Option("--direction", "-d", help="c2s, s2c or both")] = "both",
    fmt: Annotated[str, typer.Option("--format", "-f", help="raw, ascii or hexdump")] = "raw",
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="write here (raw with -d both: NAME.c2s.EXT and NAME.s2c.EXT)"),
    ] = None,
    fill_holes: Annotated[
        bool, typer.Option("--fill-holes", help="raw: write zeros where the capture lacks data (holes on stderr)")
    ] = False,
    allow_holes: Annotated[
        bool, typer.Option("--allow-holes", help="raw: join the bytes on both sides of a hole (holes on stderr)")
    ] = False,
    pcap: Annotated[
        Path | None, typer.Option("--pcap", help="write the connection's packets (all subflows) as a new pcap")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite existing output files")] = False,
) -> None:
    """Write the rebuilt data stream of one MPTCP connection (all subflows, in data-sequence order).

    Raw output stops at the first hole of a direction unless --fill-holes or --allow-holes says otherwise.
    """
    from analyzer.follow import DIRECTIONS, FORMATS, ConnectionNotFound, follow, write_connection_pcap

    if direction not in DIRECTIONS:
        raise _fail(f"--direction must be one of {', '.join(DIRECTIONS)}")
    if fmt not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}")
    if fill_holes and allow_holes:
        raise _fail("--fill-holes and --allow-holes exclude each other")
    if trace == "-":
        raise _fail("follow reads the trace twice, so it needs a file, not stdin")
    err = Console(stderr=True, highlight=False)
    if pcap is not None:
        _refuse_overwrite(pcap, force)
        try:
            with pcap.open("wb") as fh:
                count = write_connection_pcap(trace, connection, fh)
        except (CaptureError, ConnectionNotFound, ValueError) as exc:
            pcap.unlink(missing_ok=True)
            raise _fail(str(exc)) from None
        err.print(f"connection {connection}: {count:,} packets written to {pcap}", markup=False)
        return
    split = fmt == "raw" and direction == "both"
    if split and output is None:
        raise _fail(
            "raw output of both directions would be one undelimited blob: give -o FILE (writes FILE.c2s/.s2c "
            "siblings), -d c2s or -d s2c, or -f hexdump"
        )
    paths: list[Path] = []
    if output is not None:
        paths = [_sibling(output, "c2s"), _sibling(output, "s2c")] if split else [output]
    for path in paths:
        _refuse_overwrite(path, force)
    handles = [path.open("wb") for path in paths]
    out = handles[0] if handles else sys.stdout.buffer
    holes = "fill" if fill_holes else "allow" if allow_holes else "stop"
    try:
        result = follow(trace, connection, out, direction, fmt, holes=holes, out_s2c=handles[1] if split else None)
    except (CaptureError, ConnectionNotFound) as exc:
        raise _fail(str(exc)) from None
    finally:
        for handle in handles:
            handle.close()
        if not handles:
            out.flush()
    c2s, s2c = result.bytes_written
    note = f"connection {connection}: {c2s:,} bytes client → server, {s2c:,} bytes server → client"
    if split:
        note += f" (in {paths[0]} and {paths[1]})"
    if result.holes:
        note += f"; {len(result.holes)} hole(s) where the capture lacks data"
    if output or sys.stderr.isatty() or result.holes:
        err.print(note, markup=False)
    if fmt == "raw" and holes != "stop":
        for side, offset, length in result.holes:
            err.print(f"hole {'c2s' if side == 0 else 's2c'} offset {offset} length {length}", markup=False)
    for side, offset, length in result.stopped:
        err.print(
            f"mptcp-analyze: {'c2s' if side == 0 else 's2c'} stopped at stream offset {offset}: {length:,} bytes "
            "missing from the capture (--fill-holes writes zeros, --allow-holes joins the two sides)",
            markup=False,
        )
    if result.stopped:
        raise typer.Exit(EXIT_FINDINGS)


@app.command("rules")
def rules_command(
    rule_id: Annotated[str | None, typer.Argument(help="explain this rule (e.g. DSS-004)", show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List every RFC 8684 rule the checker applies, or explain one."""
    import json

    from analyzer.ci import render, rulebook

    console = Console(highlight=False)
    if rule_id is None:
        if json_output:
            families = [
                {"family": fam, "name": rulebook.FAMILY_NAMES.get(fam, fam),
                 "rules": [rulebook.rule_to_json(rule) for rule in rules]}
                for fam, rules in rulebook.rules_by_family()
            ]  # fmt: skip
            print(json.dumps({"families": families}, indent=2))
        else:
            render.rules_table(console)
        return
    rule = rulebook.find_rule(rule_id)
    if rule is None:
        close = rulebook.suggest(rule_id)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `mptcp-analyze rules` lists them"
        raise _fail(f"unknown rule {rule_id!r}{hint}")
    if json_output:
        print(json.dumps(rulebook.rule_to_json(rule), indent=2))
    else:
        render.explain_rule(console, rule)


DASK_OPTION = typer.Option(
    "--dask", metavar="SCHEDULER",
    help="run on a Dask cluster: a scheduler address (tcp://host:8786), or 'local' for a LocalCluster of --jobs "
    "processes (default: one per core)",
)  # fmt: skip


@contextlib.contextmanager
def _executor(dask: str | None, jobs: int, description: str) -> Iterator[Executor]:
    """The executor for ``--dask`` / ``--jobs``: a Dask cluster (one clear line if unavailable) or local processes."""
    from analyzer.ci import check

    if dask is None:
        yield check.process_pool(jobs)
        return
    from analyzer.ci import cluster

    try:
        with (
            cluster.connect(dask, workers=jobs if jobs > 1 else None) as client,
            cluster.progress_bar(description) as progress,
        ):
            yield cluster.DaskExecutor(client, progress)
    except cluster.ClusterError as exc:
        raise _fail(str(exc)) from None


@app.command("check")
def check_command(
    traces: Annotated[
        list[str], typer.Argument(help="capture files, or directories (searched for *.pcap, *.pcapng, *.cap, *.gz)")
    ],
    fail_on: Annotated[
        str, typer.Option("--fail-on", help="lowest severity that fails the check: error, warning or info")
    ] = "error",
    expect: Annotated[
        Path | None,
        typer.Option(
            "--expect", help="expectations TOML (default: \\[tool.mptcp-analyze] in the nearest pyproject.toml)"
        ),
    ] = None,
    no_expect: Annotated[
        bool, typer.Option("--no-expect", help="ignore \\[tool.mptcp-analyze] in pyproject.toml")
    ] = False,
    junit: Annotated[Path | None, typer.Option("--junit", help="write a JUnit XML report here")] = None,
    sarif: Annotated[Path | None, typer.Option("--sarif", help="write a SARIF 2.1.0 report here")] = None,
    sarif_root: Annotated[
        Path | None, typer.Option("--sarif-root", help="SARIF paths relative to this directory (default: cwd)")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="print JSON (each trace's mptcp-analyze/1 document plus a verdict)")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="check traces in N parallel processes")] = 1,
    dask: Annotated[str | None, DASK_OPTION] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="list every finding, not only failing ones")] = False,
    limit: Annotated[list[str] | None, typer.Option("--limit", help=LIMIT_HELP, metavar="NAME=N")] = None,
    assume: Annotated[list[str] | None, ASSUME_OPTION] = None,
) -> None:
    """Check traces for RFC 8684 violations (CI): exit 0 clean, 1 findings or unmet expectations, 2 input errors.

    Expectations (--expect FILE, or \\[tool.mptcp-analyze] in pyproject.toml), globally or per trace
    under \\[traces."name-or-glob"]: connections, subflows, min_subflows, max_subflows, version,
    checksum, fallback, min_bytes = {c2s, s2c}, ignore = \\["RULE", "FAMILY-*"], downgrade = {"RULE" = "info"},
    require = \\["join", "add_addr", "add_addr_echo", "remove_addr", "mp_prio", "mp_fail", "fastclose",
    "mp_tcprst", "data_fin", "reinjection", "backup"].
    """
    import json

    from analyzer.ci import check, render
    from analyzer.ci import expect as expect_mod
    from analyzer.ci import junit as junit_mod
    from analyzer.ci import sarif as sarif_mod
    from analyzer.findings import Severity

    try:
        threshold = Severity.parse(fail_on)
    except KeyError:
        raise _fail(f"--fail-on must be error, warning or info, not {fail_on!r}") from None
    try:
        if expect is not None:
            expectations: expect_mod.ExpectationSet | None = expect_mod.load(expect)
        elif no_expect:
            expectations = None
        else:
            expectations = expect_mod.discover()
    except expect_mod.ExpectationError as exc:
        raise _fail(str(exc)) from None
    limits = _parse_limits(limit)
    assumed = _parse_assumptions(assume)
    entries = check.expand_inputs(traces)
    with _executor(dask, jobs, "checking") as executor:
        results = check.check_inputs(
            entries, expectations, threshold, want_document=json_output, executor=executor, limits=limits,
            assume=assumed,
        )
    for result in results:  # each input error once, on stderr; the summary on stdout only marks the trace
        if result.status in (check.Status.ERROR, check.Status.INTERNAL):
            print(f"mptcp-analyze: error: {result.error}", file=sys.stderr)
    code = check.exit_code(results)
    if junit is not None:
        junit_mod.write(results, junit)
    if sarif is not None:
        sarif_mod.write(results, sarif, sarif_root)
    if json_output:
        print(json.dumps(check.report_json(results, threshold, code), indent=2))
    else:
        render.check_summary(Console(highlight=False), results, threshold, verbose)
    raise typer.Exit(code)


@app.command("summarise")
def summarise_command(
    traces: Annotated[
        list[str], typer.Argument(help="capture files, or directories (searched for *.pcap, *.pcapng, *.cap, *.gz)")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="dataset directory to write (e.g. corpus.parquet)")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="summarise traces in N parallel processes")] = 1,
    dask: Annotated[str | None, DASK_OPTION] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing corpus at --output")] = False,
) -> None:
    """Summarise a corpus of traces as partitioned Parquet: tables traces, connections and findings.

    pandas, polars and DuckDB read each table's directory directly, e.g. in DuckDB:
    SELECT rule, count(*) FROM 'OUT/findings/*.parquet' GROUP BY rule ORDER BY 2 DESC.
    Exit 0, or 2 when a trace could not be read (it is still a row of the traces table).
    """
    from analyzer.ci import check, corpus

    entries = check.expand_inputs(traces)
    try:
        with _executor(dask, jobs, "summarising") as executor:
            counts = corpus.summarise(entries, output, executor, force=force)
    except corpus.CorpusError as exc:
        raise _fail(str(exc)) from None
    for error in counts.errors:
        print(f"mptcp-analyze: error: {error}", file=sys.stderr)
    print(f"{output}: {counts.traces} traces ({len(counts.errors)} unreadable), {counts.connections} connections, "
          f"{counts.findings} findings in {counts.parts} part(s) per table")  # fmt: skip
    raise typer.Exit(EXIT_USAGE if counts.errors else EXIT_OK)


@app.command("xcheck")
def xcheck_command(
    trace: Annotated[str, typer.Argument(help="pcap/pcapng file (gzip ok)")],
    two_pass: Annotated[
        bool, typer.Option("--two-pass", help="let tshark dissect in two passes (-2), as Wireshark's GUI does")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="print the comparison as JSON")] = False,
    show_known: Annotated[
        bool, typer.Option("--all", "-a", help="also list every disagreement explained by a known Wireshark bug")
    ] = False,
) -> None:
    """Cross-check our decode against Wireshark's (pyshark/tshark), packet by packet.

    Exit 0 when every disagreement is a known Wireshark bug, 1 otherwise, 2 when tshark, pyshark or
    the trace is unavailable.
    """
    import json

    from analyzer.ci import render, xcheck

    if trace == "-":
        raise _fail("xcheck hands the file to tshark, so it needs a file, not stdin")
    try:
        report = xcheck.xcheck(trace, two_pass=two_pass)
    except CaptureError as exc:
        raise _fail(str(exc)) from None
    except xcheck.XcheckError as exc:
        raise _fail(str(exc)) from None
    if json_output:
        print(json.dumps(report.to_json(), indent=2))
    else:
        render.xcheck_report(Console(highlight=False), report, show_known)
    raise typer.Exit(report.exit_code)


@app.command("tui")
def tui_command(
    trace: Annotated[str, typer.Argument(help="pcap/pcapng file (gzip ok)")],
    other: Annotated[
        str | None, typer.Argument(help="a capture of the same traffic elsewhere: open the split view of both")
    ] = None,
    absolute: Annotated[bool, typer.Option("--absolute", help="raw DSNs in the Info column")] = False,
) -> None:
    """Open the interactive inspector (a Wireshark-like terminal UI) on TRACE, or the split view of TRACE and OTHER."""
    if other is not None:
        _split_view(trace, other)
        return
    try:
        from tui.app import run
    except ImportError:
        raise _fail("the inspector could not be imported: reinstall mptcp-analyze (textual is a dependency)") from None
    run(trace, absolute)  # an unreadable file: one line on stderr, exit 2


def _split_view(trace_a: str, trace_b: str) -> None:
    """Both captures' packets of a matched connection side by side (tui/screens/split.py)."""
    for path in (trace_a, trace_b):
        if path == "-":
            raise _fail("the split view reads each capture twice: give files, not stdin")
    try:
        from tui.screens.split import run
    except ImportError:
        raise _fail("the split view could not be imported: reinstall mptcp-analyze (textual is a dependency)") from None
    run(trace_a, trace_b)  # an unreadable file: one line on stderr, exit 2


@app.command("compare")
def compare_command(
    trace_a: Annotated[str, typer.Argument(help="capture at one vantage point (e.g. the client)")],
    trace_b: Annotated[str, typer.Argument(help="capture of the same traffic elsewhere (e.g. the server)")],
    json_output: Annotated[bool, typer.Option("--json", help="print the mptcp-analyze-compare/1 JSON")] = False,
    tui: Annotated[bool, typer.Option("--tui", help="open the split view (same as tui A B)")] = False,
) -> None:
    """Match connections, subflows and packets of two captures; report loss, delay and middlebox effects."""
    if tui:
        if json_output:
            raise _fail("--tui and --json exclude each other")
        _split_view(trace_a, trace_b)
        return
    from analyzer.compare import compare
    from analyzer.compare import json_out as compare_json
    from analyzer.compare import text as compare_text

    try:
        result = compare(trace_a, trace_b)
    except CaptureError as exc:
        raise _fail(str(exc)) from None
    if json_output:
        print(compare_json.dumps(result))
    else:
        compare_text.render(Console(highlight=False), result)



@app.command("plot")
def plot_command(
    trace: Annotated[str, typer.Argument(help="pcap/pcapng file (gzip ok), or - for stdin")],
    output: Annotated[Path, typer.Option("-o", "--output", help="plot file: .png, .svg or .html (interactive)")],
    kind: Annotated[str, typer.Option("--kind", help="dsn | throughput | data-ack | rtt | owd")] = "dsn",
    connection: Annotated[int, typer.Option("--connection", "-c", help="connection number (see the report)")] = 1,
    direction: Annotated[str, typer.Option("--direction", "-d", help="c2s or s2c data")] = "c2s",
    peer: Annotated[
        str | None, typer.Option("--peer", help="owd: the capture of the same traffic at the other vantage point")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="overwrite the -o file if it exists")] = False,
) -> None:
    """Plot one connection: sequence graph per subflow with Data ACK and window (dsn), throughput, Data ACK, RTT,
    and one-way delay per subflow and direction (owd, with --peer: the other vantage point's capture)."""
    from analyzer import plot

    kinds = (*plot.KINDS, "owd")
    if kind not in kinds or direction not in ("c2s", "s2c"):
        raise _fail(f"--kind must be one of {', '.join(kinds)} and --direction c2s or s2c")
    if kind == "owd" and peer is None:
        raise _fail("--kind owd needs two captures of the same traffic: give the other one with --peer B.pcap")
    if kind != "owd" and peer is not None:
        raise _fail("--peer is for --kind owd only")
    _refuse_overwrite(output, force)
    try:
        if peer is not None:
            fig = _owd_figure(trace, peer, connection)
        else:
            collector = plot.PlotCollector()
            analysis = run_analysis(trace, observers=[collector])
            fig = plot.figure(analysis, kind, connection, ("c2s", "s2c").index(direction), collector)
        plot.render(fig, output)
    except (CaptureError, ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from None


def _owd_figure(trace: str, peer: str, connection: int) -> Figure:
    """compare's packet pairs and clock offset for TRACE (A) and PEER (B), as one-way delay series."""
    from analyzer.compare.engine import compare_analyses
    from analyzer.compare.owd import owd_figure

    if "-" in (trace, peer):
        raise CaptureError("--kind owd reads each capture twice: give files, not stdin")
    options = AnalysisOptions(check=False, stats=False)
    a, b = analyze(trace, options), analyze(peer, options)
    return owd_figure(compare_analyses(a, b), connection, a.trace.first_time)


# Commands whose modules (the simulator, the kernel lab, the TUN endpoint) are heavy to import: registered
# only when the command line names one of them or asks for the command list, so that `report` and `check`
# start without loading the endpoint.
EXTENSIONS = {"simulate": "analyzer.endpoint.cli", "lab": "analyzer.lab.cli", "endpoint": "analyzer.interop_cli"}
COMMANDS = {"report", "follow", "rules", "check", "summarise", "xcheck", "tui", "compare", "plot", *EXTENSIONS}
_registered: set[str] = set()


def register_extensions(names: Iterable[str] = EXTENSIONS) -> typer.Typer:
    """Add the named extension commands to ``app`` (all by default; each once) and return it."""
    for name in names:
        if name in _registered:
            continue
        _registered.add(name)
        importlib.import_module(EXTENSIONS[name]).register(app)
        if name in ("lab", "endpoint"):  # the TUN endpoint's kernel-interop runs are also lab scenarios
            importlib.import_module(EXTENSIONS["endpoint"]).register_lab_scenarios()
    return app


def main(argv: list[str] | None = None) -> None:
    """Entry point; ``mptcp-analyze trace.pcap`` is short for ``mptcp-analyze report trace.pcap``."""
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-") or a == "-"), None)
    if first is not None and first not in COMMANDS and not any(a in ("-h", "--help", "--version") for a in args[:1]):
        args.insert(0, "report")
        first = "report"
    register_extensions([first] if first in EXTENSIONS else [] if first in COMMANDS else EXTENSIONS)
    try:
        app(args=args, prog_name="mptcp-analyze", standalone_mode=True)
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except BrokenPipeError:  # e.g. `mptcp-analyze trace.pcap | head`
        sys.stderr.close()
        raise SystemExit(0) from None
    except Exception as exc:  # a bug of ours: one line, the traceback only on request
        if os.environ.get("MPTCP_ANALYZE_DEBUG"):
            raise
        print(
            f"mptcp-analyze: internal error: {type(exc).__name__}: {exc} "
            "(set MPTCP_ANALYZE_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        raise SystemExit(3) from None


if __name__ == "__main__":
    main()
