"""``mptcp-analyze lab``: a named scenario, or a custom run from the low-level options, to DIR/NAME.pcap + .json.

Options given on the command line win over the scenario's preset (``lab two-paths --family 6`` is two-paths
over IPv6); without a scenario the defaults of LabConfig apply. Errors: one line on stderr, exit 2.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from analyzer.lab.config import PATHS, PM_ACTIONS, LabConfig, LabError
from analyzer.lab.netns import preflight
from analyzer.lab.run import run_lab, validate
from analyzer.lab.scenarios import SCENARIOS, scenario_config

EXIT_USAGE = 2

# Scenarios that other parts of the tool run (the bundled endpoint against the kernel over TUN), registered by
# the main CLI so that the lab never imports them: name -> runner writing DIR/NAME.pcap and DIR/NAME.json and
# returning the sidecar (raises LabError when the run failed).
ExternalRunner = Callable[[Path], dict[str, Any]]
EXTERNAL_SCENARIOS: dict[str, ExternalRunner] = {}


def _fail(message: str) -> typer.Exit:
    print(f"mptcp-analyze: error: {' '.join(message.split())}", file=sys.stderr)
    return typer.Exit(EXIT_USAGE)


def _path_of(item: str, what: str) -> tuple[int, str]:
    path, _, value = item.partition("=")
    if path not in {str(p) for p in PATHS} or not value:
        raise LabError(f"{what}: expected PATH=VALUE with PATH 1 or 2, got {item!r}")
    return int(path), value


def _number(value: str, conv: type[int] | type[float], what: str) -> Any:
    try:
        return conv(value)
    except ValueError:
        raise LabError(f"{what}: {value!r} is not a number") from None


def _link_windows(items: Sequence[str]) -> list[tuple[int, float, float]]:
    """``PATH=START:END`` (seconds after the client starts its bulk data)."""
    out = []
    for item in items:
        path, span = _path_of(item, "--link-down")
        start, sep, end = span.partition(":")
        if not sep:
            raise LabError(f"--link-down: expected PATH=START:END, got {item!r}")
        out.append((path, _number(start, float, "--link-down"), _number(end, float, "--link-down")))
    return out


def _pm_events(items: Sequence[str]) -> list[tuple[Any, float]]:
    """``ACTION@SECONDS`` with ACTION remove, backup or nobackup."""
    out = []
    for item in items:
        action, sep, at = item.partition("@")
        if action not in PM_ACTIONS or not sep:
            raise LabError(f"--pm-event: expected ACTION@SECONDS with ACTION one of {', '.join(PM_ACTIONS)}, "
                           f"got {item!r}")
        out.append((action, _number(at, float, "--pm-event")))
    return out


def _given(**options: Any) -> dict[str, Any]:
    """The options the user actually gave (None and empty collections mean "keep the preset")."""
    return {k: v for k, v in options.items() if v is not None and v != [] and v != {}}


def _install_signal_handlers() -> None:
    """SIGTERM/SIGHUP become SystemExit, so the ``finally`` blocks tear the lab down (SIGINT already raises)."""
    def bail(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, bail)


def lab(
    scenario: Annotated[str | None, typer.Argument(help="scenario name (see --list); omit for a custom run")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="DIR/NAME.pcap (NAME.json beside it)")] = None,
    list_: Annotated[bool, typer.Option("--list", help="print the scenario names and exit")] = False,
    description: Annotated[str | None, typer.Option(help="free text for the sidecar")] = None,
    family: Annotated[int | None, typer.Option(help="4 or 6")] = None,
    mode: Annotated[str | None, typer.Option(help="single | subflow (client endpoint on path 2) | signal "
                                                  "(server announces path 2)")] = None,
    fallback: Annotated[bool, typer.Option("--fallback", help="server is a plain TCP listener")] = False,
    checksum: Annotated[bool, typer.Option("--checksum", help="net.mptcp.checksum_enabled=1 on both")] = False,
    connections: Annotated[int | None, typer.Option(help="concurrent connections")] = None,
    c2s_bytes: Annotated[int | None, typer.Option(help="client → server bytes per connection")] = None,
    s2c_bytes: Annotated[int | None, typer.Option(help="server → client bytes per connection")] = None,
    seed: Annotated[int | None, typer.Option(help="payload seed")] = None,
    snaplen: Annotated[int | None, typer.Option(help="tcpdump -s")] = None,
    capture: Annotated[str | None, typer.Option(help="any: one tcpdump on -i any (cooked); eth: one per veth, "
                                                     "merged (Ethernet)")] = None,
    link_type: Annotated[str | None, typer.Option(help="tcpdump -y for -i any, e.g. LINUX_SLL")] = None,
    rate: Annotated[list[str] | None, typer.Option(metavar="PATH=RATE", help="tbf, e.g. 2=20mbit")] = None,
    loss: Annotated[list[str] | None, typer.Option(metavar="PATH=PCT", help="nftables random loss")] = None,
    link_down: Annotated[list[str] | None, typer.Option(
        metavar="PATH=START:END", help="the path fails START s after the bulk data starts, back at END")] = None,
    link_down_method: Annotated[str | None, typer.Option(help="link: ip link down/up; nft: drop everything in "
                                                              "the server namespace")] = None,
    corrupt: Annotated[list[str] | None, typer.Option(
        metavar="PATH=N", help="overwrite 8 payload bytes of the client's Nth data packet on PATH (TCP checksum "
                               "kept valid; with --checksum: MP_FAIL)")] = None,
    pm_event: Annotated[list[str] | None, typer.Option(
        metavar="ACTION@S", help="remove|backup|nobackup the path-2 endpoint S s after the bulk data starts "
                                 "(REMOVE_ADDR / MP_PRIO)")] = None,
    signal_port: Annotated[int | None, typer.Option(help="signal mode: announce path 2 with this port")] = None,
    fullmesh: Annotated[bool, typer.Option("--fullmesh", help="fullmesh endpoints: every address pair")] = False,
    syncookies: Annotated[bool, typer.Option("--syncookies", help="tcp_syncookies=2 in the server")] = False,
    topology: Annotated[str | None, typer.Option(help="direct | router (capture in the middle)")] = None,
    tfo: Annotated[bool, typer.Option("--tfo", help="TCP Fast Open: a cookie connection, then data in SYN")] = False,
    tfo_method: Annotated[str | None, typer.Option(help="sendto | connect")] = None,
    receiver_pause: Annotated[float | None, typer.Option(
        help="the server leaves each connection unread this long (4 KiB receive buffer): zero-window probes")] = None,
    capture_filter: Annotated[str | None, typer.Option("--filter", help="tcpdump capture filter")] = None,
    port: Annotated[int | None, typer.Option(help="server port")] = None,
    no_wait_subflows: Annotated[bool, typer.Option("--no-wait-subflows", help="do not hold the bulk data "
                                                                              "until the extra subflow is up")] = False,
    buffer_kib: Annotated[int | None, typer.Option(help="tcpdump -B")] = None,
    no_immediate: Annotated[bool, typer.Option("--no-immediate", help="no tcpdump --immediate-mode")] = False,
    timeout: Annotated[float | None, typer.Option(help="per socket operation, seconds")] = None,
    no_strict: Annotated[bool, typer.Option("--no-strict", help="do not fail when the run differs from the "
                                                                "configuration")] = False,
    offloads: Annotated[str | None, typer.Option(help="off (wire-sized segments) | on (super-segments)")] = None,
) -> None:
    """Capture a real Linux kernel MPTCP trace in network namespaces (needs root), with a ground-truth sidecar."""
    if list_:
        for name in [*SCENARIOS, *EXTERNAL_SCENARIOS]:
            print(name)
        return
    if output is None:
        raise _fail("lab: -o DIR/NAME.pcap is required (or --list)")
    if output.suffix != ".pcap":
        raise _fail(f"lab: the output must end in .pcap, got {output}")
    _install_signal_handlers()
    if scenario in EXTERNAL_SCENARIOS:
        try:
            preflight()
            output.parent.mkdir(parents=True, exist_ok=True)
            sidecar = EXTERNAL_SCENARIOS[scenario](output)
        except LabError as exc:
            raise _fail(f"lab: {exc}") from None
        print(json.dumps({"name": sidecar["name"], "pcap": str(output), "sidecar": str(output.with_suffix(".json")),
                          "link_type": sidecar["link_type"],
                          "subflows": [c["subflows"] for c in sidecar["connections"]]}))
        return
    try:
        overrides = _given(
            description=description, family=family, mode=mode, fallback=fallback or None, checksum=checksum or None,
            connections=connections, c2s_bytes=c2s_bytes, s2c_bytes=s2c_bytes, seed=seed, snaplen=snaplen,
            capture=capture, link_type=link_type, rate=dict(_path_of(r, "--rate") for r in rate or []),
            loss={p: _number(v, float, "--loss") for p, v in (_path_of(x, "--loss") for x in loss or [])},
            link_down=_link_windows(link_down or []), link_down_method=link_down_method,
            corrupt={p: _number(v, int, "--corrupt") for p, v in (_path_of(x, "--corrupt") for x in corrupt or [])},
            pm_events=_pm_events(pm_event or []), signal_port=signal_port, fullmesh=fullmesh or None,
            syncookies=syncookies or None, topology=topology, tfo=tfo or None, tfo_method=tfo_method,
            receiver_pause=receiver_pause, capture_filter=capture_filter, port=port,
            wait_subflows=False if no_wait_subflows else None,
            buffer_kib=buffer_kib, immediate=False if no_immediate else None, timeout=timeout,
            strict=False if no_strict else None, offloads=offloads)
        _check_choices(overrides)
        if scenario is None:
            cfg = LabConfig(name=output.stem, out_dir=output.parent, **overrides)
        else:
            cfg = scenario_config(scenario, output, **overrides)
        validate(cfg)
        preflight()
        sidecar = run_lab(cfg)
    except LabError as exc:
        raise _fail(f"lab: {exc}") from None
    summary = {"name": sidecar["name"], "pcap": str(output), "sidecar": str(output.with_suffix(".json")),
               "link_type": sidecar["link_type"], "packets": sidecar["capture"]["packets"],
               "subflows": [c["subflows"] for c in sidecar["connections"]]}
    print(json.dumps(summary))


CHOICES = {"mode": ("single", "subflow", "signal"), "capture": ("any", "eth"), "link_down_method": ("link", "nft"),
           "topology": ("direct", "router"), "tfo_method": ("sendto", "connect"), "offloads": ("off", "on"),
           "family": (4, 6)}


def _check_choices(overrides: dict[str, Any]) -> None:
    for key, allowed in CHOICES.items():
        if key in overrides and overrides[key] not in allowed:
            option = "--" + key.replace("_", "-")
            raise LabError(f"{option} must be one of {', '.join(map(str, allowed))}, got {overrides[key]!r}")


def register(app: typer.Typer, commands: set[str] | None = None) -> None:
    """Add the ``lab`` command to the main CLI (and to its set of command names, if given)."""
    app.command("lab")(lab)
    if commands is not None:
        commands.add("lab")


def legacy_args(argv: Sequence[str]) -> list[str]:
    """The old ``samples/mptcp_lab.py --name N --out-dir D ...`` command line as ``mptcp-analyze lab`` arguments.

    Kept so the commands recorded in older sidecars still run (through the samples/mptcp_lab.py shim).
    """
    name, out_dir = None, "."
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        key, eq, value = arg.partition("=")
        if key not in ("--name", "--out-dir"):
            rest.append(arg)
            continue
        value = value if eq else next(it, "")
        if key == "--name":
            name = value
        else:
            out_dir = value
    output = [] if name is None else ["-o", str(Path(out_dir) / f"{name}.pcap")]
    return ["lab", *output, *rest]
