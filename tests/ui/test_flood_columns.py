"""A flood-like capture in the real app, rows handed over as records made in C (engine.rowcols) against the same
capture handed over as Python rows: the same screen, rows, sort orders, filters, groups and problems.

The capture: the table's layout cases (IPv6, a reused port, a blind RST, two VLAN tags: tests/table_pcap.py), then
3,000 SYNs from distinct sources over 2.5 s of packet time (several ticks, applied in slices), and a second SYN from
the first 600 of them a second later (rows that change after they arrived)."""

from __future__ import annotations

import time

import dpkt
import pytest

import midstat_tui.ui.app as app_module
from midstat_tui.capture.files import FileSource
from midstat_tui.engine import rowcols
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.session import Session
from midstat_tui.tcp.connection import COMPILED
from midstat_tui.ui.app import MidstatApp
from tests import table_pcap

pytestmark = pytest.mark.skipif(not rowcols.available() or not COMPILED,
                                reason="no compiled core (or MIDSTAT_PURE_PYTHON)")

SYNS = 3000
AGAIN = 600
SIZE = (160, 40)
FILTERS = ("port 80", "host 10.50.3.7", "net 10.50.4.0/24 or vlan 20", "zeek S0 and not state SYN_SENT",
           "problem unanswered_syn", "sport 1500-1600", "ended")
SORTS = ("client", "server", "age", "pkts_c2s", "zeek", "cstate", "history", "vlan")


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    where = tmp_path_factory.mktemp("flood")
    cases = table_pcap.write(where / "cases.pcap")
    with cases.open("rb") as fh:
        packets = [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(fh)]
    start = packets[-1][0] + 0.5
    for i in range(SYNS):
        src = f"10.50.{i >> 8}.{i & 255}"
        packets.append((start + i * 2.5 / SYNS,
                        table_pcap._frame(src, 1024 + i, "192.168.77.1", 80, dpkt.tcp.TH_SYN, 7 * i, 0)))
    for i in range(AGAIN):
        src = f"10.50.{i >> 8}.{i & 255}"
        packets.append((start + 3.5 + i * 0.5 / AGAIN,
                        table_pcap._frame(src, 1024 + i, "192.168.77.1", 80, dpkt.tcp.TH_SYN, 7 * i, 0)))
    path = where / "flood.pcap"
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh)
        for ts, frame in packets:
            writer.writepkt(frame, ts=ts)
    return path


def _session(path, columns: bool) -> Session:
    source = FileSource(str(path))
    session = Session(Engine(source.datalink), source, live=False, speed=0.0, columns=columns)
    session.start()
    deadline = time.monotonic() + 30
    while not (session.at_end and session.span_scanned) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert session.at_end
    return session


def _lines(app: MidstatApp) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


def _groups(app: MidstatApp, grouping: str) -> dict:
    table = app.view.groups(grouping)
    return {label: tuple(float(table.columns[name][i]) for name in sorted(table.columns))
            for i, label in enumerate(table.labels)}


async def test_a_flood_handed_over_as_records_shows_what_python_rows_show(flood, monkeypatch):
    monkeypatch.setattr(app_module, "APPLY_SLICE", 700)  # the big pull goes in several slices
    seen = {}
    for columns in (True, False):
        session = _session(flood, columns)
        app = MidstatApp(session, interval=None, show_load=False)
        async with app.run_test(size=SIZE) as pilot:
            for _ in range(200):
                if not app.view.behind:
                    break
                await pilot.pause(0.02)
            app.tick()
            await pilot.pause()
            view = app.view
            assert len(view.rows) >= session.engine.stats()["in_table"] >= SYNS  # (+ a reused port's first)
            taken = seen[columns] = {
                "screen": _lines(app),
                "rows": {conn_id: view.rows[conn_id] for conn_id in view.rows},
                "problems": dict(view.problem_counts),
                "width": view.addr_width,
                "vlan": view.has_vlan,
                "groups": {g: _groups(app, g) for g in ("server", "server-host", "client-host", "vlan", "zeek",
                                                        "states")},
            }
            for key in SORTS:
                view.sort_by(key)
                view.recompute()
                taken[f"sort {key}"] = list(view.order)
            for text in FILTERS:
                view.set_query(text)
                view.recompute()
                taken[f"filter {text}"] = list(view.order)
                taken[f"groups {text}"] = _groups(app, "client-host")
        session.stop()
    made, python = seen[True], seen[False]
    assert made["problems"]["unanswered_syn"] >= AGAIN  # the flood is there: SYNs unanswered for 3 s
    assert made["vlan"] and made["width"] > len("255.255.255.255:65535")  # the tags and the IPv6 endpoints
    assert len(made["groups"]["client-host"]) >= SYNS
    for key in python:
        assert made[key] == python[key], key
    assert any(len(order) for key, order in made.items() if key.startswith("filter "))
