"""Pilot tests: every interaction of the TUI, on real sessions over real captures."""

from __future__ import annotations

import csv
import json
import sys

from midstat_tui.columns import BY_KEY
from midstat_tui.tcp.states import NAMES
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.app import MidstatApp
from midstat_tui.ui.columns_screen import ColumnsScreen
from midstat_tui.ui.conn_table import ConnTable
from midstat_tui.ui.flow_screen import FlowScreen
from midstat_tui.ui.help_screen import HelpScreen
from tests.helpers import ROOT, shared
from tests.ui.conftest import MIXED as MIXED_PATH
from tests.ui.conftest import finished_session, finished_session_or_error, make_app

SIZE = (120, 34)


def _in_order(app: MidstatApp, column: str) -> bool:
    """Is the table sorted by `column`, in the direction the header arrow says? (Age and idle run against their
    time field: the oldest first is ascending age.)"""
    col = BY_KEY[column]
    keys = [col.sort(app.view.rows[i], app.view.now) for i in app.view.order]
    return keys == sorted(keys, reverse=app.view.sort_reverse != col.flip)


async def test_table_shows_the_sessions_connections(app):
    async with app.run_test(size=SIZE):
        assert len(app.view.order) == app.session.engine.stats()["in_table"] == 21
        table = app.query_one(ConnTable)
        assert table.virtual_size.height == len(app.view.order) + 1


async def test_sort_both_ways_and_by_header_click(app):
    async with app.run_test(size=SIZE) as pilot:
        assert app.view.sort_key == "age"
        await pilot.press("s")  # next column after age: idle, a number: the largest first
        assert app.view.sort_key == "idle" and app.view.sort_reverse
        assert _in_order(app, "idle")
        first_before = app.view.order[0]
        await pilot.press("S")
        assert not app.view.sort_reverse and _in_order(app, "idle")
        assert app.view.order[-1] == first_before
        # click the "Server" header: x offset inside that column
        x = sum(BY_KEY[k].width + 1 for k in ("alert", "cpu", "client", "cstate")) + 2
        await pilot.click(ConnTable, offset=(x, 0))
        await pilot.pause()
        assert app.view.sort_key == "server"
        assert _in_order(app, "server")
        header = app.query_one(ConnTable).render_line(0).text
        assert "Server▲" in header


async def test_cursor_stays_on_the_same_connection_across_resorts(app):
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "down", "down")
        table = app.query_one(ConnTable)
        chosen = table.cursor_id
        await pilot.press("s", "s", "S")
        assert table.cursor_id == chosen
        assert app.view.order[table.cursor] == chosen


async def test_each_filter_form_and_an_invalid_one(app):
    async with app.run_test(size=SIZE) as pilot:
        total = len(app.view.order)
        await pilot.press("slash", *"dport 6001", "enter")
        rows = app.view.visible()
        assert rows and all(r.s_port == 6001 for r in rows) and len(rows) < total
        await pilot.press("slash")
        app.query_one("#filter").value = ""
        await pilot.press(*"sstate closed and not port 6999", "enter")
        rows = app.view.visible()
        expected = {r.id for r in app.view.rows.values()
                    if NAMES[r.sstate] == "CLOSED" and 6999 not in (r.c_port, r.s_port)}
        assert {r.id for r in rows} == expected and 0 < len(expected) < total
        await pilot.press("slash")
        app.query_one("#filter").value = ""
        await pilot.press(*"net fd31::/16 or (cstate fin-wait-2 and zeek S1)", "enter")
        rows = app.view.visible()
        assert rows and all(len(r.c_addr) == 16 or NAMES[r.cstate] == "FIN_WAIT_2" for r in rows)
        before = list(app.view.order)
        await pilot.press("slash")
        app.query_one("#filter").value = ""
        await pilot.press(*"state NOPE", "enter")
        status = str(app.query_one("#status").render())
        assert "not a TCP state" in status and "column 7" in status
        assert app.view.order == before  # the previous filter stays
        await pilot.press("escape")
        assert len(app.view.order) == total  # Esc clears


async def test_filter_history_walks_back(app):
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"port 80", "enter")
        await pilot.press("slash")
        app.query_one("#filter").value = ""
        await pilot.press(*"port 443", "enter")
        await pilot.press("slash")
        bar = app.query_one("#filter")
        bar.value = ""
        await pilot.press("up")
        assert bar.value == "port 443"
        await pilot.press("up")
        assert bar.value == "port 80"
        await pilot.press("down")
        assert bar.value == "port 443"


