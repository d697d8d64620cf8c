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


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_signal_while_importing_ends_a_headless_run_cleanly(sig, cores):
    proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", str(FIXTURES / "mixed_traffic.pcap"),
                             "--summary", "--json", "--cores", cores], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT)
    time.sleep(0.15)  # the interpreter is up; midstat's imports (textual, numpy, dpkt) take longer than this
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and proc.returncode == 0, err
    doc = json.loads(out)  # a whole document, however little it holds
    assert "connections" in doc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_importing_ends_the_tui_at_once(sig):
    from tests.terminal import tui

    with tui("-r", str(FIXTURES / "mixed_traffic.pcap"), "--cores", "1") as term:
        time.sleep(0.15)
        term.proc.send_signal(sig)
        status = term.finish(timeout=30)
    assert b"Traceback" not in term.seen and status == 0, term.seen[-2000:]
