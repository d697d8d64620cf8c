"""Host names learned from the traffic (decode.names): a bounded map of addresses to names, and the learner an
engine hands the few packets that can carry one.

What reaches the learner: UDP packets from port 53 (the Python decoder's non-TCP results) and, per connection,
the client's first payload-carrying segment when it starts like a TLS ClientHello or an HTTP request (the compiled
packet loop collects those in `tracker.name_frames`; the Python path checks the connection's counters). Every
other packet never reaches this module.

The map is an LRU of at most `bound` addresses (NAMES_BOUND by default: about 200 bytes an entry, some 13 MB at
the bound); the last name learned for an address wins. On several cores each shard learns from what it sees and
reports each name as it learns it (`on_learn`); core 0 keeps the map the faces read (NameMap, keyed by address
text), so a DNS answer seen on one shard names a connection tracked on another.
"""

from __future__ import annotations

import socket
from collections import OrderedDict
from collections.abc import Callable, Iterable

from midstat_tui.decode import names as parse

NAMES_BOUND = 65536


def address_text(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


class NameMap:
    """Address text -> host name, least recently learned first out past `bound` entries."""

    def __init__(self, bound: int = NAMES_BOUND) -> None:
        self.bound = bound
        self._map: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._map)

    def __bool__(self) -> bool:
        return bool(self._map)

    def get(self, addr: str) -> str | None:
        return self._map.get(addr)

    def learn(self, addr: str, name: str) -> None:
        known = self._map
        if addr in known:
            known.move_to_end(addr)
        known[addr] = name
        if len(known) > self.bound:
            known.popitem(last=False)

    def merge(self, pairs: Iterable[tuple[str, str]]) -> None:
        for addr, name in pairs:
            self.learn(addr, name)

    def items(self) -> list[tuple[str, str]]:
        return list(self._map.items())

    def names(self) -> set[str]:
        return set(self._map.values())

    def widest(self) -> int:
        """The length of the longest name known (the table's address columns are made as wide as it needs)."""
        return max(map(len, self._map.values()), default=0)


class NameLookup:
    """A stand-in for a NameMap that is made later (or replaced, after a seek): what a compiled filter holds."""

    def __init__(self, target: NameMap | None = None) -> None:
        self.target = target

    def get(self, addr: str) -> str | None:
        target = self.target
        return None if target is None else target.get(addr)

    def __bool__(self) -> bool:
        return bool(self.target)


class NameLearner:
    """One engine's learning: parses the candidate packets, keeps what it learns in `known`, and tells `on_learn`
    (address text, name) pairs as it learns them. Never raises on packet bytes: a malformed message is counted."""

    def __init__(self, dlt: int, bound: int = NAMES_BOUND) -> None:
        self.dlt = dlt
        self.known = NameMap(bound)
        self.on_learn: Callable[[float, list[tuple[str, str]]], None] | None = None
        self.dns = 0          # names learned from DNS answers
        self.sni = 0          # from TLS ClientHellos
        self.http = 0         # from HTTP Host headers
        self.malformed = 0    # candidate packets that did not parse (skipped)

    def stats(self) -> dict:
        return {"dns": self.dns, "sni": self.sni, "http": self.http, "malformed": self.malformed,
                "known": len(self.known)}

    def _tell(self, ts: float, pairs: list[tuple[str, str]]) -> None:
        for addr, name in pairs:
            self.known.learn(addr, name)
        if self.on_learn is not None:
            self.on_learn(ts, pairs)

    def udp(self, ts: float, frame: bytes) -> None:
        """A non-TCP frame: learn from it if it is a DNS answer (UDP from port 53)."""
        found = parse.udp_dns_payload(self.dlt, frame)
        if found is None:
            return
        try:
            answers = parse.dns_answers(found[0])
        except parse.Malformed:
            self.malformed += 1
            return
        if answers:
            self.dns += len(answers)
            self._tell(ts, [(address_text(addr), name) for addr, name in answers])

    def tcp(self, ts: float, frame: bytes) -> None:
        """A client's first payload-carrying segment: its server's name, from the SNI or the Host header."""
        found = parse.tcp_payload(self.dlt, frame)
        if found is not None:
            self.payload(ts, found[1], found[0])

    def payload(self, ts: float, payload: bytes, server: bytes) -> None:
        """A client's first data: a ClientHello's server name or an HTTP request's Host names `server`."""
        tls = payload[:1] == b"\x16"
        try:
            name = parse.tls_sni(payload) if tls else parse.http_host(payload)
        except parse.Malformed:
            self.malformed += 1
            return
        if name is None:
            return
        if tls:
            self.sni += 1
        else:
            self.http += 1
        addr = address_text(server)
        self.known.learn(addr, name)
        if self.on_learn is not None:
            self.on_learn(ts, [(addr, name)])

    def take_frames(self, frames: list) -> None:
        """What the compiled loop collected: (ts, frame, payload offset, server address) each."""
        for ts, frame, at, server in frames:
            self.payload(ts, frame[at:], server)
        frames.clear()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["on_learn"] = None  # a checkpoint keeps what was learned, not whom to tell
        return state
