"""`midstat -i` on a real interface: the router of a client/router/server network-namespace lab, real TCP.

Needs root (CI runs as root); skipped elsewhere with the reason.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

import pytest

from tests.helpers import ROOT, nobody_uid, uids
from tests.lab import listen, start_live, stop, talk
from tests.terminal import tui

sys.path.insert(0, str(ROOT / "scripts"))
import contextlib

from netlab import (  # noqa: E402
    CLIENT_CLOSES,
    CLIENT_RESETS,
    ROUTER_CLIENT_IF,
    SERVER4,
    SERVER_CLOSES,
    SERVER_RESETS,
    NetLab,
    available,
    end,
    endpoint,
    process_tree,
)

pytestmark = pytest.mark.skipif(available() is not None, reason=f"network lab: {available()}")



def _kernel_states(lab: NetLab, names: list[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """What `ss` says now in the client and the server namespace about each connection, in midstat's spelling
    (a socket that is gone is CLOSED)."""
    from midstat_tui.tcp.states import NAMES, parse_state

    cli, srv = lab.ss_states(lab.client), lab.ss_states(lab.server)
    return {(c, s): (NAMES[parse_state(cli.get((c, s), "CLOSED"))], NAMES[parse_state(srv.get((s, c), "CLOSED"))])
            for c, s in names}








def test_live_events_match_the_kernels(lab):
    proc = start_live(lab, "--events")
    names = talk(lab, 6001, 6)
    time.sleep(0.5)
    kernels = _kernel_states(lab, names)
    out = stop(proc)
    final: dict[tuple[str, str], tuple[str, str]] = {}
    for line in out.decode().splitlines():
        event = json.loads(line)
        final[(event["client"], event["server"])] = (event["client_state"], event["server_state"])
    assert {name: final[name] for name in names} == kernels


def test_live_json_reports_capture_statistics_and_no_drops(lab):
    proc = start_live(lab, "--json")
    talk(lab, 6002, 4)
    time.sleep(1.5)  # at least one one-second snapshot on the clock
    out = stop(proc, signal.SIGTERM)
    snaps = [json.loads(line) for line in out.decode().splitlines()]
    assert snaps
    capture = snaps[-1]["stats"]["capture"]
    assert capture["received"] > 0
    assert capture["dropped"] == 0
    assert snaps[-1]["stats"]["started"] >= 4


def test_live_capture_filter_and_summary(lab):
    proc = start_live(lab, "-f", "tcp port 6004", "--summary", "--json")
    talk(lab, 6003, 2)
    talk(lab, 6004, 3)
    time.sleep(0.5)
    out = stop(proc)
    doc = json.loads(out)
    assert len(doc["connections"]) == 3
    assert all(c["server"].endswith(":6004") for c in doc["connections"])


def test_live_session_feeds_the_tui_view(lab):
    """The TUI's background session on a live interface: the rows it hands over match the kernels."""
    from midstat_tui.capture.live import LiveSource
    from midstat_tui.conn_view import ConnView
    from midstat_tui.engine.pipeline import Engine
    from midstat_tui.engine.session import Session
    from midstat_tui.tcp.states import NAMES

    box: dict = {}
    _in_namespace(lab.router, lambda: box.setdefault("source", LiveSource(ROUTER_CLIENT_IF)))  # made in the router
    source = box["source"]
    session = Session(Engine(source.datalink), source, live=True)
    session.start()
    try:
        names = talk(lab, 6005, 4)
        time.sleep(2.2)  # two one-second ticks on the clock
        kernels = _kernel_states(lab, names)
        view = ConnView()
        view.apply(session.pull())
        view.recompute()
    finally:
        session.stop()
    rows = {(r.client, r.server): (NAMES[r.cstate], NAMES[r.sstate]) for r in view.visible()}
    assert {name: rows[name] for name in names} == kernels
    assert session.pull().stats["capture"]["dropped"] == 0


def test_live_on_two_cores_matches_the_kernels(lab):
    """`-i --cores 2`: two handles in one kernel fanout group, merged by core 0."""
    proc = start_live(lab, "--events", "--cores", "2")
    names = talk(lab, 6007, 12)
    time.sleep(1.0)
    kernels = _kernel_states(lab, names)
    out = stop(proc)
    events = [json.loads(line) for line in out.decode().splitlines()]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    final = {(e["client"], e["server"]): (e["client_state"], e["server_state"]) for e in events}
    assert {name: final[name] for name in names} == kernels
    shards = {e["shard"] for e in events if e["server"].endswith(":6007")}
    assert shards == {0, 1}  # the kernel spread the flows over both handles


