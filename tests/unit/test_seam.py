"""The seam between the tracker and the compiled core (tcp/seam.py, docs/compiled-core.md).

The compiled loop reads nothing of a tracker but its CoreState, under public names; the rules it applies to the
shared structures are the seam's, written once per engine and held equal here (the whole engines are held equal by
test_compiled_core.py)."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from midstat_tui.capture.files import FileSource
from midstat_tui.tcp import seam
from midstat_tui.tcp.connection import PyConnection, _core
from midstat_tui.tcp.seam import CoreState
from midstat_tui.tcp.states import DEFAULT_IDLE_TIMEOUTS, NAMES
from midstat_tui.tcp.tracker import Tracker, TrackerConfig

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures" / "pcaps"

pytestmark = pytest.mark.skipif(_core is None, reason="the compiled core is not built")


def test_the_compiled_core_names_only_the_seams_public_attributes():
    """Every attribute name the C source interns for the packet loop is a public CoreState slot (or a method of
    a container it holds): no tracker internals by name."""
    source = (ROOT / "midstat_tui" / "_core.c").read_text()
    block = re.search(r"const char \*attr_texts\[\] = \{(.*?)\};", source, re.S)
    assert block is not None
    names = re.findall(r'"([^"]+)"', block.group(1))
    assert set(names) - {"append"} == set(CoreState.__slots__)
    assert not [name for name in names if name.startswith("_")]
    # and no other lookup by a literal name reaches a private attribute
    assert not re.findall(r'(?:InternFromString|GetAttrString|CallMethod\w*)\([^;]*"_\w+"', source)
    assert not re.search(r"\b(_evict_one|_next_id|_handshakes|_timers|_tw_hold|_idle)\b", source)


def _core_state(compiled: bool) -> tuple[Tracker, CoreState]:
    tracker = Tracker(TrackerConfig(max_conns=2), compiled=compiled)
    return tracker, tracker.core


def test_the_loop_runs_on_a_core_state_alone():
    """`_core.run` takes a CoreState: a SYN on a free tuple is admitted into its table and handshake pool, the id
    comes from its next_id, and a full table calls its make_room (nothing else of a tracker is there)."""
    source = FileSource(str(FIXTURES / "close_client_first.pcap"))
    frames = [frame for batch in source.batches() for _, frame in batch]
    room_asked: list[float] = []
    state = CoreState(max_conns=0, shard=1, shard_count=4, tw_hold=60.0, idle_timeouts=DEFAULT_IDLE_TIMEOUTS,
                      make_room=room_asked.append)
    state.next_id = 41
    result = _core.run([(5.0, frames[0])], 0, math.inf, state, True, source.datalink)
    assert result[0] == _core.STOP_END and result[6] == 1  # the SYN fed, one connection started
    (conn,) = state.table.values()
    assert room_asked == [5.0]
    assert conn.id == 42 * 4 + 1 and state.next_id == 42 and conn.shard == 1
    assert list(state.handshakes) == [conn.key] and conn.pooled
    assert conn.client_state == "SYN_SENT"
    assert state.timers == [(5.0 + DEFAULT_IDLE_TIMEOUTS[2], conn.key)]


def test_the_tracker_keeps_its_shared_structures_in_the_core_state():
    tracker = Tracker()
    assert tracker.table is tracker.core.table
    tracker.table = {}
    assert tracker.table is tracker.core.table
    tracker.track_changes()
    assert tracker.touched is tracker.core.touched == set()
    assert tracker.core.events is False
    tracker.on_event = lambda *args: None
    assert tracker.core.events is True
    tracker.latest = 7.0
    assert tracker.core.latest == 7.0


STATES = st.integers(0, len(NAMES) - 1)
TIMES = st.floats(0.0, 1e9, allow_nan=False)


def _connection(factory, c_state: int, s_state: int, last: float, c_tw: float | None, s_tw: float | None,
                deadline: float, pooled: bool):
    conn = factory(7, 0, b"k" * 12, (), b"\x01\x02\x03\x04", 1000, b"\x05\x06\x07\x08", 80, last)
    conn.c.state, conn.s.state = c_state, s_state
    conn.c.tw_since, conn.s.tw_since = c_tw, s_tw
    conn.last = last
    conn.deadline = deadline
    conn.pooled = pooled
    return conn


@settings(max_examples=400, deadline=None)
@given(c_state=STATES, s_state=STATES, last=TIMES, c_tw=st.none() | TIMES, s_tw=st.none() | TIMES,
       deadline=st.sampled_from([math.inf, -1.0, 50.0]) | TIMES, pooled=st.booleans(),
       tw_hold=st.floats(0.0, 1e5), idle=st.dictionaries(STATES, st.floats(0.0, 1e6)),
       table=st.integers(0, 20), timers=st.integers(0, 80), pool=st.integers(0, 80),
       slacks=st.tuples(st.integers(0, 8), st.integers(0, 8)))
def test_both_engines_apply_the_same_seam_rules(c_state, s_state, last, c_tw, s_tw, deadline, pooled, tw_hold, idle,
                                               table, timers, pool, slacks):
    results = []
    for rules, factory in ((seam, PyConnection), (_core, _core.Connection)):
        state = CoreState(10, 0, 1, tw_hold, idle, make_room=lambda ts: None)
        state.timer_slack, state.pool_slack = slacks
        state.table = {bytes([i]): None for i in range(table)}
        state.timers = [(float(i), b"x") for i in range(timers)]
        state.handshakes.extend([b"x"] * pool)
        conn = _connection(factory, c_state, s_state, last, c_tw, s_tw, deadline, pooled)
        out = [rules.live_deadline(state, conn), rules.tidy_due(state)]
        out.append(rules.schedule(state, conn))
        out += [conn.deadline, conn.pooled, copy.copy(state.timers)]
        fresh = _connection(factory, c_state, s_state, last, c_tw, s_tw, deadline, False)
        rules.admit(state, fresh)
        out += [fresh.pooled, fresh.deadline, state.table.get(fresh.key) is fresh, len(state.handshakes),
                rules.tidy_due(state)]
        results.append(out)
    assert results[0] == results[1]
