"""``mptcp-analyze endpoint connect|listen``: the bundled endpoint against the kernel over a TUN.

A thin typer layer over :mod:`analyzer.endpoint.tun`; it lives outside ``endpoint/`` because it
also analyses the capture (the endpoint group never imports the pipeline). Traffic stays inside the namespace the runner
creates (10.210.0.0/16, fd00:210::/32), which is deleted afterwards, also on Ctrl-C.
Exit status: 0 when both streams arrived byte-exact and no kernel failure counter moved (and, with
``-o``, the analyzer found no error), 1 otherwise, 2 for usage errors or a machine that cannot run it.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from analyzer.endpoint.cli import parse_size
from analyzer.endpoint.config import Misbehave
from analyzer.endpoint.tun import (
    PORT,
    TUN_NAME,
    InteropConfig,
    InteropResult,
    KernelRole,
    addresses,
    failure_counters_moved,
    run_interop,
    unavailable_reason,
)
from analyzer.findings import Severity
from analyzer.pipeline import analyze

__all__ = ["connect", "lab_scenario", "listen", "register"]

EXIT_FAILED = 1
EXIT_USAGE = 2
endpoint_app = typer.Typer(help="Run the bundled MPTCP endpoint against this machine's kernel over a TUN device.")

_Bytes = Annotated[str, typer.Option("--bytes", help="client → server bytes, e.g. 1M, 500K")]
_Reply = Annotated[str, typer.Option("--reply-bytes", help="server → client bytes")]
_Paths = Annotated[int, typer.Option(min=1, max=4, help="address pairs; >1 adds a join per extra pair")]
_Output = Annotated[Path | None, typer.Option("-o", "--output", help="tcpdump the TUN into this pcap and analyse it")]
_Tun = Annotated[str, typer.Option("--tun", help="name of the TUN device (inside the runner's namespace)")]
_Checksum = Annotated[bool, typer.Option("--checksum", help="DSS checksums (net.mptcp.checksum_enabled=1)")]
_Fastclose = Annotated[bool, typer.Option("--fastclose", help="end with MP_FASTCLOSE instead of DATA_FIN")]
_Fault = Annotated[
    str | None, typer.Option("--fault", help=f"endpoint misbehaviour: {'|'.join(m.value for m in Misbehave)}")
]
_Seed = Annotated[int, typer.Option(help="seed for the data and the endpoint's keys")]
_Timeout = Annotated[float, typer.Option(min=1.0, help="give up after this many seconds")]
_Json = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


@endpoint_app.command("connect")
def connect(
    host: Annotated[str, typer.Argument(help="the kernel server: 10.210.1.1 or fd00:210:1::1")] = "10.210.1.1",
    port: Annotated[int, typer.Argument(min=1, max=65535, help="its port")] = PORT,
    size: _Bytes = "1M",
    reply: _Reply = "1M",
    paths: _Paths = 2,
    announce: Annotated[bool, typer.Option("--announce", help="the kernel signals its 2nd address instead")] = False,
    output: _Output = None,
    tun: _Tun = TUN_NAME,
    checksum: _Checksum = False,
    fastclose: _Fastclose = False,
    fault: _Fault = None,
    seed: _Seed = 1,
    timeout: _Timeout = 60.0,
    json_output: _Json = False,
) -> None:
    """The endpoint as client of a kernel MPTCP server (joins from its second address unless --announce)."""
    ipv6 = _family(host)
    cfg = _config(KernelRole.SERVER, size, reply, paths, ipv6, output, tun, checksum, fastclose, fault, seed, timeout)
    cfg.port, cfg.announce = port, announce
    _run(cfg, json_output)


@endpoint_app.command("listen")
def listen(
    port: Annotated[int, typer.Argument(min=1, max=65535, help="the endpoint's port")] = PORT,
    size: _Bytes = "1M",
    reply: _Reply = "1M",
    paths: _Paths = 2,
    ipv6: Annotated[bool, typer.Option("--ipv6", help="IPv6 (fd00:210::/32)")] = False,
    output: _Output = None,
    tun: _Tun = TUN_NAME,
    checksum: _Checksum = False,
    fastclose: _Fastclose = False,
    fault: _Fault = None,
    seed: _Seed = 1,
    timeout: _Timeout = 60.0,
    json_output: _Json = False,
) -> None:
    """The endpoint as server; a kernel MPTCP client connects (and joins from its second address)."""
    cfg = _config(KernelRole.CLIENT, size, reply, paths, ipv6, output, tun, checksum, fastclose, fault, seed, timeout)
    cfg.port = port
    _run(cfg, json_output)


def _fail(message: str) -> typer.Exit:
    Console(stderr=True, highlight=False).print(f"mptcp-analyze: error: {message}", markup=False)
    return typer.Exit(EXIT_USAGE)


def _family(host: str) -> bool:
    """True for IPv6; the host must be the kernel's primary address in the runner's namespace."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise _fail(f"not an IP address: {host!r}") from None
    kernel, _ = addresses(1, addr.version == 6)
    if addr != kernel[0]:
        raise _fail(f"the kernel server in the runner's namespace is {kernel[0]}, not {addr}")
    return addr.version == 6


def _config(
    kernel: KernelRole, size: str, reply: str, paths: int, ipv6: bool, output: Path | None, tun: str, checksum: bool,
    fastclose: bool, fault: str | None, seed: int, timeout: float,
) -> InteropConfig:  # fmt: skip
    try:
        c2s, s2c = parse_size(size), parse_size(reply)
        misbehave = frozenset({Misbehave(fault)}) if fault is not None else frozenset()
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if not 1 <= len(tun) <= 15 or "/" in tun or " " in tun:
        raise _fail(f"not a device name: {tun!r}")
    return InteropConfig(
        c2s_bytes=c2s, s2c_bytes=s2c, kernel=kernel, paths=paths, ipv6=ipv6, checksum=checksum, capture=output,
        timeout=timeout, seed=seed, misbehave=misbehave, fastclose=fastclose, tun=tun,
    )  # fmt: skip


