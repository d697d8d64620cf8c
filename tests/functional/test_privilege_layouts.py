"""After root gives up its privileges, every screen of the TUI still works, whatever the install layout.

midstat run as root becomes `nobody` once the capture is open (the default). Python imports lazily, so a screen
opened later reads files as nobody. These tests build install layouts where nobody cannot reach parts of the Python
installation (the standard library, site-packages, the project itself) through a directory only root may enter, as
pyenv under /root or a venv in a private home do, then drive the real TUI in a real terminal (tmux) through every
screen and modal, on 1 and 2 cores. A layout whose files themselves are unreadable is refused at start, in one line.
"""

from __future__ import annotations

import os
import shutil
import site
import stat
import sys
import tempfile
from pathlib import Path

import pytest

from scripts.netlab import process_tree
from tests import screen as tmux
from tests.helpers import FIXTURES, ROOT, nobody_uid, uids

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or nobody_uid() is None, reason="needs root and a 'nobody' account"),
    pytest.mark.skipif(tmux.available() is not None, reason=tmux.available() or ""),
]

STDLIB = Path(os.__file__).parent


def _site_dirs() -> list[str]:
    """The folders this interpreter imports third-party packages from (textual, dpkt, pcapy...)."""
    import textual

    dirs = [d for d in site.getsitepackages() if os.path.isdir(d)]
    home = str(Path(textual.__file__).parent.parent)
    return list(dict.fromkeys([home, *dirs]))


def _private_folder() -> Path:
    """A folder only root may enter (as /root is): what lies below it, nobody cannot reach by its path."""
    folder = Path(tempfile.mkdtemp(prefix="midstat-private-"))
    folder.chmod(0o700)
    return folder


def _layout(kind: str, private: Path) -> tuple[list[str], dict[str, str]]:
    """The interpreter command and environment for one install layout."""
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    if kind == "as-installed":  # this interpreter as the tests run it, the project from the checkout
        return [sys.executable, "-m", "midstat_tui"], {"PYTHONPATH": str(ROOT)}
    home = private / "home" / "lib"
    home.mkdir(parents=True)
    (home / STDLIB.name).symlink_to(STDLIB)  # a Python under /root: its standard library out of nobody's reach
    env = {"PYTHONHOME": str(private / "home")}
    sites = _site_dirs()
    if kind == "private-stdlib":  # a venv outside /root made from a Python under /root
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sites])
    elif kind == "all-private":  # interpreter, packages and project all below a folder nobody may enter
        links = []
        for i, folder in enumerate([str(ROOT), *sites]):
            (private / f"path{i}").symlink_to(folder)
            links.append(str(private / f"path{i}"))
        env["PYTHONPATH"] = os.pathsep.join(links)
    else:
        raise ValueError(kind)
    return [base, "-m", "midstat_tui"], env


def _writable_folder() -> str:
    """The current folder for the run: exports go there, and nobody must be able to write it."""
    folder = tempfile.mkdtemp(prefix="midstat-cwd-")
    os.chmod(folder, 0o777)
    return folder


def _midstat_pids(shell_pid: int) -> list[int]:
    return [pid for pid in process_tree(shell_pid) if pid != shell_pid and _is_midstat(pid)]


def _is_midstat(pid: int) -> bool:
    try:
        return b"midstat_tui" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _open_filter_bar(term: tmux.Screen) -> None:
    """`/`, until the bar shows (a key pressed while the previous screen is still closing is not for the table)."""
    for _ in range(3):
        term.keys("/")
        try:
            term.wait_for("filter: host", timeout=5)
            return
        except AssertionError:
            continue
    term.wait_for("filter: host", timeout=1)


