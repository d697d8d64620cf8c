"""`--keep-ended`: a file's every connection stays in the TUI's table to the end (the TUI's `--summary`), where the
linger time would have let the ended ones go."""

from __future__ import annotations

import json
import subprocess
import sys

from midstat_tui.cli import build_parser, check_options
from midstat_tui.engine.records import format_endpoint
from midstat_tui.limits import MAX_SECONDS
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.ui.app import MidstatApp
from tests.helpers import ROOT
from tests.ui.conftest import MIXED, finished_session


def test_keep_ended_is_a_linger_without_end_over_any_linger() -> None:
    args = build_parser().parse_args(["-r", str(MIXED), "--linger", "0.2", "--keep-ended"])
    check_options(args)
    assert args.linger == MAX_SECONDS
    args = build_parser().parse_args(["-r", str(MIXED), "--linger", "0.2"])
    check_options(args)
    assert args.linger == 0.2


async def test_the_table_keeps_every_connection_of_the_file_as_summary_lists_them() -> None:
    summary = subprocess.run([sys.executable, "-m", "midstat_tui", "-r", str(MIXED), "--summary", "--json"],
                             capture_output=True, check=True, cwd=ROOT)
    every = {(record["client"], record["server"], round(record["first"], 6))
             for record in json.loads(summary.stdout)["connections"]}
    shown = {}
    for name, linger in (("short linger", 0.2), ("kept", MAX_SECONDS)):
        app = MidstatApp(finished_session(MIXED, config=TrackerConfig(linger=linger)), interval=None, show_load=False)
        app.view.linger = linger
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause()
            shown[name] = {(format_endpoint(row.c_addr, row.c_port), format_endpoint(row.s_addr, row.s_port),
                            round(row.first, 6)) for row in app.view.rows.values()}
    assert shown["kept"] == every
    assert shown["short linger"] < every  # ended ones had left: the test would see a linger that did nothing