async def test_drill_down_and_back_to_the_same_row(app):
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "down")
        table = app.query_one(ConnTable)
        chosen = table.cursor_id
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FlowScreen)
        screen = app.screen
        _, counters, transitions = app.session.connection(chosen)
        timeline = screen.query_one("#flow-timeline")
        assert timeline.row_count == len(transitions) > 0
        assert str(chosen) in str(screen.query_one("#flow-title").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, FlowScreen)
        assert table.cursor_id == chosen


async def test_toggle_ended(app):
    async with app.run_test(size=SIZE) as pilot:
        ended = sum(1 for r in app.view.visible() if r.ended)
        assert ended > 0
        total = len(app.view.order)
        await pilot.press("t")
        assert len(app.view.order) == total - ended
        assert all(r.ended is None for r in app.view.visible())
        await pilot.press("t")
        assert len(app.view.order) == total


async def test_pause_and_step_a_replay(tmp_path):
    session = finished_session(shared("zeek/Traces/ssh/ssh.pcap"))
    app = MidstatApp(session, interval=None, show_load=False, export_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("space")
        assert session.paused
        await pilot.press("space")
        assert not session.paused


async def test_seek_back_shows_the_table_as_it_was(tmp_path):
    session = finished_session(shared("zeek/Traces/ssh/ssh.pcap"))
    app = MidstatApp(session, interval=None, show_load=False, export_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        end = session.position
        await pilot.press("space")  # paused, so the replay stays where the seek puts it
        await pilot.press("left_square_bracket")
        await _until(pilot, lambda: session.position == end - 10)
        app.tick()
        assert app.view.now == end - 10
        await pilot.press("g")
        await pilot.press(*"+3", "enter")
        await _until(pilot, lambda: session.position == session.first_ts + 3)
        app.tick()
        # at 3 s in, only the first ssh connection exists, still established
        rows = app.view.visible()
        assert [(NAMES[r.cstate], NAMES[r.sstate]) for r in rows] == [("ESTABLISHED", "ESTABLISHED")]
        await pilot.press("right_square_bracket")
        await _until(pilot, lambda: session.position == session.first_ts + 13)


async def _until(pilot, cond, tries=500):
    import asyncio

    for _ in range(tries):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_speed_keys(app):
    async with app.run_test(size=SIZE) as pilot:
        assert app.session.speed == 0.0
        await pilot.press("minus")
        assert app.session.speed == 100.0
        await pilot.press("minus", "minus")
        assert app.session.speed == 5.0
        await pilot.press("plus")
        assert app.session.speed == 10.0


async def test_export_csv_and_json(app, tmp_path):
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"dport 6001", "enter")
        await pilot.press("e")
        await pilot.press("E")
    csv_files = sorted(tmp_path.glob("midstat-*.csv"))
    json_files = sorted(tmp_path.glob("midstat-*.json"))
    assert len(csv_files) == 1 and len(json_files) == 1
    lines = list(csv.reader(csv_files[0].open()))
    assert lines[0][:3] == ["conn", "client", "server"]
    shown = app.view.visible()
    assert [row[1] for row in lines[1:]] == [r.client for r in shown]
    doc = json.loads(json_files[0].read_text())
    assert [d["client"] for d in doc] == [r.client for r in shown]
    assert doc and all(d["server"].endswith(":6001") for d in doc)
    assert not list(tmp_path.glob(".midstat-export-*"))  # no temporary file left behind


async def test_export_never_overwrites(app, tmp_path):
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e", "e")
    assert len(list(tmp_path.glob("midstat-*.csv"))) == 2


async def test_help_lists_every_key(app):
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        from midstat_tui.ui.help_screen import KEYS

        for binding in ("`/`", "`s` / `S`", "`t`", "Space", "`[` / `]`", "`g`", "`e` / `E`", "`c`", "`q`"):
            assert binding in KEYS
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_column_chooser(app):
    async with app.run_test(size=SIZE) as pilot:
        assert "history" not in app.shown_columns
        await pilot.press("c")
        assert isinstance(app.screen, ColumnsScreen)
        from textual.widgets import SelectionList

        selection = app.screen.query_one(SelectionList)
        selection.select("history")
        selection.deselect("rtt")
        await pilot.press("enter")
        assert "history" in app.shown_columns and "rtt" not in app.shown_columns
        header = app.query_one(ConnTable)._header().text  # the whole header, past the screen's right edge
        assert "History" in header and "RTT" not in header


async def _screen_svg(app) -> str:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        return app.export_screenshot()


async def test_states_are_coloured_and_no_color_removes_it(monkeypatch, tmp_path):
    closed_red = "#e06c75"  # conn-table--closed: every connection has closed by the end of this capture
    assert closed_red in await _screen_svg(make_app(tmp_path=tmp_path))
    monkeypatch.setenv("NO_COLOR", "1")
    assert closed_red not in await _screen_svg(make_app(tmp_path=tmp_path))


async def test_quit_key_ends_the_app(app):
    async with app.run_test(size=SIZE) as pilot:
        assert app.return_code is None
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0  # the app asked to exit, with success


async def test_a_syn_flood_stays_under_the_table_bound_and_shows_its_evictions(tmp_path):
    """20,000 spoofed SYNs and a port scan against a 2,000-connection table: the 300 established connections made
    before the flood are all still there, every eviction is counted in the header, and the table still filters."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from flood import generate

    pcap = tmp_path / "flood.pcap"
    generate(pcap, syns=20_000, established=300, scan_ports=2_000)
    app = MidstatApp(finished_session(pcap, config=TrackerConfig(max_conns=2_000)), interval=None, show_load=False,
                     export_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        stats = app.stats
        assert stats["in_table"] == 2_000 and stats["started"] == 300 + 20_000 + 2_000
        assert stats["evicted"] > 18_000
        assert f"evicted {stats['evicted']:,}" in str(app.query_one("#summary-line2").render())
        await pilot.press("slash", *"dport 443", "enter")
        rows = app.view.visible()
        assert len(rows) == 300
        assert all(NAMES[r.cstate] == NAMES[r.sstate] == "ESTABLISHED" and r.ended is None for r in rows)


async def test_an_unexpected_engine_error_is_shown_and_what_was_tracked_stays(monkeypatch, tmp_path):
    """A bug in the engine thread (here: decoding fails from the 60th packet on) must not take the TUI down: the
    error is shown, the connections tracked before it stay browsable, and q still leaves cleanly."""
    from midstat_tui.engine.pipeline import Engine

    real_feed = Engine.feed

    def failing_feed(self, ts, frame):
        if self.decode_stats.packets >= 60:
            raise RuntimeError("decoder exploded")
        real_feed(self, ts, frame)

    monkeypatch.setattr(Engine, "feed", failing_feed)
    session = finished_session_or_error(MIXED_PATH)
    app = MidstatApp(session, interval=None, show_load=False, export_dir=str(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        app.tick()
        assert "RuntimeError: decoder exploded" in str(app.query_one("#status").render())
        assert 0 < len(app.view.order) < 21
        await pilot.press("slash", *"port 5001", "enter")  # still filters
        await pilot.press("q")
    assert app.return_code in (0, None)


async def test_a_big_pull_is_applied_in_slices_and_the_keys_still_work(monkeypatch, tmp_path):
    """A flood's pull is applied APPLY_SLICE rows at a time, the loop answering keys between slices
    (benchmarks/tui_flood.py measures the real case: a million rows); in the end the table is the same."""
    import midstat_tui.ui.app as app_module
    from midstat_tui.conn_view import ConnView

    monkeypatch.setattr(app_module, "APPLY_SLICE", 3)
    slices: list[int] = []
    catch_up = ConnView.catch_up

    def counted(self, limit=None):
        slices.append(len(self.rows))
        return catch_up(self, limit)

    monkeypatch.setattr(ConnView, "catch_up", counted)
    app = make_app(tmp_path=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")  # answered while rows are still coming in
        for _ in range(50):
            if not app.view.behind:
                break
            await pilot.pause(0.05)
        assert len(app.view.order) == app.session.engine.stats()["in_table"] == 21
        assert len(slices) >= 7 and slices[:3] == [0, 3, 6]
        assert app.screen.query(HelpScreen) or isinstance(app.screen, HelpScreen)


async def test_a_slice_that_fires_while_the_app_shuts_down_does_nothing(monkeypatch, tmp_path):
    """Quitting while a flood's pull is still being applied in slices: the screens go before the slice timer
    stops, so a slice that fires then must not look for the (gone) header (it raised NoMatches at 1M rows)."""
    import midstat_tui.ui.app as app_module

    monkeypatch.setattr(app_module, "APPLY_SLICE", 1)
    monkeypatch.setattr(app_module, "APPLY_BUDGET", 0.0)  # one slice a turn: still slicing when the test leaves
    app = make_app(tmp_path=tmp_path)
    async with app.run_test(size=SIZE):
        behind = app.view.behind
        assert behind  # still slicing when the test leaves
    app._apply_slice()  # the timer's late call
    assert app.view.behind == behind  # nothing applied, nothing drawn, no NoMatches
