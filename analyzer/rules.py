"""The rule registry: every finding id with its severity, RFC section and explanation.

Rules are data so that ``mptcp-analyze rules`` can list and explain them, and so that CI users can
refer to stable ids when they ignore or downgrade a rule.  Ids and sections follow the project's
catalogue (shared/mptcp-rules.md); where the catalogue and RFC 8684 disagree, RFC 8684 wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.findings import Severity

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    severity: Severity
    section: str
    title: str
    description: str = ""

    @property
    def family(self) -> str:
        return self.id.split("-", 1)[0]


_RULES: list[Rule] = [
    # Capture-level observations (not protocol rules).
    Rule(
        "CAPTURE-001",
        W,
        "-",
        "Capture file problem",
        "The capture file itself is damaged (truncated record, corrupt header); analysis continued with what "
        "could be read.",
    ),
    Rule(
        "CHECKER-001",
        W,
        "-",
        "Internal error in a rule family",
        "A rule family raised an unexpected error on this trace; the analysis went on without it. The other "
        "results stand; please report the trace.",
    ),
    Rule(
        "LIMIT-001",
        W,
        "-",
        "Analysis limit reached",
        "A resource bound of the analysis (analyzer.limits, --limit NAME=N) was reached: the capture is larger "
        "or more hostile than the limit allows, and the results past that point are partial. The message names "
        "the limit; everything analysed before it stands.",
    ),
    # Option format.
    Rule(
        "OPT-001",
        E,
        "§3",
        "Malformed TCP option list",
        "A TCP option (MPTCP or not) has a length below 2, or an MPTCP option is shorter than 3 bytes, or an "
        "option runs past the TCP header. Options cut short by the capture's snaplen are not reported.",
    ),
    Rule(
        "OPT-002",
        E,
        "§3.1–3.6",
        "Invalid MPTCP option length",
        "The option's length is not one that RFC 8684 (or RFC 6824 for v0) defines for its subtype.",
    ),
    Rule(
        "OPT-003",
        W,
        "§3",
        "Unassigned MPTCP subtype",
        "The option uses a subtype value that IANA has not assigned (0x9–0xE); 0xF (private use) is info.",
    ),
    Rule(
        "DSS-001",
        E,
        "§3.3",
        "DSS length disagrees with its flags",
        "A DSS option's length must equal 4 + Data ACK size + (mapping: DSN size + 6 [+ 2 with checksum]).",
    ),
    Rule("FAIL-001", E, "§3.7", "MP_FAIL length is not 12", "MP_FAIL carries a 64-bit DSN and is always 12 bytes."),
    Rule("PRIO-001", E, "§3.3.8", "MP_PRIO length invalid", "MP_PRIO is 3 bytes in v1 (3 or 4 in v0)."),
    # Handshake and keys.
    Rule(
        "MPC-004",
        E,
        "§3.1",
        "MP_CAPABLE key echo mismatch",
        "The third ACK (or MP_CAPABLE with data) must echo the key the server sent in its SYN/ACK (v0: and the "
        "client's key from its SYN).",
    ),
    Rule(
        "MPC-005",
        E,
        "§3.1",
        "MP_CAPABLE key changed",
        "A host's key must stay the same across the third ACK, its retransmissions and MP_CAPABLE with data.",
    ),
    Rule(
        "JOIN-001",
        E,
        "§3.2",
        "MP_JOIN token matches no connection",
        "A SYN with MP_JOIN names a token that matches no connection seen in the capture, yet was accepted.",
    ),
    Rule(
        "JOIN-002",
        E,
        "§3.2",
        "MP_JOIN SYN/ACK HMAC mismatch",
        "The truncated HMAC in the SYN/ACK must be the first 64 bits of HMAC(Key-responder‖Key-initiator, "
        "R-responder‖R-initiator).",
    ),
    Rule(
        "JOIN-003",
        E,
        "§3.2",
        "MP_JOIN third-ACK HMAC mismatch",
        "The HMAC in the third ACK must be the first 160 bits of HMAC(Key-initiator‖Key-responder, "
        "R-initiator‖R-responder).",
    ),
    Rule(
        "ADDR-001",
        E,
        "§3.4.1",
        "ADD_ADDR HMAC mismatch",
        "The truncated HMAC of ADD_ADDR must be the last 64 bits of HMAC(Key-sender‖Key-receiver, "
        "Address ID‖Address‖Port), with a zero port when none is carried.",
    ),
    Rule(
        "FC-001",
        E,
        "§3.5",
        "MP_FASTCLOSE carries the wrong key",
        "MP_FASTCLOSE must carry the key of the host that receives it (the peer's key from the sender's view).",
    ),
    Rule(
        "FALLBACK-001",
        INFO,
        "§3.1",
        "Connection fell back to TCP during the handshake",
        "The SYN offered MP_CAPABLE but the SYN/ACK did not accept it (or accepted it with an invalid option), "
        "so the connection is plain TCP.",
    ),
    Rule(
        "FALLBACK-007",
        INFO,
        "§3.7",
        "Connection fell back to TCP",
        "The connection stopped using MPTCP (infinite mapping, or data without DSS after the handshake).",
    ),
    Rule(
        "GROUP-001",
        INFO,
        "§3.2",
        "Subflow grouped without the handshake",
        "The MP_CAPABLE or MP_JOIN handshake of this subflow was not captured, so it was attached to its "
        "connection by weaker evidence (keys echoed later, or data-sequence continuity).",
    ),
]

RULES: dict[str, Rule] = {rule.id: rule for rule in _RULES}


def register(rule: Rule) -> None:
    """Add a rule (used by the checker modules when they are imported)."""
    RULES[rule.id] = rule


for _rule in [
    Rule(
        "DSS-002",
        E,
        "§3.3.1",
        "Conflicting mappings on one subflow",
        "The same subflow bytes are mapped to two different data sequence numbers. Identical repeats "
        "(retransmissions, TSO copies) are fine.",
    ),
    Rule(
        "DSS-003",
        E,
        "§3.3.1, §3.3.6",
        "Same DSN carried with different bytes",
        "A data-sequence range was sent twice (retransmission or reinjection) with different payload.",
    ),
    Rule(
        "DSS-004",
        E,
        "§3.3.1",
        "Payload not covered by any mapping",
        "Every payload byte on an MPTCP subflow (before fallback) must be covered by a DSS mapping or the "
        "MP_CAPABLE implied mapping.",
    ),
    Rule(
        "DSS-012",
        INFO,
        "§3.3.1",
        "Reinjection",
        "Data already sent on one subflow was sent again on another (legal; reported for insight).",
    ),
    Rule(
        "CSUM-001",
        E,
        "§3.3.1",
        "DSS checksum does not verify",
        "The DSS checksum over the pseudo-header (64-bit DSN, relative SSN, data-level length) and the whole "
        "mapping's payload is wrong. Only evaluated when every byte of the mapping was captured.",
    ),
    Rule(
        "CLOSE-003",
        E,
        "§3.3.3",
        "DATA_FIN position changed",
        "A host's DATA_FIN must always be at the same data sequence number.",
    ),
]:
    register(_rule)
