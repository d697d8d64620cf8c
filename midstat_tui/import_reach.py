"""Imports that keep working after root is given up.

Python imports lazily: a screen opened for the first time, a codec, `concurrent.futures.thread` behind asyncio's
executor, `termios` when the terminal driver starts. Once midstat runs as the unprivileged user, each of those imports
reads files as that user. An interpreter, a virtual environment or a checkout under a directory the user may not enter
(pyenv under /root, a venv in a private home, `pip install -e` from /root/src) then fails at the first screen that
needs a module nobody imported yet.

Instead of guessing which modules to import early, midstat keeps every import root reachable: while still root it opens
a descriptor on each root the user cannot reach and points Python's import paths (sys.path, the packages' __path__,
the modules' __file__) at `/proc/self/fd/N/...`. The kernel follows such a path from the open directory without
looking at the directories above it, and a process may always use its own descriptors. The files themselves must
still be readable by the user (a tree installed with umask 077 is not): that is checked once, before anything starts,
and refused with one line that says what to do.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from collections.abc import Callable, Iterable

from midstat_tui.errors import MidstatError

FD_PREFIX = "/proc/self/fd/"
# standard-library folders no midstat process ever imports from (their files are not checked)
UNUSED_STDLIB = frozenset({"site-packages", "dist-packages", "test", "idlelib", "tkinter", "lib2to3", "ensurepip",
                           "turtledemo", "__pycache__"})

_rerouted: dict[str, str] = {}  # an unreachable root -> the path through its descriptor, for this process tree
_done_for: int | None = None    # the uid the imports were made reachable for


def reroute_imports(user: str, uid: int, become: Callable[[], None]) -> dict[str, str]:
    """Make every import root reachable for the user `become()` turns this process into (call as root, before the
    drop). Returns {unreachable root: its new path}. Raises MidstatError when a file Python needs is unreadable."""
    global _done_for
    if _done_for == uid:
        return dict(_rerouted)
    roots = _import_roots()
    reachable = _as_user(become, _reachable, roots)
    if reachable is None:  # this process may not switch users at all: the drop itself will say so
        return {}
    blocked = [root for root, ok in zip(roots, reachable, strict=True) if not ok]
    for root in blocked:
        flags = os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(root) else 0)
        fd = os.open(root, flags)  # kept open for the life of the process (and of the workers it forks)
        _rerouted[root] = f"{FD_PREFIX}{fd}"
    if blocked:
        _rewrite_paths()
    trees = _trees_in_use()
    unreadable = _as_user(become, _first_unreadable, trees)
    if unreadable:  # (None: the user could not be become after all; the drop will say so)
        tree = _original_path(next((t for t in trees if _under(unreadable, t)), unreadable))
        raise MidstatError(
            f"{user} cannot read {_original_path(unreadable)}, part of the Python installation midstat runs from, "
            f"and midstat gives up root to {user} once the capture is open: make it readable "
            f"(chmod -R a+rX {tree}) or run with --user root")
    _done_for = uid
    return dict(_rerouted)


def _import_roots() -> list[str]:
    """sys.path's folders and zip files, and every loaded package's folders that lie outside them."""
    roots: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry or os.getcwd())
        if os.path.exists(path) and path not in roots and not path.startswith(FD_PREFIX):
            roots.append(path)
    for module in list(sys.modules.values()):
        for folder in _package_folders(module):
            if not folder.startswith(FD_PREFIX) and not any(_under(folder, root) for root in roots):
                roots.append(folder)
    return roots


def _package_folders(module: object) -> list[str]:
    path = getattr(module, "__path__", None)
    return [p for p in path if isinstance(p, str)] if isinstance(path, list) else []


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _reroute(path: str) -> str:
    """`path` through the descriptor of the deepest unreachable root that holds it (unchanged if none does)."""
    best = max((root for root in _rerouted if _under(path, root)), key=len, default=None)
    return path if best is None else _rerouted[best] + path[len(best):]


def _original_path(path: str) -> str:
    for root, new in _rerouted.items():
        if _under(path, new):
            return root + path[len(new):]
    return path


def _rewrite_paths() -> None:
    sys.path[:] = [_reroute(os.path.abspath(p or os.getcwd())) for p in sys.path]
    for module in list(sys.modules.values()):
        path = getattr(module, "__path__", None)
        if isinstance(path, list):
            path[:] = [_reroute(p) if isinstance(p, str) else p for p in path]
        file = getattr(module, "__file__", None)
        if isinstance(file, str):
            with contextlib.suppress(AttributeError, TypeError):  # a module object that refuses the attribute
                module.__file__ = _reroute(file)
        spec = getattr(module, "__spec__", None)
        if spec is not None and isinstance(getattr(spec, "origin", None), str) and spec.has_location:
            spec.origin = _reroute(spec.origin)
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()


def _trees_in_use() -> list[str]:
    """The folders Python may import from later: the standard library and every loaded top-level package."""
    trees = [os.path.dirname(os.__file__)]
    for name, module in list(sys.modules.items()):
        if "." in name:
            continue
        folders = _package_folders(module)
        file = getattr(module, "__file__", None)
        if folders:
            trees.extend(folders)
        elif isinstance(file, str) and not _under(file, trees[0]):
            trees.append(file)
    return list(dict.fromkeys(trees))


def _reachable(roots: list[str]) -> list[bool]:
    result = []
    for root in roots:
        try:
            if os.path.isdir(root):
                os.listdir(root)
            else:
                os.close(os.open(root, os.O_RDONLY))
            result.append(True)
        except OSError:
            result.append(False)
    return result


def _first_unreadable(trees: list[str]) -> str:
    """The first file or folder under `trees` this process cannot read ('' when all can be read)."""
    stdlib = trees[0]
    for tree in trees:
        if not os.path.isdir(tree):
            if not os.access(tree, os.R_OK):
                return tree
            continue
        for folder, dirs, files in os.walk(tree, onerror=_raise):
            if not os.access(folder, os.R_OK | os.X_OK):
                return folder
            dirs[:] = [d for d in dirs if d != "__pycache__" and not (folder == stdlib and d in UNUSED_STDLIB)]
            for name in _importable(files):
                path = os.path.join(folder, name)
                if not os.access(path, os.R_OK):
                    return path
    return ""


def _importable(files: Iterable[str]) -> Iterable[str]:
    return (f for f in files if f.endswith((".py", ".so", ".pyd", ".tcss", ".css", ".json")))


def _raise(exc: OSError) -> None:
    raise exc


def _as_user(become: Callable[[], None], ask: Callable[[list[str]], object], arg: list[str]) -> object:
    """`ask(arg)` answered by a child that has become the user (the answer comes back pickled through a pipe);
    None when the child could not become the user."""
    import pickle

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's answer is the parent's result
        status = 1
        try:
            os.close(read_end)
            answer: object = None
            try:
                become()
            except OSError:  # no CAP_SETUID (capabilities dropped): nothing to check
                pass
            else:
                try:
                    answer = ask(arg)
                except OSError as exc:  # a folder that cannot be walked
                    answer = exc.filename or str(exc)
            data = pickle.dumps(answer)
            while data:
                data = data[os.write(write_end, data):]
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not data:
        raise MidstatError("could not check what the user midstat is about to become can read")
    return pickle.loads(data)
