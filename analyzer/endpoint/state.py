"""The subflow TCP state machine as a table (RFC 9293 §3.3.2), in the style of h11's ``_state.py``.

All state changes of a subflow go through :func:`step`. The table does not know which side we are:
a trigger is something that happened (we sent a SYN, a FIN arrived, ...), so the same table serves
the active and the passive opener. A trigger missing from the table for the current state is our
own bug and raises :class:`~analyzer.endpoint.errors.LocalProtocolError`.
"""

from __future__ import annotations

import enum
from typing import Final

from analyzer.endpoint.errors import LocalProtocolError


class TcpState(enum.Enum):
    CLOSED = enum.auto()
    SYN_SENT = enum.auto()
    SYN_RCVD = enum.auto()
    ESTABLISHED = enum.auto()
    FIN_WAIT_1 = enum.auto()
    FIN_WAIT_2 = enum.auto()
    CLOSING = enum.auto()
    TIME_WAIT = enum.auto()
    CLOSE_WAIT = enum.auto()
    LAST_ACK = enum.auto()


class Trigger(enum.Enum):
    SEND_SYN = enum.auto()  # active open
    RECV_SYN = enum.auto()  # passive open: a SYN arrived
    RECV_SYNACK = enum.auto()  # our SYN was answered
    RECV_ACK_OF_SYN = enum.auto()  # the third ACK arrived
    SEND_FIN = enum.auto()  # we close our sending half
    RECV_FIN = enum.auto()  # the peer closed its sending half
    ACK_OF_FIN = enum.auto()  # our FIN was acknowledged
    TIMEOUT = enum.auto()  # TIME_WAIT expired
    RESET = enum.auto()  # RST sent or received, or retransmissions gave up


S, T = TcpState, Trigger

TRANSITIONS: Final[dict[TcpState, dict[Trigger, TcpState]]] = {
    S.CLOSED: {T.SEND_SYN: S.SYN_SENT, T.RECV_SYN: S.SYN_RCVD},
    S.SYN_SENT: {T.RECV_SYNACK: S.ESTABLISHED},
    S.SYN_RCVD: {T.RECV_ACK_OF_SYN: S.ESTABLISHED},
    S.ESTABLISHED: {T.SEND_FIN: S.FIN_WAIT_1, T.RECV_FIN: S.CLOSE_WAIT},
    S.FIN_WAIT_1: {T.ACK_OF_FIN: S.FIN_WAIT_2, T.RECV_FIN: S.CLOSING},
    S.FIN_WAIT_2: {T.RECV_FIN: S.TIME_WAIT},
    S.CLOSING: {T.ACK_OF_FIN: S.TIME_WAIT},
    S.TIME_WAIT: {T.TIMEOUT: S.CLOSED},
    S.CLOSE_WAIT: {T.SEND_FIN: S.LAST_ACK},
    S.LAST_ACK: {T.ACK_OF_FIN: S.CLOSED},
}

# A reset ends every state at once.
for _state in TcpState:
    TRANSITIONS.setdefault(_state, {})[T.RESET] = S.CLOSED

SYNCHRONIZED: Final = frozenset(
    {S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.TIME_WAIT, S.CLOSE_WAIT, S.LAST_ACK}
)
"""States in which both ISNs are known and data/ACKs flow."""

CAN_SEND_DATA: Final = frozenset({S.ESTABLISHED, S.CLOSE_WAIT})
DONE: Final = frozenset({S.CLOSED, S.TIME_WAIT})
"""States in which the subflow has nothing left to deliver."""


def step(state: TcpState, trigger: Trigger) -> TcpState:
    """The state after ``trigger``; raises if the table has no such move."""
    try:
        return TRANSITIONS[state][trigger]
    except KeyError:
        raise LocalProtocolError(f"{trigger.name} is not allowed in {state.name}") from None
