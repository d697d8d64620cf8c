"""The network lab as the live tests use it: midstat started on a lab interface, stopped as a user stops it, and a
burst of ordinary connections between the lab's client and server (scripts/netlab.py makes the namespaces)."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from netlab import (  # noqa: E402, F401
    CLIENT4,
    CLIENT_CLOSES,
    ROUTER_CLIENT_IF,
    SERVER4,
    SERVER_CLOSES,
    NetLab,
    available,
    end,
    endpoint,
)


def start_live(lab: NetLab, *args: str, ns: str | None = None, iface: str = ROUTER_CLIENT_IF) -> subprocess.Popen:
    """midstat capturing `iface` in namespace `ns` (the router's client side by default), once its handles are open."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns or lab.router, sys.executable, "-m", "midstat_tui",
                             "-i", iface, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert "listening on" in line, line + (proc.stderr.read().decode() if proc.poll() is not None else "")
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> bytes:
    """Stop a capture as a user would; it must end cleanly. Returns what it printed."""
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return out


def listen(lab: NetLab, port: int, backlog: int = 4) -> socket.socket:
    """A listening socket in the lab's server namespace on SERVER4:`port` (SO_REUSEADDR: a port reused by the
    module's earlier test, its connections in TIME_WAIT, binds again)."""
    listener = lab.socket(lab.server)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((SERVER4, port))
    listener.listen(backlog)
    return listener


@contextlib.contextmanager
def stuck_and_refused(lab: NetLab, port: int, refused_port: int) -> Iterator[tuple[tuple[str, str], float]]:
    """Two problems, made between the lab's real stacks: a server whose application never closes (the client sends
    500 bytes and closes: the server sits in CLOSE_WAIT from then on, for as long as this lasts), and a connect from
    CLIENT4:`refused_port` to SERVER4:6999, where nothing listens (refused). Yields the stuck connection's
    (client, server) endpoints and the time (time.time()) its client closed; the server's socket is closed on the
    way out."""
    listener = listen(lab, port)
    client = lab.socket(lab.client)
    client.connect((SERVER4, port))
    server, _ = listener.accept()
    listener.close()
    try:
        stuck = (endpoint(client.getsockname()), f"{SERVER4}:{port}")
        client.sendall(b"x" * 500)
        server.recv(65536)
        client.close()  # the server's application never closes: CLOSE_WAIT from here
        closed_at = time.time()
        refused = lab.socket(lab.client)
        refused.bind((CLIENT4, refused_port))
        with contextlib.suppress(ConnectionRefusedError):
            refused.connect((SERVER4, 6999))
        refused.close()
        yield stuck, closed_at
    finally:
        server.close()


def talk(lab: NetLab, port: int, count: int, payload: Callable[[int], bytes] = lambda i: b"hello" * 100,
         closes: Callable[[int], str] = lambda i: SERVER_CLOSES if i % 2 else CLIENT_CLOSES,
         backlog: int = 64) -> list[tuple[str, str]]:
    """`count` connections from the lab's client to its server on `port`, each sending `payload(i)` one way and
    ended as `closes(i)` says (by default the client and the server close first in turn); returns each
    connection's (client, server) endpoints."""
    listener = listen(lab, port, backlog)
    names = []
    try:
        for i in range(count):
            client = lab.socket(lab.client)
            client.connect((SERVER4, port))
            conn, _ = listener.accept()
            names.append((endpoint(client.getsockname()), endpoint(client.getpeername())))
            client.sendall(payload(i))
            conn.recv(65536)
            end(closes(i), client, conn)
    finally:
        listener.close()
    return names