def _flow_pictures(term: tmux.Screen, cwd: str) -> None:
    """In the open flow screen: the ladder, the time-sequence picture, and its packets written to a pcap."""
    term.keys("l", pause=0)  # its ladder: the flow's packets read again from the capture, as nobody
    term.wait_for("┊")
    term.keys("t", pause=0)  # the time-sequence picture (its plotting library is imported only now)
    term.wait_for("▲")
    term.keys("w", pause=0)  # the flow's packets written to a pcap in the current folder
    term.wait_for("wrote")
    assert any(p.endswith(".pcap") for p in os.listdir(cwd)), os.listdir(cwd)


def _every_screen(term: tmux.Screen, cwd: str, live: bool = False, traffic=None, ladder: bool = True) -> None:
    """Open every screen and modal, as a person would, checking each one shows (go-to is for files).

    `traffic`, live: sends more of the connection's packets once its flow screen is open. A key followed by a wait
    on the screen needs no pause after it (pause=0): the wait sees the app done with it."""
    term.wait_for("10.231.1.1", timeout=30)
    term.keys("?", pause=0)
    term.wait_for("midstat keys")
    term.keys("Escape", pause=0)
    term.wait_gone("midstat keys")
    term.keys("C-p")  # the command palette, then its "Keys" command
    term.type("keys")
    term.wait_for("Keys")
    term.keys("Enter", pause=0)
    term.wait_for("Scroll Left")
    term.keys("Escape", pause=0)  # Esc closes the Keys panel
    term.wait_gone("Scroll Left")
    term.keys("c", pause=0)
    term.wait_for("Columns:")
    term.keys("Escape", pause=0)
    term.wait_gone("Columns:")
    if not live:
        term.keys("g", pause=0)
        term.wait_for("Go to")
        term.type("+0.5")
        term.keys("Escape")  # cancelled: the table stays at the end of the file
        term.wait_gone("Go to")  # (a key sent while it closes would be typed into it)
    term.keys("e", pause=0)
    term.wait_for("exported")
    term.keys("E", pause=0)
    term.wait_for(".json")
    written = sorted(os.listdir(cwd))
    assert any(p.endswith(".csv") for p in written) and any(p.endswith(".json") for p in written), written
    term.keys("Enter", pause=0)  # the flow screen of the row under the cursor
    term.wait_for("⇄")
    if traffic is not None:
        traffic()
    if ladder:
        _flow_pictures(term, cwd)
    term.keys("Escape", pause=0)
    term.wait_gone("⇄")
    term.keys("v", pause=0)  # grouped by server
    term.wait_for("Conns")
    for _ in range(6):  # every other grouping, and back to the connections
        term.keys("v")
    term.wait_gone("Conns")
    term.keys("p", pause=0)  # the problems lens
    term.wait_for("Problems:")
    term.keys("Escape", pause=0)
    term.wait_gone("Problems:")
    _open_filter_bar(term)
    term.type("dport (")
    term.keys("Enter", pause=0)
    term.wait_for("filter not applied")
    term.keys("Escape")


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("layout, user", [("as-installed", None), ("private-stdlib", None), ("all-private", None),
                                          ("all-private", "root")])
def test_every_screen_works_after_the_drop(layout, user, cores):
    private = _private_folder()
    cwd = _writable_folder()
    try:
        argv, env = _layout(layout, private)
        capture = str(FIXTURES / "mixed_traffic.pcap")
        options = ["--speed", "0", "--cores", str(cores), *(["--user", user] if user else [])]
        with tmux.screen([*argv, "-r", capture, *options], env=env, cwd=cwd) as term:
            term.wait_for("10.231.1.1", timeout=30)
            pids = _midstat_pids(term.pane_pid())
            assert len(pids) == 1 + cores, pids  # core 0 and a shard worker each (a file on one core too)
            expected = 0 if user == "root" else nobody_uid()
            for pid in pids:  # core 0 and every shard gave root up (or kept it: --user root)
                assert uids(pid) == [expected] * 4, (pid, uids(pid))
            _every_screen(term, cwd)
            term.keys("q")
            status = term.exit_status()
            screen = "\n".join(term.history)
            assert "Traceback" not in screen and "Error" not in screen.split(tmux.EXIT_MARK)[-1], screen[-3000:]
            assert status == 0, term.history[-1]
    finally:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)


