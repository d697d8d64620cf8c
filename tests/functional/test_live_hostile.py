"""One frame never stops a live capture (issue #10): every kind of hostile frame (encapsulations nested hundreds
deep, long chains of extension headers) replayed with tcpreplay on a real veth in the middle of real TCP, on one
and two cores: the capture goes on, connections before and after are tracked, each frame is counted under its
reason. Needs root and the namespace lab; skipped elsewhere with the reason."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from midstat_tui.decode import layers
from tests.helpers import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import hostile_frames as hf  # noqa: E402
from netlab import CLIENT_CLOSES, ROUTER_CLIENT_IF, SERVER4, NetLab, available, end  # noqa: E402

pytestmark = pytest.mark.skipif(available() is not None or shutil.which("tcpreplay") is None,
                                reason=f"network lab: {available() or 'needs tcpreplay'}")

JUMBO = 16000  # the frames are up to 10 KB: a jumbo link carries them whole


@pytest.fixture(scope="module")
def lab():
    net = NetLab().up()  # a pid-based prefix: its own namespaces
    net.ns(net.client, "ip", "link", "set", "dev", "c0", "mtu", str(JUMBO))
    net.ns(net.router, "ip", "link", "set", "dev", ROUTER_CLIENT_IF, "mtu", str(JUMBO))
    yield net
    net.down()


def _talk(lab: NetLab, port: int, count: int) -> None:
    listener = lab.socket(lab.server)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((SERVER4, port))
    listener.listen(16)
    for _ in range(count):
        client = lab.socket(lab.client)
        client.connect((SERVER4, port))
        conn, _ = listener.accept()
        client.sendall(b"hello" * 50)
        conn.recv(65536)
        end(CLIENT_CLOSES, client, conn)
    listener.close()


@pytest.mark.parametrize("cores", ["1", "2"])
def test_hostile_frames_on_the_wire_stop_nothing(lab, tmp_path, cores):
    frames = [hf.hostile(name) for name in sorted(hf.KINDS)] * 3
    assert max(len(f) for f in frames) > 5000
    path = tmp_path / "hostile.pcap"
    hf.write_pcap(str(path), [(1000.0 + i / 100, f) for i, f in enumerate(frames)])
    proc = subprocess.Popen(["ip", "netns", "exec", lab.router, sys.executable, "-m", "midstat_tui", "-i",
                             ROUTER_CLIENT_IF, "--summary", "--json", "--cores", cores], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    assert "listening on" in proc.stderr.readline().decode()
    port = 7400 + int(cores) * 10
    _talk(lab, port, 4)
    sent = lab.ns(lab.client, "tcpreplay", "-i", "c0", "--topspeed", str(path))
    assert f"Successful packets:        {len(frames)}" in sent, sent
    _talk(lab, port + 1, 4)  # after the frames: still captured, still tracked
    time.sleep(1.0)
    assert proc.poll() is None  # nothing stopped
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"failed" not in err
    doc = json.loads(out)
    servers = [c["server"] for c in doc["connections"]]
    assert servers.count(f"{SERVER4}:{port}") == 4 and servers.count(f"{SERVER4}:{port + 1}") == 4
    malformed = doc["stats"]["malformed"]
    assert malformed.get(layers.TOO_MANY_LAYERS, 0) + malformed.get(layers.TOO_MANY_HEADERS, 0) == len(frames)
    if cores == "2":
        assert len({c["shard"] for c in doc["connections"]}) == 2
