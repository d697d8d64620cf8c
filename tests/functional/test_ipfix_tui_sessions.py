"""--ipfix from the TUI's sessions (one core and N cores, file replays): what they export adds up to what the
batch engine counts, the pull's stats say what was sent, and a seek back stops the export (never a record twice)."""

from __future__ import annotations

import time

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.headless import Job, start_export
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.session import Session
from midstat_tui.export.sender import parse_collector
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.header import HeaderFacts, traffic_text
from tests.collectors import UdpCollector
from tests.helpers import FIXTURES, replay_packet_totals, shared
from tests.ipfix_decoder import packet_totals
from tests.unit.test_session import _wait

MIXED = FIXTURES / "mixed_traffic.pcap"


def _job(collector: UdpCollector, path="") -> Job:
    return Job(str(path), None, TrackerConfig(), ipfix=parse_collector(collector.address))


def _exporting_session(collector: UdpCollector, path) -> Session:
    """A one-core replay of `path` at full speed, exporting to `collector`, started."""
    source = FileSource(str(path))
    engine = Engine(source.datalink)
    session = Session(engine, source, live=False, speed=0)
    session.exporter = start_export(_job(collector), engine, 0)
    session.start()
    return session


def test_one_core_replay_exports_everything_when_the_face_closes():
    collector = UdpCollector()
    session = _exporting_session(collector, MIXED)
    try:
        _wait(lambda: session.at_end)
        stats = session.pull().stats
    finally:
        session.stop()
    datagrams = collector.close()
    assert packet_totals(datagrams) == replay_packet_totals(MIXED)
    assert "ipfix" in stats
    text = traffic_text(HeaderFacts(source="x", live=False, stats=stats, rates={}, shown=0, rows=0))
    assert f"ipfix sent {stats['ipfix']['sent']:,} dropped 0" in text


def test_a_seek_back_stops_the_export():
    collector = UdpCollector()
    path = shared("zeek/Traces/ssh/ssh.pcap")
    session = _exporting_session(collector, path)
    try:
        _wait(lambda: session.at_end)
        first = session.engine.first_ts
        session.seek(first + 1.0)
        _wait(lambda: session.pull().stats.get("ipfix", {}).get("stopped"))
    finally:
        session.stop()
    datagrams = collector.close()
    # everything once, from the forward pass; nothing from the replay after the seek
    assert packet_totals(datagrams) == replay_packet_totals(path)


def test_sharded_replay_exports_from_every_shard():
    from midstat_tui.engine.shard_sessions import ShardedFileSession

    collector = UdpCollector()
    session = ShardedFileSession(_job(collector, MIXED), 2, speed=0)
    session.start()
    try:
        deadline = time.monotonic() + 30
        while not session.at_end:
            assert time.monotonic() < deadline
            session.pull()
            time.sleep(0.05)
    finally:
        session.stop()
    datagrams = collector.close()
    domains = {int.from_bytes(d[12:16], "big") for _, d in datagrams}
    assert domains == {1, 2}
    assert packet_totals(datagrams) == replay_packet_totals(MIXED)
