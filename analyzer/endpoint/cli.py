"""``mptcp-analyze simulate``: a thin typer command over :mod:`analyzer.endpoint.sim`.

Hooked into the main CLI with :func:`register`; all logic lives in the simulator, scenarios and faults.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from analyzer.endpoint.config import SchedulerName
from analyzer.endpoint.faults import FAULTS, fault_config
from analyzer.endpoint.network import LinkSpec
from analyzer.endpoint.pcapout import CaptureFormat
from analyzer.endpoint.scenarios import SCENARIOS, scenario_config
from analyzer.endpoint.sim import CapturePoint, SimConfig, SimResult, run

__all__ = ["parse_duration", "parse_rate", "parse_size", "register", "simulate"]

EXIT_USAGE = 2
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)(i?b?)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s)?\s*$", re.IGNORECASE)
_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes from ``1M`` (2^20), ``500K`` (500 * 2^10), ``1.5MB``, ``100000``."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a size: {text!r} (use e.g. 100000, 500K, 1M)")
    value, unit = float(match.group(1)), match.group(2).lower()
    return int(value * _BINARY[unit])


def parse_rate(text: str) -> float:
    """Bits per second from ``20M``, ``100k``, ``1G``, ``5000000``."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"not a rate: {text!r} (use e.g. 20M, 500k)")
    return float(match.group(1)) * _MULTIPLIERS[match.group(2).lower()]


