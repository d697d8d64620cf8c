"""Host names learned from the traffic (decode.names), kept per connection: the name a client used for a
connection, and the learner an engine hands the few packets that can carry one.

What reaches the learner: UDP packets from port 53 (the Python decoder's non-TCP results) and, per connection,
the client's first payload-carrying segment when it starts like a TLS ClientHello or an HTTP request (the compiled
packet loop collects those in `tracker.name_frames`; the Python path checks the connection's counters). Every
other packet never reaches this module.

A name belongs to a connection (NameMap.conn_names):
- its own ClientHello's server name or HTTP Host header (learned on the shard that tracks it), else
- the latest DNS answer this client got for the server's address at or before the connection's first packet, else
- the latest DNS answer for that address any client got by then (a capture point that sees a resolver's answers).
The client side is named by DNS answers alone (the latest for its address by the connection's first packet). So a
name learned later never renames an earlier connection, and which names a connection gets depends only on the
packets, not on the order the shards report them in: 1 and N cores give the same names. On N cores every shard
learns from every DNS answer of its capture (engine.placement.Share hands it those of shard 0's share, learned
but not reported), so the filter term `name` judges on each shard as one core does; shard 0 alone reports them.

Memory: three LRU maps of at most `bound` keys each (NAMES_BOUND by default): a connection's own names (PER_CONN
each, for a reused 4-tuple), a (client, address) pair's answers (PER_PAIR each), an address's answers (PER_ADDRESS
each); each keeps the latest by packet time, so what is kept does not depend on the order entries came in. Texts
are interned (a name or an address held once however many entries hold it). Measured (tracemalloc,
benchmarks/names_memory.py): 100 MB at most, every map full of distinct names; about 23 MB for 65,536 connections
of a typical mix.
"""

from __future__ import annotations

import bisect
import socket
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable

from midstat_tui.decode import names as parse

NAMES_BOUND = 32768
PER_ADDRESS = 4  # answers kept per address (any client), the latest by packet time
PER_PAIR = 2     # per (client, address) pair
PER_CONN = 2     # per connection 4-tuple (a reused tuple's earlier connection keeps its own name)

# what a learner reports and NameMap.merge takes:
#   (ts, client, address, name)                   a DNS answer to `client` naming `address`
#   (ts, client, cport, server, sport, name)      a connection's own ClientHello SNI or HTTP Host
Entry = tuple


