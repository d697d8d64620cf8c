"""Pilot tests: quick filters from the selected row (f then s/c/p/t), search as you type, G and gg."""

from __future__ import annotations

import pytest

from midstat_tui.engine.records import format_addr
from midstat_tui.ui.conn_table import ConnTable
from midstat_tui.ui.goto_screen import GotoScreen
from midstat_tui.ui.group_table import GroupsTable
from midstat_tui.ui.quick_filter import QuickFilterScreen
from tests.helpers import shared
from tests.ui.conftest import make_app

SIZE = (140, 34)
BUSY = shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap")


def _same(choice: str, a, b) -> bool:
    return {"s": (a.s_addr, a.s_port) == (b.s_addr, b.s_port), "c": a.c_addr == b.c_addr,
            "p": a.s_port == b.s_port, "t": (a.cstate, a.sstate) == (b.cstate, b.sstate)}[choice]


@pytest.mark.parametrize("choice", ["s", "c", "p", "t"])
async def test_quick_filter_keeps_the_rows_like_the_selected_one(choice):
    app = make_app(BUSY)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("down", "down", "down", "down", "down")
        table = app.query_one(ConnTable)
        chosen = app.view.rows[table.cursor_id]
        total = len(app.view.order)
        await pilot.press("f")
        assert isinstance(app.screen, QuickFilterScreen)
        await pilot.press(choice)
        assert not isinstance(app.screen, QuickFilterScreen)
        expected = {r.id for r in app.view.rows.values() if _same(choice, r, chosen)}
        assert set(app.view.order) == expected and chosen.id in expected
        if choice in "sp":  # (this capture has one client host)
            assert len(expected) < total


async def test_quick_filters_narrow_the_current_filter():
    app = make_app(BUSY)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"not ended", "enter")
        chosen = app.view.rows[app.query_one(ConnTable).cursor_id]
        await pilot.press("f", "c")
        assert app.view.query == f"(not ended) and client {format_addr(chosen.c_addr)}"
        assert app.view.order and all(app.view.rows[i].ended is None and app.view.rows[i].c_addr == chosen.c_addr
                                      for i in app.view.order)
        await pilot.press("f", "escape")  # cancelled: nothing changes
        assert app.view.query == f"(not ended) and client {format_addr(chosen.c_addr)}"


async def test_search_as_you_type():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        total = len(app.view.order)
        await pilot.press("slash", *"dport 699")
        assert {app.view.rows[i].s_port for i in app.view.order} == set()  # port 699: nothing, already applied
        await pilot.press("9")
        assert len(app.view.order) == 3 and {app.view.rows[i].s_port for i in app.view.order} == {6999}
        await pilot.press(*" && (")  # not a whole expression yet: the last valid one stays
        assert len(app.view.order) == 3
        await pilot.press("escape")
        assert len(app.view.order) == total and app.view.query == ""


async def test_G_and_gg_in_the_tables():
    app = make_app(BUSY)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(ConnTable)
        await pilot.press("G")
        assert table.cursor == len(app.view.order) - 1 > 0
        await pilot.press("g")
        assert isinstance(app.screen, GotoScreen)
        await pilot.press("g")
        assert not isinstance(app.screen, GotoScreen) and table.cursor == 0
        await pilot.press("g", *"+1", "enter")  # `g` still goes to a time
        await pilot.pause()
        await pilot.press("v", "G")
        groups = app.query_one(GroupsTable)
        assert groups.cursor == len(groups.table) - 1 > 0
        await pilot.press("g", "g")
        assert groups.cursor == 0


async def test_n_shows_ports_as_service_names_and_back():
    app = make_app(BUSY)
    async with app.run_test(size=(160, 34)) as pilot:
        table = app.query_one(ConnTable)
        web = next(i for i, c in enumerate(app.view.order) if app.view.rows[c].s_port in (80, 443))
        row = app.view.rows[app.view.order[web]]
        numbers = table.render_line(web + 1).text
        assert f"{format_addr(row.s_addr)}:{row.s_port}" in numbers
        await pilot.press("n")
        named = table.render_line(web + 1).text
        service = {80: "http", 443: "https"}[row.s_port]
        assert f"{format_addr(row.s_addr)}:{service} " in named
        assert "service names, from " in str(app.query_one("#status").render())
        await pilot.press("n", "n")  # (host names too, then back to numbers: tests/ui/test_names_tui.py)
        assert table.render_line(web + 1).text == numbers
