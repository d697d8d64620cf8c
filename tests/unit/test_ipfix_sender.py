"""export.sender: a collector that is down or slow never holds the tracking up; what cannot go is dropped and
counted."""

from __future__ import annotations

import socket
import time

from midstat_tui.export import ipfix
from midstat_tui.export.sender import Collector, Sender
from tests.collectors import UdpCollector, free_port
from tests.ipfix_decoder import decode

RECORD = ipfix.FlowRecord(bytes([10, 0, 0, 1]), 1000, bytes([10, 0, 0, 2]), 80, 0, 0, 1000, 100, 200, 1, 2, 0, 0,
                          ipfix.END_OF_FLOW, "CLOSED", "CLOSED", "SF", "ShADadFf", 1, 1, 0, 0, 0, 0, 0, 0)
ENCODED = (True, ipfix.encode_record(RECORD))


def test_a_collector_that_never_reads_costs_no_waiting():
    with socket.socket() as server:  # accepts the connection (the kernel does), never reads a byte
        server.bind(("127.0.0.1", 0))
        server.listen()
        sender = Sender(Collector("127.0.0.1", server.getsockname()[1], tcp=True), 1, queue_size=100)
        start = time.monotonic()
        for _ in range(200_000):
            sender.offer(0.0, *ENCODED)
        offering = time.monotonic() - start
        sender.close(timeout=1.0)
    assert offering < 5.0  # ~200k queue operations, never a wait on the socket
    assert sender.dropped > 0
    assert sender.sent + sender.dropped == 200_000


def test_a_collector_that_is_down_drops_and_counts():
    port = free_port(socket.SOCK_STREAM)  # nothing listens there
    sender = Sender(Collector("127.0.0.1", port, tcp=True), 1)
    for _ in range(50):
        sender.offer(0.0, *ENCODED)
    sender.close(timeout=3.0)
    assert sender.sent == 0
    assert sender.dropped == 50
    assert sender.error


def test_udp_templates_come_again_after_the_refresh_interval():
    collector = UdpCollector()
    sender = Sender(Collector("127.0.0.1", collector.port), 7, template_refresh=1.0)
    sender.offer(1.0, *ENCODED)
    time.sleep(1.2)
    sender.offer(2.0, *ENCODED)
    time.sleep(0.2)
    sender.offer(3.0, *ENCODED)  # within the interval: no templates
    sender.close()
    datagrams = [d for _, d in collector.close()]
    leading = [int.from_bytes(d[16:18], "big") for d in datagrams]
    assert leading == [ipfix.TEMPLATE_SET, ipfix.TEMPLATE_SET, ipfix.TEMPLATE_V4]
    assert [int.from_bytes(d[8:12], "big") for d in datagrams] == [0, 1, 2]
    assert len(decode(datagrams)) == 3
