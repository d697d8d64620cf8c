"""Where IPFIX messages go: a collector over UDP or TCP, from a thread of its own behind a bounded queue.

The tracking never waits for the collector: `offer` puts an encoded record in the queue or, when the queue is full (the
collector is down or slower than the traffic), drops it and counts it. The thread packs records into messages
(export.ipfix), numbers them (one sequence stream per observation domain and transport session) and sends them;
on UDP the templates lead the first message and are sent again every `template_refresh` seconds (RFC 7011
section 8.4; RFC 6728's default templateRefreshTimeout is 600 s); on TCP they are sent once per connection, which
is re-made (once a second at most) when the collector goes away. Records of a message the socket refused are
dropped and counted too.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

from midstat_tui.errors import MidstatError
from midstat_tui.export import ipfix
from midstat_tui.tcp.connection import _core

DEFAULT_PORT = 4739  # IANA: ipfix
QUEUE_RECORDS = 65536
TCP_MESSAGE = 65000
POLL = 0.05   # seconds the thread sleeps when the queue is empty, at most
BATCH = 512   # records taken from the queue at once


@dataclass(frozen=True)
class Collector:
    host: str
    port: int
    tcp: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'tcp://' if self.tcp else ''}{host}:{self.port}"


def parse_collector(text: str, option: str = "--ipfix") -> Collector:
    """HOST:PORT (UDP), udp://HOST:PORT or tcp://HOST:PORT; [v6]:PORT for an IPv6 address."""
    rest = text
    tcp = False
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        if scheme not in ("udp", "tcp"):
            raise MidstatError(f"{option} {text!r}: the scheme is udp:// or tcp://")
        tcp = scheme == "tcp"
    host, sep, port_text = rest.rpartition(":")
    if not sep or not host:
        raise MidstatError(f"{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:{DEFAULT_PORT}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise MidstatError(f"{option} {text!r}: the port is a number from 1 to 65535")
    return Collector(host, int(port_text), tcp)


def resolve(collector: Collector, option: str = "--ipfix") -> tuple:
    """(family, address): the collector's address, resolved once, now (a bad name is said at once)."""
    try:
        infos = socket.getaddrinfo(collector.host, collector.port,
                                   type=socket.SOCK_STREAM if collector.tcp else socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise MidstatError(f"{option} {collector}: cannot resolve {collector.host!r} ({exc})") from None
    family, _, _, _, address = infos[0]
    return family, address


def check_source(source: str, family: int) -> None:
    """--ipfix-source: an address of this host, of the collector's family (said at once, not as dropped records)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((source, 0))
    except (OSError, UnicodeError) as exc:
        raise MidstatError(f"--ipfix-source {source}: cannot send from there "
                           f"({getattr(exc, 'strerror', None) or exc})") from None


class Sender:
    """One exporting process's transport: a queue, a thread, a socket."""

    def __init__(self, collector: Collector, domain: int, *, source: str | None = None,
                 queue_size: int = QUEUE_RECORDS, template_refresh: float = 600.0) -> None:
        self.collector = collector
        self.domain = domain
        self.source = source
        self.template_refresh = template_refresh
        self.family, self.address = resolve(collector)
        self.sent = 0           # records the socket took
        self.dropped = 0        # records lost: queue full, or a message the socket refused
        self.messages = 0
        self.error: str | None = None  # the last send error, said in the status
        # the queue: appended to by the tracking, emptied by the thread (deque operations are atomic); the
        # thread looks every POLL seconds, or at once when a batch is waiting
        # (export time, is IPv4, the data record's bytes: ipfix.encode_record or _core.ipfix_record)
        self.queue: deque[tuple[float, bool, bytes]] = deque()
        self.limit = queue_size
        self._wake = threading.Event()
        self._closing_asked = False
        self._sequence = 0
        self._sock: socket.socket | None = None
        self._templates_at = -float("inf")
        self._templates = ipfix.template_set()
        self._thread = threading.Thread(target=self._run, name="midstat-ipfix", daemon=True)
        self._thread.start()

    # -- the tracking side -------------------------------------------------------------------------------------
    def offer(self, export_time: float, v4: bool, record: bytes) -> None:
        """One data record (its bytes, in the rfc5103 template's order), sent at `export_time` (seconds)."""
        items = self.queue
        size = len(items)
        if size >= self.limit:
            self.dropped += 1
            return
        items.append((export_time, v4, record))
        if size == BATCH:  # a batch is waiting: wake the thread now (else it looks every POLL seconds anyway;
            self._wake.set()  # waking it for each record would hand the interpreter lock over for each)

    def offer_many(self, items: list[tuple[float, bool, bytes]]) -> None:
        """Records as `offer` takes them, (export time, is IPv4, bytes), at once (as many as the queue has room for;
        the rest dropped and counted)."""
        queue = self.queue
        room = self.limit - len(queue)
        if len(items) > room:
            room = max(room, 0)
            self.dropped += len(items) - room
            items = items[:room]
        queue.extend(items)
        if len(queue) >= BATCH:
            self._wake.set()

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting at most `timeout` seconds), then close."""
        self._closing_asked = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():  # the collector never took them: what is left counts as dropped
            self._closing = True
            self._thread.join(2.0)
        left = len(self.queue)
        self.queue.clear()
        self.dropped += left

    def stats(self) -> dict:
        return {"sent": self.sent, "dropped": self.dropped, "queued": len(self.queue)}

    # -- the thread ------------------------------------------------------------------------------------------
    _closing = False  # give up: what is still queued is dropped

    def _run(self) -> None:
        items = self.queue
        while True:
            closing = self._closing_asked
            if not items:
                if closing:
                    break
                self._wake.wait(POLL)
                self._wake.clear()
                continue
            if self._closing:
                break
            pending = []
            while items and len(pending) < BATCH:
                pending.append(items.popleft())
            self._send(pending)
        if self._sock is not None:
            self._sock.close()

    def _connect(self) -> bool:
        if self._sock is not None:
            return True
        sock = socket.socket(self.family, socket.SOCK_STREAM if self.collector.tcp else socket.SOCK_DGRAM)
        try:
            if self.source:
                sock.bind((self.source, 0))
            if self.collector.tcp:
                sock.settimeout(5.0)
                sock.connect(self.address)
                self._templates_at = -float("inf")  # a new transport session: templates first
        except OSError as exc:
            sock.close()
            self.error = f"{exc.strerror or exc}"
            return False
        self._sock = sock
        return True

    def _send(self, pending: list[tuple[float, bool, bytes]]) -> None:
        if self._closing or not self._connect():
            self.dropped += len(pending)
            if not self._closing:
                time.sleep(1.0)  # a collector that refuses: try again in a second, dropping meanwhile
            return
        now = time.monotonic()
        templates = None
        if now - self._templates_at >= self.template_refresh and not (self.collector.tcp and self.messages):
            templates = self._templates
            self._templates_at = now
        limit = TCP_MESSAGE if self.collector.tcp else ipfix.MAX_MESSAGE
        if _core is not None:  # the same messages, packed in C
            batch = _core.ipfix_messages(pending, self._sequence, self.domain, templates, limit)
        else:
            batch = ipfix.messages([(v4, record) for _, v4, record in pending], int(max(t for t, _, _ in pending)),
                                   self._sequence, self.domain, templates, limit)
        for index, (message, count) in enumerate(batch):
            try:
                if self.collector.tcp:
                    self._sock.sendall(message)  # type: ignore[union-attr]
                else:
                    self._sock.sendto(message, self.address)  # type: ignore[union-attr]
            except OSError as exc:
                self.error = f"{exc.strerror or exc}"
                if self.collector.tcp:  # the session is over: this message and the rest are lost; a new one next
                    self._sock.close()  # type: ignore[union-attr]
                    self._sock = None
                    self.messages = 0
                    self._sequence = 0
                    self.dropped += sum(c for _, c in batch[index:])
                    return
                self.dropped += count  # (its records still count in the sequence: the collector sees the gap)
                self._sequence = (self._sequence + count) & 0xFFFFFFFF
                continue
            self.messages += 1
            self.sent += count
            self._sequence = (self._sequence + count) & 0xFFFFFFFF
