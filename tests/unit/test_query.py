"""The filter language: every form, combinations, and errors that say where."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midstat_tui.engine.records import row_of
from midstat_tui.query import QueryError, compile_query, keywords_used
from midstat_tui.tcp.tracker import Tracker
from tests.flows import Flow


@pytest.fixture(scope="module")
def conns():
    """A small zoo: established web, a refused attempt, a half-closed v6 flow, a VLAN flow, a mid-stream one."""
    tracker = Tracker()
    web = Flow(tracker=tracker, client=("10.0.0.1", 40000), server=("10.0.0.2", 443))
    web.handshake()
    refused = Flow(tracker=tracker, client=("10.0.0.3", 1500), server=("192.168.1.9", 25))
    refused.c("S")
    refused.s("RA", seq=0)
    v6 = Flow(tracker=tracker, client=("fd00::1", 50000), server=("fd00::2", 8080))
    v6.handshake()
    v6.c("FA")
    v6.s("A")
    tagged = Flow(tracker=tracker, client=("10.0.0.1", 40001), server=("10.0.0.2", 443), vlan=(100,))
    tagged.c("S")
    middle = Flow(tracker=tracker, client=("172.16.0.5", 33000), server=("172.16.0.6", 22))
    middle.c("PA", 10)
    flows = {"web": web, "refused": refused, "v6": v6, "tagged": tagged, "middle": middle}
    return {name: row_of(flow.conn) for name, flow in flows.items()}


def _names(query: str, conns: dict) -> set[str]:
    pred = compile_query(query)
    return {name for name, conn in conns.items() if pred(conn)}


@pytest.mark.parametrize(("query", "expected"), [
    ("", {"web", "refused", "v6", "tagged", "middle"}),
    ("host 10.0.0.2", {"web", "tagged"}),
    ("host fd00::1", {"v6"}),
    ("net 10.0.0.0/8", {"web", "refused", "tagged"}),
    ("net fd00::/16", {"v6"}),
    ("net 192.168.0.0/16", {"refused"}),
    ("port 443", {"web", "tagged"}),
    ("sport 1024-2000", {"refused"}),
    ("dport 443", {"web", "tagged"}),
    ("sport 443", set()),
    ("state ESTABLISHED", {"web", "middle"}),
    ("state estab", {"web", "middle"}),
    ("cstate fin-wait-2", {"v6"}),
    ("sstate CLOSE_WAIT", {"v6"}),
    ("cstate SYN-SENT", {"tagged"}),
    ("vlan 100", {"tagged"}),
    ("midstream", {"middle"}),
    ("ended", {"refused"}),
    ("zeek REJ", {"refused"}),
    ("zeek s1", {"web"}),
    ("not ended and net 10.0.0.0/8", {"web", "tagged"}),
    ("dport 443 or dport 22", {"web", "tagged", "middle"}),
    ("(dport 443 or dport 22) and not vlan 100", {"web", "middle"}),
    ("port 443 !vlan 100", {"web"}),
    ("dport 443 && cstate estab || midstream", {"web", "middle"}),
    ("10.0.0.", {"web", "refused", "tagged"}),
    ("wait", {"v6"}),
    (":8080", {"v6"}),
    ("fd00", {"v6"}),
    ("dport 443 | dport 22", {"web", "tagged", "middle"}),
    ("dport 443 & not vlan 100", {"web"}),
    ("fin-wait-2", {"v6"}),
    ("FIN_WAIT_2", {"v6"}),
    ("close-wait", {"v6"}),
    ("syn-sent", {"tagged"}),
    ("estab", {"web", "middle"}),
])
def test_forms(query, expected, conns):
    assert _names(query, conns) == expected


@pytest.mark.parametrize(("query", "column", "words"), [
    ("port", 5, "needs a value"),
    ("host 300.1.1.1", 6, "not an IP address"),
    ("net 10.0.0.0/33", 5, "not a network"),
    ("dport 99999", 7, "0-65535"),
    ("sport 10-2", 7, "0-65535"),
    ("state NOPE", 7, "not a TCP state"),
    ("zeek XYZ", 6, "not a Zeek conn_state"),
    ("vlan five", 6, "not a VLAN id"),
    ("(port 80", 1, "not closed"),
    ("port 80)", 8, "unexpected ')'"),
    ("port 80 and", 12, "ends too soon"),
    ("or port 80", 1, "expected a filter term"),
    ("hots 1.2.3.4", 1, "did you mean 'host'?"),
    ("dport=8009", 1, "write 'dport 8009'"),
    ("port 80 and sstaet closed", 13, "did you mean 'sstate'?"),
    ("xyzzy", 1, "unknown word 'xyzzy'"),
    ("| port 80", 1, "expected a filter term"),
])
def test_errors_say_what_and_where(query, column, words):
    with pytest.raises(QueryError) as info:
        compile_query(query)
    assert info.value.position + 1 == column
    assert words in str(info.value)
    assert f"column {column}" in str(info.value)


def test_keywords_used_names_the_flags_and_keywords():
    assert keywords_used("not ended and (dport 80 | midstream)") == {"ended", "dport", "midstream"}
    assert keywords_used("time-wait 10.0.0.1") == set()


@settings(max_examples=1000)
@given(st.lists(st.sampled_from(["host", "net", "port", "sport", "dport", "state", "cstate", "sstate", "vlan",
                                 "midstream", "ended", "zeek", "and", "or", "not", "(", ")", "!", "&&", "||",
                                 "10.0.0.1", "fd00::/8", "80", "1-2", "estab", "REJ", "7", "x&y", "%"]),
                max_size=12))
def test_any_input_compiles_or_says_where(words):
    query = " ".join(words)
    try:
        pred = compile_query(query)
    except QueryError as err:
        assert 0 <= err.position <= len(query)
        return
    tracker = Tracker()
    f = Flow(tracker=tracker)
    f.handshake()
    assert pred(row_of(f.conn)) in (True, False)
