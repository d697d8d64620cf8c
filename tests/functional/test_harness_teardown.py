"""The terminal harnesses leave nothing running when a test ends without quitting the command (a failed assertion
in the middle of a test): the pty TUI's whole process group, shard workers included, and whatever a tmux pane ran,
even a process that ignores its terminal's hang-up."""

from __future__ import annotations

import os
import time

import pytest

from tests.helpers import FIXTURES, alive
from tests.screen import available, screen
from tests.terminal import tui


def _gone(pids: list[int], timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(p) for p in pids)


def _group(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[2]) == pgid:
                        members.append(int(entry))
            except OSError:
                continue
    return members


def test_a_pty_tui_left_running_is_killed_with_its_shards():
    with tui("-r", str(FIXTURES / "mixed_traffic.pcap"), "--speed", "0", "--cores", "2", "--user", "root") as term:
        term.wait_for(b"10.231.1.1")
        deadline = time.monotonic() + 20
        while len(members := _group(term.proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(members) >= 3, members  # core 0 and two shards
    assert _gone(members), [p for p in members if alive(p)]


@pytest.mark.skipif(available() is not None, reason=available() or "")
def test_a_tmux_pane_left_running_is_killed_even_if_it_ignores_the_hang_up(tmp_path):
    marker = tmp_path / "pid"
    script = f"trap '' HUP; echo $$ > {marker}; while :; do sleep 0.1; done"
    with screen(["sh", "-c", script]) as term:
        deadline = time.monotonic() + 10
        while not (marker.exists() and marker.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        pid = int(marker.read_text())
        assert alive(pid)
        assert term.pane_pid() != pid
    assert _gone([pid])
