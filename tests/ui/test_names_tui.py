"""The TUI's host names (issue #12): `n` cycles numbers -> service names -> host and service names -> numbers; the
filter term `name`; on two cores, core 0's map holds what every shard learned."""

from __future__ import annotations

import time

import pytest

from midstat_tui.columns import BY_KEY
from midstat_tui.engine.headless import Job
from midstat_tui.engine.names import NameMap
from midstat_tui.engine.records import format_addr
from midstat_tui.engine.shard_sessions import ShardedFileSession
from midstat_tui.engine.share_filter import shard_of
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.conn_table import ConnTable
from tests.helpers import replay, shared
from tests.ui.conftest import make_app

SMTP = shared("zeek/Traces/smtp.pcap")                               # a DNS answer names the mail server
WIKIPEDIA = shared("zeek/Traces/wikipedia.pcap")                     # HTTP Host names
pytestmark = pytest.mark.skipif(not SMTP.exists(), reason="the shared captures are not here (MIDSTAT_SHARED)")


async def test_n_cycles_to_host_names_and_back():
    app = make_app(WIKIPEDIA)
    async with app.run_test(size=(180, 34)) as pilot:
        table = app.query_one(ConnTable)
        at = next(i for i, c in enumerate(app.view.order)
                  if format_addr(app.view.rows[c].s_addr) == "208.80.152.3")
        row = app.view.rows[app.view.order[at]]
        numbers = table.render_line(at + 1).text
        assert f"208.80.152.3:{row.s_port}" in numbers
        await pilot.press("n")
        assert "208.80.152.3:http " in table.render_line(at + 1).text
        await pilot.press("n")
        named = table.render_line(at + 1).text
        assert "upload.wikimedia.org:http " in named and "208.80.152.3" not in named
        assert "host names (4 known)" in str(app.query_one("#status").render())  # 208.80.152.2 has two
        # the address columns are as wide as the longest name needs (`upload.wikimedia.org:65535` and the service
        # names' room), not a fixed width that pushed the state columns off an 80-column screen
        from midstat_tui.ui.conn_table import NAMES_EXTRA

        widest = max(map(len, app.view.names.target.names()))
        assert table._widths[table.columns.index(BY_KEY["server"])] == max(21, widest + 6) + NAMES_EXTRA
        await pilot.press("n")
        assert table.render_line(at + 1).text == numbers


async def test_name_filter_in_the_view():
    app = make_app(WIKIPEDIA)
    async with app.run_test(size=(180, 34)):
        every = len(app.view.order)
        app.view.set_query("name upload.wikimedia.org")
        app.view.recompute()
        assert 0 < len(app.view.order) < every
        assert {format_addr(app.view.rows[c].s_addr) for c in app.view.order} == {"208.80.152.3"}


def test_two_cores_core_0_holds_every_shards_names():
    session = ShardedFileSession(Job(str(SMTP), None, TrackerConfig()), 2, speed=0.0)
    session.start()
    try:
        deadline = time.monotonic() + 60
        names = None
        while time.monotonic() < deadline:
            names = session.pull().names
            if session.at_end and isinstance(names, NameMap) and names.get("74.53.140.153"):
                break
            time.sleep(0.05)
    finally:
        session.stop()
    assert isinstance(names, NameMap)
    # the mail server's name comes from a DNS answer (shard 0's); its connection is shard 1's
    _, _, started = replay(SMTP)
    mail = [c for c in started if format_addr(c.s_addr) == "74.53.140.153"]
    assert mail and all(shard_of(c.c_addr, c.c_port, c.s_addr, c.s_port, 2) == 1 for c in mail)
    assert names.get("74.53.140.153") == "mail.patriots.in"


def test_exports_carry_the_names(tmp_path):
    import csv
    import json

    from midstat_tui.ui.export import export_rows

    app = make_app(WIKIPEDIA)
    session = app.session
    pulled = session.pull()
    app.view.apply(pulled)
    known = pulled.names
    rows = list(app.view.rows.values())
    with open(export_rows(rows, "json", str(tmp_path), "x", names=known)) as fh:
        records = json.load(fh)
    named = {r["server"].rpartition(":")[0]: r["server_name"] for r in records if "server_name" in r}
    assert named["208.80.152.3"] == "upload.wikimedia.org"
    assert all(list(r)[list(r).index("server") + 1] == "server_name" for r in records if "server_name" in r)
    with open(export_rows(rows, "csv", str(tmp_path), "x", names=known)) as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0])[2:5] == ["server", "client_name", "server_name"]
    assert {t["server_name"] for t in table} >= {"upload.wikimedia.org", ""}
    with open(export_rows(rows, "csv", str(tmp_path), "y")) as fh:  # no names: the columns as before
        assert "server_name" not in fh.readline()


async def test_n_names_the_keys_of_the_grouped_view():
    """`n` in the grouped view names the keys as the connection table names the endpoints: by server, a port as its
    service, then the address as the host name learned for it (here from HTTP Host headers); numbers again after."""
    from midstat_tui.ui.group_table import GroupsTable

    app = make_app(WIKIPEDIA)
    async with app.run_test(size=(180, 34)) as pilot:
        groups = app.query_one(GroupsTable)
        while app.grouping != "server":
            await pilot.press("v")
        await pilot.pause()

        def key_line(address: str) -> tuple[int, str]:
            for y in range(1, len(groups.table) + 1):
                text = groups.render_line(y).text
                if address in text or "wikimedia" in text:
                    return y, text
            raise AssertionError(address)

        y, numbers = key_line("208.80.152.3:80")
        await pilot.press("n")
        assert "208.80.152.3:http " in groups.render_line(y).text
        await pilot.press("n")
        named = groups.render_line(y).text
        assert "upload.wikimedia.org:http " in named and "208.80.152.3" not in named
        await pilot.press("n")
        assert groups.render_line(y).text == numbers
