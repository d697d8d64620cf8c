"""Snapshot tests (pytest-textual-snapshot): the main screen, a filtered view and the flow screen, made
deterministic (a finished replay at a fixed packet time, no timer, no CPU load on screen).
Refresh after a deliberate change with `pytest tests/ui/test_snapshots.py --snapshot-update` and review the SVGs."""

from __future__ import annotations

from tests.helpers import FIXTURES
from tests.ui.conftest import make_app

SIZE = (110, 30)


def test_main_screen(snap_compare, tmp_path):
    assert snap_compare(make_app(tmp_path=tmp_path), terminal_size=SIZE)


def test_filtered_and_sorted(snap_compare, tmp_path):
    async def run_before(pilot):
        await pilot.press("slash", *"dport 6001 and not ended", "enter", "s", "s", "S")

    assert snap_compare(make_app(tmp_path=tmp_path), terminal_size=SIZE, run_before=run_before)


def test_flow_screen(snap_compare, tmp_path):
    async def run_before(pilot):
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(make_app(FIXTURES / "simultaneous_close.pcap", tmp_path), terminal_size=SIZE,
                        run_before=run_before)
