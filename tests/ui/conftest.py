"""Apps over real sessions on the fixture captures, made deterministic: no timer (tests call tick), no load figure."""

from __future__ import annotations

import time

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.session import Session
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.app import MidstatApp
from tests.helpers import FIXTURES


def finished_session(path, speed: float = 0.0, config: TrackerConfig | None = None) -> Session:
    session = finished_session_or_error(path, speed, config)
    assert session.at_end
    return session


def finished_session_or_error(path, speed: float = 0.0, config: TrackerConfig | None = None) -> Session:
    """A session over `path`, once it has read the whole file or its engine thread has ended on an error."""
    source = FileSource(str(path))
    session = Session(Engine(source.datalink, config), source, live=False, speed=speed)
    session.start()
    deadline = time.monotonic() + 30
    while not (session.at_end or session.finished) and time.monotonic() < deadline:
        time.sleep(0.01)
    while not session.span_scanned and time.monotonic() < deadline:
        time.sleep(0.01)  # the capture's range, read on the side: the header shows it (snapshots are stable)
    return session


MIXED = FIXTURES / "mixed_traffic.pcap"  # two dozen real connections of every kind (scripts/make_fixtures.py)


def make_app(path=MIXED, tmp_path=None) -> MidstatApp:
    return MidstatApp(finished_session(path), interval=None, show_load=False,
                      export_dir=str(tmp_path) if tmp_path else ".")


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path=tmp_path)


@pytest.fixture
def fixtures_dir():
    return FIXTURES