def test_an_installation_nobody_may_not_read_is_refused_at_start_in_one_line():
    """Files installed with umask 077 cannot be reached by nobody through any path: midstat says so before it starts,
    instead of failing at the first screen that imports one of them."""
    private = Path(tempfile.mkdtemp(prefix="midstat-copy-"))
    cwd = _writable_folder()
    try:
        os.chmod(private, 0o755)
        shutil.copytree(ROOT / "midstat_tui", private / "midstat_tui",
                        ignore=shutil.ignore_patterns("__pycache__"))
        late = private / "midstat_tui" / "ui" / "help_screen.py"  # imported only when `?` is pressed
        late.chmod(stat.S_IRUSR | stat.S_IWUSR)
        env = {"PYTHONPATH": os.pathsep.join([str(private), *_site_dirs()])}
        with tmux.screen([sys.executable, "-m", "midstat_tui", "-r", str(FIXTURES / "mixed_traffic.pcap")],
                         env=env, cwd=cwd, width=400) as term:
            status = term.exit_status()
            screen = term.history[-1]
        assert screen.strip().splitlines()[0].startswith("midstat: nobody cannot read "), screen
        assert status == 2, screen
        assert "help_screen.py" in screen and "--user root" in screen and "Traceback" not in screen, screen
    finally:
        shutil.rmtree(private, ignore_errors=True)
        shutil.rmtree(cwd, ignore_errors=True)


@pytest.fixture
def lab():
    from scripts.netlab import NetLab, available

    if available() is not None:
        pytest.skip(f"network lab: {available()}")
    net = NetLab(prefix=f"msp{os.getpid() % 10000}").up()
    yield net
    net.down()


@pytest.mark.parametrize("cores", [1, 2])
@pytest.mark.parametrize("user", [None, "root"])
def test_every_screen_works_live_after_the_drop(lab, cores, user):
    """Live on the router of a namespace lab, with a connection open through it the whole time."""
    import socket

    from scripts.netlab import ROUTER_CLIENT_IF, SERVER4

    cwd = _writable_folder()
    listener = lab.socket(lab.server)
    listener.bind((SERVER4, 7100))
    listener.listen(8)
    options = ["--cores", str(cores), *(["--user", user] if user else [])]
    argv = ["ip", "netns", "exec", lab.router, sys.executable, "-m", "midstat_tui", "-i", ROUTER_CLIENT_IF, *options]
    client = server = None
    try:
        with tmux.screen(argv, env={"PYTHONPATH": str(ROOT)}, cwd=cwd) as term:
            term.wait_for("live", timeout=30)
            client = lab.socket(lab.client, socket.AF_INET)
            client.connect((SERVER4, 7100))
            server, _ = listener.accept()
            client.sendall(b"x" * 1000)
            server.recv(4096)

            def more() -> None:
                server.sendall(b"y" * 500)
                client.recv(4096)

            # the flow screen's packets on 1 and 2 live cores (on 2: sent by the owning shard to core 0)
            _every_screen(term, cwd, live=True, traffic=more)
            pids = _midstat_pids(term.pane_pid())
            assert len(pids) == (1 if cores == 1 else 1 + cores), pids  # (live on one core: the engine a thread)
            expected = 0 if user == "root" else nobody_uid()
            for pid in pids:
                assert uids(pid) == [expected] * 4, (pid, uids(pid))
            term.keys("q")
            status = term.exit_status()
            assert "Traceback" not in "\n".join(term.history)
            assert status == 0, term.history[-1]
    finally:
        for sock in (client, server, listener):
            if sock is not None:
                sock.close()
        shutil.rmtree(cwd, ignore_errors=True)
