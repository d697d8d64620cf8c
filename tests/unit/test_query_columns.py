"""The filter on the view's columns (query_columns) keeps exactly the rows the row-by-row predicate keeps: every
term alone and random combinations, on real captures (IPv4 and IPv6, VLAN tags, resets, mid-stream pickups)."""

from __future__ import annotations

import random

import pytest

from midstat_tui.conn_view import ConnView
from midstat_tui.engine.records import row_of
from midstat_tui.engine.session import Pulled
from midstat_tui.query import compile_query
from midstat_tui.query_columns import vec_of
from tests.helpers import FIXTURES, replay, shared

CAPTURES = [FIXTURES / "mixed_traffic.pcap", FIXTURES / "vlan_close.pcap", FIXTURES / "midstream.pcap",
            shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap")]
ATOMS = ["host 10.231.1.1", "host fd31:2::1", "net 10.231.0.0/16", "net fd31::/16", "net 192.168.0.0/16",
         "port 6001", "sport 30000-60000", "dport 80-443", "dport 6999", "state ESTABLISHED", "cstate time-wait",
         "sstate closed", "estab", "vlan 100", "vlan 20", "midstream", "ended", "suspicious", "zeek SF",
         "zeek REJ", "zeek OTH", "server 10.231.2.1:6001", "server fd31:2::1", "client 10.231.1.1",
         "client [fd31:1::1]:40000", "10.231.", ":443", "wait"]


def _view(path) -> ConnView:
    _, snap, started = replay(path)
    view = ConnView()
    rows = {c.id: row_of(c) for c in started}
    rows.update({c.id: row_of(c) for c in snap.connections})
    view.apply(Pulled(snap.ts, {}, rows))
    return view


def _expressions() -> list[str]:
    rng = random.Random(12)
    out = list(ATOMS)
    for _ in range(60):
        a, b, c = rng.sample(ATOMS, 3)
        op1, op2 = rng.choice(["and", "or", "&&", "||"]), rng.choice(["and", "or"])
        neg = rng.choice(["", "not ", "! "])
        out.append(f"{neg}({a} {op1} {b}) {op2} {rng.choice(['', 'not '])}{c}")
    return out


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_columns_and_rows_agree(path) -> None:
    view = _view(path)
    view.recompute()
    slots = view._order_slots
    rows = view.rows_at(slots)
    some = 0
    for text in _expressions():
        pred = compile_query(text)
        by_rows = [pred(r) for r in rows]
        by_columns = vec_of(pred)(view, slots).tolist()
        assert by_columns == by_rows, text
        some += 0 < sum(by_rows) < len(rows)
    if len(rows) > 10:
        assert some > 10, some  # the expressions split the rows, not all-or-nothing


def test_a_new_filter_in_the_view_uses_the_columns() -> None:
    """The view evaluates a new filter through the column form (a term whose row form would be wrong shows it)."""
    view = _view(FIXTURES / "mixed_traffic.pcap")
    view.set_query("dport 6001")
    view.recompute()
    assert view.order and all(view.rows[i].s_port == 6001 for i in view.order)
    calls = []
    original = view.column

    def spy(name):
        calls.append(name)
        return original(name)

    view.column = spy  # type: ignore[method-assign]
    view.set_query("dport 6999 or cstate ESTABLISHED")
    view.recompute()
    assert "s_port" in calls and "cstate" in calls
    assert {view.rows[i].s_port for i in view.order} == {6999}


PROBLEM_CAPTURES = sorted((FIXTURES / "problems").glob("*.pcap"))


@pytest.mark.parametrize("path", PROBLEM_CAPTURES, ids=lambda p: p.name)
def test_problem_terms_on_the_columns(path) -> None:
    """`problem KIND` on the columns (the view's detection at its moment) keeps the rows the row form keeps when
    given that moment; the view never falls back to the rows for it."""
    from midstat_tui.problems import KIND_NAMES
    view = _view(path)
    view.set_thresholds({"close_wait": 1.0, "fin_wait_2": 1.0})  # these captures end a few seconds in
    view.recompute()
    slots = view._order_slots
    rows = view.rows_at(slots)
    found = 0
    for text in [f"problem {k}" for k in (*KIND_NAMES, "any")] + ["not problem any", "port 1 or problem any",
                                                                   "problem any and not ended"]:
        pred = compile_query(text, view.lens)
        by_rows = [pred(r, view.now) for r in rows]
        assert vec_of(pred)(view, slots).tolist() == by_rows, text
        found += sum(by_rows) if text.startswith("problem ") else 0
    assert found  # each of these captures shows some problem
    expected = [r.id for r in rows if compile_query("problem any", view.lens)(r, view.now)]
    view.rows_at = None  # type: ignore[method-assign,assignment]  # the row form would fail now
    view.set_query("problem any or problem close_wait")
    view.recompute()
    assert sorted(view.order) == sorted(expected)
