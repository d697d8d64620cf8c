"""Build TCP conversations segment by segment for the tracker tests, with sequence numbers kept right."""

from __future__ import annotations

import ipaddress

from midstat_tui.decode.segment import ACK, FIN, PSH, RST, SYN, IcmpError, Segment
from midstat_tui.tcp.connection import Connection
from midstat_tui.tcp.tracker import Tracker, TrackerConfig

FLAG_LETTERS = {"S": SYN, "A": ACK, "F": FIN, "R": RST, "P": PSH}


def flags_of(text: str) -> int:
    value = 0
    for letter in text:
        value |= FLAG_LETTERS[letter]
    return value


class Flow:
    """One conversation between a client and a server, fed to a real Tracker.

    `c("S")` sends from the client, `s("SA")` from the server; sequence and ACK numbers follow what each side
    has sent unless given. Every call returns the (client, server) states of the current connection.
    """

    def __init__(self, tracker: Tracker | None = None, client: tuple[str, int] = ("10.0.0.1", 40000),
                 server: tuple[str, int] = ("10.0.0.2", 80), isn: tuple[int, int] = (1000, 5000),
                 vlan: tuple[int, ...] = (), config: TrackerConfig | None = None) -> None:
        self.events: list[tuple] = []
        self.tracker = tracker or Tracker(config, on_event=self._event)
        if tracker is not None and tracker.on_event is None:
            tracker.on_event = self._event
        self.addr = [ipaddress.ip_address(client[0]).packed, ipaddress.ip_address(server[0]).packed]
        self.port = [client[1], server[1]]
        self.nxt = [isn[0], isn[1]]   # next sequence number each side will send
        self.isn = list(isn)
        self.vlan = vlan
        self.ts = 1000.0
        self.last: Connection | None = None

    def _event(self, kind, conn, change, states):
        self.events.append((kind, conn.id, change, states))

    def send(self, side: int, flags: str, length: int = 0, seq: int | None = None, ack: int | None = None,
             win: int = 65535, dt: float = 0.01, csum_ok: bool | None = True, ttl: int = 64,
             mac: bytes = b"") -> tuple[str, str]:
        self.ts += dt
        bits = flags_of(flags)
        peer = 1 - side
        if seq is None:
            seq = self.nxt[side]
        if ack is None:
            ack = self.nxt[peer] if bits & ACK else 0
        seg = Segment(self.ts, self.vlan, self.addr[side], self.addr[peer], self.port[side], self.port[peer],
                      seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, bits, win, length, 40 + length, ttl, csum_ok, mac=mac)
        end = seq + length + (1 if bits & SYN else 0) + (1 if bits & FIN else 0)
        if not bits & RST and (end - self.nxt[side]) & 0xFFFFFFFF < 0x80000000:
            self.nxt[side] = end & 0xFFFFFFFF
        conn = self.tracker.segment(seg)
        if conn is not None:
            self.last = conn
        return self.states

    def c(self, flags: str, length: int = 0, **kw) -> tuple[str, str]:
        return self.send(0, flags, length, **kw)

    def s(self, flags: str, length: int = 0, **kw) -> tuple[str, str]:
        return self.send(1, flags, length, **kw)

    def icmp_about(self, side: int, seq: int | None = None, dt: float = 0.01) -> tuple[str, str]:
        """An ICMP unreachable quoting a segment `side` sent (by default its SYN)."""
        self.ts += dt
        self.tracker.icmp(IcmpError(self.ts, self.vlan, self.addr[side], self.addr[1 - side], self.port[side],
                                    self.port[1 - side], self.isn[side] if seq is None else seq))
        return self.states

    def handshake(self) -> tuple[str, str]:
        self.c("S")
        self.s("SA")
        return self.c("A")

    def advance(self, seconds: float) -> None:
        self.ts += seconds
        self.tracker.advance(self.ts)

    @property
    def conn(self) -> Connection:
        assert self.last is not None
        return self.last

    @property
    def states(self) -> tuple[str, str]:
        return (self.conn.client_state, self.conn.server_state) if self.last is not None else ("-", "-")
