"""Host names learned live (issue #12), never by sending a query: in the client/router/server network-namespace lab,
a tiny UDP responder in the server's namespace answers a DNS query the client sends; midstat, capturing on the
router, learns the answer and names the server of a later plain TCP connection (no TLS, no HTTP: the name can only
come from that answer). On two cores the connection is placed on shard 1 while the answer (non-TCP) is shard 0's.

Needs root; skipped elsewhere with the reason.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from midstat_tui.engine.share_filter import shard_of
from tests.lab import CLIENT_CLOSES, SERVER4, NetLab, end, listen, start_live, stop

CLIENT4 = sys.modules["netlab"].CLIENT4  # scripts/netlab.py's client address (tests.lab imported it)

NAME = "svc.names.lab"

RESPONDER = r"""
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
print("ready", flush=True)
query, peer = s.recvfrom(512)
end = 12
while query[end]:
    end += 1 + query[end]
question = query[12:end + 5]
answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(sys.argv[1])
s.sendto(query[:2] + struct.pack("!HHHHH", 0x8180, 1, 1, 0, 0) + question + answer, peer)
"""

ASK = r"""
import socket, struct, sys
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes((len(p),)) + p.encode() for p in sys.argv[2].split(".")) + b"\0" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.sendto(q, (sys.argv[1], 53))
reply = s.recv(512)
print("answered" if reply[:2] == q[:2] and reply[3] & 0x0F == 0 else "bad", flush=True)
"""


def _in(lab: NetLab, ns: str, script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _client_port(server_port: int, shard: int, count: int) -> int:
    """A client port that places the connection on `shard` of `count`."""
    return next(p for p in range(41000, 60000)
                if shard_of(socket.inet_aton(CLIENT4), p, socket.inet_aton(SERVER4), server_port, count) == shard)


@pytest.mark.parametrize("cores", [1, 2])
def test_a_dns_answer_names_the_server_of_a_later_connection(lab, cores):
    port = 7100 + cores
    proc = start_live(lab, "--summary", "--json", "--cores", str(cores))
    try:
        responder = _in(lab, lab.server, RESPONDER, SERVER4)
        assert responder.stdout is not None and responder.stdout.readline().strip() == "ready"
        asker = _in(lab, lab.client, ASK, SERVER4, NAME)
        out, err = asker.communicate(timeout=20)
        assert out.strip() == "answered", err
        responder.wait(timeout=10)
        time.sleep(0.3)

        listener = listen(lab, port)
        client = lab.socket(lab.client)
        client.bind((CLIENT4, _client_port(port, cores - 1, cores)))
        client.connect((SERVER4, port))
        conn, _ = listener.accept()
        client.sendall(b"no name in here\n" * 10)
        conn.recv(65536)
        end(CLIENT_CLOSES, client, conn)
        listener.close()
        time.sleep(0.5)
    finally:
        stdout = stop(proc)
    records = [r for r in json.loads(stdout)["connections"] if r["server"] == f"{SERVER4}:{port}"]
    assert len(records) == 1
    record = records[0]
    assert record["shard"] == cores - 1
    assert record.get("server_name") == NAME
    assert "client_name" not in record
