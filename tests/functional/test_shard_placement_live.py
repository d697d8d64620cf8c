"""Live, every shard sees what one core sees (issue #10): captures whose headers differ by direction, and ICMP errors
about a connection, replayed with tcpreplay onto a veth pair in a network namespace of their own, captured at once
by `midstat -i --cores 1` and `--cores 2`: the kernel's fanout hash places such packets on the wrong shard, which
must forward them to the one that owns the connection."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.asymmetric import write
from tests.helpers import FIXTURES, ROOT

SAME = ("client", "server", "vlan", "client_state", "server_state", "packets_c2s", "packets_s2c", "bytes_c2s",
        "bytes_s2c", "zeek_state", "history", "ended")
NS = f"msplace{os.getpid() % 100000}"

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("tcpreplay") is None,
                                reason="needs root and tcpreplay")


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def veth():
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "-n", NS, "link", "add", "plsend", "type", "veth", "peer", "name", "plcap")
        for dev in ("plsend", "plcap", "lo"):
            sh("ip", "-n", NS, "link", "set", dev, "up")
        for dev in ("plsend", "plcap"):  # no neighbour discovery or router solicitations of its own
            sh("ip", "netns", "exec", NS, "sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1", check=False)
        yield NS
    finally:
        sh("ip", "netns", "del", NS, check=False)


def _start(cores: int) -> subprocess.Popen:
    proc = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-m", "midstat_tui", "-i", "plcap",
                             "--cores", str(cores), "--summary", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert "listening on" in line, line
    return proc


def _connections(proc: subprocess.Popen) -> list[dict]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)["connections"]


def _facts(conns: list[dict]) -> list[tuple]:
    return sorted(tuple(json.dumps(c[k]) for k in SAME) for c in conns)


@pytest.mark.parametrize("kind", ["unreachable", "mpls", "ipv6_ext", "icmp_options"])
def test_live_asymmetric_traffic_is_the_same_on_one_core_and_two(veth, kind, tmp_path):
    capture = FIXTURES / "unreachable.pcap" if kind == "unreachable" else write(tmp_path / f"{kind}.pcap", kind)
    one, two = _start(1), _start(2)
    try:
        sh("ip", "netns", "exec", NS, "tcpreplay", "-i", "plsend", "--pps=2000", str(capture))
        time.sleep(1.0)
    finally:
        conns_one, conns_two = _connections(one), _connections(two)
    assert conns_one, "nothing captured"
    if kind == "unreachable":
        assert {(c["client_state"], c["server_state"]) for c in conns_one} == {("CLOSED", "CLOSED")}
    else:
        assert len(conns_one) == 40
    assert _facts(conns_two) == _facts(conns_one)
    if kind != "unreachable":
        assert {c["shard"] for c in conns_two} == {0, 1}
