"""The problems lens live (`-i IFACE --problems --json`: a report every second of the clock) between real stacks in
network namespaces, on one core and two: a server that never closes shows up once it has sat in CLOSE_WAIT past
the threshold (the clock moves on without packets), a refused connect at once."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))

from netlab import CLIENT4, ROUTER_CLIENT_IF, SERVER4, available, endpoint  # noqa: E402

pytestmark = pytest.mark.skipif(available() is not None, reason=f"network lab: {available()}")



@pytest.mark.parametrize("cores", ["1", "2"])
def test_live_reports_find_the_stuck_server_once_it_is_stuck(lab, cores):
    port = 6100 + int(cores)
    proc = subprocess.Popen(["ip", "netns", "exec", lab.router, sys.executable, "-m", "midstat_tui", "-i",
                             ROUTER_CLIENT_IF, "--problems", "--json", "--threshold", "close_wait=2", "--cores",
                             cores], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    held = []
    try:
        assert proc.stderr is not None
        assert "listening on" in proc.stderr.readline().decode()
        listener = lab.socket(lab.server)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((SERVER4, port))
        listener.listen(4)
        client = lab.socket(lab.client)
        client.connect((SERVER4, port))
        server, _ = listener.accept()
        listener.close()
        stuck = (endpoint(client.getsockname()), f"{SERVER4}:{port}")
        client.sendall(b"x" * 500)
        server.recv(65536)
        client.close()           # the server's application never closes: CLOSE_WAIT from here
        held.append(server)
        closed_at = time.time()
        refused = lab.socket(lab.client)
        refused.bind((CLIENT4, 44100 + int(cores)))
        with contextlib.suppress(ConnectionRefusedError):
            refused.connect((SERVER4, 6999))
        refused.close()
        time.sleep(4.5)
        proc.send_signal(2)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        for sock in held:
            sock.close()
        if proc.poll() is None:
            proc.kill()
    reports = [json.loads(line) for line in out.decode().splitlines()]
    assert len(reports) >= 3   # one a second
    found = [{(p["kind"], p["client"], p["server"]) for p in r["problems"]} for r in reports]
    last = found[-1]
    assert last == {("close_wait", *stuck), ("refused", f"{CLIENT4}:{44100 + int(cores)}", f"{SERVER4}:6999")}
    # before the server had sat 2 s in CLOSE_WAIT, the reports did not list it; after, they all do
    for report, kinds in zip(reports, found, strict=True):
        if report["ts"] < closed_at + 1.5:
            assert ("close_wait", *stuck) not in kinds
        elif report["ts"] > closed_at + 2.5:
            assert ("close_wait", *stuck) in kinds
