"""#13 live: a flow's packets from the moment its screen opens (Session.watch) and before (the packet ring), on 1
and 2 cores, real TCP between network namespaces captured on the lab's router. Needs root; skipped elsewhere with
the reason."""

from __future__ import annotations

import os
import sys
import time

import pytest

from tests.helpers import ROOT
from tests.lab import listen

sys.path.insert(0, str(ROOT / "scripts"))

from netlab import CLIENT_CLOSES, ROUTER_CLIENT_IF, SERVER4, available, end, endpoint  # noqa: E402

pytestmark = pytest.mark.skipif(available() is not None, reason=f"network lab: {available()}")


def test_a_watched_live_flow_holds_every_packet_since_the_watch(lab):
    from midstat_tui.capture.live import LiveSource
    from midstat_tui.conn_view import ConnView
    from midstat_tui.decode.segment import FIN, SYN
    from midstat_tui.engine.flow_packets import FlowRef
    from midstat_tui.engine.pipeline import Engine
    from midstat_tui.engine.session import Session
    from midstat_tui.output.ladder import ladder
    from midstat_tui.tcp.states import NAMES
    from tests.functional.test_live_capture import _in_namespace

    box: dict = {}
    _in_namespace(lab.router, lambda: box.setdefault("source", LiveSource(ROUTER_CLIENT_IF)))
    session = Session(Engine(box["source"].datalink), box["source"], live=True)
    session.start()
    listener = listen(lab, 6301)
    try:
        client = lab.socket(lab.client)
        client.connect((SERVER4, 6301))
        server, _ = listener.accept()
        name = (endpoint(client.getsockname()), endpoint(client.getpeername()))
        client.sendall(b"before the screen opened" * 10)
        server.recv(65536)
        time.sleep(1.2)
        view = ConnView()
        view.apply(session.pull())
        view.recompute()
        (row,) = [r for r in view.visible() if (r.client, r.server) == name]
        before = row.packets_c2s + row.packets_s2c
        watch = session.watch(FlowRef.of(row))  # the flow screen opens
        for _ in range(3):
            client.sendall(b"x" * 3000)
            server.recv(65536)
            time.sleep(0.05)
        end(CLIENT_CLOSES, client, server)
        time.sleep(1.5)
        view.apply(session.pull())
        view.recompute()
        (row,) = [r for r in view.visible() if (r.client, r.server) == name]
        flow = watch.flow()
    finally:
        listener.close()
        session.stop()
    after = row.packets_c2s + row.packets_s2c
    assert watch.seen == after - before > 6
    # the packets before the watch came from the packet ring: all of them (fewer than it holds), handshake first
    assert watch.ring_seen == before == len(watch.ring)
    assert len(flow.packets) == before + watch.seen
    assert not flow.midstream and flow.packets[0].seg.flags == SYN
    assert any(p.seg.flags & FIN for p in flow.packets)
    # the private tracker ends where the engine does
    assert (NAMES[flow.packets[-1].states[0]], NAMES[flow.packets[-1].states[1]]) == \
        (NAMES[row.cstate], NAMES[row.sstate])
    assert sum(1 for line in ladder(flow, fold=False) if line.kind == "packet") == len(flow.packets)
    session.unwatch(watch)
    assert not session.tap.watches


def test_watch_bounds_hold(tmp_path):
    """The bound of a watch, in packets and in bytes: the oldest go first, and are counted."""
    from midstat_tui.engine.flow_packets import FlowRef, FlowWatch

    ref = FlowRef(bytes(4), 1, bytes(4), 2, (), 0.0, 0.0)
    watch = FlowWatch(ref, 1, max_packets=100, max_bytes=10_000)
    for i in range(1000):
        watch.add(float(i), bytes(150))
    assert len(watch.packets) <= 100 and watch.bytes <= 10_000
    assert watch.seen == 1000 and watch.dropped == 1000 - len(watch.packets)
    assert watch.packets[-1][0] == 999.0


@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_live_flows_ladder_opened_late_shows_its_ring_then_follows(lab, cores):
    """The TUI live in a real terminal, as root (every process gives root up: the default), on 1 and 2 cores: a
    connection talks before its flow screen opens; its ladder starts with the handshake (the packet ring, kept by
    the shard that owns it and, on 2 cores, sent to core 0) and then shows what it sends after (the watch)."""
    from tests.terminal import tui

    port = 6310 + int(cores)
    listener = listen(lab, port)
    try:
        with tui("-i", ROUTER_CLIENT_IF, "--cores", cores, prefix=("ip", "netns", "exec", lab.router),
                 size=(100, 40)) as term:
            term.wait_for(b"live")
            client = lab.socket(lab.client)
            client.connect((SERVER4, port))
            server, _ = listener.accept()
            client.sendall(b"a" * 333)
            server.recv(65536)
            term.wait_for(f":{port}".encode())  # on screen: the engine has it
            os.write(term.master, b"/")
            time.sleep(0.3)
            os.write(term.master, f"port {port}\r".encode())
            time.sleep(1.2)
            os.write(term.master, b"\r")  # its flow screen
            term.wait_for(b"Ladder")
            os.write(term.master, b"l")
            # the SYN and the 333 bytes were sent before the screen opened: the ring has them
            term.wait_for(b"S seq=0")
            term.wait_for(b"len=333")
            client.sendall(b"b" * 777)  # after: the watch (on 2 cores, forwarded by the shard each second)
            server.recv(65536)
            term.wait_for(b"len=777")
            end(CLIENT_CLOSES, client, server)
            term.wait_for(b"F. seq=1111")
            assert term.quit() == 0
            term.assert_restored()
    finally:
        listener.close()
