"""The header's `N of M rows shown` is what the table holds, at the end of a replay with a short `--linger` (a reused
port's departed incarnation let go and its slot given to the next new row in the same pull once counted its slot
twice: `13 of 12 rows shown`, found by tests/functional/test_keep_ended_pty.py). On one core and on two."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Static

from midstat_tui.conn_view import ConnView
from midstat_tui.engine.headless import Job
from midstat_tui.engine.shard_sessions import ShardedFileSession
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.app import MidstatApp
from tests.ui.conftest import MIXED, finished_session

LINGER = 0.2


def _session(cores: int):
    config = TrackerConfig(linger=LINGER)
    if cores == 1:
        return finished_session(MIXED, speed=0.0, config=config)
    session = ShardedFileSession(Job(str(MIXED), None, config), 2, speed=0.0)
    session.start()
    deadline = time.monotonic() + 60
    while not session.at_end and time.monotonic() < deadline:
        time.sleep(0.02)
    assert session.at_end
    return session


@pytest.mark.parametrize("cores", [1, 2])
async def test_rows_shown_are_the_rows_in_the_table(cores):
    app = MidstatApp(_session(cores), interval=None, show_load=False)
    app.view.linger = LINGER
    async with app.run_test(size=(80, 24)) as pilot:
        app.tick()
        await pilot.pause()
        view = app.view
        order = view.order
        assert len(order) == len(set(order)), order  # no row listed twice
        assert set(order) == set(view.rows)          # every row in the table shown (no filter, ended shown)
        assert view.shown_count == len(view.rows) == app.table.view.shown_count
        line = str(app.query_one("#summary-line2", Static).render())
        assert f"{len(view.rows)} of {len(view.rows)} rows shown" in line
        assert len(view.rows) < 21  # the ended ones went (the file has 21 connections)


def test_a_slot_let_go_and_taken_again_in_one_pull_is_listed_once():
    """The pull that makes it: the view's own data, replayed from a session at the end of the file."""
    session = finished_session(MIXED, speed=0.0, config=TrackerConfig(linger=LINGER))
    try:
        view = ConnView()
        view.linger = LINGER
        view.apply(session.pull())
    finally:
        session.stop()
    view.recompute()
    assert sorted(view.order) == sorted(view.rows)