def parse_duration(text: str) -> float:
    """Seconds from ``10ms``, ``0.5s``, ``250us`` or a bare number of milliseconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (use e.g. 10ms, 0.2s)")
    value = float(match.group(1))
    unit = (match.group(2) or "ms").lower()
    return value * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def _per_path(text: str | None, count: int, parse: Callable[[str], float]) -> list[float] | None:
    """One value per path from ``a,b,...``; the last value repeats for the remaining paths."""
    if text is None:
        return None
    values = [parse(part) for part in text.split(",") if part.strip()]
    if not values:
        raise ValueError(f"empty list: {text!r}")
    return [values[min(i, len(values) - 1)] for i in range(count)]


def _outages(specs: list[str]) -> dict[int, list[tuple[float, float | None]]]:
    """``2@1.5s`` (path 2 down from 1.5 s on) or ``1@300ms-2s`` (down, then up again)."""
    out: dict[int, list[tuple[float, float | None]]] = {}
    for spec in specs:
        path, _, when = spec.partition("@")
        start, _, end = when.partition("-")
        if not path.strip().isdigit() or not start:
            raise ValueError(f"bad --down {spec!r}: use PATH@START or PATH@START-END, e.g. 2@1.5s")
        out.setdefault(int(path), []).append((parse_duration(start), parse_duration(end) if end else None))
    return out


def _network(
    base: SimConfig, paths: int | None, delay: str | None, rate: str | None, loss: float | None,
    jitter: str | None, reorder: float | None, mtu: int | None, down: list[str],
) -> SimConfig:  # fmt: skip
    specs = list(base.paths)
    count = paths if paths is not None else len(specs)
    while len(specs) < count:
        specs.append(specs[-1] if specs else LinkSpec())
    specs = specs[:count]
    delays = _per_path(delay, count, parse_duration)
    rates = _per_path(rate, count, parse_rate)
    jitters = _per_path(jitter, count, parse_duration)
    outages = _outages(down)
    for path in outages:
        if not 1 <= path <= count:
            raise ValueError(f"--down names path {path}, but there are {count} paths")
    new: list[LinkSpec] = []
    for i, spec in enumerate(specs):
        spec = replace(
            spec,
            delay=delays[i] if delays else spec.delay,
            rate=rates[i] if rates else spec.rate,
            jitter=jitters[i] if jitters else spec.jitter,
            loss=loss if loss is not None else spec.loss,
            reorder=reorder if reorder is not None else spec.reorder,
            mtu=mtu if mtu is not None else spec.mtu,
            outages=spec.outages + tuple(outages.get(i + 1, [])),
        )
        new.append(spec)
    return replace(base, paths=new)


def _list_faults(console: Console) -> None:
    table = Table(title="faults (--fault NAME): each trace violates exactly one rule")
    table.add_column("fault")
    table.add_column("rule")
    table.add_column("by")
    table.add_column("what happens")
    for fault in FAULTS.values():
        table.add_row(fault.name, fault.rule, fault.side.value, fault.description)
    console.print(table)


def _list_scenarios(console: Console) -> None:
    table = Table(title="scenarios (--scenario NAME)")
    table.add_column("scenario")
    table.add_column("what happens")
    for scenario in SCENARIOS.values():
        table.add_row(scenario.name, scenario.description)
    console.print(table)


def _run_with_progress(cfg: SimConfig, show: bool) -> SimResult:
    err = Console(stderr=True)
    if not (show and err.is_terminal):
        return run(cfg)
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}", BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as progress:  # fmt: skip
        task = progress.add_task("simulating", total=1.0)
        return run(cfg, progress=lambda fraction: progress.update(task, completed=fraction))


def _summary(console: Console, cfg: SimConfig, result: SimResult, fault: str | None) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("trace", str(result.pcap))
    table.add_row("capture", f"{cfg.capture.value}, {result.packets} packets ({cfg.fmt.value})")
    table.add_row("duration", f"{result.duration:.3f} s (virtual)")
    table.add_row("subflows", str(result.subflows))
    table.add_row("packets", f"{result.packets_sent} sent, {result.packets_dropped} dropped by the network")
    for name, truth in (("client → server", result.c2s), ("server → client", result.s2c)):
        state = "intact" if truth.intact else f"RECEIVED {truth.received_bytes} bytes {truth.received_sha256}"
        table.add_row(name, f"{truth.sent_bytes} bytes sha256 {truth.sent_sha256} ({state})")
    table.add_row("closed", f"client: {result.client_close}, server: {result.server_close}")
    if fault is not None:
        table.add_row("fault", f"{fault}: violates {FAULTS[fault].rule}")
    console.print(table)


def simulate(
    output: Annotated[Path, typer.Option("-o", "--output", help="capture file to write")] = Path("trace.pcap"),
    scenario: Annotated[str | None, typer.Option(help=f"named setup: {'|'.join(SCENARIOS)}")] = None,
    fault: Annotated[str | None, typer.Option(help="inject a fault (see --list-faults)")] = None,
    list_faults: Annotated[bool, typer.Option("--list-faults", help="list faults and their rules")] = False,
    list_scenarios: Annotated[bool, typer.Option("--list-scenarios", help="list scenarios")] = False,
    paths: Annotated[int | None, typer.Option(min=1, max=8, help="number of paths (default 2)")] = None,
    size: Annotated[str | None, typer.Option("--bytes", help="client → server bytes, e.g. 1M, 500K")] = None,
    reply: Annotated[str | None, typer.Option("--reply-bytes", help="server → client bytes (default bytes/4)")] = None,
    delay: Annotated[str | None, typer.Option(help="one-way delay per path, e.g. 10ms,40ms")] = None,
    rate: Annotated[str | None, typer.Option(help="rate per path in bit/s, e.g. 20M,10M")] = None,
    loss: Annotated[float | None, typer.Option(min=0.0, max=0.5, help="loss probability on every path")] = None,
    jitter: Annotated[str | None, typer.Option(help="jitter per path, e.g. 2ms")] = None,
    reorder: Annotated[float | None, typer.Option(min=0.0, max=0.5, help="reordering probability")] = None,
    mtu: Annotated[int | None, typer.Option(min=576, max=9000, help="MTU of every path")] = None,
    down: Annotated[list[str] | None, typer.Option(help="link outage PATH@START[-END], e.g. 2@1.5s")] = None,
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same trace")] = 1,
    capture: Annotated[CapturePoint, typer.Option(help="where the capture is taken")] = CapturePoint.CLIENT,
    fmt: Annotated[CaptureFormat, typer.Option("--format", help="capture file format")] = CaptureFormat.PCAP,
    scheduler: Annotated[SchedulerName | None, typer.Option(help="packet scheduler")] = None,
    checksum: Annotated[bool, typer.Option("--checksum", help="negotiate DSS checksums")] = False,
    ipv6: Annotated[bool, typer.Option("--ipv6", help="IPv6 addresses")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="no summary, no progress bar")] = False,
) -> None:
    """Simulate an MPTCP transfer over N paths with the bundled endpoint and write a capture."""
    console = Console()
    if list_faults or list_scenarios:
        if list_scenarios:
            _list_scenarios(console)
        if list_faults:
            _list_faults(console)
        return
    try:
        if scenario is not None and fault is not None:
            raise ValueError("--scenario and --fault cannot be combined")
        if fault is not None:
            cfg = fault_config(fault, output)
        elif scenario is not None:
            cfg = scenario_config(scenario, output)
        else:
            cfg = SimConfig(output=output, c2s_bytes=1 << 20, s2c_bytes=1 << 18)
        cfg = _network(cfg, paths, delay, rate, loss, jitter, reorder, mtu, down or [])
        c2s = parse_size(size) if size is not None else cfg.c2s_bytes
        s2c = parse_size(reply) if reply is not None else (c2s // 4 if size is not None else cfg.s2c_bytes)
        cfg = replace(
            cfg, c2s_bytes=c2s, s2c_bytes=s2c, seed=seed, capture=capture, fmt=fmt, ipv6=ipv6,
            checksum=cfg.checksum or checksum, scheduler=scheduler or cfg.scheduler,
        )  # fmt: skip
        result = _run_with_progress(cfg, show=not quiet)
    except (ValueError, OSError) as exc:
        Console(stderr=True, highlight=False).print(f"mptcp-analyze: error: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    if not quiet:
        _summary(console, cfg, result, fault)


def register(app: typer.Typer, commands: set[str] | None = None) -> None:
    """Add the ``simulate`` command to the main CLI (and to its set of command names, if given)."""
    app.command("simulate")(simulate)
    if commands is not None:
        commands.add("simulate")
