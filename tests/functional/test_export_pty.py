"""--ipfix and --metrics with the TUI in a real terminal (a pty), as root: by default midstat gives root up (to
`nobody`) once its capture is open, and the exporter and the metrics server live on after the drop (their sockets
are made before it); with `--user root` it stays root. A file replay on one core and two, and a live capture on
one core and two in a network-namespace lab: the metrics are scraped while the TUI runs, the records that reach
the collector add up to the capture's connections, and quitting sends the last of them."""

from __future__ import annotations

import os
import socket
import time
from collections import defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.collectors import UdpCollector, free_port, nfcapd
from tests.functional.test_metrics_problems import scrape as scrape_in
from tests.helpers import FIXTURES, nobody_uid, replay, uids
from tests.ipfix_decoder import decode
from tests.lab import ROUTER_CLIENT_IF, NetLab, talk
from tests.terminal import tui

MIXED = FIXTURES / "mixed_traffic.pcap"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0 or nobody_uid() is None, reason="needs root and a 'nobody' account")


def _scrape(port: int) -> dict:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _expected(path) -> dict:
    _, _, started = replay(path)
    totals: dict = defaultdict(lambda: [0, 0])
    for conn in started:
        totals[(conn.c_port, conn.s_port)][0] += conn.c.packets
        totals[(conn.c_port, conn.s_port)][1] += conn.s.packets
    return dict(totals)


def _until(cond, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("condition not reached")


@AS_ROOT
@pytest.mark.parametrize("user", [None, "root"])
@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_replay_exports_and_serves_metrics_after_the_drop(cores, user):
    collector = UdpCollector()
    port = free_port(kind=1)
    args = ["-r", str(MIXED), "--cores", cores, "--ipfix", collector.address, "--metrics", f"127.0.0.1:{port}"]
    if user:
        args += ["--user", user]
    with tui(*args) as term:
        term.wait_for(b"ipfix sent")
        term.wait_for(b"end of the file")
        want = 0 if user == "root" else nobody_uid()
        assert set(uids(term.proc.pid)) == {want}
        # the figures of the whole capture, once the replay is at its end and the app has pulled them
        scraped = _until(lambda: (m := _scrape(port))[("midstat_packets_total", ())] == 215 and m)
        _, _, started = replay(MIXED)
        assert scraped[("midstat_connections_started_total", ())] == len(started)
        shards = {dict(labels)["shard"] for (name, labels) in scraped if name == "midstat_shard_packets_total"}
        assert shards == {str(i) for i in range(int(cores))}
        assert term.quit() == 0
        term.assert_restored()
    datagrams = collector.close()
    got: dict = defaultdict(lambda: [0, 0])
    for _, r in decode([d for _, d in datagrams]):
        key = (r["sourceTransportPort"], r["destinationTransportPort"])
        got[key][0] += r["packetDeltaCount"]
        got[key][1] += r["reversePacketDeltaCount"]
    assert dict(got) == _expected(MIXED)
    assert {int.from_bytes(d[12:16], "big") for _, d in datagrams} == {1 + i for i in range(int(cores))}


@AS_ROOT
@pytest.mark.parametrize("cores", ["1", "2"])
def test_a_live_tui_exports_and_serves_metrics_after_the_drop(lab, tmp_path, cores):
    port = 6300 + int(cores)
    metrics_port = free_port(socket.SOCK_STREAM)
    with nfcapd(tmp_path, lab.router) as collector:
        with tui("-i", ROUTER_CLIENT_IF, "-f", f"tcp port {port}", "--cores", cores, "--ipfix", collector.address,
                 "--metrics", f"127.0.0.1:{metrics_port}", prefix=("ip", "netns", "exec", lab.router)) as term:
            term.wait_for(b"ipfix sent")
            names = talk(lab, port, 6)
            # every connection's packets counted, as the app pulled them (once a second)
            _until(lambda: scrape_in(lab, metrics_port)[0] > 0 and _started(lab, metrics_port) == 6)
            assert set(uids(term.proc.pid)) == {nobody_uid()}
            assert term.quit() == 0
            term.assert_restored()
        flows = collector.flows()
    got = {(f.get("src4_addr"), f["src_port"], f.get("dst4_addr"), f["dst_port"]) for f in flows}
    assert got == {(c.rsplit(":", 1)[0], int(c.rsplit(":", 1)[1]), s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1]))
                   for c, s in names}
    assert all(f.get("in_packets", 0) > 0 and f.get("out_packets", 0) > 0 for f in flows)


def _started(lab: NetLab, port: int) -> float:
    sock = lab.socket(lab.router)
    sock.settimeout(5)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    finally:
        sock.close()
    body = data.partition(b"\r\n\r\n")[2].decode()
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == "midstat_connections_started_total":
                return sample.value
    return -1.0
