"""Shard workers and core 0 watch each other (issue #10): a worker that dies is reported at once and what the other
shards hold is still printed; workers never outlive core 0. Files and live (a netns lab), headless and the TUI,
the default user (root gives up to nobody) and --user root."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, alive, children, midstat, nobody_uid, shared
from tests.lab import start_live, talk
from tests.screen import available as screen_available
from tests.screen import screen
from tests.terminal import tui

sys.path.insert(0, str(ROOT / "scripts"))
from netlab import CLIENT_CLOSES, ROUTER_CLIENT_IF, NetLab, available  # noqa: E402

BIG = str(shared("zeek/Traces/echo-connections.pcap.gz"))  # 1.6 MB of --events: the output pipe fills up
USERS = [pytest.param([], id="default-user"), pytest.param(["--user", "root"], id="user-root")]


def _gone_within(pids: list[int], seconds: float) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(map(alive, pids)):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def _workers(pid: int, count: int = 2, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = children(pid)
        if len(kids) == count:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"no {count} workers under {pid}: {children(pid)}")


def _start_blocked(*args: str) -> subprocess.Popen:
    """`--events` on two cores into a pipe nobody reads yet: core 0 blocks writing, the workers on their pipes."""
    proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", BIG, "--events", "--cores", "2", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    _workers(proc.pid)
    time.sleep(1.5)
    return proc


def _lines_of_shard(out: bytes, shard: int) -> list[dict]:
    return [r for r in map(json.loads, out.splitlines()) if r["shard"] == shard and r["event"] == "start"]


# -- files ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("user", USERS)
def test_a_killed_worker_is_reported_and_the_other_shard_is_printed(user):
    whole = midstat("-r", BIG, "--events", "--cores", "2", *user)
    assert whole.returncode == 0
    proc = _start_blocked(*user)
    os.kill(children(proc.pid)[1], signal.SIGKILL)  # shard 1 (started second)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert err.decode().splitlines() == ["midstat: warning: worker 1 died (killed by signal 9 (SIGKILL)); its share "
                                         "of the connections is missing from the output"]
    kept = _lines_of_shard(out, 0)
    assert kept and kept == _lines_of_shard(whole.stdout, 0)  # shard 0's connections all there, as on a whole run


def test_a_killed_worker_is_said_at_once_while_core_0_is_busy_elsewhere():
    """Core 0 blocked (here on its own output, which nobody reads yet): the warning comes at once all the same,
    not when the merge next looks at that worker's pipe."""
    import select

    proc = _start_blocked()
    try:
        os.kill(children(proc.pid)[1], signal.SIGKILL)
        ready, _, _ = select.select([proc.stderr], [], [], 5.0)
        assert ready, "no word of the dead worker within 5 s"
        line = os.read(proc.stderr.fileno(), 4096).decode()
        assert "worker 1 died (killed by signal 9 (SIGKILL))" in line, line
    finally:
        proc.stdout.read()
        proc.wait(timeout=120)
    assert proc.returncode == 1


def test_a_killed_worker_with_summary_keeps_the_other_shards_connections():
    whole = json.loads(midstat("-r", BIG, "--summary", "--json", "--cores", "2").stdout)
    proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", BIG, "--summary", "--json", "--cores", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    kids = _workers(proc.pid)
    os.kill(kids[0], signal.SIGKILL)  # at once: shard 0 dies before or while it reads
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert "worker 0 died" in err.decode() and "Traceback" not in err.decode()
    doc = json.loads(out)
    assert {c["conn"] for c in doc["connections"]} == {c["conn"] for c in whole["connections"] if c["shard"] == 1}


