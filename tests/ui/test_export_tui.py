"""--ipfix and --metrics with the TUI (Pilot, over a real one-core replay session): the header says what was sent
and dropped, the metrics endpoint serves the figures the app pulled, and quitting in the middle of the replay sends
the last records: what the collector holds then adds up to every connection the replay had reached."""

from __future__ import annotations

from textual.widgets import Static

from midstat_tui.capture.files import FileSource
from midstat_tui.engine.headless import Job, start_export
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.session import Session
from midstat_tui.export.metrics import MetricsServer
from midstat_tui.export.sender import parse_collector
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.app import MidstatApp
from tests.collectors import UdpCollector, free_port, scrape_metrics
from tests.helpers import replay, replay_packet_totals
from tests.ipfix_decoder import packet_totals
from tests.ui.conftest import MIXED
from tests.ui.test_app import _until


async def test_the_tui_exports_shows_the_export_and_quitting_sends_the_rest():
    collector = UdpCollector()
    port = free_port(kind=1)
    metrics = MetricsServer(f"127.0.0.1:{port}")
    source = FileSource(str(MIXED))
    engine = Engine(source.datalink)
    engine.load_stats, engine.pairs_every = True, 1.0
    session = Session(engine, source, live=False, speed=0.5)  # 2.5 s of capture in 5 s
    session.exporter = start_export(Job("", None, TrackerConfig(), ipfix=parse_collector(collector.address),
                                        metrics=True), engine, 0)
    app = MidstatApp(session, interval=None, show_load=False)
    app.on_stats = metrics.update
    session.start()
    try:
        async with app.run_test(size=(120, 34)) as pilot:
            def sent_some() -> bool:
                app.tick()
                return app.stats.get("ipfix", {}).get("sent", 0) > 0
            await _until(pilot, sent_some, tries=1000)
            header = str(app.query_one("#summary-line2", Static).render())
            ipfix = app.stats["ipfix"]
            assert f"ipfix sent {ipfix['sent']:,} dropped {ipfix['dropped']:,}" in header
            scraped = scrape_metrics(port)
            assert scraped[("midstat_ipfix_records_sent_total", ())] == ipfix["sent"]
            assert scraped[("midstat_packets_total", ())] == app.stats["packets"]
            assert scraped[("midstat_connections_open", ())] == app.stats["active"]
            by_state = sum(v for (name, _), v in scraped.items() if name == "midstat_connections_by_state")
            assert by_state == app.stats["active"]
            problems = {dict(labels)["kind"]: v for (name, labels), v in scraped.items()
                        if name == "midstat_problems"}
            assert problems == app.view.problem_counts  # the lens's counts of the same second (the badge's)
            assert not session.at_end  # quit in the middle of the replay
            await pilot.press("q")
        session.stop()
        reached = engine.last_ts
    finally:
        session.stop()
        metrics.close()
        source.close()
    datagrams = collector.close()
    # every connection the replay had reached went out, with every packet it had seen; none beyond
    assert packet_totals(datagrams) == replay_packet_totals(MIXED, until=reached)
    _, _, started = replay(MIXED, until=reached)
    _, _, everything = replay(MIXED)
    assert len(started) < len(everything)  # (the replay was cut short: the open ones went out as forced ends)
