"""The terminal driver of the TUI: Textual's Linux driver, plus leaving promptly when the terminal goes away.

A terminal can vanish without a SIGHUP: a pty whose master side is closed (a terminal emulator killed, an SSH
connection's pty torn down) while midstat runs in a session of its own. Textual's input thread then reads end-of-file
in a loop (60-85% of a core, forever), and its output thread dies on the first write (EIO): once its queue is full
every write blocks the app, and leaving blocks in the driver's close. This driver watches the terminal instead:

- a thread waits in poll(2) on the input descriptor for a hang-up (no CPU until then), and the output is written
  through a file that takes an EIO as a hang-up rather than dying;
- on a hang-up, standard output and error become /dev/null (whatever is written later goes nowhere, nothing raises),
  the input thread is told to stop, and the app is asked to exit, from its own loop: it stops the session (shard
  workers, exports) as `q` would, without a terminal to restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import sys
import threading
from typing import IO

from textual.drivers.linux_driver import LinuxDriver


class _TerminalOut:
    """The driver's output file: a write that fails with an OSError (EIO: the terminal is gone) is a hang-up;
    after one, writes go nowhere."""

    def __init__(self, file: IO[str], gone) -> None:
        self._file = file
        self._gone = gone
        self.lost = False

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                return self._file.write(text)
            except OSError:
                self.lost = True
                self._gone()
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self._file.flush()
            except OSError:
                self.lost = True
                self._gone()

    def fileno(self) -> int:
        return self._file.fileno()

    def isatty(self) -> bool:
        return True


class HangupDriver(LinuxDriver):
    """LinuxDriver that ends the app when its terminal hangs up (see the module's doc)."""

    def __init__(self, app, **kwargs) -> None:
        super().__init__(app, **kwargs)
        self._file = _TerminalOut(self._file, self.hung_up)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._hangup_lock = threading.Lock()
        self.terminal_lost = False

    def start_application_mode(self) -> None:
        self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._watch, name="midstat-hangup-watch", daemon=True).start()
        super().start_application_mode()

    def _watch(self) -> None:
        poller = select.poll()
        poller.register(self.fileno, 0)  # no event asked for: poll wakes only on a hang-up or an error
        try:
            while not any(mask & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
                          for _, mask in poller.poll()):
                pass
        except OSError:
            pass
        self.hung_up()

    def hung_up(self) -> None:
        """The terminal is gone: quiet the standard streams, stop the input thread, ask the app to exit."""
        with self._hangup_lock:
            if self.terminal_lost:
                return
            self.terminal_lost = True
        self._file.lost = True
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            for stream in (sys.__stdout__, sys.__stderr__):
                if stream is not None:
                    os.dup2(null, stream.fileno())
            os.close(null)
        except (OSError, ValueError):
            pass
        self.exit_event.set()  # the input thread's loop ends (it read end-of-file over and over)
        self.attrs_before = None  # no terminal modes to put back
        app = self._app
        loop = self._loop
        if loop is not None and not loop.is_closed():
            app.terminal_lost = True
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the app is leaving already
                loop.call_soon_threadsafe(app.exit)

    def disable_input(self) -> None:
        if self.terminal_lost:  # the input thread has been told to stop; nothing to flush on a dead terminal
            if self._key_thread is not None and self._key_thread is not threading.current_thread():
                self._key_thread.join(timeout=1.0)
            return
        super().disable_input()
