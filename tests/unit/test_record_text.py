"""The compiled core's record encoder (_core.record_json, through engine.records.record_text) writes the bytes the
json module writes for the same record (issue #11: the output must not change), on real captures and on hostile
values (floats repr writes in exponent form, half-way roundings, IPv6, VLAN stacks, odd strings)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midstat_tui.engine.records import connection_dict, encode_json, record_text, row_of, row_record
from midstat_tui.output.plain import summary_row, table_cells
from midstat_tui.tcp.connection import COMPILED
from tests.helpers import FIXTURES, replay, shared

pytestmark = pytest.mark.skipif(not COMPILED, reason="no compiled core (or MIDSTAT_PURE_PYTHON)")

CAPTURES = [*sorted(FIXTURES.glob("*.pcap")), shared("zeek/Traces/vlan-collisions.pcap"),
            shared("zeek/Traces/ftp/ipv6.pcap"), shared("zeek/Traces/tcp/rst-inject-rae.pcap"),
            shared("zeek/Traces/echo-connections.pcap.gz")]


def _python_text(conn) -> str:
    return encode_json(row_record(row_of(conn)))


@pytest.mark.parametrize("path", [p for p in CAPTURES if p.exists()], ids=lambda p: p.name)
def test_every_connection_of_a_capture(path):
    _, _, started = replay(path)
    assert started
    for conn in started:
        assert conn.__class__.__name__ == "Connection"
        assert record_text(conn) == _python_text(conn)


def _a_connection():
    _, _, started = replay(FIXTURES / "vlan_close.pcap")
    return started[0]


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e20, max_value=1e20)
times = st.one_of(finite, st.integers(0, 4_000_000_000_000_000).map(lambda n: n / 1e6),
                  st.integers(0, 10**9).map(lambda n: n / 2e6),  # halves at the 6th decimal
                  st.sampled_from([0.0, -0.0, 1e-4, 9.99e-5, 1.8e-05, 1e16, 4294967296.0, 1099511.6277765]))


@settings(max_examples=400, deadline=None)
@given(first=times, last=times, rtt_c=st.one_of(st.none(), finite, times), rtt_s=st.one_of(st.none(), times),
       end_ts=st.one_of(st.none(), times))
def test_floats_as_repr_and_round_write_them(first, last, rtt_c, rtt_s, end_ts):
    conn = _a_connection()
    conn.first, conn.last, conn.rtt_client, conn.rtt_server, conn.end_ts = first, last, rtt_c, rtt_s, end_ts
    assert record_text(conn) == _python_text(conn)


def test_strings_that_need_escaping_fall_back_to_python():
    conn = _a_connection()
    for ended in ("a\"b", "back\\slash", "é", "tab\t", None, "closed"):
        conn.ended = ended
        assert record_text(conn) == _python_text(conn)
    conn.history = "Sh\"AD"
    assert record_text(conn) == _python_text(conn)


def test_not_finite_floats():
    conn = _a_connection()
    conn.last = math.inf
    assert record_text(conn) == _python_text(conn)


def _python_cells(conn) -> str:
    return "\t".join(summary_row(connection_dict(conn)))


@pytest.mark.parametrize("path", [p for p in CAPTURES if p.exists()], ids=lambda p: p.name)
def test_table_cells_of_every_connection_of_a_capture(path):
    _, _, started = replay(path)
    for conn in started:
        assert table_cells(conn) == _python_cells(conn)


@settings(max_examples=400, deadline=None)
@given(first=times, last=times, rtt_c=st.one_of(st.none(), times), rtt_s=st.one_of(st.none(), finite, times))
def test_table_cells_format_floats_as_python(first, last, rtt_c, rtt_s):
    conn = _a_connection()
    conn.first, conn.last, conn.rtt_client, conn.rtt_server = first, last, rtt_c, rtt_s
    assert table_cells(conn) == _python_cells(conn)


def test_table_cells_empty_and_odd_strings():
    conn = _a_connection()
    for ended in ("", None, "closed", "é", "a\tb"):
        conn.ended = ended
        conn.history = ""
        assert table_cells(conn) == _python_cells(conn)


def test_table_layout_in_c_is_the_python_one(monkeypatch):
    """summary_lines lays rows out in C (measure_cells, lay_out) or in Python: the same lines, wide and odd cells
    (IPv6, non-ASCII, empty) included, past the spill to disk too."""
    from midstat_tui.output import plain

    rows = []
    for path in [p for p in CAPTURES if p.exists()]:
        _, _, started = replay(path)
        rows += [table_cells(c) for c in started]
    rows.append("\t".join(["7", "1.000000", "0.000000", "[fe80::1]:1", "é:2", "-", "CLOSED", "CLOSED", "", "-", "1",
                           "0", "40", "0", "-", "-"]))
    monkeypatch.setattr(plain, "SPILL_ROWS", 50)
    in_c = list(plain.summary_lines(iter(rows)))
    monkeypatch.setattr(plain, "_lay_out", None)
    monkeypatch.setattr(plain, "_measure_cells", None)
    in_python = list(plain.summary_lines(iter(rows)))
    assert len(in_c) == len(rows) + 1 and in_c == in_python
