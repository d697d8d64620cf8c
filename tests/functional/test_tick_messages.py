"""The TUI's sessions send their Ticks as they make them (session.listen: one out at a time, the next once the face
says delivered), on 1 core and on 2 (core 0's merge; each file shard sends each of its Ticks as made, not what a
50 ms poll found): the app shows each one as a message, with no pull on a timer. And the rates and sparklines of a
replay: kept at the end of the file (2 cores blanked them), cleared by a seek (they kept the seconds of before),
on 1 and 2 cores alike; `+`/`-` while paused say the speed."""

from __future__ import annotations

import threading
import time

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.headless import Job
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.session import Session
from midstat_tui.engine.shard_sessions import ShardedFileSession
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.app import MidstatApp
from tests.helpers import shared

CAPTURE = shared("ndpi/tests/cfgs/default/pcap/reddit.pcap")  # 14 s of HTTPS to many servers
SECONDS = 14


def _one(speed: float = 0.0):
    source = FileSource(str(CAPTURE))
    return Session(Engine(source.datalink), source, live=False, speed=speed)


def _two(speed: float = 0.0):
    return ShardedFileSession(Job(str(CAPTURE), None, TrackerConfig()), 2, speed=speed)


MAKERS = pytest.mark.parametrize("make", [_one, _two], ids=["1-core", "2-cores"])


