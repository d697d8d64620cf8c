"""A headless run's start loads neither numpy nor dpkt unless it needs them (issue #11: 0.1 s and 0.05 s of CPU at
every start): numpy is loaded by grouping, filtering and the problems lens; dpkt by the first frame the fast path
does not decode."""

from __future__ import annotations

import subprocess
import sys

import dpkt.ethernet
import dpkt.ip
import pytest

from midstat_tui.decode import frame
from midstat_tui.lazy_imports import LazyModule
from tests.helpers import FIXTURES, ROOT


def imported(*args: str) -> set[str]:
    """The top-level modules a real `midstat` command imported (python -X importtime)."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "midstat_tui", *args], capture_output=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-500:]
    names = set()
    for line in proc.stderr.decode().splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_plain_headless_run_loads_neither_numpy_nor_dpkt(cores):
    names = imported("-r", str(FIXTURES / "half_close.pcap"), "--summary", "--json", "--cores", cores)
    assert "midstat_tui" in names
    assert "numpy" not in names and "dpkt" not in names


def test_what_needs_them_loads_them():
    assert "numpy" in imported("-r", str(FIXTURES / "half_close.pcap"), "--summary", "--json", "--cores", "1",
                               "--group-by", "server")
    # an ICMP error is decoded by dpkt
    assert "dpkt" in imported("-r", str(FIXTURES / "unreachable.pcap"), "--summary", "--json", "--cores", "1")


def test_the_decoders_constants_are_dpkts():
    assert (frame.ETH_TYPE_IP, frame.ETH_TYPE_IP6) == (dpkt.ethernet.ETH_TYPE_IP, dpkt.ethernet.ETH_TYPE_IP6)
    assert (frame.IP_PROTO_ICMP, frame.IP_PROTO_TCP) == (dpkt.ip.IP_PROTO_ICMP, dpkt.ip.IP_PROTO_TCP)


def test_a_lazy_module_is_the_module():
    lazy = LazyModule("json")
    assert lazy.dumps([1]) == "[1]" and "dumps" in vars(lazy)
