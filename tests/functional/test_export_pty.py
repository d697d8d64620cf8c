"""--ipfix and --metrics with the TUI in a real terminal (a pty), as root: by default midstat gives root up (to
`nobody`) once its capture is open, and the exporter and the metrics server live on after the drop (their sockets
are made before it); with `--user root` it stays root. A file replay on one core and two, and a live capture on
one core and two in a network-namespace lab: the metrics are scraped while the TUI runs, the records that reach
the collector add up to the capture's connections, and quitting sends the last of them."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.collectors import UdpCollector, free_port, nfcapd, scrape_metrics
from tests.helpers import FIXTURES, nobody_uid, replay, replay_packet_totals, uids
from tests.ipfix_decoder import packet_totals
from tests.lab import ROUTER_CLIENT_IF, NetLab, talk
from tests.terminal import tui

MIXED = FIXTURES / "mixed_traffic.pcap"
AS_ROOT = pytest.mark.skipif(os.geteuid() != 0 or nobody_uid() is None, reason="needs root and a 'nobody' account")


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
        scraped = _until(lambda: (m := scrape_metrics(port))[("midstat_packets_total", ())] == 215 and m)
        _, _, started = replay(MIXED)
        assert scraped[("midstat_connections_started_total", ())] == len(started)
        shards = {dict(labels)["shard"] for (name, labels) in scraped if name == "midstat_shard_packets_total"}
        assert shards == {str(i) for i in range(int(cores))}
        assert term.quit() == 0
        term.assert_restored()
    datagrams = collector.close()
    assert packet_totals(datagrams) == replay_packet_totals(MIXED)
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
            _until(lambda: _started(lab, metrics_port) == 6)
            assert set(uids(term.proc.pid)) == {nobody_uid()}
            assert term.quit() == 0
            term.assert_restored()
        flows = collector.flows()
    got = {(f.get("src4_addr"), f["src_port"], f.get("dst4_addr"), f["dst_port"]) for f in flows}
    assert got == {(c.rsplit(":", 1)[0], int(c.rsplit(":", 1)[1]), s.rsplit(":", 1)[0], int(s.rsplit(":", 1)[1]))
                   for c, s in names}
    assert all(f.get("in_packets", 0) > 0 and f.get("out_packets", 0) > 0 for f in flows)


def _started(lab: NetLab, port: int) -> float:
    samples = scrape_metrics(port, lab)
    if not samples.get(("midstat_report_timestamp_seconds", ())):
        return -1.0  # scraped before the first report
    return samples.get(("midstat_connections_started_total", ()), -1.0)
