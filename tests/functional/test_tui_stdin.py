"""`cat x.pcap | midstat -r -` opens the TUI: the capture comes on standard input, the keys from the terminal."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest

from tests import screen as tmux
from tests.helpers import FIXTURES, ROOT

MIXED = FIXTURES / "mixed_traffic.pcap"


@pytest.mark.skipif(tmux.available() is not None, reason=tmux.available() or "")
@pytest.mark.parametrize("compressed", [False, True])
def test_the_tui_reads_the_capture_from_a_pipe_and_the_keys_from_the_terminal(compressed):
    feed = f"gzip -c {shlex.quote(str(MIXED))}" if compressed else f"cat {shlex.quote(str(MIXED))}"
    midstat = shlex.join([sys.executable, "-m", "midstat_tui", "-r", "-", "--speed", "0"])
    with tmux.screen(["sh", "-c", f"{feed} | {midstat}"], env={"PYTHONPATH": str(ROOT)}) as term:
        term.wait_for("10.231.2.1:6001", timeout=30)
        term.keys("?")
        term.wait_for("midstat keys")  # a key read from the terminal, not from the capture
        term.keys("Escape")
        term.wait_gone("midstat keys")
        term.keys("[")  # a pipe cannot be read again: said, and the table stays as it is
        term.wait_for("going back needs a capture file")
        assert "10.231.2.1:6001" in term.text()
        term.keys("q")
        assert term.exit_status() == 0
        assert "Traceback" not in "\n".join(term.history)


def test_without_a_terminal_the_tui_says_to_use_a_headless_output():
    proc = subprocess.run([sys.executable, "-m", "midstat_tui", "-r", "-"], input=MIXED.read_bytes(),
                          capture_output=True, cwd=ROOT, timeout=60, start_new_session=True)
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "needs a terminal" in lines[0] and "--summary" in lines[0]
