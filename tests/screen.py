"""The real command in a real terminal, read as a person reads it: tmux runs it, `send-keys` types, `capture-pane`
gives the screen as text. Needs tmux (CI installs it)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator

EXIT_MARK = "MIDSTAT-EXITED="
# a tmux server of this test process's own (pytest-xdist runs several at once: one shared server would exit under
# one worker's `new-session` when another worker's last session ends)
SOCKET = os.path.join(tempfile.gettempdir(), f"midstat-tests-tmux-{os.getpid()}")
TMUX = ["tmux", "-S", SOCKET]


@atexit.register
def _remove_socket() -> None:
    """tmux may leave its socket file behind once its last session is gone."""
    with contextlib.suppress(OSError):
        os.unlink(SOCKET)


def available() -> str | None:
    return None if shutil.which("tmux") else "needs tmux"


class Screen:
    def __init__(self, name: str) -> None:
        self.name = name
        self.history: list[str] = []  # every screen read, for the failure message

    def text(self) -> str:
        out = subprocess.run([*TMUX, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True)
        screen = out.stdout
        self.history.append(screen)
        return screen

    def keys(self, *keys: str, literal: bool = False, pause: float = 0.3) -> None:
        subprocess.run([*TMUX, "send-keys", "-t", self.name, *(["-l"] if literal else []), *keys], check=True)
        time.sleep(pause)

    def type(self, text: str) -> None:
        self.keys(text, literal=True)

    def wait_for(self, needle: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.text()
            if needle in screen:
                return screen
            assert "Traceback" not in screen, screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not on the screen after {timeout} s:\n{screen}")
            time.sleep(0.2)

    def wait_gone(self, needle: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while needle in (screen := self.text()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} still on the screen after {timeout} s:\n{screen}")
            time.sleep(0.2)
        return screen

    def pane_pid(self) -> int:
        """The pid of the shell tmux started the command in."""
        out = subprocess.run([*TMUX, "display", "-p", "-t", self.name, "#{pane_pid}"], capture_output=True, text=True)
        return int(out.stdout.strip())

    def exit_status(self, timeout: float = 20) -> int:
        screen = self.wait_for(EXIT_MARK, timeout)
        return int(screen.split(EXIT_MARK, 1)[1].split()[0])


@contextlib.contextmanager
def screen(argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None, width: int = 120,
           height: int = 36) -> Iterator[Screen]:
    """`argv` in a new tmux session of `width` x `height`; after it ends its exit status stays on the screen."""
    name = f"midstat-test-{os.getpid()}-{time.monotonic_ns()}"
    client_env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "SUDO_USER")}
    # the tmux server keeps the environment of whichever test started it: the command sets its own explicitly
    assignments = [f"{key}={value}" for key, value in {"TERM": "xterm-256color", **(env or {})}.items()]
    unset = [x for key in ("PYTHONHOME", "PYTHONPATH", "SUDO_USER") if key not in (env or {}) for x in ("-u", key)]
    command = f"{shlex.join(['env', *unset, *assignments, *argv])}; echo {EXIT_MARK}$?; sleep 600"
    subprocess.run([*TMUX, "new-session", "-d", "-s", name, "-x", str(width), "-y", str(height),
                    "-c", cwd or os.getcwd(), command], check=True, env=client_env)
    term = Screen(name)
    shell = term.pane_pid()
    try:
        yield term
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", name], capture_output=True)
        # and whatever the pane ran, the command included, even if it outlives its terminal's hang-up (a test that
        # failed with the command still running left it behind)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell, signal.SIGKILL)
