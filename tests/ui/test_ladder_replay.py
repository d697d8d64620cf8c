"""#13: a file's ladder follows the replay (at capture pace, `--speed 1`): the flow screen shows the flow's packets up
to the moment the table shows, no later one; it grows as the replay goes on and is cut again after a seek (the
session's, and the main screen's `g`, the flow screen opened again). On one core and on two."""

from __future__ import annotations

import asyncio
import time

import dpkt
import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.flow_packets import FlowReader, FlowRef
from midstat_tui.engine.headless import Job
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.session import Session
from midstat_tui.engine.shard_sessions import ShardedFileSession
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.app import MidstatApp
from midstat_tui.ui.flow_screen import FlowScreen
from midstat_tui.ui.ladder_view import LadderView
from tests.helpers import FIXTURES
from tests.ui.test_ladder import _open_ladder

CAPTURE = FIXTURES / "lossy_transfer.pcap"  # one connection, 0.84 s, a few hundred packets


def _times() -> list[float]:
    """The connection's packet times, as the whole file's replay counts them (its first packet is the file's)."""
    reader = FlowReader(str(CAPTURE))
    try:
        (row,) = reader.select(None)
        times = [p.ts for p in reader.flow(FlowRef.of(row)).packets]
    finally:
        reader.close()
    with open(CAPTURE, "rb") as fh:
        assert times[0] == next(iter(dpkt.pcap.Reader(fh)))[0]
    assert len(times) == row.packets_c2s + row.packets_s2c
    return times


def _paused_session(cores: int):
    if cores == 1:
        source = FileSource(str(CAPTURE))
        session = Session(Engine(source.datalink), source, live=False, speed=1.0)
        session.paused = True  # nothing replayed until asked
        session.start()
        return session
    session = ShardedFileSession(Job(str(CAPTURE), None, TrackerConfig()), 2, speed=1.0)
    session.start()
    session.toggle_pause()
    return session


async def _until(app, cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        app.tick()
        if cond():
            return
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def _at(app, target: float) -> None:
    await _until(app, lambda: abs(app.view.now - target) < 1e-6 and len(app.view.rows) == 1, f"at {target}")


def _table_packets(app) -> int:
    (row,) = app.view.rows.values()
    return row.packets_c2s + row.packets_s2c


def _check(screen: FlowScreen, app, times: list[float]) -> int:
    """The ladder holds the packets up to the table's moment, as many as the table's row counts, each drawn."""
    view = screen.query_one(LadderView)
    count = _table_packets(app)
    assert view.flow is not None and len(view.flow.packets) == count
    assert [p.ts for p in view.flow.packets] == [t for t in times if t <= app.view.now + 1e-9]
    shown = sum(1 for line in view.lines if line.kind == "packet")
    folded = sum(line.last - line.first + 1 for line in view.lines if line.kind == "fold" and
                 line.fold not in view.unfolded)
    assert shown + folded == count
    return count


@pytest.mark.parametrize("cores", [1, 2])
async def test_the_ladder_follows_the_replay_and_its_seeks(cores):
    times = _times()
    t0 = times[0]
    session = _paused_session(cores)
    app = MidstatApp(session, interval=None, show_load=False)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            session.seek(t0 + 0.008)  # in the first burst of data
            await _at(app, t0 + 0.008)
            await _open_ladder(app, pilot)
            screen = app.screen
            first = _check(screen, app, times)
            assert 0 < first < len(times)  # not the packets the table does not know yet

            session.step(0.5)  # the replay goes on (paused: one step of 0.5 s of capture time)
            await _at(app, t0 + 0.508)
            screen.refresh_flow()  # the screen's one-second refresh
            await pilot.pause()
            grown = _check(screen, app, times)
            assert grown > first

            session.seek(t0 + 0.004)  # back: cut again
            await _at(app, t0 + 0.004)
            screen.refresh_flow()
            await pilot.pause()
            back = _check(screen, app, times)
            assert 0 < back < first

            # the main screen's go-to, then the flow screen opened again
            await pilot.press("escape")
            await pilot.pause()
            await pilot.press("g", *"+0.45", "enter")
            await _at(app, t0 + 0.45)
            await _open_ladder(app, pilot)
            screen = app.screen
            assert back < _check(screen, app, times) < grown

            # played at capture pace to the end: the ladder keeps up with the table at each refresh
            session.toggle_pause()
            deadline = time.monotonic() + 30
            while True:
                app.tick()
                screen.refresh_flow()
                await pilot.pause()
                count = _check(screen, app, times)
                if count == len(times):
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
    finally:
        session.stop()


async def test_before_the_connection_the_ladder_says_so_and_fills_in():
    times = _times()
    t0 = times[0]
    session = _paused_session(1)
    app = MidstatApp(session, interval=None, show_load=False)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            session.seek(t0 + 0.3)
            await _at(app, t0 + 0.3)
            await pilot.press("enter", "l")
            await pilot.pause()
            screen = app.screen
            session.seek(t0 - 1.0)  # before its first packet: the table no longer holds it
            await _until(app, lambda: abs(app.view.now - (t0 - 1.0)) < 1e-6, "before the start")
            screen.refresh_flow()
            await pilot.pause()
            view = screen.query_one(LadderView)
            assert view.flow is None and view.lines == []
            assert "the replay is before this connection's first packet" in str(view.get_option_at_index(0).prompt)
            session.seek(t0 + 0.2)
            await _at(app, t0 + 0.2)
            screen.refresh_flow()
            await pilot.pause()
            assert _check(screen, app, times) > 0
    finally:
        session.stop()
