"""The header (issue 9 §4): every figure labelled, where a file's replay is, the sparklines' scale, what was not
tracked; and the go-to dialog. Pilot tests over real sessions on real captures."""

from __future__ import annotations

import dpkt
import pytest
from textual.widgets import Input, Static

from midstat_tui.columns import human
from midstat_tui.ui.app import MidstatApp
from midstat_tui.ui.goto_screen import GotoScreen
from midstat_tui.ui.header import HeaderFacts, Spark, place_text, spark_text, untracked_text
from tests.ui.conftest import MIXED, finished_session
from tests.ui.test_app import _until
from tests.unit.test_session import _reference_rows

SIZE = (120, 34)


def _text(app: MidstatApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def test_every_header_figure_has_its_label(app):
    async with app.run_test(size=SIZE):
        line1, place, line2 = (_text(app, f"#summary-{k}") for k in ("line1", "place", "line2"))
        assert "mixed_traffic.pcap" in line1 and "2026-11-25 23:13:25.8Z" in line1 and "end of the file" in line1
        assert place.startswith("at +2.5s of 2.5s ▕" + "█" * 30 + "▏ 100%")
        stats = app.stats
        # `conns 40 (shown 50)` read as a contradiction: open connections and rows are two labelled figures
        assert f"{stats['active']:,} open conns" in line2 and f"21 of {len(app.view.rows)} rows shown" in line2
        assert line2.startswith(f"{human(app.session._rates['pps'])} pkt/s ") and "bit/s · " in line2
        assert "new " in line2 and "/s ended " in line2
        active = list(app.session.spark_active)
        assert _text(app, "#spark-active-label") == f"open conns (last {len(active)} s, max {max(active)})"
        pps = list(app.session.spark_pps)
        assert _text(app, "#spark-pps-label") == f"pkt/s (last {len(pps)} s, max {human(max(pps))})"
        assert app.query_one("#summary-untracked").display is False  # nothing untracked: no line


async def test_the_progress_follows_a_seek_and_filtering_changes_the_rows_shown(app):
    async with app.run_test(size=SIZE) as pilot:
        session = app.session
        await pilot.press("space", "g", *"+1.2", "enter")
        await _until(pilot, lambda: session.position == session.first_ts + 1.2)
        app.tick()
        place = _text(app, "#summary-place")
        assert place.startswith("at +1.2s of 2.5s ▕" + "█" * 14) and place.endswith(" 47%"), place
        assert "PAUSED" in _text(app, "#summary-line1")
        shown_all = len(app.view.order)
        await pilot.press("slash", *"dport 6001", "enter")
        shown = len(app.view.order)
        assert 0 < shown < shown_all
        assert f"{shown} of {len(app.view.rows)} rows shown" in _text(app, "#summary-line2")


async def test_sparklines_before_any_data_say_so_instead_of_solid_blocks():
    from midstat_tui.capture.files import FileSource
    from midstat_tui.engine.pipeline import Engine
    from midstat_tui.engine.session import Session

    source = FileSource(str(MIXED))
    session = Session(Engine(source.datalink), source, live=False, speed=1.0)
    session.paused = True  # nothing replayed
    session.start()
    app = MidstatApp(session, interval=None, show_load=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await _until(pilot, lambda: session.span is not None)
            app.tick()
            await pilot.pause()
            for spark in app.query(Spark):
                assert str(spark.render()) == "no data yet"
            assert _text(app, "#spark-active-label") == "open conns"
            assert _text(app, "#summary-line1").endswith("· -- · ❚❚ PAUSED (Space plays, . steps)")
            assert _text(app, "#summary-place") == \
                "at the start, waiting for the first second to replay (the capture is 2.5s long)"
    finally:
        session.stop()


def test_sparkline_bars_start_from_zero():
    assert spark_text([0, 0, 0], 10) == "▁▁▁"  # nothing: a floor, not a wall
    assert spark_text([40, 40, 40], 10) == "███"  # constant at its maximum
    assert spark_text([38, 39, 40], 10) == "███"  # from zero: a 5% swing is not drawn as a full one
    assert spark_text([0, 10, 20, 40], 10) == " ▂▄█"
    assert spark_text(list(range(100)), 10) == spark_text([9, 19, 29, 39, 49, 59, 69, 79, 89, 99], 10)


def test_untracked_counts_and_the_first_hint():
    assert untracked_text({"bad_checksum": 0, "non_tcp": 0, "malformed": {}}) == ""
    stats = {"bad_checksum": 200, "non_tcp": 3, "malformed": {"ip_header": 2, "tcp_header": 1}}
    assert untracked_text(stats) == "not tracked: bad checksum 200 · non-TCP 3 · malformed 3"
    hints = ["checksum offload on eth0: checksums not verified (--checksum to force)", "another"]
    assert untracked_text({**stats, "hints": hints}) == \
        "not tracked: bad checksum 200 · non-TCP 3 · malformed 3 — " + hints[0]
    assert untracked_text({"non_tcp": 0, "hints": hints}) == hints[0]


def test_live_place_shows_the_capture_counters():
    facts = HeaderFacts(source="eth0", live=True, counters={"capture": {"received": 1234, "dropped": 5,
                                                                       "if_dropped": 0}})
    assert place_text(facts) == "capture: received 1,234 · dropped by the kernel 5, by the interface 0"


def _with_untracked(tmp_path) -> str:
    """mixed_traffic.pcap with one data frame's payload changed (a bad checksum), one frame cut inside its IP
    header (malformed) and an ARP request added (not TCP)."""
    out = tmp_path / "untracked.pcap"
    with open(MIXED, "rb") as fh, open(out, "wb") as dst:
        reader = dpkt.pcap.Reader(fh)
        writer = dpkt.pcap.Writer(dst, linktype=reader.datalink())
        damaged = cut = False
        for ts, frame in reader:
            if not damaged and len(frame) > 100:
                frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
                damaged = True
            elif damaged and not cut and len(frame) > 100:
                frame = frame[:14 + 12]
                cut = True
            writer.writepkt(frame, ts=ts)
        arp = bytes(dpkt.ethernet.Ethernet(dst=b"\xff" * 6, src=b"\x02" * 6, type=dpkt.ethernet.ETH_TYPE_ARP,
                                           data=bytes(dpkt.arp.ARP())))
        writer.writepkt(arp, ts=ts)
    return str(out)


async def test_what_was_not_tracked_is_in_the_header(tmp_path):
    app = MidstatApp(finished_session(_with_untracked(tmp_path)), interval=None, show_load=False)
    async with app.run_test(size=SIZE):
        stats = app.stats
        assert stats["bad_checksum"] == 1 and stats["non_tcp"] == 1 and sum(stats["malformed"].values()) == 1
        assert app.query_one("#summary-untracked").display is True
        assert _text(app, "#summary-untracked").startswith(
            "not tracked: bad checksum 1 · non-TCP 1 · malformed 1")


async def test_goto_refuses_what_is_not_a_time_and_shows_the_range(app):
    async with app.run_test(size=SIZE) as pilot:
        session = app.session
        await pilot.press("space", "g")
        screen = app.screen
        assert isinstance(screen, GotoScreen)
        assert "the capture: 2026-11-25 23:13:23.3Z to 23:13:25.8Z (+0.0s to +2.5s)" in \
            str(screen.query_one("#goto-range", Static).render())
        for text, says in (("25:61:00", "hours go from 00 to 23"), ("-5", "cannot be negative"),
                           ("abc", "is not a time"), ("+500", "after the last packet")):
            screen.query_one(Input).value = ""
            await pilot.press(*text, "enter")
            assert app.screen is screen  # still asking
            error = str(screen.query_one("#goto-error", Static).render())
            assert says in error and "float" not in error
        screen.query_one(Input).value = ""
        await pilot.press(*"23:13:24", "enter")
        assert app.screen is not screen
        await _until(pilot, lambda: session.position is not None and round(session.position % 60, 6) == 24.0)


@pytest.mark.parametrize("key", ["left_square_bracket", "right_square_bracket"])
async def test_seek_keys_stop_at_the_ends_of_the_capture(key):
    session = finished_session(MIXED)
    app = MidstatApp(session, interval=None, show_load=False)
    async with app.run_test(size=SIZE) as pilot:
        first, last = session.span
        await pilot.press("space", "g", *"+1", "enter")
        await _until(pilot, lambda: session.position == first + 1)
        await pilot.press(key)
        await _until(pilot, lambda: session.position in (first, last))
        app.tick()
        assert session.position == (first if key == "left_square_bracket" else last)
        assert "at the first packet" in _text(app, "#status") if key == "left_square_bracket" else \
            "at the last packet" in _text(app, "#status")
        # the bug of issue 9: after a seek to the start, the next seeks showed 0 connections for good
        await pilot.press("g", *"+2", "enter")
        await _until(pilot, lambda: session.position == first + 2)
        app.tick()
        expected = _reference_rows(MIXED, until=first + 2)
        assert len(expected) > 10 and {app.view.rows[i] for i in app.view.order} == set(expected.values())


