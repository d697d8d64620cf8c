"""Pilot tests of the grouped view (v): groups of what the filter passes, sorting, Enter into a group, Esc back."""

from __future__ import annotations

from collections import Counter

from midstat_tui.engine.groups import GROUP_KEYS, state_pair, vlan_text
from midstat_tui.engine.records import ConnRow, format_addr
from midstat_tui.ui.app import MidstatApp
from midstat_tui.ui.conn_table import ConnTable
from midstat_tui.ui.group_table import GroupsTable
from tests.helpers import shared
from tests.ui.conftest import make_app

SIZE = (140, 34)


def _key(grouping: str, row: ConnRow) -> str:
    if grouping == "server":
        return row.server
    if grouping == "server-host":
        return format_addr(row.s_addr)
    if grouping == "client-host":
        return format_addr(row.c_addr)
    if grouping == "states":
        return state_pair(row.cstate, row.sstate)
    if grouping == "vlan":
        return vlan_text(row.vlan)
    return row.zeek_state


def _expected(app: MidstatApp, grouping: str) -> Counter:
    """What the groups must hold: the rows the filter passes, counted by their key, from the rows themselves."""
    passing = [row for row in app.view.rows.values() if app.view._predicate is None or app.view._predicate(row)]
    return Counter(_key(grouping, row) for row in passing)


def _shown(app: MidstatApp) -> dict[str, int]:
    table = app.query_one(GroupsTable).table
    assert table is not None
    return {table.labels[i]: int(table.columns["connections"][i]) for i in table.order.tolist()}


async def test_v_cycles_every_grouping_and_back():
    app = make_app(shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap"))
    async with app.run_test(size=SIZE) as pilot:
        seen = []
        for _ in GROUP_KEYS:
            await pilot.press("v")
            seen.append(app.grouping)
            assert app.query_one(GroupsTable).display and not app.query_one(ConnTable).display
            assert _shown(app) == dict(_expected(app, app.grouping)), app.grouping
            shown = list(_shown(app).items())
            # largest first, ties in key order: the same screen whatever order the rows came in (1 core or N)
            assert shown == sorted(shown, key=lambda kv: (-kv[1], kv[0]))
        assert seen == list(GROUP_KEYS)
        await pilot.press("v")
        assert app.grouping is None and app.query_one(ConnTable).display and not app.query_one(GroupsTable).display


async def test_groups_are_built_from_what_the_filter_passes():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v", "v", "v", "v")  # states
        assert app.grouping == "states"
        everything = _shown(app)
        await pilot.press("slash", *"dport 6001", "enter")
        assert app.grouping == "states" and app.query_one(GroupsTable).display
        narrowed = _shown(app)
        assert narrowed == dict(_expected(app, "states"))
        assert sum(narrowed.values()) < sum(everything.values())
        assert all(narrowed[k] <= everything[k] for k in narrowed)
        # the state-pair summary line says the same counts
        line = str(app.query_one("#states").render())
        assert line.startswith(f"{sum(narrowed.values())} connections: ")
        for label, count in narrowed.items():
            assert f"{count} {label}" in line


async def test_group_rows_sort_by_each_field_and_by_header_click():
    app = make_app(shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap"))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        groups = app.query_one(GroupsTable)
        await pilot.press("s")  # after connections: open
        assert groups.sort_field == "open" and groups.sort_reverse
        table = groups.table
        values = [int(table.columns["open"][i]) for i in table.order.tolist()]
        assert values == sorted(values, reverse=True) and len(set(values)) > 1
        await pilot.press("S")
        table = groups.table
        values = [int(table.columns["open"][i]) for i in table.order.tolist()]
        assert values == sorted(values)
        await pilot.click(GroupsTable, offset=(2, 0))  # the key's header: by label, A to Z
        await pilot.pause()
        assert groups.sort_field == "key" and not groups.sort_reverse
        labels = groups.labels_in_order()
        assert labels == sorted(labels)
        assert "Server▲" in groups.render_line(0).text


async def test_enter_opens_the_groups_connections_and_esc_comes_back():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        groups = app.query_one(GroupsTable)
        await pilot.press("down")
        label = groups.labels_in_order()[1]
        await pilot.press("enter")
        assert app.query_one(ConnTable).display and app.focused is app.query_one(ConnTable)
        rows = app.view.visible()
        assert rows and {r.server for r in rows} == {label}
        assert len(rows) == _expected(app, "server")[label]
        assert label in str(app.query_one("#status").render())
        await pilot.press("escape")
        assert app.view.pin is None and app.grouping == "server" and app.focused is groups
        assert groups.labels_in_order()[groups.cursor] == label
        assert len(app.view.visible()) == 21


async def test_a_group_opened_under_a_filter_keeps_the_filter():
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", *"not ended", "enter", "v", "v", "v", "v")
        assert app.grouping == "states"
        label = app.query_one(GroupsTable).labels_in_order()[0]
        await pilot.press("enter")
        rows = app.view.visible()
        assert rows and all(state_pair(r.cstate, r.sstate) == label and r.ended is None for r in rows)
