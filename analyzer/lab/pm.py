"""The kernel path manager: ``ip mptcp limits/endpoint`` for each mode, and the mid-transfer changes.

Modes: single (no extra subflow), subflow (client endpoint on path 2 → MP_JOIN), signal (server endpoint on
path 2 → ADD_ADDR, optionally with a port, and the client joins it), fullmesh (client endpoints on both paths
with the fullmesh flag, the server signals path 2: every client address joins every server address).
"""

from __future__ import annotations

from analyzer.lab.config import CLIENT_HOST, SERVER_HOST, LabError, PmAction, addr
from analyzer.lab.netns import Lab

FULLMESH_LIMIT = "8"  # the kernel's maximum for both limits


def configure_pm(lab: Lab) -> None:
    """MPTCP limits and endpoints for the configured mode; what the kernel then shows goes in the notes."""
    cfg = lab.cfg
    fam = cfg.family
    if cfg.fullmesh:
        cli_limits, srv_limits = (FULLMESH_LIMIT, "1"), (FULLMESH_LIMIT, "0")
        for p in lab.PATHS:
            lab.ip(lab.cli, "mptcp", "endpoint", "add", addr(p, CLIENT_HOST, fam), "dev", f"cli{p}",
                   "id", str(p), "subflow", "fullmesh")
        lab.ip(lab.srv, "mptcp", "endpoint", "add", addr(2, SERVER_HOST, fam), "dev", "srv2", "id", "2", "signal")
    elif cfg.mode == "single":
        cli_limits, srv_limits = ("0", "0"), ("0", "0")
    elif cfg.mode == "subflow":
        cli_limits, srv_limits = ("1", "0"), ("1", "0")
        lab.ip(lab.cli, "mptcp", "endpoint", "add", addr(2, CLIENT_HOST, fam), "dev", "cli2", "id", "2", "subflow")
    else:  # signal: the server announces its path-2 address, the client joins it
        cli_limits, srv_limits = ("1", "1"), ("1", "0")
        port = [] if cfg.signal_port is None else ["port", str(cfg.signal_port)]
        lab.ip(lab.srv, "mptcp", "endpoint", "add", addr(2, SERVER_HOST, fam), "dev", "srv2", *port,
               "id", "2", "signal")
    lab.ip(lab.cli, "mptcp", "limits", "set", "subflows", cli_limits[0], "add_addr_accepted", cli_limits[1])
    lab.ip(lab.srv, "mptcp", "limits", "set", "subflows", srv_limits[0], "add_addr_accepted", srv_limits[1])
    lab.notes["pm"] = pm_state(lab)


def pm_state(lab: Lab) -> dict[str, str]:
    """Endpoints and limits as ``ip mptcp`` shows them in both ends."""
    def show(ns: str, what: str) -> str:
        return lab.run("ip", "-n", ns, "mptcp", what, "show").stdout.strip()
    return {"client_endpoints": show(lab.cli, "endpoint"), "server_endpoints": show(lab.srv, "endpoint"),
            "client_limits": show(lab.cli, "limits"), "server_limits": show(lab.srv, "limits")}


def pm_owner(lab: Lab) -> str:
    """The namespace holding the path-2 endpoint the mid-transfer changes act on."""
    return lab.srv if lab.cfg.effective_mode == "signal" else lab.cli


def apply_pm_event(lab: Lab, action: PmAction) -> str:
    """One change on the path-2 endpoint (id 2); returns the command, for the sidecar.

    remove: ``endpoint delete`` (the kernel sends REMOVE_ADDR and closes the subflows on that address);
    backup/nobackup: ``endpoint change`` (the kernel sends MP_PRIO on those subflows).
    """
    ns = pm_owner(lab)
    if action == "remove":
        argv = ["mptcp", "endpoint", "delete", "id", "2"]
    elif action in ("backup", "nobackup"):
        argv = ["mptcp", "endpoint", "change", "id", "2", action]
    else:  # pragma: no cover - the CLI only passes PM_ACTIONS
        raise LabError(f"unknown path-manager action {action!r}")
    lab.ip(ns, *argv)
    return f"ip -n {ns} {' '.join(argv)}"
