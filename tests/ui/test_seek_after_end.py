"""A replay played to its end, then sought back with `g` and with `[`: it goes there and plays on from there at its
speed, the table as a 1-core replay's at that moment. On two cores the seek was ignored (the shards kept the pacing
anchor of the replay's start, so they raced back to the end at once) and a seek ordered while core 0 was still
waiting for an earlier one's tables took those tables for its own."""

from __future__ import annotations

import asyncio
import time

import pytest

from midstat_tui.engine.headless import Job
from midstat_tui.engine.shard_sessions import ShardedFileSession
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.app import MidstatApp
from tests.ui.conftest import MIXED, finished_session
from tests.unit.test_session import _reference_rows

FAST = 10.0   # the first play to the end: a quarter of a second of mixed_traffic's 2.5
AFTER = 1.0   # the speed after the end: the 2 s from +0.5 to the end last 2 s


def _session(cores: int):
    if cores == 1:
        return finished_session(MIXED, speed=FAST)
    session = ShardedFileSession(Job(str(MIXED), None, TrackerConfig()), 2, speed=FAST)
    session.start()
    _wait(lambda: session.at_end and session.span is not None)
    return session


def _wait(cond, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


async def _moved(pilot, app: MidstatApp, last: float) -> None:
    """Pull, as a face does, until the table is no longer at the end."""
    deadline = time.monotonic() + 10
    while True:
        app.tick()
        await pilot.pause()
        if app.view.now != last:
            return
        assert time.monotonic() < deadline, "the table stayed at the end"
        await asyncio.sleep(0.005)


def _table(app: MidstatApp) -> list:
    return sorted(app.view.rows[i]._replace(id=0, shard=0) for i in app.view.order)


def _expected(until: float) -> list:
    return sorted(row._replace(id=0, shard=0) for row in _reference_rows(MIXED, until=until).values())


@pytest.mark.parametrize("cores", [1, 2])
async def test_a_seek_back_from_the_end_goes_there_and_plays_on(cores):
    session = _session(cores)
    app = MidstatApp(session, interval=None, show_load=False)
    try:
        async with app.run_test(size=(120, 34)) as pilot:
            first, last = session.span
            session.set_speed(AFTER)
            for keys, target in ((("g", "+", "0", ".", "5", "enter"), first + 0.5), (("left_square_bracket",), first)):
                app.tick()
                assert session.at_end and app.view.now == last
                asked = time.monotonic()
                await pilot.press(*keys)
                await _moved(pilot, app, last)
                # there (or a moment after: it plays on), not back at the end at once; the table of that moment
                now = app.view.now
                assert target <= now < last - 1 and not session.at_end
                assert _table(app) == _expected(now)
                assert len(app.view.rows) < 21  # (the end's table has 21 rows)
                _wait(lambda: session.at_end and session.position == last, 10)  # it plays to the end again,
                # at its speed: the (last - target) seconds of packets take (last - target) / AFTER of the clock
                assert time.monotonic() - asked > 0.7 * (last - target) / AFTER
            app.tick()
            assert _table(app) == _expected(None)
    finally:
        session.stop()


def test_a_seek_asked_while_core_0_is_busy_waits_for_its_own_tables():
    """Two seeks, the second ordered while core 0 has not yet read the shards' tables of the first (as at the end
    of a file, where core 0 seeks by itself, and the user presses `[`): the table is the second one's, not the first
    one's with the second's rows added."""
    session = ShardedFileSession(Job(str(MIXED), None, TrackerConfig()), 2, speed=0.0)
    session.start()
    try:
        _wait(lambda: session.at_end and session.span is not None)
        first, last = session.span
        session.toggle_pause()
        with session._lock:  # core 0 cannot take a message meanwhile
            session._seek_all(first + 2.0)
            time.sleep(0.5)  # the shards land there and send their tables
            session._seek_all(first + 0.3)
        rows: dict = {}
        _wait(lambda: _apply(rows, session.pull()) == first + 0.3 and not session._awaiting)
        time.sleep(0.3)  # anything more that comes
        _apply(rows, session.pull())
        assert _rows(rows) == _expected(first + 0.3)
    finally:
        session.stop()


def _apply(rows: dict, pulled) -> float:
    if pulled.reset:
        rows.clear()
    rows.update(pulled.changes)
    return pulled.position


def test_each_tick_on_two_cores_has_every_shard_up_to_its_moment():
    """The face's Ticks as they come (listen): each one's table is a 1-core replay's at its moment. Core 0 sent one
    when the first shard's second came (at the other's earlier moment, with the first one's rows of the next
    second) and the full one only after, which the face holds for most of a second: the header's counts lagged its
    clock by about a second."""
    import queue

    session = ShardedFileSession(Job(str(MIXED), None, TrackerConfig()), 2, speed=2.0)
    ticks: queue.Queue = queue.Queue()
    session.listen(ticks.put)
    session.start()
    rows: dict = {}
    seen = []
    try:
        deadline = time.monotonic() + 20
        while not (session.at_end and ticks.empty()):
            assert time.monotonic() < deadline, "no end"
            try:
                tick = ticks.get(timeout=0.1)
            except queue.Empty:
                continue
            position = _apply(rows, tick)
            if session.first_ts and position > session.first_ts:
                seen.append((position, _rows(rows)))
            session.delivered()
        end = session.position
    finally:
        session.stop()
    # each closed second of the clock (the end's moment: below)
    seconds = [(position, table) for position, table in seen
               if position < end and abs((position - seen[0][0]) - round(position - seen[0][0])) < 1e-6]
    assert len(seconds) >= 2
    for position, table in seconds:
        assert table == _expected(position), f"+{position - seen[0][0]:.3f}s"
    assert _rows(rows) == _expected(None)


def _rows(rows: dict) -> list:
    return sorted(r._replace(id=0, shard=0) for r in rows.values() if r is not None)
