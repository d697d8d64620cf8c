"""A TUI whose terminal goes away without a SIGHUP (the pty's master side closed while midstat runs in a session of
its own) leaves promptly: the session stopped (no shard worker left behind), no CPU spent spinning on the dead
terminal's end-of-file. Run as root with the default privilege drop (root becomes nobody), on one and two cores."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, nobody_uid
from tests.terminal import tui

MIXED = str(FIXTURES / "mixed_traffic.pcap")
LEAVE_WITHIN = 5.0  # seconds from the hang-up to the process gone


def _children(pid: int) -> set[int]:
    """The process's child processes (its shard workers), from /proc."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found.update(int(c) for c in (task / "children").read_text().split())
    return found


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(os.geteuid() != 0 or nobody_uid() is None, reason="needs root and a 'nobody' account")
@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_tui_whose_terminal_goes_away_leaves_promptly(cores):
    with tui("-r", MIXED, "--speed", "1", "--cores", cores) as term:  # still replaying when the terminal goes
        term.wait_for(b"10.231.1.1")
        workers = _children(term.proc.pid)
        assert cores == "1" or len(workers) >= 2, workers  # two shard workers
        cpu_before = _cpu_seconds(term.proc.pid)
        term.hang_up()
        deadline = time.monotonic() + LEAVE_WITHIN
        while term.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if term.proc.poll() is None:  # still there: say how much it spins on the dead terminal
            spent = _cpu_seconds(term.proc.pid) - cpu_before
            pytest.fail(f"still running {LEAVE_WITHIN} s after its terminal went away, {spent:.1f} s of CPU spent")
        assert term.proc.returncode == 0
        for worker in workers:  # the session was stopped: its shard workers are gone too
            assert not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]