def _run(cfg: InteropConfig, json_output: bool) -> None:
    reason = unavailable_reason()
    if reason is not None:
        raise _fail(f"cannot run the TUN interop here: {reason}")
    try:
        result = run_interop(cfg)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc)) from None
    errors = _analyse(cfg.capture) if cfg.capture is not None else None
    failed = failure_counters_moved(result.nstat_delta())
    ok = result.intact and (not failed or bool(cfg.misbehave)) and not errors
    if json_output:
        print(json.dumps(_to_json(result, errors, failed), indent=2))
    else:
        _summary(Console(highlight=False), result, errors, failed)
    if not ok:
        raise typer.Exit(EXIT_FAILED)


def _analyse(capture: Path) -> list[str]:
    analysis = analyze(str(capture))
    return [f"{f.rule} {f.message}" for f in analysis.findings if f.severity >= Severity.ERROR]


def _to_json(result: InteropResult, errors: list[str] | None, failed: dict[str, int]) -> dict[str, Any]:
    out = asdict(result)
    out["capture"] = str(result.capture) if result.capture is not None else None
    out["intact"] = result.intact
    out["nstat_delta"] = result.nstat_delta()
    out["failure_counters"] = failed
    out["analyzer_errors"] = errors
    return out


def _summary(console: Console, result: InteropResult, errors: list[str] | None, failed: dict[str, int]) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("namespace", f"{result.namespace} (deleted)")
    for name, sent, got, size in (
        ("client → server", result.c2s_sent, result.c2s_received, result.c2s_bytes),
        ("server → client", result.s2c_sent, result.s2c_received, result.s2c_bytes),
    ):
        table.add_row(name, f"{size} bytes received, sha256 {got} ({'intact' if sent == got else 'DIFFERS'})")
    table.add_row("subflows", str(result.subflows))
    table.add_row("closed", f"endpoint: {result.endpoint_close}, kernel: {result.kernel_error or 'end of stream'}")
    table.add_row("duration", f"{result.duration:.3f} s")
    table.add_row(
        "kernel nstat", ", ".join(f"{k.removeprefix('MPTcpExt')} +{v}" for k, v in result.nstat_delta().items())
    )
    table.add_row("failure counters", ", ".join(f"{k} +{v}" for k, v in failed.items()) or "none moved")
    if result.capture is not None:
        table.add_row("capture", f"{result.capture} (tcpdump dropped {result.capture_dropped})")
        table.add_row("analyzer errors", "; ".join(errors or []) or "none")
    console.print(table)


def register(app: typer.Typer, commands: set[str] | None = None) -> None:
    """Add the ``endpoint`` command group to the main CLI."""
    app.add_typer(endpoint_app, name="endpoint")
    if commands is not None:
        commands.add("endpoint")


# ---------------------------------------------------------------------- lab scenarios
LAB_SCENARIOS = {
    "endpoint-client": (KernelRole.SERVER, "The bundled endpoint as client of a kernel MPTCP server over TUN, with a "
                                           "join from its second address; 300 kB each way."),
    "endpoint-server": (KernelRole.CLIENT, "A kernel MPTCP client (with a 'subflow' endpoint on its second address) "
                                           "against the bundled endpoint as server over TUN; 300 kB each way."),
}


def lab_scenario(name: str, output: Path) -> dict[str, Any]:
    """Run one interop lab scenario: OUTPUT (the TUN capture) and OUTPUT.json (a lab sidecar)."""
    from analyzer.lab.config import LabError

    role, description = LAB_SCENARIOS[name]
    reason = unavailable_reason()
    if reason is not None:
        raise LabError(f"{name}: {reason}")
    cfg = InteropConfig(c2s_bytes=300_000, s2c_bytes=300_000, kernel=role, paths=2, capture=output, seed=12)
    result = run_interop(cfg)
    if not result.intact:
        raise LabError(f"{name}: the streams did not arrive byte-exact (the endpoint or the kernel misbehaved)")
    if result.capture_dropped:
        raise LabError(f"{name}: tcpdump dropped {result.capture_dropped} packets, the capture is incomplete")
    delta = result.nstat_delta()
    sidecar: dict[str, Any] = {
        "name": output.stem, "description": description, "command": f"mptcp-analyze lab {name} -o {output}",
        "kernel": os.uname().release, "link_type": "RAW",
        "capture": {"interfaces": [cfg.tun], "namespace": result.namespace, "dropped": result.capture_dropped},
        "connections": [{
            "client": result.client, "server": result.server, "mptcp": True, "subflows": result.subflows,
            "subflows_expected": cfg.paths,
            "c2s": {"bytes": cfg.c2s_bytes, "sha256": result.c2s_sent},
            "s2c": {"bytes": cfg.s2c_bytes, "sha256": result.s2c_sent},
            "endpoint_role": "client" if role is KernelRole.SERVER else "server",
        }],
        "nstat": {"kernel": {"MPTcpExt": delta}},
        "failure_counters_moved": failure_counters_moved(delta),
    }
    output.with_suffix(".json").write_text(json.dumps(sidecar, indent=1) + "\n")
    return sidecar


def register_lab_scenarios() -> None:
    """Offer the interop runs as lab scenarios (the lab itself never imports the endpoint)."""
    from analyzer.lab.cli import EXTERNAL_SCENARIOS

    for name in LAB_SCENARIOS:
        EXTERNAL_SCENARIOS[name] = functools.partial(lab_scenario, name)
