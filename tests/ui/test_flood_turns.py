"""A flood's pull is applied in turns of the app's loop: each turn applies slices of APPLY_SLICE rows for up to
APPLY_BUDGET seconds (the loop answers keys between turns; each wait between two turns costs the replay's end).
Measured on the real case by benchmarks/tui_flood.py (a million rows)."""

from __future__ import annotations

import midstat_tui.ui.app as app_module
from midstat_tui.conn_view import ConnView
from tests.ui.conftest import make_app

SIZE = (120, 34)


async def _applied(app, pilot) -> None:
    """Let the app's turns apply what it was given."""
    for _ in range(100):
        if not app.view.behind:
            return
        await pilot.pause(0.02)


async def _turns(monkeypatch, tmp_path, budget: float) -> tuple[list[int], list[int], int]:
    """(rows applied before each catch_up call, the view's backlog at each turn, rows at the end)."""
    monkeypatch.setattr(app_module, "APPLY_SLICE", 2)
    monkeypatch.setattr(app_module, "APPLY_BUDGET", budget)
    calls: list[int] = []
    turns: list[int] = []
    catch_up = ConnView.catch_up
    apply_slice = app_module.MidstatApp._apply_slice

    def counted(self, limit=None):
        calls.append(len(self.rows))
        return catch_up(self, limit)

    def turn(self, first: bool = False) -> None:
        turns.append(self.view.behind)
        apply_slice(self, first)

    monkeypatch.setattr(ConnView, "catch_up", counted)
    monkeypatch.setattr(app_module.MidstatApp, "_apply_slice", turn)
    app = make_app(tmp_path=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _applied(app, pilot)
        rows = len(app.view.order)
        assert rows == app.session.engine.stats()["in_table"] == 21
    return calls, turns, rows


async def test_a_turn_applies_slices_for_its_budget(monkeypatch, tmp_path):
    calls, turns, _ = await _turns(monkeypatch, tmp_path, 10.0)
    # one turn applies every slice but the last (the turn that finishes draws the table), the next the rest
    assert len(turns) == 2 and turns[0] > 20 and turns[1] <= 2, turns
    assert calls[:3] == [0, 2, 4] and len(calls) >= 10


async def test_with_no_budget_a_turn_applies_one_slice(monkeypatch, tmp_path):
    calls, turns, _ = await _turns(monkeypatch, tmp_path, 0.0)
    assert len(turns) >= 10 and turns[0] > 20, turns
    assert all(0 <= a - b <= 2 for a, b in zip(turns, turns[1:], strict=False)), turns
    assert calls[:3] == [0, 2, 4]


async def test_the_app_shortens_the_switch_interval_while_it_runs_and_gives_it_back(tmp_path):
    """The engine's thread and the app's share the interpreter lock: while the app runs, a thread waiting for it
    waits at most SWITCH_INTERVAL (the default 5 ms made a flood's slice stand 0.5-0.8 s); given back on leaving."""
    import sys

    before = sys.getswitchinterval()
    app = make_app(tmp_path=tmp_path)
    async with app.run_test(size=(120, 30)):
        assert sys.getswitchinterval() == min(app_module.SWITCH_INTERVAL, before) < 0.005
    assert sys.getswitchinterval() == before


async def test_a_flood_tick_is_taken_at_once_a_usual_one_waits_for_the_refresh(monkeypatch, tmp_path):
    """Ticks come no sooner than MIN_REFRESH after the last one shown (a replay at --speed 0 closes many seconds a
    second), but one of APPLY_SLICE changed rows or more (a flood's second, or a part of it) is taken at once, with
    what was held: its slices are applied while the engine goes on, not a refresh later."""
    import time

    from midstat_tui.engine.driver import Tick

    monkeypatch.setattr(app_module, "APPLY_SLICE", 2)
    app = make_app(tmp_path=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        shown: list = []
        show = app._show
        monkeypatch.setattr(app, "_show", lambda tick: (shown.append(tick), show(tick)))
        app._shown_at = time.monotonic()  # just refreshed
        position = app.session.position
        app.post_message(app_module.TickArrived(Tick(position, app.stats, {})))
        await pilot.pause()
        assert not shown and app._held_timer is not None  # a usual one waits
        app.post_message(app_module.TickArrived(Tick(position, app.stats, {10**9 + i: None for i in range(3)})))
        await pilot.pause()
        assert len(shown) == 1 and len(shown[0].changes) == 3 and app._held_timer is None


async def test_the_table_draws_while_a_whole_table_is_applied_in_slices(monkeypatch, tmp_path):
    """A reset pull (after a seek; on several cores, a file's end) applied a slice at a time: until the next draw
    the order is the last one's, and a row of it that has not come again yet is a blank line, not a KeyError that
    ended the app (seen at the end of a million-SYN flood on two cores)."""
    from midstat_tui.engine.driver import Tick

    monkeypatch.setattr(app_module, "APPLY_SLICE", 2)
    monkeypatch.setattr(app_module, "APPLY_BUDGET", 0.0)  # one slice a turn
    app = make_app(tmp_path=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _applied(app, pilot)
        view, table = app.view, app.table
        before = [view.id_at(i) for i in range(view.shown_count)]
        drawn = [table.render_line(y).text for y in range(1, 6)]
        assert len(before) == 21 and all(line.strip() for line in drawn)
        rows = {conn_id: view.rows[conn_id] for conn_id in reversed(before)}  # the rows on top come back last
        app._show(Tick(app.session.position, app.stats, rows, reset=True))
        assert view.behind > 0 and before[0] not in view.rows  # the first slice is in, the top rows are not
        table._cache.clear()
        blank = [table.render_line(y).text for y in range(1, 6)]
        assert not any(line.strip() for line in blank), blank
        await _applied(app, pilot)
        await pilot.pause()
        assert [view.id_at(i) for i in range(view.shown_count)] == before
        assert [table.render_line(y).text for y in range(1, 6)] == drawn


async def test_a_whole_table_is_drawn_once_it_is_all_in(monkeypatch, tmp_path):
    """The once-a-second draw while a flood's pull is applied skips a whole table's (a reset: after a seek, a
    file's end on two cores): half of it drawn read as rows lost ("710,234 of 710,234 rows shown" falling to
    600,000 on a flood's end on two cores); the last picture stays until all of it is in."""
    from midstat_tui.engine.driver import Tick

    monkeypatch.setattr(app_module, "APPLY_SLICE", 2)
    monkeypatch.setattr(app_module, "APPLY_BUDGET", 0.0)
    app = make_app(tmp_path=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await _applied(app, pilot)
        view = app.view
        rows = {conn_id: view.rows[conn_id] for conn_id in list(view.rows)}
        draws: list[tuple[bool, int]] = []
        redraw = app._redraw
        monkeypatch.setattr(app, "_redraw", lambda: (draws.append((view.replacing, len(view.rows))), redraw()))
        app._drawn_at = -10.0  # a draw is due at every turn
        app._show(Tick(app.session.position, app.stats, rows, reset=True))
        await _applied(app, pilot)
        await pilot.pause()
        assert draws and all(not replacing and count == len(rows) for replacing, count in draws), draws
