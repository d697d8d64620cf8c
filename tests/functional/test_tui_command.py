"""`midstat -r FILE` with no headless flag opens the TUI in a real terminal (a pty) and `q` leaves it cleanly."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

from tests.helpers import FIXTURES, ROOT


def _read_until(fd: int, needle: bytes, timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and needle not in seen:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def test_tui_opens_in_a_terminal_and_quits_on_q():
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", str(FIXTURES / "mixed_traffic.pcap"),
                             "--speed", "0"], stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, env=env,
                            start_new_session=True)
    os.close(slave)
    try:
        screen = _read_until(master, b"10.231.1.1", timeout=30)
        assert b"mixed_traffic.pcap" in screen and b"10.231.1.1" in screen
        os.write(master, b"q")
        rest = b""
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            rest += _read_until(master, b"\x00never", timeout=0.2)  # keep draining: a full pty blocks the app
        assert proc.wait(timeout=5) == 0
        rest += _read_until(master, b"\x1b[?1049l", timeout=2)
        assert b"\x1b[?1049l" in screen + rest  # the alternate screen was left: the terminal is restored
        assert b"Traceback" not in screen + rest
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