def address_text(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


def _add(table: OrderedDict, key: str, item: tuple, bound: int, per_key: int) -> bool:
    """Put (ts, ...) `item` in `table[key]`, a tuple sorted by time holding the `per_key` latest; False if it was
    there already. The table keeps at most `bound` keys, the least recently learned first out."""
    kept = table.get(key)
    if kept is None:
        table[key] = (item,)
        if len(table) > bound:
            table.popitem(last=False)
        return True
    table.move_to_end(key)
    if item in kept:
        return False
    at = bisect.bisect(kept, item)
    kept = (*kept[:at], item, *kept[at:])
    table[key] = kept[-per_key:]
    return True


def _latest_by(kept: list | None, first: float) -> tuple | None:
    """The latest item learned at or before `first` (ties: the greatest, so the choice is the same in any order)."""
    if not kept:
        return None
    at = bisect.bisect_right(kept, (first, "\uffff", "\uffff"))
    return kept[at - 1] if at else None


class NameMap:
    """The names learned: per connection, per (client, address) pair and per address (see the module's text)."""

    def __init__(self, bound: int = NAMES_BOUND) -> None:
        self.bound = bound
        # keys as one text each ("client port server port", "client server"): a third of a tuple's memory
        self._conn: OrderedDict[str, tuple[tuple[float, str], ...]] = OrderedDict()
        self._pair: OrderedDict[str, tuple[tuple[float, str], ...]] = OrderedDict()
        self._addr: OrderedDict[str, tuple[tuple[float, str, str], ...]] = OrderedDict()
        # a server address's latest name from a connection's own SNI/Host (a group of connections to one server,
        # shown by name, where no DNS answer named it): one text an address, as bounded as the others
        self._server: OrderedDict[str, str] = OrderedDict()
        self._widest = 0
        self._entries = 0  # entries taken (not counting repeats): grows when something was learned

    def __len__(self) -> int:
        return self._entries

    def __bool__(self) -> bool:
        return bool(self._addr) or bool(self._conn)

    def learn_dns(self, ts: float, client: str, addr: str, name: str) -> None:
        """A DNS answer to `client` naming `addr` at packet time `ts`."""
        client, addr, name = sys.intern(client), sys.intern(addr), sys.intern(name)  # each text held once
        if _add(self._addr, addr, (ts, name, client), self.bound, PER_ADDRESS):
            _add(self._pair, f"{client} {addr}", (ts, name), self.bound, PER_PAIR)
            self._took(name)

    def learn_conn(self, ts: float, client: str, cport: int, server: str, sport: int, name: str) -> None:
        """A connection's own ClientHello server name or HTTP Host header, seen at `ts`."""
        client, server, name = sys.intern(client), sys.intern(server), sys.intern(name)
        if _add(self._conn, f"{client} {cport} {server} {sport}", (ts, name), self.bound, PER_CONN):
            self._took(name)
            self._server[server] = name
            self._server.move_to_end(server)
            if len(self._server) > self.bound:
                self._server.popitem(last=False)

    def learn(self, addr: str, name: str) -> None:
        """`addr` is `name` for every connection, whenever it started (a name given rather than learned)."""
        self.learn_dns(-float("inf"), "", addr, name)

    def _took(self, name: str) -> None:
        self._entries += 1
        if len(name) > self._widest:
            self._widest = len(name)

    def merge(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            if len(entry) == 4:
                self.learn_dns(*entry)
            else:
                self.learn_conn(*entry)

    def items(self) -> list[Entry]:
        """Every entry kept, as `merge` takes them."""
        out: list[Entry] = [(ts, client, addr, name) for addr, kept in self._addr.items() for ts, name, client in kept]
        for key, kept in self._conn.items():
            c, cp, s, sp = key.split(" ")
            out += [(ts, c, int(cp), s, int(sp), name) for ts, name in kept]
        return out

    def get(self, addr: str) -> str | None:
        """The latest name any DNS answer gave `addr` (whichever connection): None if none did."""
        kept = self._addr.get(addr)
        return kept[-1][1] if kept else None

    def host_name(self, addr: str) -> str | None:
        """A name for `addr` itself, whichever connection (a group of connections by address): the latest DNS
        answer's, else the latest a connection to it used (SNI, Host); None if none."""
        return self.get(addr) or self._server.get(addr)

    def server_name(self, client: str, cport: int, server: str, sport: int, first: float) -> str | None:
        """The name the client used for the connection whose first packet was at `first`."""
        own = self._conn.get(f"{client} {cport} {server} {sport}")
        if own:
            for ts, name in own:  # the first learned since this connection began (an earlier one's are older)
                if ts >= first:
                    return name
        found = _latest_by(self._pair.get(f"{client} {server}"), first)
        if found is not None:
            return found[1]
        found = _latest_by(self._addr.get(server), first)
        return None if found is None else found[1]

    def client_name(self, client: str, first: float) -> str | None:
        found = _latest_by(self._addr.get(client), first)
        return None if found is None else found[1]

    def conn_names(self, client: str, cport: int, server: str, sport: int, first: float) -> tuple:
        """(client name, server name) of a connection, None where none is known."""
        return self.client_name(client, first), self.server_name(client, cport, server, sport, first)

    def row_names(self, row) -> tuple:
        """conn_names of a connection row (engine.records.ConnRow)."""
        client, server = address_text(row.c_addr), address_text(row.s_addr)
        return self.conn_names(client, row.c_port, server, row.s_port, row.first)

    def names(self) -> set[str]:
        return {name for kept in self._addr.values() for _, name, _ in kept} | \
            {name for kept in self._conn.values() for _, name in kept}

    def widest(self) -> int:
        """The length of the longest name learned (the table's address columns are made as wide as it needs)."""
        return self._widest


class NameLookup:
    """A stand-in for a NameMap that is made later (or replaced, after a seek): what a compiled filter holds."""

    def __init__(self, target: NameMap | None = None) -> None:
        self.target = target

    def get(self, addr: str) -> str | None:
        target = self.target
        return None if target is None else target.get(addr)

    def row_names(self, row) -> tuple:
        target = self.target
        return (None, None) if target is None else target.row_names(row)

    def conn_names(self, client: str, cport: int, server: str, sport: int, first: float) -> tuple:
        target = self.target
        return (None, None) if target is None else target.conn_names(client, cport, server, sport, first)

    def __bool__(self) -> bool:
        return bool(self.target)


class NameLearner:
    """One engine's learning: parses the candidate packets, keeps what it learns in `known`, and tells `on_learn`
    the entries (NameMap.merge's) as it learns them. Never raises on packet bytes: a malformed message is counted."""

    def __init__(self, dlt: int, bound: int = NAMES_BOUND) -> None:
        self.dlt = dlt
        self.known = NameMap(bound)
        self.on_learn: Callable[[float, list[Entry]], None] | None = None
        self.dns = 0          # names learned from DNS answers
        self.sni = 0          # from TLS ClientHellos
        self.http = 0         # from HTTP Host headers
        self.malformed = 0    # candidate packets that did not parse (skipped)

    def stats(self) -> dict:
        return {"dns": self.dns, "sni": self.sni, "http": self.http, "malformed": self.malformed,
                "known": len(self.known)}

    def udp(self, ts: float, frame: bytes, report: bool = True) -> None:
        """A non-TCP frame: learn from it if it is a DNS answer (UDP from port 53). `report`: tell `on_learn` (a
        shard learning from another shard's DNS answer keeps it to itself: that shard reports it)."""
        found = parse.udp_dns_payload(self.dlt, frame)
        if found is None:
            return
        self.dns_message(ts, found[0], found[2], report)

    def dns_message(self, ts: float, msg: bytes, client: bytes, report: bool = True) -> None:
        """A DNS message sent to `client`: its answers name addresses for it."""
        try:
            answers = parse.dns_answers(msg)
        except parse.Malformed:
            self.malformed += 1
            return
        if not answers:
            return
        self.dns += len(answers)
        who = address_text(client)
        entries = [(ts, who, address_text(addr), name) for addr, name in answers]
        known = self.known
        for entry in entries:
            known.learn_dns(*entry)
        if report and self.on_learn is not None:
            self.on_learn(ts, entries)

    def tcp(self, ts: float, frame: bytes) -> None:
        """A client's first payload-carrying segment: its server's name, from the SNI or the Host header."""
        found = parse.tcp_segment(self.dlt, frame)
        if found is not None:
            self.payload(ts, *found)

    def payload(self, ts: float, client: bytes, cport: int, server: bytes, sport: int, payload: bytes) -> None:
        """A client's first data: a ClientHello's server name or an HTTP request's Host names the connection."""
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
        entry = (ts, address_text(client), cport, address_text(server), sport, name)
        self.known.learn_conn(*entry)
        if self.on_learn is not None:
            self.on_learn(ts, [entry])

    def take_frames(self, frames: list) -> None:
        """What the compiled loop collected: (ts, frame, payload offset, server address, client address, client
        port, server port) each."""
        payload = self.payload
        for ts, frame, at, server, client, cport, sport in frames:
            payload(ts, client, cport, server, sport, frame[at:])
        frames.clear()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["on_learn"] = None  # a checkpoint keeps what was learned, not whom to tell
        return state
