"""Ctrl-C or SIGTERM while midstat is still starting (importing its modules) stops it as a later one does: what
was read so far (nothing) written whole, exit status 0, no traceback; the TUI leaves at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from midstat_tui import early_signals
from midstat_tui.engine.headless import SignalFlag, set_on_signals
from tests.helpers import FIXTURES, ROOT


def test_a_signal_held_while_starting_sets_the_runs_stop_flag():
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        early_signals.hold()
        os.kill(os.getpid(), signal.SIGINT)  # delivered at once to this (the main) thread: no KeyboardInterrupt
        assert early_signals.HELD == [signal.SIGINT]
        flag = SignalFlag()
        set_on_signals(flag)
        assert flag.is_set()
    finally:
        early_signals.HELD.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_until_held(pid: int, timeout: float = 30) -> None:
    """Until the process catches SIGTERM (its SigCgt mask in /proc): midstat's first act, before its imports
    (early_signals.hold()); the interpreter alone does not catch it. A fixed sleep was too short on a loaded
    machine (the signal came while Python itself was still starting: a KeyboardInterrupt traceback)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as fh:
            caught = int(next(line for line in fh if line.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.002)
    raise AssertionError("midstat never caught SIGTERM")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_signal_while_importing_ends_a_headless_run_cleanly(sig, cores):
    proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", str(FIXTURES / "mixed_traffic.pcap"),
                             "--summary", "--json", "--cores", cores], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT)
    _wait_until_held(proc.pid)  # midstat's imports (textual, numpy, dpkt) take far longer than this wait
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and proc.returncode == 0, err
    doc = json.loads(out)  # a whole document, however little it holds
    assert "connections" in doc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_importing_ends_the_tui_at_once(sig):
    from tests.terminal import tui

    with tui("-r", str(FIXTURES / "mixed_traffic.pcap"), "--cores", "1") as term:
        _wait_until_held(term.proc.pid)
        term.proc.send_signal(sig)
        status = term.finish(timeout=30)
    assert b"Traceback" not in term.seen and status == 0, term.seen[-2000:]