def test_a_killed_worker_reading_a_pipe_is_reported_and_the_other_shard_is_printed(tmp_path):
    """A pipe is read by core 0, which hands each worker its packets: a worker killed while core 0 waits for more of
    the pipe must not leave core 0 (or the other worker) blocked on the dead one's packet pipe."""
    import gzip
    import threading

    data = gzip.decompress(Path(BIG).read_bytes())
    whole = json.loads(midstat("-r", "-", "--summary", "--json", "--cores", "2", stdin=data).stdout)
    out_path, err_path = tmp_path / "out", tmp_path / "err"
    with open(out_path, "wb") as out_file, open(err_path, "wb") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "midstat_tui", "-r", "-", "--summary", "--json", "--cores",
                                 "2"], stdin=subprocess.PIPE, stdout=out_file, stderr=err_file, cwd=ROOT)
    proc.stdin.write(data[:1_000_000])  # the first part, then the writer pauses (as `sleep` in a shell pipe)
    proc.stdin.flush()
    _, _, shard1 = _workers(proc.pid, 3)  # (the first: core 0's reader of the pipe, capture.feed)
    os.kill(shard1, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while b"worker 1 died" not in err_path.read_bytes():
        assert time.monotonic() < deadline, "no word of the dead worker within 10 s"
        time.sleep(0.05)

    def rest() -> None:  # (a thread: a hanging core 0 would block this write)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(data[1_000_000:])  # the rest: more packets for the dead shard too
            proc.stdin.close()

    threading.Thread(target=rest, daemon=True).start()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        for pid in [*children(proc.pid), proc.pid]:
            os.kill(pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("core 0 hangs once a worker fed from a pipe is dead") from None
    out, err = out_path.read_bytes(), err_path.read_bytes()
    assert proc.returncode == 1, err
    assert err.decode().splitlines() == ["midstat: warning: worker 1 died (killed by signal 9 (SIGKILL)); its share "
                                         "of the connections is missing from the output"]
    kept = {c["conn"] for c in json.loads(out)["connections"]}
    assert kept and kept == {c["conn"] for c in whole["connections"] if c["shard"] == 0}


@pytest.mark.parametrize("user", USERS)
def test_workers_die_with_core_0(user):
    proc = _start_blocked(*user)
    workers = children(proc.pid)
    proc.kill()  # kill -9: no handler runs in core 0
    proc.wait()
    assert _gone_within(workers, 5) == []


# -- the TUI on a file ----------------------------------------------------------------------------------------------
def test_the_tui_shows_a_dead_shard_and_goes_on():
    with tui("-r", BIG, "--cores", "2", "--speed", "0") as term:
        term.wait_for(b"127.0.0.1")
        os.kill(_workers(term.proc.pid)[1], signal.SIGKILL)
        term.wait_for(b"worker 1 died (killed by signal 9 (SIGKILL))", timeout=20)  # the headless line
        os.write(term.master, b"/")  # the face still answers: the filter prompt opens
        time.sleep(0.3)
        assert term.quit() == 1
        term.assert_restored()


def test_the_tuis_workers_die_with_it():
    with tui("-r", BIG, "--cores", "2", "--speed", "0.01") as term:
        term.wait_for(b"echo-connections")
        workers = _workers(term.proc.pid)
        time.sleep(1)
        term.proc.kill()
        term.proc.wait()
        assert _gone_within(workers, 5) == []


# -- live -----------------------------------------------------------------------------------------------------------
pytestmark_live = pytest.mark.skipif(available() is not None, reason=f"network lab: {available()}")







def _promiscuity(lab: NetLab) -> int:
    text = lab.ns(lab.router, "ip", "-d", "link", "show", ROUTER_CLIENT_IF)
    return int(re.search(r"promiscuity (\d+)", text).group(1))


@pytestmark_live
@pytest.mark.parametrize("user", USERS)
def test_live_a_killed_worker_is_reported_at_once_and_the_others_kept(lab, user):
    proc = start_live(lab, "--summary", "--json", "--cores", "2", *user)
    victim = _workers(proc.pid)[1]
    os.kill(victim, signal.SIGKILL)
    ready, _, _ = select.select([proc.stderr], [], [], 5)  # at once: not at the end of the run
    assert ready, "no word of the dead worker within 5 s"
    assert proc.stderr.readline().decode().startswith("midstat: warning: worker 1 died (killed by signal 9")
    talk(lab, 7411, 20, payload=lambda i: b"x" * 500, closes=lambda i: CLIENT_CLOSES)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    conns = [c for c in json.loads(out)["connections"] if c["server"].endswith(":7411")]
    assert conns and {c["shard"] for c in conns} == {0}  # what shard 0 saw: the kernel's hash sends it some of 20


@pytestmark_live
@pytest.mark.parametrize("user", USERS)
def test_live_workers_die_with_core_0_and_the_interface_leaves_promiscuous_mode(lab, user):
    assert _promiscuity(lab) == 0
    proc = start_live(lab, "--json", "--cores", "2", *user)
    workers = _workers(proc.pid)
    if not user and nobody_uid() is not None:
        assert all(os.stat(f"/proc/{w}").st_uid == nobody_uid() for w in workers)
    assert _promiscuity(lab) > 0
    proc.kill()
    proc.wait()
    assert _gone_within(workers, 5) == []
    assert _promiscuity(lab) == 0


@pytestmark_live
def test_live_the_tui_shows_a_dead_shard(lab):
    with tui("-i", ROUTER_CLIENT_IF, "--cores", "2", prefix=("ip", "netns", "exec", lab.router)) as term:
        term.wait_for(b"live")
        os.kill(_workers(term.proc.pid)[0], signal.SIGKILL)
        term.wait_for(b"worker 0 died (killed by signal 9 (SIGKILL))", timeout=20)
        assert term.quit() == 1
        term.assert_restored()


@pytestmark_live
@pytest.mark.skipif(screen_available() is not None, reason=f"{screen_available()}")
def test_live_the_tui_goes_on_capturing_when_a_worker_dies_and_says_it_dead(lab):
    """One shard's worker killed: the other goes on capturing, and the header says so (not `capture stopped`); the
    dead shard's load is said dead, not 0%."""
    argv = ["ip", "netns", "exec", lab.router, sys.executable, "-m", "midstat_tui", "-i", ROUTER_CLIENT_IF,
            "--cores", "2"]
    with screen(argv, cwd=str(ROOT), width=220) as term:
        term.wait_for("cpu per shard 0:")
        core0 = _workers(term.pane_pid(), 1)[0]
        os.kill(_workers(core0)[1], signal.SIGKILL)
        term.wait_for("worker 1 died (killed by signal 9 (SIGKILL))")
        talk(lab, 7431, 20, payload=lambda i: b"x" * 500, closes=lambda i: CLIENT_CLOSES)
        shown = term.wait_for(":7431")  # shard 0's share of them: it still captures and tracks new connections
        assert "● live" in shown and "capture stopped" not in shown, shown
        shown = term.wait_for("1:dead")
        assert re.search(r"cpu per shard 0:\d+% 1:dead", shown), shown


@pytestmark_live
@pytest.mark.parametrize("cores", ["1", "2"])
def test_live_output_into_a_full_device_is_one_line_and_status_2(lab, cores):
    """The output writer live too: --json snapshots into /dev/full end the capture with one line, exit 2."""
    with open("/dev/full", "wb") as full:
        proc = subprocess.Popen(["ip", "netns", "exec", lab.router, sys.executable, "-m", "midstat_tui",
                                 "-i", ROUTER_CLIENT_IF, "--json", "--cores", cores], stdout=full,
                                stderr=subprocess.PIPE, cwd=ROOT)
    assert "listening on" in proc.stderr.readline().decode()
    workers = children(proc.pid)
    talk(lab, 7420 + int(cores), 3, payload=lambda i: b"x" * 500, closes=lambda i: CLIENT_CLOSES)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.decode().splitlines() == ["midstat: cannot write the output to standard output: No space left on "
                                         "device; the output is incomplete"]
    assert _gone_within(workers, 5) == []


def test_a_files_tui_on_one_core_says_the_replay_stopped_when_its_worker_dies():
    """On one core a file's engine is a worker too: killed, the header says the replay stopped (not `playing`), with
    the one line of what happened; what was tracked stays browsable; the status is 1."""
    capture = str(ROOT / "fixtures" / "pcaps" / "mixed_traffic.pcap")
    with tui("-r", capture, "--cores", "1", "--speed", "0.2", size=(140, 30)) as term:
        term.wait_for(b"playing at")
        os.kill(_workers(term.proc.pid, 1)[0], signal.SIGKILL)
        term.wait_for(b"every shard's worker is gone", timeout=20)
        term.wait_for(b"replay stopped", timeout=10)
        assert term.quit() == 1
        term.assert_restored()


def test_a_step_before_the_first_second_plays_the_first_second():
    """Space at once, then `.`: the replay steps from the first packet (one engine did; its shard worker on one
    core, and two shards, did nothing until a second had played)."""
    capture = str(ROOT / "fixtures" / "pcaps" / "mixed_traffic.pcap")
    for cores in ("1", "2"):
        with tui("-r", capture, "--cores", cores, "--speed", "0.05", size=(140, 30)) as term:
            term.wait_for(b"waiting for the first second")
            os.write(term.master, b" ")
            term.wait_for(b"PAUSED")
            os.write(term.master, b".")
            term.wait_for(b"at +1.0s", timeout=15)
            assert term.quit() == 0
