"""One run's traffic: tcpdump, then the server and client programs, the timeline, and both sides' reports."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from analyzer.lab.capture import capture_parts, finish_capture, start_tcpdump, stop_tcpdump
from analyzer.lab.config import TFO_COUNTERS, LabError
from analyzer.lab.kernel import tcp_ext_counters
from analyzer.lab.netns import Lab, program_argv, read_until
from analyzer.lab.schedule import Timeline, run_timeline


def program_params(lab: Lab) -> dict[str, Any]:
    """The JSON both in-namespace programs get."""
    cfg = lab.cfg
    return {"lab": lab.cli,  # names the run on the programs' command lines (tests look for leftovers)
            "family": cfg.family, "port": cfg.port, "seed": cfg.seed, "connections": cfg.connections,
            "c2s_bytes": cfg.c2s_bytes, "s2c_bytes": cfg.s2c_bytes, "timeout": cfg.timeout,
            "expected_subflows": cfg.expected_subflows, "wait_subflows": cfg.wait_subflows,
            "server": cfg.server_addr(1, cfg.family), "mptcp": not cfg.fallback, "settle": cfg.bulk_events,
            "announce_bulk": cfg.bulk_events, "tfo": cfg.tfo, "tfo_method": cfg.tfo_method,
            "receiver_pause": cfg.receiver_pause}


def _last_json(out: bytes) -> Any:
    return json.loads(out.decode().strip().splitlines()[-1])


def traffic(lab: Lab, pcap: Path) -> dict[str, Any]:
    """Run server + client with tcpdump around them; return both sides' reports."""
    cfg = lab.cfg
    params = json.dumps(program_params(lab))
    parts = capture_parts(lab, pcap)
    dumps = [start_tcpdump(lab, iface, out) for iface, out in parts]

    server = lab.spawn(program_argv("server", params), lab.srv)
    sbuf = bytearray()
    assert server.stdout is not None and server.stderr is not None
    if not read_until(server.stdout.fileno(), b"READY", 15.0, sbuf):
        server.kill()
        _, err = server.communicate(timeout=5)
        raise LabError(f"server did not start: {err.decode(errors='replace')}")
    t0, start_epoch = time.monotonic(), time.time()
    client = lab.spawn(program_argv("client", params), lab.cli)
    traffic_done = threading.Event()
    timeline = Timeline()
    cbuf = bytearray()
    bulk_at: float | None = None
    timer: threading.Thread | None = None
    if cfg.bulk_events:
        # the events count from the moment the client starts its bulk data (connection up,
        # first 1000 bytes through, extra subflow established), not from process start-up
        assert client.stdout is not None
        if read_until(client.stdout.fileno(), b"BULK\n", cfg.timeout, cbuf):
            t_bulk = time.monotonic()
            bulk_at = t_bulk - t0
            timer = threading.Thread(target=run_timeline, args=(lab, t_bulk, traffic_done, timeline), daemon=True)
            timer.start()
    try:
        c_out, c_err = client.communicate(timeout=cfg.timeout * 3)
        c_out = bytes(cbuf) + c_out
        if client.returncode != 0:
            server.kill()  # it would only sit in accept() until its timeout
        s_out, s_err = server.communicate(timeout=cfg.timeout)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"traffic timed out: {exc}") from exc
    finally:
        traffic_done.set()
    elapsed = time.monotonic() - t0
    drained = None
    if timer is not None:
        timer.join()  # at the latest at the end of the last window: every path is up again
        if timeline.failures:
            raise LabError(f"a timed event failed: {timeline.failures[0]}")
        if cfg.link_down:
            # a subflow that was down finishes (data, FIN) only at its next RTO after recovery
            drained = lab.drain(min(cfg.timeout, 20.0))
    # let the last FIN/ACKs reach the capture (without immediate mode, TPACKET_V3 hands packets
    # over in blocks with a ~1 s timeout, and SIGINT discards a block not yet handed over)
    time.sleep(0.3 if cfg.immediate else 2.0)
    stats = [stop_tcpdump(d) for d in dumps]
    finish_capture(lab, pcap, parts)
    try:
        c_rep = _last_json(c_out)
        s_rep = _last_json(bytes(sbuf) + s_out)
    except (IndexError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LabError(f"bad report: client={c_out[-2000:]!r} {c_err[-2000:]!r} "
                       f"server={s_out[-2000:]!r} {s_err[-2000:]!r}") from exc
    if c_rep["errors"] or s_rep["errors"] or client.returncode or server.returncode:
        raise LabError(f"traffic failed: client={c_rep['errors']} {c_err.decode()[-2000:]} "
                       f"server={s_rep['errors']} {s_err.decode()[-2000:]}")
    tfo_counters = {side: tcp_ext_counters(lab.read_proc(ns, "/proc/net/netstat"), TFO_COUNTERS)
                    for side, ns in (("client", lab.cli), ("server", lab.srv))} if cfg.tfo else None
    return {"client": c_rep["connections"], "server": s_rep["connections"], "tcpdump": stats,
            "tfo_counters": tfo_counters,
            "interfaces": [iface for iface, _ in parts], "elapsed_s": round(elapsed, 3),
            "start_epoch": round(start_epoch, 6), "link_events": timeline.link_log, "pm_events": timeline.pm_log,
            "drained": drained, "bulk_start_s": None if bulk_at is None else round(bulk_at, 4)}
