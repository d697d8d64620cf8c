"""The problems lens in a real terminal (tmux, tests/screen.py): the command with --threshold, the header's badge,
`p`, a threshold typed in, Esc back and `q` out, read off the screen as a person reads it."""

from __future__ import annotations

import sys

import pytest

from tests.helpers import FIXTURES, ROOT
from tests.screen import available, screen

pytestmark = pytest.mark.skipif(available() is not None, reason=available() or "")


def test_the_lens_in_a_terminal():
    pcap = str(FIXTURES / "problems" / "close_wait.pcap")
    argv = [sys.executable, "-m", "midstat_tui", "-r", pcap, "--speed", "0", "--threshold", "zero_window=9"]
    with screen(argv, cwd=str(ROOT), width=120, height=36) as term:
        first = term.wait_for("end of the file")
        assert "problem" not in first.splitlines()[0]      # 2 s in CLOSE_WAIT: below the default 10 s
        term.keys("p")
        lens = term.wait_for("Problems: 0")
        assert "zero_window" in lens and "9 s" in lens          # the threshold given on the command line
        term.keys("T")
        term.wait_for("Threshold: KIND=VALUE")
        term.type("1")                                          # the field starts as "close_wait="
        term.keys("Enter")
        lens = term.wait_for("Problems: 1")
        assert "the server has been in CLOSE_WAIT for 2.1 s" in lens
        assert "10.231.2.1:5101" in lens
        term.keys("Escape")
        main = term.wait_for("⚠ 1 problem (p)")
        assert "10.231.1.1" in main
        term.keys("q")
        assert term.exit_status() == 0
        assert "Traceback" not in "".join(term.history)
