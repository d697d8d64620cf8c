"""Giving up root once the capture handles are open (as `tcpdump -Z` does).

Capturing needs root (or CAP_NET_RAW); decoding hostile packets, drawing the TUI and writing exports do not. Every
midstat process switches to the chosen user right after its own handle or file is open: core 0 in the command, each
shard worker in its process. `--user root` keeps root; without `--user`, root switches to the user who ran sudo,
else to `nobody` when that account exists.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import pwd
import sys
from dataclasses import dataclass

from midstat_tui.errors import MidstatError

DEFAULT_USER = "nobody"
# modules never preloaded: entry points, demos, and textual._sleep, which runs a timing loop when imported
SKIP_MODULES = frozenset({"__main__", "demo", "_sleep"})


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


def drop_to(target: Target | None) -> None:
    """Become `target` for good (groups, gid, then uid); verify that root cannot be taken back."""
    if target is None or os.geteuid() != 0:
        return
    try:
        _become(target)
    except OSError as exc:
        raise MidstatError(f"could not switch to user {target.name}: {exc.strerror}") from None
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


def preload_if_unreadable(target: Target, packages: list[str]) -> int:
    """Import every module of `packages` now if `target` will not be able to read them later (their files sit
    where only root may go). Returns how many modules were imported. Demo and entry-point modules are left out."""
    first = sys.modules[packages[0]] if packages[0] in sys.modules else importlib.import_module(packages[0])
    if first.__file__ is None or can_open_as(first.__file__, target):
        return 0
    count = 0
    for name in packages:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + "."):
            leaf = info.name.rsplit(".", 1)[-1]
            if leaf in SKIP_MODULES or "win" in leaf or info.name in sys.modules:
                continue
            try:
                importlib.import_module(info.name)
                count += 1
            except Exception:  # noqa: BLE001 - optional parts (another platform, a missing extra) are not needed
                continue
    return count
