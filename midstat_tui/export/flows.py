"""Which IPFIX records go out when: one shard's connections as flow records.

A connection's record goes out when it ends (flowEndReason from how it ended), and a long one's every
`active_timeout` seconds before that (flowEndReason 2, active timeout), as softflowd and nProbe do. Each record
carries the counters since the connection's previous record (octetDeltaCount's meaning), so a collector that adds
a connection's records up has its totals. Packets that still reach an ended connection while it lingers in the
table go out in one more record when it leaves the table. At the end of a capture file (or of a live run), every
connection still open goes out with flowEndReason 4 (forced end). Times are packet times: a file run exports
with the capture's timestamps.

With the compiled core, a record's bytes are written in C straight from the connection (_core.ipfix_record; the
tracker's hooks _core.ipfix_on_end / ipfix_on_remove queue them without a Python frame; _core.ipfix_sweep and
ipfix_final loop over the table for the active-timeout sweep and the end of a capture): the tracking makes no Python
object per record but the bytes. The Python path below (FlowRecord, ipfix.encode_record) is the pure-Python
engine's and the reference the unit tests hold the C encoder to.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from functools import partial

from midstat_tui.export import ipfix
from midstat_tui.export.sender import Sender
from midstat_tui.tcp import zeek
from midstat_tui.tcp.connection import Connection, _core
from midstat_tui.tcp.states import NAMES

# the TCP flags each Zeek history letter stands for (upper case: the client's packets; lower case: the server's)
_LETTER_FLAGS = {"s": ipfix.SYN, "h": ipfix.SYN | ipfix.ACK, "a": ipfix.ACK, "d": ipfix.ACK, "f": ipfix.FIN,
                 "r": ipfix.RST, "i": ipfix.FIN | ipfix.RST, "q": ipfix.SYN}


_FLAGS_SEEN: dict[str, tuple[int, int]] = {}  # histories repeat: each one's flags worked out once


def history_flags(history: str) -> tuple[int, int]:
    """(client's, server's) TCP flags as far as the history letters tell them (SYN, ACK, FIN, RST; not PSH/URG)."""
    known = _FLAGS_SEEN.get(history)
    if known is not None:
        return known
    client = server = 0
    for letter in history:
        bits = _LETTER_FLAGS.get(letter.lower())
        if bits:
            if letter.isupper():
                client |= bits
            else:
                server |= bits
    if len(_FLAGS_SEEN) < 65536:
        _FLAGS_SEEN[history] = (client, server)
    return client, server


_Counts = tuple[int, int, int, int, int, int, int, int]


class FlowExporter:
    """Hooks on one tracker: `on_end`, `on_remove`, `tick` (each second of its clock) and `finish`."""

    def __init__(self, sender: Sender, active_timeout: float = 60.0, shard: int = 0) -> None:
        self.sender = sender
        self.active_timeout = active_timeout
        self.shard = shard
        # per connection already exported once: (its id) -> (counters then, that record's end, when it went out)
        self._done: dict[int, tuple[_Counts, float, float]] = {}
        self._final: set[int] = set()  # ended connections whose end record went out
        self._next_sweep = -float("inf")
        self._sweep_every = max(1.0, active_timeout / 6.0)
        self.chained_remove: Callable[[Connection], None] | None = None
        self.compiled = False  # (attach: whether the tracker's connections are the compiled core's)

    def compiled_for(self, tracker) -> bool:
        """The C encoder takes the tracker's connections if they are the compiled core's."""
        return bool(getattr(tracker, "compiled", False)) and _core is not None

    def attach(self, tracker) -> None:
        self.compiled = self.compiled_for(tracker)
        self.chained_remove = tracker.on_remove
        if self.compiled:  # the hooks in C (_core.ipfix_on_end / ipfix_on_remove): no Python frame per connection
            sender = self.sender
            state = (self._done, self._final, ipfix.END_REASONS, sender.queue, sender.limit, sender,
                     self._export_python, self._export_python, self.chained_remove)
            tracker.on_end = partial(_core.ipfix_on_end, state)
            tracker.on_remove = partial(_core.ipfix_on_remove, state)
            return
        tracker.on_end = self.on_end
        tracker.on_remove = self.on_remove

    # -- hooks ---------------------------------------------------------------------------------------------------
    def on_end(self, conn: Connection) -> None:
        end = conn.end_ts if conn.end_ts is not None else conn.last
        self._export(conn, ipfix.END_REASONS.get(conn.ended or "", ipfix.END_OF_FLOW), end, always=True)
        self._final.add(conn.id)

    def on_remove(self, conn: Connection) -> None:
        if self.chained_remove is not None:
            self.chained_remove(conn)
        conn_id = conn.id
        if conn_id in self._final:  # late packets after its end record: one more record, if any came
            self._final.discard(conn_id)
            self._export(conn, ipfix.END_REASONS.get(conn.ended or "", ipfix.END_OF_FLOW), conn.last, always=False)
        elif conn.ended is None:  # (a tracker removes only ended connections; kept safe all the same)
            self._export(conn, ipfix.FORCED_END, conn.last, always=True)
        self._done.pop(conn_id, None)

    def tick(self, now: float, connections: Iterable[Connection]) -> None:
        """Active-timeout records of the connections open longer than the timeout since their last record."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_every
        cutoff = now - self.active_timeout
        done = self._done
        if self.compiled:
            self._offer_all(_core.ipfix_sweep(connections, now, cutoff, ipfix.ACTIVE_TIMEOUT, done),
                            lambda conn: self._export_python(conn, ipfix.ACTIVE_TIMEOUT, now, always=False))
            return
        for conn in connections:
            if conn.ended is not None or conn.first > cutoff:
                continue
            previous = done.get(conn.id)
            if previous is None or previous[2] <= cutoff:
                self._export(conn, ipfix.ACTIVE_TIMEOUT, now, always=False)

    def finish(self, connections: Iterable[Connection], now: float) -> None:
        """The end of the capture: every connection still open goes out (forced end); ended ones with packets not
        yet exported too."""
        if self.compiled:
            self._offer_all(_core.ipfix_final(connections, now, self._done, self._final, ipfix.END_REASONS),
                            lambda conn: self._finish_one(conn, now))
        else:
            for conn in connections:
                self._finish_one(conn, now)
        self._done.clear()
        self._final.clear()

    def _finish_one(self, conn: Connection, now: float) -> None:
        if conn.ended is None:
            self._export(conn, ipfix.FORCED_END, now, always=True)
        elif conn.id in self._final:
            self._export(conn, ipfix.END_REASONS.get(conn.ended, ipfix.END_OF_FLOW), conn.last, always=False)
        else:
            self._export(conn, ipfix.END_REASONS.get(conn.ended, ipfix.END_OF_FLOW), conn.last, always=True)

    def _offer_all(self, items: list, python: Callable[[Connection], None]) -> None:
        """The C loops' records, in order, to the sender at once; a connection among them (a value the C encoder
        leaves to Python) goes through `python` in its place."""
        start = 0
        for index, item in enumerate(items):
            if type(item) is not tuple:
                self.sender.offer_many(items[start:index])
                python(item)
                start = index + 1
        self.sender.offer_many(items[start:] if start else items)

    # -- one record ------------------------------------------------------------------------------------------
    def _export(self, conn: Connection, reason: int, now: float, always: bool) -> None:
        if self.compiled:
            item = _core.ipfix_record(conn, reason, now, always, self._done)
            if item is None:
                return
            if item is not NotImplemented:
                self.sender.offer(*item)
                return
        self._export_python(conn, reason, now, always)

    def _export_python(self, conn: Connection, reason: int, now: float, always: bool) -> None:
        """The reference: a FlowRecord, encoded by export.ipfix (the C encoder's state entries read back too)."""
        c, s = conn.c, conn.s
        counts = (c.packets, s.packets, c.ip_bytes, s.ip_bytes, c.payload, s.payload, c.retrans_bytes,
                  s.retrans_bytes)
        done = self._done
        conn_id = conn.id
        previous = done.get(conn_id)
        if previous is None:
            before: _Counts = _ZERO
            start = conn.first
        else:
            if isinstance(previous, bytes):  # the C encoder's entry
                previous = _from_c_entry(previous)
            before, start, _ = previous
            if counts == before and not always:
                return  # nothing new since its last record
        last = conn.last
        end = last if last >= start else start
        done[conn_id] = (counts, end, now)
        c_flags, s_flags = history_flags(conn.history)
        flags = ((ipfix.MIDSTREAM if conn.midstream else 0) | (ipfix.SUSPICIOUS_RST if conn.suspicious_rst else 0)
                 | (ipfix.ODD_RST if conn.odd_rst else 0) | (ipfix.FLIPPED if conn.flipped else 0))
        rtt_c, rtt_s = conn.rtt_client, conn.rtt_server
        vlan = conn.vlan
        record = _record((
            conn.c_addr, conn.c_port, conn.s_addr, conn.s_port, vlan[0] if vlan else 0,
            int(start * 1000.0 + 0.5), int(end * 1000.0 + 0.5),
            counts[2] - before[2], counts[3] - before[3], counts[0] - before[0], counts[1] - before[1],
            c_flags, s_flags, reason, NAMES[c.state], NAMES[s.state], zeek.conn_state(conn),
            conn.history, _NO_RTT if rtt_c is None else int(rtt_c * 1e6 + 0.5),
            _NO_RTT if rtt_s is None else int(rtt_s * 1e6 + 0.5), counts[6] - before[6],
            counts[7] - before[7], counts[4] - before[4], counts[5] - before[5], flags, conn.shard))
        self.sender.offer(now, len(record.c_addr) == 4, ipfix.encode_record(record))


_ZERO: _Counts = (0, 0, 0, 0, 0, 0, 0, 0)
_NO_RTT = 0xFFFFFFFF
_record = partial(tuple.__new__, ipfix.FlowRecord)  # every field given, in order (no argument parsing per record)
_C_ENTRY = struct.Struct("=8Qdd")  # _core.ipfix_record's state entry: the counters, that record's end, sent at


def _from_c_entry(entry: bytes) -> tuple[_Counts, float, float]:
    *counts, end, sent = _C_ENTRY.unpack(entry)
    return tuple(counts), end, sent  # type: ignore[return-value]
