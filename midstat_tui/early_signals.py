"""Ctrl-C and SIGTERM while midstat is still starting (Python importing its modules, a second or more on a busy
machine) are held here instead of ending it with a traceback; the run's own handlers, once installed
(engine.headless.set_on_signals), see what was held and stop at once, writing what was read, as a later Ctrl-C does."""

from __future__ import annotations

import signal

HELD: list[int] = []  # the signals that came before the run's handlers were installed


def _hold(signum: int, frame: object) -> None:
    HELD.append(signum)


def hold() -> None:
    """From now on, until the run installs its own handlers, Ctrl-C and SIGTERM are held in HELD."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _hold)
