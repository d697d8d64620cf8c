"""The real command in a real terminal (a pty): start it, wait for text, stop it, check the terminal was restored."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator

from tests.helpers import ROOT

LEAVE_ALT_SCREEN = b"\x1b[?1049l"
SHOW_CURSOR = b"\x1b[?25h"


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


class Terminal:
    def __init__(self, proc: subprocess.Popen, master: int) -> None:
        self.proc, self.master = proc, master
        self.seen = b""

    def wait_for(self, needle: bytes, timeout: float = 30) -> None:
        self.seen += _read_until(self.master, needle, timeout)
        assert needle in self.seen, self.seen[-2000:]

    def finish(self, timeout: float = 20) -> int:
        """Drain the pty while the app ends (a full pty would block it); returns its exit status."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.seen += _read_until(self.master, b"\x00never", timeout=0.2)
        status = self.proc.wait(timeout=5)
        self.seen += _read_until(self.master, b"\x00never", timeout=0.5)
        return status

    def quit(self) -> int:
        """Esc (leave any screen), then q; returns the exit status."""
        # (an Esc and a q read together, on a loaded machine, are one key, alt+q: said again until the app ends)
        for _ in range(3):
            os.write(self.master, b"\x1b")
            time.sleep(0.3)
            os.write(self.master, b"q")
            deadline = time.monotonic() + 5
            while self.proc.poll() is None and time.monotonic() < deadline:
                self.seen += _read_until(self.master, b"\x00never", timeout=0.2)
            if self.proc.poll() is not None:
                break
        return self.finish()

    def hang_up(self) -> None:
        """The terminal goes away without a SIGHUP (the process has a session of its own): the pty's master closed."""
        os.close(self.master)
        self.master = -1

    def assert_restored(self) -> None:
        tail = self.seen[self.seen.rfind(b"\x1b[?1049h"):]
        assert LEAVE_ALT_SCREEN in tail and SHOW_CURSOR in tail, tail[-500:]
        assert b"Traceback" not in self.seen


@contextlib.contextmanager
def tui(*args: str, prefix: tuple[str, ...] = (), size: tuple[int, int] = (100, 30),
        cwd: str | os.PathLike | None = None) -> Iterator[Terminal]:
    """`midstat ARGS` in a new pty (`prefix`: e.g. `ip netns exec NS` in front of the interpreter) of `size`
    (columns, lines), in the project folder or in `cwd` (where exports go)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(size[0]), "LINES": str(size[1])}
    env.pop("SUDO_USER", None)
    if cwd is not None:
        env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "midstat_tui", *args], stdin=slave, stdout=slave,
                            stderr=slave, cwd=cwd or ROOT, env=env, start_new_session=True)
    os.close(slave)
    term = Terminal(proc, master)
    try:
        yield term
    finally:
        # the whole process group (its own session: shard workers included), even once the command itself is gone
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if term.master != -1:
            os.close(master)
