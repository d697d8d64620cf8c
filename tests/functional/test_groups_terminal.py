"""The grouped view as a person meets it: the real command in tmux, on 1 and 2 cores: v groups the connections by
server, Enter opens one server's connections, Esc comes back, v again moves on to the next grouping."""

from __future__ import annotations

import re
import sys

import pytest

from tests import screen as tmux
from tests.helpers import FIXTURES, ROOT

MIXED = FIXTURES / "mixed_traffic.pcap"


def _group_row(screen: str, key: str) -> list[str]:
    for line in screen.splitlines():
        cells = line.split()
        if cells and cells[0] == key:
            return cells
    raise AssertionError(f"no group {key!r} on the screen:\n{screen}")


@pytest.mark.skipif(tmux.available() is not None, reason=tmux.available() or "")
@pytest.mark.parametrize("cores", ["1", "2"])
def test_group_by_server_then_into_a_group_and_back(cores):
    argv = [sys.executable, "-m", "midstat_tui", "-r", str(MIXED), "--speed", "0", "--cores", cores]
    with tmux.screen(argv, env={"PYTHONPATH": str(ROOT)}, width=140, height=36) as term:
        term.wait_for("10.231.2.1:6001", timeout=30)
        term.wait_for("end of the file", timeout=30)
        term.keys("v")
        screen = term.wait_for("grouped by server")
        assert _group_row(screen, "10.231.2.1:6001")[1] == "15"
        assert _group_row(screen, "10.231.2.1:6999")[1:6] == ["3", "0", "0", "0", "3"]  # refused: 3 reset
        assert _group_row(screen, "[fd31:2::1]:6002")[1] == "3"
        assert re.search(r"21 connections: 9 \S+/\S+ · 9 \S+/\S+ · 3 \S+/\S+", screen), screen
        term.keys("Down")
        term.keys("Enter")
        screen = term.wait_for("Esc: back to the groups")
        rows = [line for line in screen.split("Client State", 1)[1].splitlines() if "10.231.1.1:" in line]
        assert len(rows) == 3 and all("10.231.2.1:6999" in line for line in rows), screen
        term.keys("Escape")
        screen = term.wait_for("grouped by server")
        term.keys("v")
        screen = term.wait_for("grouped by server host")
        assert _group_row(screen, "10.231.2.1")[1] == "18"
        term.keys("q")
        assert term.exit_status() == 0
        assert "Traceback" not in "\n".join(term.history)
