"""Snapshot of the grouped view (pytest-textual-snapshot), deterministic as test_snapshots.py's.
Refresh after a deliberate change with `--snapshot-update` and review the SVG."""

from __future__ import annotations

from tests.ui.conftest import make_app

SIZE = (110, 30)


def test_grouped_by_state_pair(snap_compare, tmp_path):
    async def run_before(pilot):
        await pilot.press("v", "v", "v", "v")

    assert snap_compare(make_app(tmp_path=tmp_path), terminal_size=SIZE, run_before=run_before)
