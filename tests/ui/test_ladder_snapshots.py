"""Snapshot tests of the flow screen's ladder (pytest-textual-snapshot) at 80 and 160 columns, on kernel-made
captures: a handshake and close, a simultaneous close, a lossy transfer (folded, then unfolded), a reset, a
mid-stream pickup. Refresh after a deliberate change with `--snapshot-update` and review the SVGs."""

from __future__ import annotations

import pytest

from tests.helpers import FIXTURES
from tests.ui.conftest import make_app

SIZES = {"80": (80, 24), "160": (160, 40)}


async def _ladder(pilot, *keys: str) -> None:
    await pilot.press("enter")
    await pilot.pause()
    await pilot.press("l", *keys)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", ["close_client_first", "simultaneous_close", "lossy_transfer", "reset_by_server",
                                  "midstream"])
def test_ladder_snapshot(snap_compare, tmp_path, name, size):
    async def run_before(pilot):
        await _ladder(pilot)

    assert snap_compare(make_app(FIXTURES / f"{name}.pcap", tmp_path), terminal_size=SIZES[size],
                        run_before=run_before)


def test_ladder_unfolded_snapshot(snap_compare, tmp_path):
    async def run_before(pilot):
        await _ladder(pilot)
        view = pilot.app.screen.query_one("#flow-ladder")
        view.highlighted = next(i for i, line in enumerate(view.lines) if line.kind == "fold")
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(make_app(FIXTURES / "lossy_transfer.pcap", tmp_path), terminal_size=SIZES["160"],
                        run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_time_sequence_snapshot(snap_compare, tmp_path, size):
    async def run_before(pilot):
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("t", "z")
        await pilot.pause()

    assert snap_compare(make_app(FIXTURES / "lossy_transfer.pcap", tmp_path), terminal_size=SIZES[size],
                        run_before=run_before)
