"""Giving up root once the capture handles are open (as `tcpdump -Z` does).

Capturing needs root (or CAP_NET_RAW); decoding hostile packets, drawing the TUI and writing exports do not. Every
midstat process switches to the chosen user right after its own handle or file is open: core 0 in the command, each
shard worker in its process. `--user root` keeps root; without `--user`, root switches to the user who ran sudo,
else to `nobody` when that account exists.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from midstat_tui.errors import MidstatError
from midstat_tui.import_reach import reroute_imports
from midstat_tui.lifecycle import rearm

DEFAULT_USER = "nobody"


@dataclass(frozen=True)
class Target:
    name: str
    uid: int
    gid: int


def choose_user(requested: str | None, environ: dict[str, str] | None = None) -> Target | None:
    """Whom to become, or None to stay as we are. Raises MidstatError for an impossible request."""
    environ = os.environ if environ is None else environ  # type: ignore[assignment]
    if os.geteuid() != 0:
        if requested is not None and requested not in (_name_of(os.geteuid()), "root"):
            raise MidstatError(f"--user {requested}: only root can switch users (running as {_name_of(os.geteuid())})")
        return None
    name = requested
    if name is None:
        sudo_user = environ.get("SUDO_USER")
        name = sudo_user if sudo_user and sudo_user != "root" else DEFAULT_USER
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if requested is None:
            return None  # no such account on this machine: nothing safer to become
        raise MidstatError(f"--user {name}: no such user") from None
    if pw.pw_uid == 0:
        return None
    return Target(pw.pw_name, pw.pw_uid, pw.pw_gid)


def keep_imports_reachable(target: Target | None) -> None:
    """While still root: make sure every module Python may import later can be imported as `target` (see
    import_reach). Called once before any worker is forked; `drop_to` calls it too (a no-op the second time)."""
    if target is not None and os.geteuid() == 0:
        reroute_imports(target.name, target.uid, lambda: _become(target))


def drop_to(target: Target | None, imports: bool = True) -> None:
    """Become `target` for good (groups, gid, then uid); verify that root cannot be taken back. Imports keep working
    afterwards, whatever the install layout (keep_imports_reachable), unless `imports` is False (a process that
    imports nothing more: a file feeder)."""
    if target is None or os.geteuid() != 0:
        return
    if imports:
        keep_imports_reachable(target)
    try:
        _become(target)
    except OSError as exc:
        raise MidstatError(f"could not switch to user {target.name}: {exc.strerror}") from None
    rearm()  # the kernel forgets a worker's parent-death signal when its user changes: ask again
    try:
        os.setuid(0)
    except PermissionError:
        return
    raise MidstatError(f"switched to user {target.name}, yet root could be taken back: refusing to go on")


def _become(target: Target) -> None:
    os.setgroups([])
    os.setresgid(target.gid, target.gid, target.gid)
    os.setresuid(target.uid, target.uid, target.uid)


def _name_of(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def can_open_as(path: str, target: Target) -> bool:
    """Could `target` open `path` for reading? (Asked of a child that becomes the user: directories count too.)"""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's own exit status is the answer
        status = 1
        try:
            _become(target)
            os.close(os.open(path, os.O_RDONLY))
            status = 0
        except OSError:
            pass
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0
