"""A file replay in the TUI reads its first pass with the compiled reader (as headless runs do: capture.files'
`batches(frames=True)`), and tracks exactly what the headless run tracks."""

from __future__ import annotations

import time

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.pipeline import Engine, run_file
from midstat_tui.engine.records import row_of
from midstat_tui.engine.session import Session
from tests.helpers import shared

_core = pytest.importorskip("midstat_tui._core")

CAPTURE = shared("ndpi/tests/cfgs/default/pcap/reddit.pcap")


def test_the_first_pass_is_read_by_the_compiled_reader():
    source = FileSource(str(CAPTURE))
    session = Session(Engine(source.datalink, verify_checksums=False), source, live=False, speed=0.0)
    cursor = session._packets(0)
    next(cursor)
    assert isinstance(cursor._batch, _core.Frames)
    source.close()


def test_the_replay_tracks_what_headless_tracks():
    source = FileSource(str(CAPTURE))
    session = Session(Engine(source.datalink, verify_checksums=False), source, live=False, speed=0.0)
    session.start()
    deadline = time.monotonic() + 60
    while not session.at_end and time.monotonic() < deadline:
        time.sleep(0.01)
    assert session.at_end
    with session._lock:
        replayed = {c.id: row_of(c) for c in session.engine.tracker.table.values()}
        packets = session.engine.stats()["packets"]
    session.stop()
    plain = FileSource(str(CAPTURE))
    engine = Engine(plain.datalink, verify_checksums=False)
    run_file(engine, plain.batches())
    expected = {c.id: row_of(c) for c in engine.tracker.table.values()}
    assert replayed == expected and len(expected) > 10
    assert packets == engine.stats()["packets"] > 1000
