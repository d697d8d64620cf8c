"""`--keep-ended` and the short problems badge in a real terminal (tmux at 80x24, tests/screen.py), as root with the
default drop to nobody, on one core and two: a file's every connection stays in the table where `--linger 0.2`
alone let the ended ones go."""

from __future__ import annotations

import re
import sys

import pytest

from tests.helpers import FIXTURES, ROOT
from tests.screen import available, screen

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")


@pytest.mark.parametrize("cores", ["1", "2"])
@pytest.mark.parametrize("keep", [True, False])
def test_keep_ended_in_a_real_terminal(cores, keep):
    argv = [sys.executable, "-m", "midstat_tui", "-r", str(FIXTURES / "mixed_traffic.pcap"), "--cores", cores,
            "--speed", "0", "--linger", "0.2", *(["--keep-ended"] if keep else [])]
    with screen(argv, cwd=str(ROOT), width=80, height=24) as term:
        text = term.wait_for("100%")  # the end of the file
        if keep:
            text = term.wait_for("21 of 21 rows shown")
            # the badge at 80 columns: short, first on the header's first line
            assert text.splitlines()[0].lstrip().startswith("⚠ 9 (p)  midstat mixed_traffic.pcap")
        else:  # the ended ones went: fewer than the file's 21 connections in the table
            shown, total = map(int, re.search(r"(\d+) of (\d+) rows shown", term.wait_for("rows shown")).groups())
            assert total < 21
            assert shown == total  # every row the table holds is shown once (was `13 of 12`)
        term.keys("q")
        assert term.exit_status() == 0
