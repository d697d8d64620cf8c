"""Worker processes that never outlive core 0.

A shard worker blocked on its pipe, or capturing live as another user with the interface promiscuous, would live on
forever once core 0 is killed (`kill -9`, the OOM killer): nothing it waits on ends, since its siblings hold the
other ends of the pipes. Every worker therefore starts through `start_worker`, which makes the kernel kill it
(PR_SET_PDEATHSIG, SIGKILL) the moment the process that started it is gone, then checks that this process is still
there (it may have died before the request was made). Linux clears that request whenever a process's credentials
change, so `privileges.drop_to` calls `rearm` right after giving up root.

The kernel ties that request to the *thread* that forked the worker, not to the process: a worker forked from
another thread (a test's helper thread that enters a network namespace) would die with that thread. Such a worker
instead watches its parent from a thread of its own, twice a second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import threading
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
WATCH_INTERVAL = 0.5  # seconds between two looks at the parent, for a worker forked outside the main thread

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_parent: int | None = None  # the pid that must stay alive for this process to go on (None: not a worker)
_by_signal = False          # the kernel's parent-death signal watches it (else a thread does)


def _prctl(option: int, arg: int) -> int:
    return _libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0),
                       ctypes.c_ulong(0))


def parent_death_signal() -> int:
    """The signal this process gets when its parent dies (0: none)."""
    value = ctypes.c_int(0)
    _libc.prctl(ctypes.c_int(PR_GET_PDEATHSIG), ctypes.byref(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                ctypes.c_ulong(0))
    return value.value


def from_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def die_with_parent(parent: int, forked_from_main_thread: bool = True) -> None:
    """From now on, this process ends when `parent` dies (the kernel's signal, or a watching thread when it was
    forked from another thread than the main one); if `parent` is gone already, exit now."""
    global _parent, _by_signal
    _parent = parent
    _by_signal = forked_from_main_thread
    if not _by_signal:
        threading.Thread(target=_watch, name="midstat-parent-watch", daemon=True).start()
    rearm()


def _watch() -> None:
    while True:
        time.sleep(WATCH_INTERVAL)
        if os.getppid() != _parent:
            os._exit(3)


def rearm() -> None:
    """Ask again for the parent-death signal (after a change of user, which clears it); exit if the parent is
    already gone. Nothing to do in a process that is not a worker."""
    if _parent is None:
        return
    if _by_signal:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != _parent:
        os._exit(3)


def _guarded(parent: int, main_thread: bool, target: Callable[..., object], args: tuple) -> None:
    die_with_parent(parent, main_thread)
    target(*args)


def start_worker(ctx, target: Callable[..., object], args: tuple, name: str):
    """Start `target(*args)` in a forked worker process that dies with this one; returns the started Process."""
    process = ctx.Process(target=_guarded, args=(os.getpid(), from_main_thread(), target, args), name=name,
                          daemon=True)
    process.start()
    return process


def how_it_ended(process, wait: float = 1.0) -> str:
    """Why a worker is gone, in words: "killed by signal 9 (SIGKILL)", "exit status 1"."""
    process.join(timeout=wait)
    code = process.exitcode
    if code is None:
        return "its pipe closed"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        return f"killed by signal {-code} ({name})"
    return f"exit status {code}"
