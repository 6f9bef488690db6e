"""The kernel lab: real Linux MPTCP traces made on demand in network namespaces, with a ground-truth sidecar.

``mptcp-analyze lab SCENARIO -o DIR/NAME.pcap`` (see :mod:`analyzer.lab.cli`) or ``run_lab(LabConfig(...))``.
Modules: ``config`` (what a run is), ``netns`` (namespaces, veths, routing), ``pm`` (path manager),
``middlebox`` (shaping, loss, failure, corruption), ``schedule`` (timed events), ``capture`` (tcpdump),
``programs`` (the server and client run inside the namespaces), ``traffic``, ``sidecar``, ``run`` and
``scenarios`` (the named presets). Stdlib only: the lab imports nothing of the analyzer it is used to test.
"""

from __future__ import annotations

from analyzer.lab.config import LabConfig, LabError
from analyzer.lab.data import DataStream, c2s_seed, expected_sha256, s2c_seed
from analyzer.lab.kernel import kernel_snapshot
from analyzer.lab.netns import Lab, lab_unavailable_reason, preflight
from analyzer.lab.pcapfile import merge_pcaps, pcap_stats, read_pcap
from analyzer.lab.run import run_lab
from analyzer.lab.scenarios import SCENARIOS, scenario_config

__all__ = ["SCENARIOS", "DataStream", "Lab", "LabConfig", "LabError", "c2s_seed", "expected_sha256",
           "kernel_snapshot", "lab_unavailable_reason", "merge_pcaps", "pcap_stats", "preflight",
           "read_pcap", "run_lab", "s2c_seed", "scenario_config"]
