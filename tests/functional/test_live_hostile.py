"""One frame never stops a live capture (issue #10): every kind of hostile frame (encapsulations nested hundreds
deep, long chains of extension headers) replayed with tcpreplay on a real veth in the middle of real TCP, on one
and two cores: the capture goes on, connections before and after are tracked, each frame is counted under its
reason. Needs root and the namespace lab; skipped elsewhere with the reason."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time

import dpkt
import pytest

from midstat_tui.decode import layers
from tests.helpers import ROOT
from tests.lab import talk

sys.path.insert(0, str(ROOT / "scripts"))
import hostile_frames as hf  # noqa: E402
from netlab import CLIENT_CLOSES, ROUTER_CLIENT_IF, SERVER4, NetLab, available  # noqa: E402

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




def _replayed_among_connections(lab: NetLab, tmp_path, cores: str, frames: list[bytes], port: int,
                                talks: int) -> dict:
    """`--summary --json` of a live capture on the router (`cores` shards) while the client makes `talks`
    connections to `port`, replays `frames` with tcpreplay, then makes `talks` more to `port + 1`; checks that the
    capture never stopped and that every connection was tracked."""
    path = tmp_path / "frames.pcap"
    hf.write_pcap(str(path), [(1000.0 + i / 100, f) for i, f in enumerate(frames)])
    proc = subprocess.Popen(["ip", "netns", "exec", lab.router, sys.executable, "-m", "midstat_tui", "-i",
                             ROUTER_CLIENT_IF, "--summary", "--json", "--cores", cores], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    assert "listening on" in proc.stderr.readline().decode()
    talk(lab, port, talks, payload=lambda i: b"hello" * 50, closes=lambda i: CLIENT_CLOSES)
    sent = lab.ns(lab.client, "tcpreplay", "-i", "c0", "--topspeed", str(path))
    assert f"Successful packets:        {len(frames)}" in sent, sent
    # after the frames: still captured, still tracked
    talk(lab, port + 1, talks, payload=lambda i: b"hello" * 50, closes=lambda i: CLIENT_CLOSES)
    time.sleep(1.0)
    assert proc.poll() is None  # nothing stopped
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert b"Traceback" not in err and b"failed" not in err
    doc = json.loads(out)
    servers = [c["server"] for c in doc["connections"]]
    assert servers.count(f"{SERVER4}:{port}") == talks and servers.count(f"{SERVER4}:{port + 1}") == talks
    return doc


@pytest.mark.parametrize("cores", ["1", "2"])
def test_hostile_frames_on_the_wire_stop_nothing(lab, tmp_path, cores):
    frames = [hf.hostile(name) for name in sorted(hf.KINDS)] * 3
    assert max(len(f) for f in frames) > 5000
    doc = _replayed_among_connections(lab, tmp_path, cores, frames, 7400 + int(cores) * 10, 4)
    malformed = doc["stats"]["malformed"]
    assert malformed.get(layers.TOO_MANY_LAYERS, 0) + malformed.get(layers.TOO_MANY_HEADERS, 0) == len(frames)
    if cores == "2":
        assert len({c["shard"] for c in doc["connections"]}) == 2


def _cut_frames() -> list[bytes]:
    """Frames cut short inside their IP or TCP header (IPv4, IPv6, VLAN-tagged): too short for the live pre-filter's
    loads, which used to make every shard's handle drop them on two cores, where one core counts them."""
    v4 = hf.ethernet(0x0800, bytes(dpkt.ip.IP(src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", p=6,
                                              data=dpkt.tcp.TCP(sport=5, dport=6))))
    v6 = hf.ethernet(0x86DD, bytes(dpkt.ip6.IP6(src=b"\x20" + b"\x00" * 15, dst=b"\x20" + b"\x00" * 14 + b"\x02",
                                                nxt=6, plen=20, hlim=9)) + bytes(dpkt.tcp.TCP()))
    tagged = v4[:12] + b"\x81\x00\x00\x07" + v4[12:]
    return [v4[:36], v4[:30], v6[:56], v6[:40], tagged[:40], tagged[:24]]


@pytest.mark.parametrize("cores", ["1", "2"])
def test_frames_cut_short_are_counted_on_every_core_count(lab, tmp_path, cores):
    frames = _cut_frames() * 2
    doc = _replayed_among_connections(lab, tmp_path, cores, frames, 7500 + int(cores) * 10, 2)
    assert sum(doc["stats"]["malformed"].values()) == len(frames), doc["stats"]["malformed"]