def test_live_summary_on_two_cores_counts_capture_statistics(lab):
    proc = start_live(lab, "--summary", "--json", "--cores", "2")
    talk(lab, 6008, 6)
    time.sleep(1.0)
    out = stop(proc, signal.SIGTERM)
    doc = json.loads(out)
    assert len([c for c in doc["connections"] if c["server"].endswith(":6008")]) == 6
    capture = doc["stats"]["capture"]
    assert capture["received"] > 0 and capture["dropped"] == 0
    assert len(doc["stats"]["capture_shards"]) == 2  # each handle's own counters
    assert sum(c["received"] for c in doc["stats"]["capture_shards"]) == capture["received"]


def test_live_plain_has_a_capture_status_line(lab):
    proc = start_live(lab, "--plain", "--cores", "2")
    talk(lab, 6009, 3)
    time.sleep(1.5)
    out = stop(proc)
    status = [line for line in out.decode().splitlines() if line.startswith("# capture:")]
    assert status and all(" 0 dropped by the kernel, 0 by the interface" in line for line in status)
    assert "Proto CPU Client Address" in out.decode()
    # each handle's own counters too (received/dropped/dropped by the interface), adding up to the total
    total = int(status[-1].split()[2])
    handles = status[-1].split("per handle ")[1].split(", ")
    assert len(handles) == 2
    assert sum(int(h.split(": ")[1].split("/")[0]) for h in handles) == total


def _talk_every_kind(lab: NetLab, port: int, count: int) -> list[tuple[str, str]]:
    """Orderly closes both ways, resets both ways, refused attempts, half-closes and bulk transfers."""
    listener = listen(lab, port, 64)
    names, held = [], []
    for i in range(count):
        kind = i % 6
        client = lab.socket(lab.client)
        if kind == 4:  # refused: nothing listens on port + 1
            client.bind(("10.231.1.1", 0))
            with contextlib.suppress(ConnectionRefusedError):
                client.connect((SERVER4, port + 1))
            names.append((endpoint(client.getsockname()), f"{SERVER4}:{port + 1}"))
            client.close()
            continue
        client.connect((SERVER4, port))
        conn, _ = listener.accept()
        names.append((endpoint(client.getsockname()), endpoint(client.getpeername())))
        size = 2_000_000 if kind == 5 else 300
        import threading

        sender = threading.Thread(target=client.sendall, args=(b"x" * size,))
        sender.start()
        got = 0
        conn.settimeout(30)
        while got < size:
            got += len(conn.recv(1 << 20))
        sender.join(timeout=30)
        if kind < 4:
            end((CLIENT_CLOSES, SERVER_CLOSES, CLIENT_RESETS, SERVER_RESETS)[kind], client, conn, pause=0.02)
        else:  # the bulk one is then half-closed and left so
            client.shutdown(socket.SHUT_WR)
            held.append((client, conn))
    listener.close()
    return names


def test_dozens_of_every_kind_on_two_cores_match_the_kernels_with_no_drop(lab):
    proc = start_live(lab, "--summary", "--json", "--cores", "2")
    names = _talk_every_kind(lab, 6010, 36)
    time.sleep(1.0)
    kernels = _kernel_states(lab, names)
    out = stop(proc)
    doc = json.loads(out)
    assert doc["stats"]["capture"]["dropped"] == 0, doc["stats"]["capture_shards"]
    latest = {}
    for conn in doc["connections"]:
        latest[(conn["client"], conn["server"])] = (conn["client_state"], conn["server_state"])
    assert len(names) == 36
    assert {name: latest[name] for name in names} == kernels
    assert doc["stats"]["capture"]["dropped"] == 0 and doc["stats"]["capture"]["if_dropped"] == 0
    assert {c["shard"] for c in doc["connections"]} == {0, 1}


# -- privileges and a lost interface (issue #5) -----------------------------------------------------------------


@pytest.mark.skipif(nobody_uid() is None, reason="no 'nobody' account")
def test_live_capture_gives_up_root_in_every_process(lab):
    """Run as root without --user: once every shard's handle is open, core 0 and both workers are nobody, and the
    capture goes on (the handles were opened as root)."""
    proc = start_live(lab, "--summary", "--json", "--cores", "2")
    pids = process_tree(proc.pid)  # `ip netns exec` execs the interpreter: the whole tree is midstat's
    assert len(pids) == 3  # core 0 and two shard workers
    assert {tuple(uids(p)) for p in pids} == {(nobody_uid(),) * 4}
    talk(lab, 6011, 4)
    time.sleep(1.0)
    doc = json.loads(stop(proc, signal.SIGTERM))
    assert len([c for c in doc["connections"] if c["server"].endswith(":6011")]) == 4
    assert doc["stats"]["capture"]["received"] > 0


