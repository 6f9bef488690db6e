"""Command line: thin typer commands over :mod:`analyzer.pipeline` and the report modules."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from analyzer.ingest.capture import CaptureError
from analyzer.model import Analysis
from analyzer.pipeline import AnalysisOptions, SegmentObserver, analyze
from analyzer.report import json_out, text

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Analyse Multipath TCP captures: subflows, connections, options, RFC 8684 findings.",
)


@app.callback()
def _root() -> None:
    """Analyse Multipath TCP captures. `mptcp-analyze TRACE` is short for `mptcp-analyze report TRACE`."""


def _fail(message: str) -> typer.Exit:
    """One clear line on stderr, exit code 2 (usage or input error)."""
    print(f"mptcp-analyze: error: {' '.join(message.split())}", file=sys.stderr)
    return typer.Exit(EXIT_USAGE)


def run_analysis(
    path: str, show_progress: bool = True, reassemble: bool = True, observers: list[SegmentObserver] | None = None
) -> Analysis:
    """Analyse with a progress bar on stderr when stderr is a terminal."""
    err = Console(stderr=True)
    options = AnalysisOptions(reassemble=reassemble, observers=list(observers or []))
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
) -> None:
    """Print a report of every MPTCP connection in TRACE."""
    extra = []
    if csv_path is not None or parquet_path is not None:
        from analyzer.export import PacketExporter

        if csv_path is not None:
            extra.append(PacketExporter(csv_path, "csv"))
        if parquet_path is not None:
            if importlib.util.find_spec("pyarrow") is None:
                raise _fail("--parquet needs pyarrow: pip install 'mptcp-analyze[export]'")
            extra.append(PacketExporter(parquet_path, "parquet"))
    try:
        analysis = run_analysis(trace, reassemble=reassembly, observers=extra)
    except CaptureError as exc:
        raise _fail(str(exc)) from None
    out = output.open("w") if output else sys.stdout
    try:
        if json_output:
            out.write(json_out.dumps(analysis) + "\n")
        else:
            text.render(analysis, Console(file=out))
    finally:
        if output:
            out.close()


@app.command("follow")
def follow_command(
    trace: Annotated[str, typer.Argument(help="pcap/pcapng file (gzip ok)")],
    connection: Annotated[int, typer.Option("--connection", "-c", help="connection number from the report")],
    direction: Annotated[str, typer.Option("--direction", "-d", help="c2s, s2c or both")] = "both",
    fmt: Annotated[str, typer.Option("--format", "-f", help="raw, ascii or hexdump")] = "raw",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="write to this file instead of stdout")] = None,
) -> None:
    """Write the rebuilt data stream of one MPTCP connection (all subflows, in data-sequence order)."""
    from analyzer.follow import DIRECTIONS, FORMATS, ConnectionNotFound, follow

    if direction not in DIRECTIONS:
        raise _fail(f"--direction must be one of {', '.join(DIRECTIONS)}")
    if fmt not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}")
    if trace == "-":
        raise _fail("follow reads the trace twice, so it needs a file, not stdin")
    out = output.open("wb") if output else sys.stdout.buffer
    try:
        result = follow(trace, connection, out, direction, fmt)
    except CaptureError as exc:
        raise _fail(str(exc)) from None
    except ConnectionNotFound as exc:
        raise _fail(str(exc)) from None
    finally:
        if output:
            out.close()
        else:
            out.flush()
    err = Console(stderr=True, highlight=False)
    c2s, s2c = result.bytes_written
    note = f"connection {connection}: {c2s:,} bytes client → server, {s2c:,} bytes server → client"
    if result.holes:
        note += f"; {len(result.holes)} hole(s) where the capture lacks data"
    if output or sys.stderr.isatty():
        err.print(note, markup=False)


COMMANDS = {"report", "follow"}


def main(argv: list[str] | None = None) -> None:
    """Entry point; ``mptcp-analyze trace.pcap`` is short for ``mptcp-analyze report trace.pcap``."""
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-") or a == "-"), None)
    if first is not None and first not in COMMANDS and not any(a in ("-h", "--help") for a in args[:1]):
        args.insert(0, "report")
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
