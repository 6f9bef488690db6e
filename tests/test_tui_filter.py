"""The inspector's filter language: parsing, errors that point at the problem, and evaluation.

Why: the filter bar is how users narrow a million packets; a filter must mean exactly what it says,
and a typo must produce a message that says where and what, never a traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tui.filter import FilterError, candidates, evaluate, parse, tokenize
from tui.session import Session

REPO = Path(__file__).resolve().parent.parent
V0 = REPO / "tests" / "data" / "tcpdump" / "mptcp-v0.pcap"


@pytest.fixture(scope="module")
def session() -> Session:
    s = Session(str(V0))
    s.run()
    yield s
    s.close()


def frames(session: Session, text: str) -> list[int]:
    """Frames matching ``text``, through the same two paths the app uses (index, then decoding)."""
    node = parse(text)
    ctx = session.filter_context()
    mask = evaluate(node, ctx)
    if mask is not None:
        return [int(r) + 1 for r in np.flatnonzero(mask)]
    return [int(r) + 1 for r in candidates(node, ctx) if node.match(session.store.read(int(r) + 1), ctx)]


def test_tokenize_keeps_columns() -> None:
    tokens = tokenize("subflow == 2 and dss.fin")
    assert [(t.kind, t.text, t.column) for t in tokens[:-1]] == [
        ("word", "subflow", 1), ("op", "==", 9), ("word", "2", 12), ("word", "and", 14), ("word", "dss.fin", 18),
    ]  # fmt: skip


def test_subflow_and_data_fin(session: Session) -> None:
    got = frames(session, "subflow == 2 and dss.fin")
    assert got, "the v0 trace closes subflow 2 with a DATA_FIN"
    for frame in got:
        row = session.index.row(frame - 1)
        assert row.subflow == 2 and row.dss & 0x10


def test_option_kind(session: Session) -> None:
    got = frames(session, "option == ADD_ADDR")
    assert got == [4]
    assert frames(session, "option != ADD_ADDR") == [f for f in range(1, session.index.count + 1) if f != 4]


def test_frame_comparison_and_precedence(session: Session) -> None:
    assert frames(session, "frame > 260") == [261, 262, 263, 264]
    assert frames(session, "frame < 3 or frame > 263 and syn") == [1, 2]
    assert frames(session, "(frame < 3 or frame > 263) and syn") == [1, 2]
    assert frames(session, "not frame > 2") == [1, 2]
    assert frames(session, "!(frame > 2) && syn") == [1, 2]


def test_bool_field_compared_with_false_is_negation(session: Session) -> None:
    assert frames(session, "syn == false") == frames(session, "not syn")
    assert frames(session, "syn == 1") == frames(session, "syn")


def test_decoded_fields_narrow_with_the_index(session: Session) -> None:
    """dss.dsn needs each packet decoded, but only packets with a mapping are candidates."""
    node = parse("dss.dsn > 0 and subflow == 1")
    assert evaluate(node, session.filter_context()) is None
    ctx = session.filter_context()
    mapped = set(frames(session, "dss.map and subflow == 1"))
    assert {int(r) + 1 for r in candidates(node, ctx)} <= mapped | set(frames(session, "subflow == 1"))
    assert set(frames(session, "dss.dsn > 0 and subflow == 1")) == mapped


def test_addresses_and_ports(session: Session) -> None:
    both = frames(session, "ip.addr == 10.2.1.2")
    assert set(frames(session, "ip.src == 10.2.1.2")) | set(frames(session, "ip.dst == 10.2.1.2")) == set(both)
    assert frames(session, "port == 22") == frames(session, "tcp")


def test_finding_and_rule_fields() -> None:
    s = Session(str(REPO / "tests" / "data" / "tcpdump" / "mptcp-aa-v1.pcap"))
    analysis = s.run()
    try:
        assert frames(s, "finding") == sorted({frame for f in analysis.findings for frame in f.frames})
        assert 13 in frames(s, "finding")
        assert frames(s, "finding == ADDR-001") == [13]  # the ADD_ADDR with a wrong HMAC
        assert frames(s, "finding == DSS-004") == []
    finally:
        s.close()


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("subflw == 2", "unknown field 'subflw'; did you mean 'subflow'?", 1),
        ("subflow ==", "expected a value after '=='", 11),
        ("(syn", "missing ')' for the '(' at column 1", 5),
        ("option", "'option' needs a kind, e.g. option == ADD_ADDR", 7),
        ("frame > abc", "'frame' needs an integer, not 'abc'", 9),
        ("syn and or fin", "'or' needs a test before it", 9),
        ("a $ b", "unexpected character '$'", 3),
        ("dir > c2s", "'dir' can only be compared with == or !=", 5),
        ("ip.src == 10.0.0.300", "'10.0.0.300' is not an IP address", 11),
        ("syn fin", "unexpected 'fin'; expected 'and', 'or' or the end", 5),
        ("", "empty filter", 1),
    ],
)
def test_bad_expressions_say_what_and_where(text: str, message: str, column: int) -> None:
    with pytest.raises(FilterError) as info:
        parse(text)
    assert info.value.message == message
    assert info.value.column == column


def test_unknown_option_lists_the_kinds() -> None:
    with pytest.raises(FilterError, match="unknown option 'FOO'; one of MP_CAPABLE, MP_JOIN, DSS"):
        parse("option == FOO")
