"""Rates in the TUI's view on 1 and 2 cores: the sessions the TUI reads (one engine; two shard processes merged by
core 0), stepped one second of packet time at a time; each connection's bytes/s must be the bytes it moved over the
view's window, as a fresh replay of the file to both ends of the window counts them."""

from __future__ import annotations

import time

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.conn_view import ConnView
from midstat_tui.engine.headless import Job
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.session import Session
from midstat_tui.engine.shard_sessions import ShardedFileSession
from midstat_tui.tcp.tracker import TrackerConfig
from tests.helpers import shared
from tests.unit.test_session import _reference_rows

CAPTURE = shared("ndpi/tests/cfgs/default/pcap/reddit.pcap")  # 14 s of HTTPS to many servers


def _one():
    source = FileSource(str(CAPTURE))
    return Session(Engine(source.datalink), source, live=False, speed=1.0)


def _two():
    return ShardedFileSession(Job(str(CAPTURE), None, TrackerConfig()), 2, speed=1.0)


def _bytes(until: float) -> dict[tuple[str, str], tuple[int, int]]:
    return {(r.client, r.server): (r.bytes_c2s, r.bytes_s2c) for r in _reference_rows(CAPTURE, until).values()}


@pytest.mark.parametrize("make", [_one, _two], ids=["1-core", "2-cores"])
def test_rates_are_the_bytes_over_the_window_on_1_and_2_cores(make):
    session = make()
    session.paused = True
    session.start()
    view = ConnView()
    checked = busy = 0
    try:
        for step in range(9):
            before = session.position
            session.step(1.0)
            deadline = time.monotonic() + 30
            while session.position in (before, None):
                assert time.monotonic() < deadline, "the step did not move"
                time.sleep(0.02)
            time.sleep(0.3)  # every shard's tick in
            pulled = session.pull()
            view.apply(pulled)
            view.recompute()
            if step < 2:
                continue
            now, start = pulled.position, view._window[0].prev
            at_now, at_start = _bytes(now), _bytes(start)
            for row in view.rows.values():
                key = (row.client, row.server)
                then = at_start.get(key, (0, 0))
                for i, name in enumerate(("rate_c2s", "rate_s2c")):
                    expected = (at_now[key][i] - then[i]) / (now - start)
                    assert view.rate(name, row.id) == pytest.approx(expected), (step, key, name)
                    checked += 1
                    busy += expected > 0
    finally:
        session.stop()
    assert checked > 200 and busy > 50