@pytest.fixture
def doomed_lab():
    """A lab of its own: the test deletes the router's capture interface."""
    net = NetLab(prefix=f"mslo{os.getpid() % 10000}").up()
    yield net
    net.down()


@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_lost_interface_ends_the_capture_keeping_what_was_tracked(doomed_lab, cores):
    proc = start_live(doomed_lab, "--summary", "--json", "--cores", cores)
    talk(doomed_lab, 7300, 3)
    time.sleep(0.5)
    doomed_lab.ns(doomed_lab.router, "ip", "link", "del", ROUTER_CLIENT_IF)
    out, err = proc.communicate(timeout=30)  # it ends by itself
    assert proc.returncode == 1, err
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("midstat: warning: capture on rc stopped"), err
    doc = json.loads(out)
    assert len([c for c in doc["connections"] if c["server"].endswith(":7300")]) == 3


def test_the_tui_shows_a_lost_interface_and_stays_usable(doomed_lab):
    with tui("-i", ROUTER_CLIENT_IF, prefix=("ip", "netns", "exec", doomed_lab.router)) as term:
        term.wait_for(b"live")
        names = talk(doomed_lab, 7301, 2)
        term.wait_for(names[-1][0].split(":")[1].encode())  # the second connection's client port is on screen
        doomed_lab.ns(doomed_lab.router, "ip", "link", "del", ROUTER_CLIENT_IF)
        term.wait_for(b"stays browsable")
        os.write(term.master, b"/")
        time.sleep(0.3)
        os.write(term.master, f"port {names[0][0].split(':')[1]}\r".encode())
        term.wait_for(b"open conns \xc2\xb7 1 of ")  # the filter still works on what was captured (1 row shown)
        term.wait_for(b"capture stopped")  # the header says so instead of live
        assert term.quit() == 1  # the capture ended on an error: said after the terminal is restored
        term.assert_restored()
        assert b"midstat: capture on rc stopped" in term.seen


# -- the TUI on several cores (issue #3) ------------------------------------------------------------------------


def test_the_tuis_sharded_session_matches_the_kernels(lab):
    """What the TUI reads with `-i --cores 2`: two shard processes, merged by core 0 once a second; a flow's history
    is fetched from the shard that owns it."""
    from midstat_tui.conn_view import ConnView
    from midstat_tui.engine.headless import Job
    from midstat_tui.engine.shard_sessions import ShardedLiveSession
    from midstat_tui.tcp.states import NAMES
    from midstat_tui.tcp.tracker import TrackerConfig

    session = ShardedLiveSession(Job("", None, TrackerConfig(), interface=ROUTER_CLIENT_IF), 2)
    _in_namespace(lab.router, session.start)  # the shards are forked there, and open their handles there
    try:
        names = talk(lab, 6012, 10)
        time.sleep(2.5)  # two one-second ticks
        kernels = _kernel_states(lab, names)
        view = ConnView()
        view.apply(session.pull())
        view.recompute()
        rows = {(r.client, r.server): r for r in view.visible()}
        assert {name: (NAMES[rows[name].cstate], NAMES[rows[name].sstate]) for name in names} == kernels
        assert {rows[name].shard for name in names} == {0, 1}
        for name in names[:2]:
            detail = session.connection(rows[name].id)
            assert detail is not None
            row, counters, history = detail
            assert row.id == rows[name].id and counters["packets_c2s"] == row.packets_c2s
            assert history[0]["to"] == "SYN_SENT"
            assert history[-1]["to"] in (NAMES[row.cstate], NAMES[row.sstate])
        stats = session.pull().stats
        assert len(stats["capture_shards"]) == 2 and stats["capture"]["dropped"] == 0
        assert session.error is None
    finally:
        session.stop()


def _in_namespace(ns: str, func) -> None:
    """Run `func` in a thread that has entered network namespace `ns` (a fork from there starts in it too)."""
    import ctypes
    import threading

    box: dict = {}

    def run() -> None:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            libc.setns(fd, 0x40000000)
        finally:
            os.close(fd)
        try:
            func()
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]


def test_the_tui_on_two_cores_in_a_terminal(lab):
    with tui("-i", ROUTER_CLIENT_IF, "--cores", "2", prefix=("ip", "netns", "exec", lab.router)) as term:
        term.wait_for(b"live")
        names = talk(lab, 6013, 6)
        term.wait_for(names[-1][0].split(":")[1].encode())
        os.write(term.master, b"\r")  # the flow screen: its history comes from the owning shard
        term.wait_for(b"SYN_SENT")
        assert term.quit() == 0
        term.assert_restored()
