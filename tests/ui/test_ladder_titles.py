"""#13's leftovers in the flow screen: the ladder at 80 and 160 columns with the longest IPv6 endpoints (every line
within the view, both endpoints whole), and the screen's title saying when the connection started (a reused port's
two incarnations told apart)."""

from __future__ import annotations

import time

import pytest
from textual.widgets import Static

from tests.rewrite_pcap import port_reuse, readdressed
from tests.ui.conftest import make_app
from tests.ui.test_ladder import _open_ladder

LONG_V6 = ("2001:db8:1234:5678:9abc:def0:1234:5678", "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff")


def _screen_lines(app) -> list[str]:
    return [strip.text for strip in app.screen._compositor.render_strips()]


@pytest.mark.parametrize("size", [(80, 24), (160, 40)])
async def test_long_ipv6_ladder_fits_and_shows_both_ends(tmp_path, size):
    path = readdressed(tmp_path / "long6.pcap", LONG_V6[0], 65535, LONG_V6[1], 65534)
    app = make_app(path, tmp_path)
    ends = [f"[{LONG_V6[0]}]:65535", f"[{LONG_V6[1]}]:65534"]
    async with app.run_test(size=size) as pilot:
        view = await _open_ladder(app, pilot)
        assert max(len(line.text) for line in view.lines) <= view.scrollable_content_region.width
        heads = [line.text for line in view.lines if line.kind == "head"]
        assert any(f"client {ends[0]}" in text for text in heads)
        assert any(f"server {ends[1]}" in text for text in heads)
        # on the screen as drawn: both labels whole, the title's endpoints whole (wrapped, not cut)
        screen = _screen_lines(app)
        assert any(f"client {ends[0]}" in line for line in screen)
        assert any(f"server {ends[1]}" in line for line in screen)
        title = app.screen.query_one("#flow-title", Static)
        shown = screen[:title.size.height]
        assert all(any(end in line for line in shown) for end in ends), shown
        assert any("started 2026-" in line for line in shown)


async def test_each_incarnation_of_a_reused_port_says_when_it_started(tmp_path):
    path, starts = port_reuse(tmp_path / "reuse.pcap", again_after=5.0)
    app = make_app(path, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        app.view.recompute()
        ids = list(app.view.order)
        assert len(ids) == 2
        said = {}
        for i in range(len(ids)):
            app.table.cursor = i
            view = await _open_ladder(app, pilot)
            screen = app.screen
            text = str(screen.query_one("#flow-title", Static).render())
            flow = view.flow
            said[flow.packets[0].ts] = text
            await pilot.press("escape")
            await pilot.pause()
    assert sorted(said) == pytest.approx(starts, abs=1e-6)
    for start, offset in zip(sorted(said), ("+0.000000 s", "+5.000000 s"), strict=True):
        clock = time.strftime("%H:%M:%S", time.gmtime(int(start))) + f".{round(start % 1 * 1e6):06d}Z"
        assert f"{clock} ({offset} into the capture)" in said[start], said[start]
