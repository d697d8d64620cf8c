"""The problems lens's rules, one kind at a time on crafted conversations (both engines), the new per-side facts the
tracker keeps for it, and the vectorised detection (the TUI's, at a million rows) against the per-row rule (the
filter term's) on real captures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from midstat_tui.engine.records import row_of
from midstat_tui.problems import (
    COUNT,
    DEFAULTS,
    KIND_NAMES,
    KINDS,
    WIDTH,
    ThresholdError,
    detect,
    matrix_of,
    parse_threshold,
    report,
    row_has,
    row_kinds,
    thresholds_vector,
)
from midstat_tui.query import QueryError, compile_query
from midstat_tui.tcp.connection import COMPILED_AVAILABLE
from midstat_tui.tcp.tracker import Tracker
from tests.flows import Flow
from tests.helpers import FIXTURES, replay, shared

ENGINES = [False] + ([True] if COMPILED_AVAILABLE else [])


@pytest.fixture(params=ENGINES, ids=lambda c: "compiled" if c else "python")
def flow(request):
    return Flow(Tracker(compiled=request.param))


def kinds(f: Flow, now: float | None = None, **thresholds: float) -> list[str]:
    return row_kinds(row_of(f.conn), f.ts if now is None else now, thresholds)


def test_every_kind_says_what_it_means_and_to_check():
    for kind in KINDS:
        assert kind.meaning.endswith(".") and len(kind.meaning) > 60
        assert (kind.default is None) == (kind.measure == "flag")


def test_a_clean_conversation_has_no_problem(flow):
    flow.handshake()
    flow.c("PA", 100)
    flow.s("PA", 2000)
    flow.c("A")
    assert kinds(flow, flow.ts + 3600) == []
    flow.c("FA")
    flow.s("FA")
    flow.c("A")
    assert kinds(flow, flow.ts + 3600) == []


def test_close_wait_counts_from_the_moment_the_side_entered_it(flow):
    flow.handshake()
    flow.c("PA", 100)
    flow.s("A")
    flow.c("FA")           # the client closes: the server is in CLOSE_WAIT from here
    entered = flow.ts
    flow.s("A")            # the server acknowledges: the client is in FIN_WAIT_2 from here
    assert flow.conn.s.since == entered and flow.conn.c.since == flow.ts
    assert kinds(flow, entered + 9.9) == []
    assert kinds(flow, entered + 10.0) == ["close_wait"]
    assert kinds(flow, flow.ts + 60.0) == ["close_wait", "fin_wait_2"]
    assert kinds(flow, entered + 5.0, close_wait=5) == ["close_wait"]


def test_unanswered_syn_and_refused(flow):
    flow.c("S")
    flow.c("S", seq=flow.isn[0], dt=1.0)   # the kernel's retransmission
    assert kinds(flow, flow.ts + 1.0) == []
    assert kinds(flow, flow.ts + 2.0) == ["unanswered_syn"]
    other = Flow(Tracker(compiled=flow.tracker.compiled))
    other.c("S")
    other.s("RA", seq=0)
    assert kinds(other, other.ts + 100) == ["refused"]


def test_reset_says_by_whom_and_when(flow):
    flow.handshake()
    flow.c("PA", 100)
    flow.s("RA")
    row = row_of(flow.conn)
    assert row_kinds(row, flow.ts) == ["reset"]
    rep = report([row], flow.ts)
    assert rep.problems[0].detail.startswith("reset by the server mid-transfer")


def test_zero_window_runs_until_the_window_opens(flow):
    flow.handshake()
    flow.c("PA", 1000)
    flow.s("A", win=0)
    start = flow.ts
    flow.c("A", dt=1.0)                    # a probe
    flow.s("A", win=0, dt=0.5)             # still closed: the run goes on from `start`
    assert flow.conn.s.zw_since == start
    assert kinds(flow, start + 1.9) == []
    assert kinds(flow, start + 2.0) == ["zero_window"]
    flow.s("A", win=512)                   # the reader read: over
    assert flow.conn.s.zw_since is None
    assert kinds(flow, start + 100) == []


def test_retransmissions_as_a_share_of_the_bytes(flow):
    flow.handshake()
    for _ in range(19):
        flow.c("PA", 1000)
    flow.c("PA", 1000, seq=flow.nxt[0] - 1000, dt=0.5)   # one segment of 19 sent again: 1000 / 20000 = 5%
    flow.s("A")
    assert kinds(flow) == ["retransmissions"]
    assert kinds(flow, retransmissions=0.06) == []


def test_one_way_needs_a_flow_that_lasted(flow):
    flow.c("S")
    flow.c("A", dt=0.1)                    # one-sided capture: the SYN's sender goes on, nothing from the server
    flow.c("PA", 100, dt=1.0)
    assert kinds(flow, flow.ts + 100) == []             # 1.1 s of traffic one way: below 2 s
    flow.c("PA", 100, dt=1.0)
    assert kinds(flow, flow.ts + 100) == ["one_way"]


def test_half_open_after_a_reset_and_after_silence(flow):
    flow.handshake()
    flow.c("PA", 100)
    flow.s("A")
    flow.c("RA")                           # the client is gone...
    flow.s("PA", 500, dt=6.0)              # ... and the server still sends, 6 s later
    assert "half_open" in kinds(flow)
    silent = Flow(Tracker(compiled=flow.tracker.compiled))
    silent.handshake()
    silent.c("PA", 100)
    silent.s("A")                          # the server's last word
    for _ in range(4):
        silent.c("PA", 100, seq=silent.nxt[0] - 100, dt=2.0)   # the client retransmits into silence
    assert kinds(silent, silent.ts) == ["retransmissions", "half_open"]


def test_suspicious_rst(flow):
    flow.handshake()
    flow.c("PA", 500)
    flow.s("R", seq=flow.nxt[1] + 100_000)
    assert kinds(flow) == ["suspicious_rst"]


def test_ended_rows_are_judged_at_their_end():
    """An ended connection stays in the table for its linger time: its durations stop at its end."""
    f = Flow()
    f.c("S")
    end = f.ts + 5
    row = row_of(f.conn)._replace(ended="idle_timeout", end_ts=end)
    assert row_kinds(row, end + 1000) == ["unanswered_syn"]
    assert row_kinds(row._replace(end_ts=f.ts + 2), end + 1000) == []


@pytest.mark.parametrize(("text", "expected"), [
    ("close_wait=30", ("close_wait", 30.0)), ("CLOSE-WAIT=0", ("close_wait", 0.0)),
    ("retransmissions=0.1", ("retransmissions", 0.1)),
])
def test_parse_threshold(text, expected):
    assert parse_threshold(text) == expected


@pytest.mark.parametrize("text", ["close_wait", "close_wait=x", "retransmissions=2", "reset=1", "nope=1",
                                  "zero_window=inf", "one_way=-3"])
def test_parse_threshold_refuses(text):
    with pytest.raises(ThresholdError):
        parse_threshold(text)


def test_the_filter_term():
    f = Flow()
    f.c("S")
    row = row_of(f.conn)
    assert not compile_query("problem unanswered_syn")(row)  # judged at its own last packet by default
    from midstat_tui.problems import Lens
    lens = Lens()
    later = f.ts + 10
    assert compile_query("problem unanswered_syn", lens)(row, later)  # the moment is an argument of each call
    assert compile_query("problem any and not problem refused", lens)(row, later)
    assert compile_query("port 1 or (problem unanswered_syn and not ended)", lens)(row, later)
    assert not compile_query("not problem any", lens)(row, later)
    same = compile_query("problem any", lens)
    assert same(row, later) and not same(row) and same(row, later)  # no moment kept between calls
    assert compile_query("not ended")(row, later) and compile_query("")(row, later)  # every predicate takes it
    lens.thresholds = {"unanswered_syn": 60}
    assert not compile_query("problem any", lens)(row, later)
    with pytest.raises(QueryError, match="did you mean 'zero_window'"):
        compile_query("problem zero-windw")
    with pytest.raises(QueryError, match="needs a value"):
        compile_query("problem")
    with pytest.raises(QueryError, match="did you mean 'problem'"):
        compile_query("problme close_wait")


CAPTURES = [FIXTURES / "mixed_traffic.pcap", FIXTURES / "problems" / "half_open.pcap",
            FIXTURES / "problems" / "zero_window.pcap", FIXTURES / "problems" / "unanswered_syn.pcap",
            shared("ndpi/tests/cfgs/default/pcap/alexa-app.pcapng"),
            shared("ndpi/tests/cfgs/default/pcap/KakaoTalk_chat.pcap")]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_vectorised_detection_equals_the_per_row_rule(path):
    _, snap, started = replay(path)
    rows = [row_of(c) for c in started]
    matrix = matrix_of(rows)
    assert matrix.shape == (len(rows), WIDTH)
    end = max(r.last for r in rows)
    for now in (end - 5, end, end + 3, end + 100):
        for thresholds in ({}, {"close_wait": 0, "zero_window": 0.5, "retransmissions": 0.01, "one_way": 0},
                           {name: 1e6 for name in DEFAULTS}):
            found = detect(matrix, now, thresholds_vector(thresholds))
            merged = {**DEFAULTS, **thresholds}
            expected = np.array([[row_has(r, k, now, merged) for k in range(COUNT)] for r in rows])
            assert (found == expected).all()
    assert detect(matrix_of([]), 0.0, thresholds_vector()).shape == (0, COUNT)
    assert not math.isnan(thresholds_vector()[KIND_NAMES.index("close_wait")])
