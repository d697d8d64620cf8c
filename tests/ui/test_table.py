"""The table at 80x24 and wider, over real sessions: content-sized addresses, the VLAN column by itself, both
incarnations of a reused port, the suspicious-RST mark, sorting, the cursor, the column chooser, horizontal
scrolling, the filter's errors and the exports' record."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import pytest
from textual.widgets import Footer, SelectionList

from midstat_tui.columns import BY_KEY, COLUMNS
from midstat_tui.tcp.states import TIME_WAIT
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.app import MidstatApp
from midstat_tui.ui.columns_screen import ColumnsScreen
from midstat_tui.ui.conn_table import ConnTable
from midstat_tui.ui.flow_screen import FlowScreen
from tests import table_pcap
from tests.helpers import ROOT
from tests.ui.conftest import MIXED, finished_session
from tests.ui.test_app import _until

SMALL = (80, 24)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return table_pcap.write(tmp_path_factory.mktemp("table") / "cases.pcap")


def _app(path, tmp_path=None) -> MidstatApp:
    return MidstatApp(finished_session(path), interval=None, show_load=False,
                      export_dir=str(tmp_path) if tmp_path else ".")


def _lines(app: MidstatApp) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


def _table_lines(table: ConnTable) -> list[str]:
    return [table.render_line(y).text for y in range(min(table.size.height, len(table.view.order) + 1))]


async def test_ipv6_addresses_are_shown_whole_with_their_ports(cases):
    app = _app(cases)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        table = app.query_one(ConnTable)
        lines = _table_lines(table)
        assert any(table_pcap.V6_CLIENT_TEXT in line for line in lines), lines
        # the column grew to the widest endpoint, no wider
        client = table.columns.index(BY_KEY["client"])
        assert table._widths[client] == len(table_pcap.V6_CLIENT_TEXT)  # the widest endpoint of the capture
        await pilot.press("right", "right", "right", "right")  # the server column comes into view, whole
        server_text = f"[{table_pcap.V6_SERVER}]:443"
        assert any(server_text in line for line in _table_lines(table))


async def test_vlan_column_appears_by_itself_when_the_capture_has_tags(cases):
    app = _app(cases)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.pause()
        assert "vlan" in app.shown_columns
        tagged = [line for line in _table_lines(app.query_one(ConnTable)) if "10.9.0.5:40002" in line]
        assert len(tagged) == 2
        vlan_at = app.query_one(ConnTable).column_offsets()[app.shown_columns.index("vlan")]
        assert sorted(line[vlan_at:vlan_at + 6].strip() for line in tagged) == ["10", "20"]


async def test_vlan_column_stays_hidden_without_tags():
    app = _app(MIXED)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert all(not r.vlan for r in app.view.rows.values())
        assert "vlan" not in app.shown_columns


async def test_both_incarnations_of_a_reused_port_stay_visible(cases):
    app = _app(cases)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        (c_ip, c_port), (s_ip, s_port) = table_pcap.REUSED[:2], table_pcap.REUSED[2:]
        rows = [r for r in app.view.visible() if r.client == f"{c_ip}:{c_port}" and r.server == f"{s_ip}:{s_port}"]
        assert sorted(r.ended or "open" for r in rows) == ["open", "port_reuse"]
        assert len([line for line in _table_lines(app.query_one(ConnTable)) if "10.9.0.1:40000" in line]) == 2


async def test_the_earlier_incarnation_leaves_after_the_linger_time(cases):
    """`--linger 0.1`: the replaced incarnation is gone from the table once its linger time is over (the capture
    goes on 0.16 s after the reuse)."""
    app = MidstatApp(finished_session(cases, config=TrackerConfig(linger=0.1)), interval=None, show_load=False)
    app.view.linger = 0.1
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        assert not [r for r in app.view.visible() if r.ended == "port_reuse"]


async def test_rows_with_suspicious_rsts_are_marked(cases):
    app = _app(cases)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.pause()
        table = app.query_one(ConnTable)
        lines = _table_lines(table)
        marked = [line for line in lines[1:] if line.startswith(" !")]
        assert len(marked) == 1 and "10.9.0.3:40001" in marked[0]
        await pilot.press("slash", *"suspicious", "enter")
        assert [r.client for r in app.view.visible()] == ["10.9.0.3:40001"]
        await pilot.press("enter")  # its timeline shows the reset the client's stack ignored
        await pilot.pause()
        timeline = app.screen.query_one("#flow-timeline")
        rows = [[str(cell) for cell in timeline.get_row_at(i)] for i in range(timeline.row_count)]
        ignored = [r for r in rows if r[3] == "RST ignored"]
        assert len(ignored) == 1 and ignored[0][1:3] == ["client", "ESTABLISHED"] and ignored[0][5] == "R"


async def test_every_sort_arrow_fits_its_column(cases):
    app = _app(cases)
    async with app.run_test(size=(240, 30)) as pilot:
        app.shown_columns = [c.key for c in COLUMNS]
        app.query_one(ConnTable).set_columns(list(COLUMNS))
        table = app.query_one(ConnTable)
        for column in COLUMNS:
            for reverse in (False, True):
                app.view.sort_by(column.key, reverse)
                app._redraw()
                await pilot.pause()
                x = table.column_offsets()[COLUMNS.index(column)]
                arrow = "▼" if reverse else "▲"
                header = table._header().text
                assert header[x:].startswith(column.title + arrow) or header[x:].lstrip().startswith(
                    column.title + arrow), (column.key, header)


async def test_numbers_sort_largest_first_on_the_first_press():
    app = _app(MIXED)
    async with app.run_test(size=(160, 34)) as pilot:
        table = app.query_one(ConnTable)
        for key in ("pkts_c2s", "bytes_s2c", "rtt", "cpu", "age"):
            x = table.column_offsets()[app.shown_columns.index(key)] + 1
            await pilot.click(ConnTable, offset=(x, 0))
            await pilot.pause()
            assert app.view.sort_key == key and app.view.sort_reverse
            column = BY_KEY[key]
            values = [column.sort(app.view.rows[i], app.view.now) for i in app.view.order]
            assert values == sorted(values, reverse=not column.flip)  # age: the oldest (smallest `first`) first
            assert len(set(values)) > 1 or key == "cpu"
        x = table.column_offsets()[app.shown_columns.index("client")] + 1
        await pilot.click(ConnTable, offset=(x, 0))  # text: A to Z
        await pilot.pause()
        assert app.view.sort_key == "client" and not app.view.sort_reverse


async def test_the_cursor_highlight_covers_the_whole_row():
    app = _app(MIXED)
    async with app.run_test(size=(200, 30)) as pilot:  # wider than the table
        await pilot.press("down")
        table = app.query_one(ConnTable)
        width = sum(w + 1 for w in table._widths)
        assert width < table.size.width
        cursor_bg = table.get_component_rich_style("conn-table--cursor").bgcolor
        line = table.render_line(2)  # the header, then rows 0 and 1: the cursor is on row 1
        tail = line.crop(width, table.size.width)
        assert tail.cell_length == table.size.width - width
        assert all(seg.style is not None and seg.style.bgcolor == cursor_bg for seg in tail)
        other = table.render_line(3).crop(width, table.size.width)
        assert all(seg.style is None or seg.style.bgcolor != cursor_bg for seg in other)


async def test_horizontal_scrolling_moves_a_column_at_a_time():
    app = _app(MIXED)
    async with app.run_test(size=SMALL) as pilot:
        table = app.query_one(ConnTable)
        offsets = table.column_offsets()
        assert table.max_scroll_x > 0
        seen = []
        for _ in range(4):
            await pilot.press("right")
            await pilot.pause()
            seen.append(table.scroll_offset.x)
        assert seen == [o for o in offsets[1:5] if o <= table.max_scroll_x][:4]
        header = table.render_line(0).text
        assert header.lstrip().startswith(BY_KEY[app.shown_columns[4]].title)
        await pilot.press("left")
        await pilot.pause()
        assert table.scroll_offset.x == offsets[3]


async def test_the_column_chooser_says_on_and_off():
    app = _app(MIXED)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("c")
        assert isinstance(app.screen, ColumnsScreen)
        chooser = app.screen.query_one(SelectionList)

        def prompt(key: str) -> str:
            index = [c.key for c in COLUMNS].index(key)
            return str(chooser.get_option_at_index(index).prompt)

        assert prompt("rtt").lstrip().startswith("on") and prompt("history").startswith("off")
        chooser.highlighted = [c.key for c in COLUMNS].index("history")
        await pilot.press("space")
        await pilot.pause()
        assert prompt("history").lstrip().startswith("on")
        await pilot.press("enter")
        assert "history" in app.shown_columns


@pytest.mark.parametrize(("text", "says"), [
    ("hots 1.2.3.4", "did you mean 'host'?"),
    ("dport=8009", "write 'dport 8009'"),
])
async def test_an_unknown_word_is_an_error_with_a_suggestion(text, says):
    app = _app(MIXED)
    async with app.run_test(size=SMALL) as pilot:
        total = len(app.view.order)
        await pilot.press("slash", *text, "enter")
        status = str(app.query_one("#status").render())
        assert "filter not applied" in status and says in status
        assert len(app.view.order) == total


async def test_bar_and_ss_spellings_filter():
    app = _app(MIXED)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("slash", *"dport 6001 | dport 6002", "enter")
        ports = {r.s_port for r in app.view.visible()}
        assert ports == {6001, 6002}
        await pilot.press("slash")
        app.query_one("#filter").value = ""
        await pilot.press(*"time-wait", "enter")
        rows = app.view.visible()
        assert rows and all(TIME_WAIT in (r.cstate, r.sstate) for r in rows)
        assert len(rows) == sum(TIME_WAIT in (r.cstate, r.sstate) for r in app.view.rows.values())


async def test_a_filter_on_ended_says_when_ended_connections_are_hidden():
    app = _app(MIXED)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("t")
        await pilot.press("slash", *"ended", "enter")
        assert "ended connections are hidden" in str(app.query_one("#status").render())
        assert app.view.order == []
        await pilot.press("t")
        assert "hidden" not in str(app.query_one("#status").render())
        assert app.view.order


async def test_80x24_keeps_help_and_quit_in_the_footer():
    app = _app(MIXED)
    async with app.run_test(size=SMALL) as pilot:
        # the footer fills in once its bindings are known: a loaded machine may take more than one refresh
        await _until(pilot, lambda: "? Help" in _lines(app)[-1], tries=1000)
        footer = _lines(app)[-1]
        assert "? Help" in footer and "q Quit" in footer
        assert app.query_one(Footer).region.width == 80


async def test_80x24_flow_screen_shows_several_timeline_rows():
    app = _app(MIXED)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FlowScreen)
        timeline = app.screen.query_one("#flow-timeline")
        assert timeline.region.height - 3 >= 6  # borders and the column titles, then at least six rows
        assert timeline.region.bottom <= 23


async def test_exports_write_the_summary_json_record(tmp_path):
    """Both exports hold what `--summary --json` writes for the same connections: the same fields, raw."""
    app = _app(MIXED, tmp_path)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("e", "E")
        await pilot.pause()
        status = str(app.query_one("#status").render())
    csv_path = next(tmp_path.glob("midstat-*.csv"))
    json_path = next(tmp_path.glob("midstat-*.json"))
    assert str(csv_path.resolve()) in status or str(json_path.resolve()) in status  # the full path
    summary = json.loads(subprocess.run(
        [sys.executable, "-m", "midstat_tui", "-r", str(MIXED), "--summary", "--json", "--cores", "1",
         "--user", "root"], cwd=ROOT, capture_output=True, text=True, check=True).stdout)
    # the same connection (by its tuple and first packet) in the summary and in the exports
    def key(rec):
        return rec["client"], rec["server"], rec["first"]
    expected = {key(rec): rec for rec in summary["connections"]}
    exported = json.loads(json_path.read_text())
    assert len(exported) == len(app.view.order) > 0
    for rec in exported:
        want = dict(expected[key(rec)])
        assert list(rec) == list(want)
        want.pop("conn"), rec.pop("conn")  # ids are per run
        assert rec == want
    assert not re.search(r"\d[eE][-+]?\d", csv_path.read_text())  # positional numbers, never 1.8e-05
    rows = list(csv.DictReader(csv_path.open()))
    assert list(rows[0]) == list(summary["connections"][0])
    for row in rows:
        want = expected[(row["client"], row["server"], float(row["first"]))]
        assert int(row["bytes_c2s"]) == want["bytes_c2s"]  # raw bytes, not 1.2K
        assert float(row["duration"]) == want["duration"]  # seconds
        assert (row["rtt_client_ms"] == "") == (want["rtt_client_ms"] is None)
        if want["rtt_client_ms"] is not None:
            assert float(row["rtt_client_ms"]) == want["rtt_client_ms"]  # milliseconds
        assert row["vlan"] == ".".join(map(str, want["vlan"]))
        assert row["ended"] == (want["ended"] or "")


async def test_a_seek_keeps_the_earlier_incarnation_in_its_linger_time(cases):
    """After a seek (and at the end of a file on several cores, which is one) the table comes whole again: with
    the earlier incarnation of the reused port, while its linger time lasts, and without it before the reuse."""
    session = finished_session(cases)
    app = MidstatApp(session, interval=None, show_load=False)
    async with app.run_test(size=SMALL) as pilot:
        end = session.position
        session.toggle_pause()  # else, at --speed 0, a seek back plays on to the end at once
        reuse_at = next(r.end_ts for r in app.view.rows.values() if r.ended == "port_reuse")
        for target, expected in ((end, 1), (reuse_at - 0.5, 0), (end, 1)):
            session.seek(target)
            await _until_reset(pilot, app, session, target)
            assert sum(r.ended == "port_reuse" for r in app.view.visible()) == expected, target


async def _until_reset(pilot, app, session, target):
    import asyncio

    for _ in range(300):
        pulled = session.pull()
        if pulled.reset:
            app.view.apply(pulled)
            app._redraw()
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no reset after the seek to {target}")
