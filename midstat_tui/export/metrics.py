"""`--metrics HOST:PORT`: the run's counters for Prometheus, served by prometheus_client from core 0.

The figures are those of the run's latest report (the merged stats of every shard, once a second, the same that
`--plain` prints its status lines from), so a scrape and the `--plain` block of the same second agree: no second
set of counters is kept anywhere.
"""

from __future__ import annotations

import socket
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

# (all imported with this module, before midstat gives up root: a scrape then imports nothing)
from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import CollectorRegistry

from midstat_tui.errors import MidstatError
from midstat_tui.export.sender import parse_collector

POLL = 0.05  # seconds: how soon the serving thread sees a shutdown


def _server(host: str, port: int, app):
    """A threading WSGI server for `app` on host:port (IPv4 or IPv6), its request log silent."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(ThreadingWSGIServer):
        address_family = family

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            pass

    return make_server(host, port, app, Server, handler_class=Quiet)


class MetricsServer:
    """An HTTP endpoint (/metrics) over the latest stats given to `update`."""

    def __init__(self, address: str) -> None:
        collector = parse_collector(address, "--metrics")
        if collector.tcp:
            raise MidstatError(f"--metrics {address!r}: expected HOST:PORT (an HTTP endpoint)")
        self._lock = threading.Lock()
        self._stats: dict = {}
        self._ts = 0.0
        self._problems: dict[str, int] | None = None
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            self._server = _server(collector.host, collector.port, make_wsgi_app(registry))
        except (OSError, UnicodeError) as exc:
            raise MidstatError(f"--metrics {address}: cannot listen there "
                               f"({getattr(exc, 'strerror', None) or exc})") from None
        # prometheus_client's start_http_server, with a short poll: its server's shutdown waits for the serving
        # loop to look (0.5 s by default), which every run's end paid
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL,), name="midstat-metrics",
                                        daemon=True)
        self._thread.start()

    def update(self, ts: float, stats: dict, problems: dict[str, int] | None = None) -> None:
        """The figures of the report at `ts`; `problems`: with --problems, that moment's report's counts by kind
        (what `--problems --json` writes as "counts")."""
        with self._lock:
            self._ts = ts
            self._stats = stats
            self._problems = problems

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- prometheus_client's Collector protocol ---------------------------------------------------------------
    def describe(self) -> list:
        return []

    def collect(self):
        with self._lock:
            stats, ts, problems = self._stats, self._ts, self._problems
        yield GaugeMetricFamily("midstat_report_timestamp_seconds",
                                "Packet time (files) or clock time (live) of the report these figures come from",
                                value=ts)
        for name, key, text in (
                ("midstat_packets", "packets", "Packets read from the capture"),
                ("midstat_bytes", "bytes", "Captured frame bytes"),
                ("midstat_tcp_packets", "tcp_packets", "TCP segments tracked"),
                ("midstat_connections_started", "started", "Connections started"),
                ("midstat_connections_ended", "ended", "Connections ended"),
                ("midstat_connections_evicted", "evicted", "Connections evicted from a full table (--max-conns)"),
                ("midstat_suspicious_rst", "suspicious_rst", "RSTs out of window (not obeyed)"),
                ("midstat_odd_rst", "odd_rst", "RSTs with another TTL or MAC than their sender's"),
                ("midstat_bad_checksum", "bad_checksum", "Segments with a bad TCP checksum")):
            yield CounterMetricFamily(name, text, value=stats.get(key, 0))
        ended = CounterMetricFamily("midstat_connections_ended_by_reason", "Connections ended, by how they ended",
                                    labels=["reason"])
        for reason, n in sorted((stats.get("end_reasons") or {}).items()):
            ended.add_metric([reason], n)
        yield ended
        yield GaugeMetricFamily("midstat_connections_open", "Connections open (started, not ended)",
                                value=stats.get("active", 0))
        pairs = GaugeMetricFamily("midstat_connections_by_state", "Open connections by client and server state",
                                  labels=["client_state", "server_state"])
        for pair, n in sorted((stats.get("state_pairs") or {}).items()):
            client, _, server = pair.partition("/")
            pairs.add_metric([client, server], n)
        yield pairs
        capture = stats.get("capture")
        if capture:
            dropped = CounterMetricFamily("midstat_capture_dropped", "Packets the capture lost",
                                          labels=["where"])
            dropped.add_metric(["kernel"], capture.get("dropped", 0))
            dropped.add_metric(["interface"], capture.get("if_dropped", 0))
            yield dropped
            yield CounterMetricFamily("midstat_capture_received", "Packets the capture handles received",
                                      value=capture.get("received", 0))
        shards = stats.get("shards") or ()
        packets = CounterMetricFamily("midstat_shard_packets", "Packets each core (shard) read", labels=["shard"])
        table = GaugeMetricFamily("midstat_shard_connections", "Connections in each core's table", labels=["shard"])
        for load in shards:
            packets.add_metric([str(load["shard"])], load.get("packets", 0))
            table.add_metric([str(load["shard"])], load.get("in_table", 0))
        yield packets
        yield table
        if problems is not None:
            found = GaugeMetricFamily("midstat_problems",
                                      "Connections with each kind of problem now (the --problems lens, --threshold)",
                                      labels=["kind"])
            for kind, n in problems.items():
                found.add_metric([kind], n)
            yield found
        ipfix = stats.get("ipfix")
        if ipfix is not None:
            yield CounterMetricFamily("midstat_ipfix_records_sent", "IPFIX records sent to the collector",
                                      value=ipfix.get("sent", 0))
            yield CounterMetricFamily("midstat_ipfix_records_dropped",
                                      "IPFIX records dropped (queue full, or the collector refused them)",
                                      value=ipfix.get("dropped", 0))