def _until(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class _Face:
    """What a face does with the Ticks it is sent: keep them, say delivered (from its own thread, as the app's
    loop does)."""

    def __init__(self, session) -> None:
        self.session = session
        self.ticks: list = []
        self.lock = threading.Lock()
        session.listen(self.take)

    def take(self, tick) -> None:
        with self.lock:
            self.ticks.append(tick)
        threading.Thread(target=self.session.delivered).start()

    def last(self):
        with self.lock:
            return self.ticks[-1] if self.ticks else None


def _ticks_to_the_end(session) -> list:
    """Every Tick a session sends from its start to the end of the file, as a face takes them."""
    face = _Face(session)
    session.start()
    try:
        _until(lambda: session.at_end and face.last() is not None and face.last().at_end)
        time.sleep(0.3)
        with face.lock:
            return list(face.ticks)
    finally:
        session.stop()


def _table(ticks: list) -> dict:
    """The table a face holds after these Ticks: a reset starts it over, None removes a row."""
    rows: dict = {}
    for tick in ticks:
        if tick.reset:
            rows = {}
        rows.update(tick.changes)
    return {conn_id: row for conn_id, row in rows.items() if row is not None}


@MAKERS
def test_each_step_comes_as_a_tick_without_a_pull(make):
    session = make(1.0)
    session.paused = True
    face = _Face(session)
    session.start()
    try:
        if make is _two:
            _until(lambda: session.position is not None)
        positions = []
        for _ in range(4):
            count = len(face.ticks)
            before = session.position
            session.step(1.0)
            _until(lambda c=count, b=before: len(face.ticks) > c and face.last().position not in (b, None, 0.0))
            _until(lambda: face.last().position == session.position, 5)
            positions.append(face.last().position)
        gaps = [b - a for a, b in zip(positions, positions[1:], strict=False)]
        assert gaps == pytest.approx([1.0] * 3, abs=0.01), positions
        rows: dict = {}
        for tick in face.ticks:  # the Ticks together hold the rows of the table
            if tick.reset:
                rows = {}
            rows.update(tick.changes)
        assert len([v for v in rows.values() if v is not None]) > 10
    finally:
        session.stop()


@MAKERS
def test_rates_stay_at_the_end_and_sparklines_clear_on_a_seek(make):
    session = make(0.0)
    face = _Face(session)
    session.start()
    try:
        _until(lambda: session.at_end and face.last() is not None and face.last().at_end)
        time.sleep(0.3)
        end = face.last()
        assert end.rates.get("pps", 0) > 0, "no rates at the end of the file"
        # as fast as it goes, a point a second of packet time, on 2 cores too
        assert len(session.spark_pps) >= SECONDS - 3, list(session.spark_pps)
        session.toggle_pause()
        first = session.first_ts
        session.seek(first + 5)
        _until(lambda: face.last().reset or (session.position is not None and session.position - first < 6))
        _until(lambda: session.position is not None and abs(session.position - (first + 5)) < 0.01)
        time.sleep(0.3)
        assert list(session.spark_pps) == [] and len(session.spark_active) <= 1
    finally:
        session.stop()


@pytest.mark.parametrize("make", [_one, _two], ids=["1-core", "2-cores"])
async def test_the_app_shows_each_tick_as_a_message_and_says_the_speed_while_paused(make):
    session = make(1.0)
    session.paused = True
    pulls = []
    pull = session.pull
    session.pull = lambda: pulls.append(1) or pull()  # (counted: the app must not read the session on a timer)
    session.start()
    app = MidstatApp(session, interval=1.0, show_load=False)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            await pilot.pause(0.3)
            pulled_at_start = len(pulls)
            for _ in range(3):
                before = app.view.now
                session.step(1.0)
                deadline = time.monotonic() + 10
                while app.view.now == before and time.monotonic() < deadline:
                    await pilot.pause(0.05)
                assert app.view.now != before, "the step's Tick did not reach the view"
            await pilot.pause(1.5)
            assert len(pulls) == pulled_at_start  # no pull since the start: every Tick came as a message
            await pilot.press("plus")
            await pilot.pause(0.2)
            said = [n.message for n in app._notifications]
            assert any("×2" in text and "Space" in text for text in said), said
            assert session.speed == 2.0
    finally:
        session.stop()


@pytest.mark.parametrize("cores", [1, 2])
def test_a_long_seconds_rows_come_in_parts_before_it_closes(monkeypatch, cores):
    """A second in which PART_ROWS connections or more changed (a flood's) is handed over in parts as of its last
    packet, before the second closes: the face applies them while the engine goes on. The Ticks still add up to the
    table, in time order, and a capture's usual seconds (fewer changes) come whole. (The forked shards inherit the
    smaller PART_ROWS.)"""
    from midstat_tui.engine import session as session_mod

    def ticks(part_rows: int) -> list:
        monkeypatch.setattr(session_mod, "PART_ROWS", part_rows)
        return _ticks_to_the_end(_one() if cores == 1 else _two())

    whole = ticks(10**9)
    parted = ticks(20)

    def moments(got):  # of the Ticks with rows, but the file's end (its last packet's moment)
        return [t.position for t in got if t.changes and t.position and t.position != got[-1].position]

    first = parted[-1].first
    whole_moments, parted_moments = moments(whole), moments(parted)
    assert all(m == int(m) or m - first == int(m - first) for m in whole_moments), whole_moments  # seconds only
    inside = [m for m in parted_moments if m - first != int(m - first)]
    assert inside, parted_moments  # parts, as of a packet inside a second
    assert parted_moments == sorted(parted_moments)
    assert _table(parted) == _table(whole) and len(_table(whole)) > 50


@pytest.mark.parametrize("capture", [CAPTURE, None], ids=["reddit", "mixed_traffic"])
def test_rates_and_sparklines_as_fast_as_it_goes_are_one_engines_on_two_cores(capture):
    """At --speed 0 the shards run apart: core 0 adds up each shard's counters of the picture's moment, not of a
    later second one shard has reached (the rates were half or twice the traffic: 45 pkt/s for one engine's 84)."""
    from tests.helpers import FIXTURES

    path = capture or FIXTURES / "mixed_traffic.pcap"
    got = []
    for session in (Session(Engine(FileSource(str(path)).datalink), FileSource(str(path)), live=False, speed=0.0),
                    ShardedFileSession(Job(str(path), None, TrackerConfig()), 2, speed=0.0)):
        got.append((_ticks_to_the_end(session)[-1].rates, list(session.spark_pps)))
    (one_rates, one_spark), (two_rates, two_spark) = got
    assert one_rates["pps"] > 0
    for key in ("pps", "bps", "new_per_s", "ended_per_s"):
        assert two_rates[key] == pytest.approx(one_rates[key]), (key, one_rates, two_rates)
    assert two_spark == pytest.approx(one_spark)


def test_the_end_of_a_file_on_two_cores_sends_no_table_again():
    """A shard ends at its share's last packet; the file ends at the last of all: core 0 has each shard run its
    timers on to there (RUN_TO), and what changed comes as any second's changes. The whole table was sent again
    (a seek), a million rows re-applied at a flood's end. The picture at the end is still one engine's."""
    got = {name: _ticks_to_the_end(make(0.0)) for name, make in (("one", _one), ("two", _two))}

    def table(ticks):  # (ids differ between one engine and two shards)
        return {(r.client, r.server, r.first): (r.cstate, r.sstate, r.packets_c2s, r.packets_s2c, r.ended)
                for r in _table(ticks).values()}

    assert not any(tick.reset for tick in got["two"])
    assert got["two"][-1].position == got["one"][-1].position
    assert table(got["two"]) == table(got["one"]) and len(table(got["one"])) > 50
