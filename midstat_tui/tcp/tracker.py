"""The flow table of one shard: finds or creates the connection of each segment, drives its state machines,
runs the timers on the time it is given, bounds the table, and reports start / state / end events.

No I/O, no clock, no UI: feed it segments (`segment`) and time (`advance`), read `table` and `stats`.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice

from midstat_tui.decode.segment import ACK, FIN, RST, SYN, IcmpError, Segment
from midstat_tui.tcp import seam, zeek
from midstat_tui.tcp.connection import COMPILED, Connection, PyConnection, _core
from midstat_tui.tcp.machine import apply_icmp_unreachable, apply_segment
from midstat_tui.tcp.seam import POOL_SLACK, TIDY_POOL, TIDY_TIMERS, TIMER_SLACK, CoreState
from midstat_tui.tcp.states import (
    CLOSED,
    DEFAULT_IDLE_TIMEOUTS,
    ESTABLISHED,
    NAMES,
    SYN_SENT,
    TIME_WAIT,
)

END_REASONS = ("closed", "reset", "time_wait_expired", "idle_timeout", "port_reuse", "evicted", "bad_flags")
__all__ = ["POOL_SLACK", "TIMER_SLACK", "Tracker", "TrackerConfig", "TrackerStats"]
EVICTION_SAMPLE = 64  # when only established connections are left: how many of the oldest are looked at
# A repeat of the ended connection's own SYN (same ISN) this soon after a RST or ICMP error ended it was in
# flight while the abort travelled the other way: it is counted on the ended connection, not a new attempt.
CROSSING_WINDOW = 0.05

# An event handler gets (kind, connection, transition, states). kind: "start", "state" or "end"; for "state",
# `transition` is the recorded tuple and `states` the (client, server) states right after it, else both None.
EventSink = Callable[[str, Connection, tuple | None, tuple[int, int] | None], None]


@dataclass
class TrackerConfig:
    time_wait: float = 60.0                 # how long a TIME_WAIT side is held (Linux: 60 s)
    linger: float = 60.0                    # how long an ended connection stays visible on its tuple
    max_conns: int = 1_000_000              # table bound (live and lingering connections)
    idle_timeouts: dict[int, float] = field(default_factory=lambda: dict(DEFAULT_IDLE_TIMEOUTS))


@dataclass
class TrackerStats:
    segments: int = 0          # TCP segments handed to the tracker
    bad_checksum: int = 0
    icmp_errors: int = 0
    started: int = 0
    ended: int = 0
    evicted: int = 0
    midstream: int = 0
    suspicious_rst: int = 0
    bad_flags: int = 0         # segments with a flag combination no stack sends (SYN+FIN, no ACK/SYN/RST, ...)
    odd_rst: int = 0           # RSTs with a TTL or MAC unlike the sender's other packets (possible injection)
    untracked_bad_checksum: int = 0  # bad-checksum packets of unknown tuples (not tracked)
    time_backwards: int = 0    # packets dated before one seen earlier (dated at that time instead)
    offloaded_checksum: int = 0  # bad-checksum packets sent by the capturing host itself (offload): tracked
    bad_checksum_from: dict[bytes, int] = field(default_factory=dict)  # bad checksums by source (the first 64)
    end_reasons: dict[str, int] = field(default_factory=dict)


_PORT = tuple(port.to_bytes(2, "big") for port in range(65536))  # a port's two bytes, made once


def bogus_flags(flags: int) -> bool:
    """A flag combination no TCP stack sends, which Linux drops and conntrack marks INVALID: SYN with FIN or RST,
    FIN with RST, or none of SYN, RST and ACK (NULL, FIN and Xmas scans). Such a segment changes no state."""
    if flags & SYN and flags & (FIN | RST):
        return True
    if flags & FIN and flags & RST:
        return True
    return not flags & (SYN | RST | ACK)


def _last_seen(conn: Connection) -> float:
    return conn.last


def _guess_client_is_sender(seg: Segment) -> bool:
    """Role guess for a connection picked up mid-stream (two-sided-tcp.md, 'Connections first seen mid-stream')."""
    flags = seg.flags
    if flags & SYN and flags & ACK:
        return False  # the receiver of a SYN/ACK is the client
    sport, dport = seg.sport, seg.dport
    if (sport < 1024) != (dport < 1024):
        return dport < 1024  # the side on a well-known port is the server
    s_eph, d_eph = sport >= 32768, dport >= 32768
    if s_eph != d_eph:
        return s_eph  # an ephemeral port facing a non-ephemeral one is the client
    return True  # otherwise the first sender is the client


def _apply_python(conn: Connection, seg: Segment, from_client: bool) -> list[tuple]:
    """Both endpoint machines, conn.last and the Zeek view, in Python (the compiled core's `apply` in C)."""
    sender = conn.c if from_client else conn.s
    retrans_before = sender.retrans
    gaps_before = (conn.c.gaps, conn.s.gaps)
    suspicious_before = conn.suspicious_rst
    changes = apply_segment(conn, seg, from_client)
    conn.last = seg.ts
    zeek.note_segment(conn, seg, from_client,
                      retransmitted=sender.retrans > retrans_before and seg.payload > 0,
                      gaps=(conn.c.gaps > gaps_before[0], conn.s.gaps > gaps_before[1]),
                      rst_obeyed=conn.suspicious_rst == suspicious_before)
    return changes


class Tracker:
    def __init__(self, config: TrackerConfig | None = None, shard: int = 0, shard_count: int = 1,
                 on_event: EventSink | None = None, compiled: bool | None = None) -> None:
        """`compiled`: run the compiled core (the default when it is built) or the pure-Python engine (False)."""
        self.compiled = COMPILED if compiled is None else compiled and _core is not None
        self._connection = _core.Connection if self.compiled else PyConnection
        self._apply = _core.apply if self.compiled else _apply_python
        # the rules the compiled loop shares (tcp/seam.py): the core's versions on the compiled engine's Python path
        rules = _core if self.compiled else seam
        self._live_deadline = rules.live_deadline
        self._schedule = rules.schedule
        self._admit = rules.admit
        self._tidy_due = rules.tidy_due
        self.config = config or TrackerConfig()
        self.shard = shard
        self.shard_count = shard_count
        # all the compiled packet loop sees of this tracker (tcp/seam.py, docs/compiled-core.md)
        self.core = CoreState(self.config.max_conns, shard, shard_count, self.config.time_wait,
                              self.config.idle_timeouts, self.evict_one)
        self.on_event = on_event  # (a property: the compiled loop reads `core.events`)
        self.on_remove: Callable[[Connection], None] | None = None  # a connection left the table for good
        self.on_end: Callable[[Connection], None] | None = None  # a connection ended (export.flows: its record)
        # the capturing host's own addresses when their checksums are left to the NIC (ChecksumPolicy): a segment
        # they sent with a checksum that does not verify is tracked (and counted as offloaded), not dropped
        self.offload_sources: frozenset[bytes] = frozenset()
        # the eviction order's first two classes, oldest first: ended connections still lingering, then live ones
        # whose handshake is not complete on both sides (SYN floods and scans live here; conntrack's non-assured).
        # The ended ones: an OrderedDict (a plain dict emptied from the front makes finding its first entry ever
        # slower). The handshake pool: the keys of its connections in the order they started, `conn.pooled` saying
        # whether a connection still belongs there, so that leaving it is clearing a flag (8 bytes an entry, not an
        # ordered dictionary's hundred: under a SYN flood every entry of a full table is one). Stale keys are
        # skipped when they come up and dropped when the pool is rebuilt.
        # (The handshake pool is `core.handshakes`.)
        self._ended: OrderedDict[bytes, Connection] = OrderedDict()
        self.stats = TrackerStats()
        self.now = 0.0
        # The latest packet time seen (`latest`, kept in `core`): a packet dated before it (a clock stepped back,
        # captures merged out of order) is counted (`time_backwards`) and dated at it instead: no duration, RTT or
        # deadline runs backwards. Not `now`, which a live capture moves on the wall clock, ahead of the packets'.
        # The timers (`core.timers`), (deadline, key): an entry names its connection rather than holding it, so
        # the entries a flood's evictions leave behind keep no connection alive. An entry whose time is not its
        # connection's deadline is stale and skipped; one that names a newer connection on the same key is
        # harmless (the deadline is computed afresh before anything ends).
        # change tracking for the faces that keep their own copy of the table (the TUI): off unless asked for
        # (`touched`, kept in `core`; `removed`: the ids of the connections that left the table)
        self.removed: list[int] | None = None

    # the structures the compiled loop shares live in `core`; these are their names on the tracker
    @property
    def table(self) -> dict[bytes, Connection]:
        return self.core.table

    @table.setter
    def table(self, value: dict[bytes, Connection]) -> None:
        self.core.table = value

    @property
    def touched(self) -> set[Connection] | None:
        return self.core.touched

    @touched.setter
    def touched(self, value: set[Connection] | None) -> None:
        self.core.touched = value

    @property
    def latest(self) -> float:
        return self.core.latest

    @latest.setter
    def latest(self, value: float) -> None:
        self.core.latest = value

    @property
    def on_event(self) -> EventSink | None:
        return self._on_event

    @on_event.setter
    def on_event(self, value: EventSink | None) -> None:
        self._on_event = value
        self.core.events = value is not None

    def track_changes(self) -> None:
        """From now on, record which connections changed (`touched`) and which left the table (`removed`)."""
        self.touched = set(self.table.values())
        self.removed = []

    # -- keys and lookup ------------------------------------------------------------------------------------
    @staticmethod
    def key_of(vlan: tuple[int, ...], src: bytes, sport: int, dst: bytes, dport: int) -> bytes:
        """The same for both directions: the lower endpoint (address, then port) first, then the VLAN ids. One
        bytes object (its hash is kept): a third of the memory of nested tuples, a million times over."""
        a = src + _PORT[sport]
        b = dst + _PORT[dport]
        key = a + b if a <= b else b + a
        if vlan:
            key += b"".join(_PORT[v] for v in vlan) + bytes((len(vlan),))
        return key

    @property
    def active(self) -> int:
        """Connections started and not ended (live ones, not those lingering after their end)."""
        return self.stats.started - self.stats.ended

    def state_pairs(self) -> dict[str, int]:
        """The open connections (not ended) by "CLIENT_STATE/SERVER_STATE": the metrics' gauge."""
        if self.compiled:  # the same count in C (once a second over the whole table: --metrics' cost)
            counted = _core.state_pairs(self.table.values())
            if counted is not None:
                return counted
        pairs: dict[tuple[int, int], int] = {}
        for conn in self.table.values():
            if conn.ended is None:
                pair = (conn.c.state, conn.s.state)
                pairs[pair] = pairs.get(pair, 0) + 1
        return {f"{NAMES[c]}/{NAMES[s]}": n for (c, s), n in pairs.items()}

    # -- the per-packet path ------------------------------------------------------------------------------------
    def segment(self, seg: Segment) -> Connection | None:
        core = self.core
        ts = seg.ts
        if ts < core.latest:
            self.stats.time_backwards += 1
            seg.ts = ts = core.latest
        else:
            core.latest = ts
        if ts > self.now:
            self.advance(ts)
        stats = self.stats
        stats.segments += 1
        key = self.key_of(seg.vlan, seg.src, seg.sport, seg.dst, seg.dport)
        conn = core.table.get(key)
        flags = seg.flags
        bogus = bogus_flags(flags)
        pure_syn = (flags & (SYN | ACK | RST)) == SYN and not bogus
        if seg.csum_ok is False:
            if seg.src in self.offload_sources:
                stats.offloaded_checksum += 1  # the capturing host's own packet: its NIC fills the checksum in
            else:
                return self._bad_checksum(seg, conn)
        if conn is not None:
            from_client = seg.sport == conn.c_port and seg.src == conn.c_addr
            if conn.ended is not None:
                crossing = (pure_syn and from_client and seg.seq == conn.c.isn and conn.end_ts is not None
                            and ts - conn.end_ts < CROSSING_WINDOW)
                if pure_syn and not crossing:
                    self._remove(conn)
                    conn = None
                else:
                    # late packets of an ended connection are counted on it and change nothing
                    return self._count_only(conn, seg, from_client, bogus)
            elif pure_syn and self._is_reuse(conn, seg, from_client):
                self._end(conn, "port_reuse", ts)
                self._remove(conn)
                conn = None
        if conn is None:
            conn = self._new(seg, key, pure_syn, bogus)
            from_client = seg.sport == conn.c_port and seg.src == conn.c_addr
        if bogus:
            self._count_only(conn, seg, from_client, bogus)
            if conn.c.packets + conn.s.packets == 1:
                self._end(conn, "bad_flags", ts)  # nothing but a probe no stack would send: shown, then gone
            return conn
        states_before = (conn.c.state, conn.s.state)
        suspicious_before = conn.suspicious_rst
        odd_before = conn.odd_rst
        changes = self._apply(conn, seg, from_client)
        if changes:
            self.changed(conn, changes, states_before, ts)
        if conn.deadline == math.inf:  # a new connection that its first packet did not move
            conn.deadline = self._deadline(conn)
            heapq.heappush(core.timers, (conn.deadline, key))
        if conn.suspicious_rst > suspicious_before:
            stats.suspicious_rst += 1
        if conn.odd_rst > odd_before:
            stats.odd_rst += 1
        if core.touched is not None:
            core.touched.add(conn)
        return conn

    def changed(self, conn: Connection, changes: list[tuple], states_before: tuple[int, int], ts: float) -> None:
        """A packet moved a state (here or in the compiled core's packet loop): events, end, timers."""
        if self.on_event is not None:
            self._emit_changes(conn, changes, states_before)
        self._after_change(conn, ts)

    def icmp(self, err: IcmpError) -> None:
        """An ICMP unreachable quoting a TCP segment: aborts a handshake it is about."""
        if err.ts < self.latest:
            self.stats.time_backwards += 1
            err.ts = self.latest
        else:
            self.latest = err.ts
        if err.ts > self.now:
            self.advance(err.ts)
        self.stats.icmp_errors += 1
        conn = self.table.get(self.key_of(err.vlan, err.src, err.sport, err.dst, err.dport))
        if conn is None or conn.ended is not None:
            return
        from_client = err.sport == conn.c_port and err.src == conn.c_addr
        states_before = (conn.c.state, conn.s.state)
        changes = apply_icmp_unreachable(conn, from_client, err.seq, err.ts)
        if changes:
            conn.last = err.ts
            if self.touched is not None:
                self.touched.add(conn)
            if self.on_event is not None:
                self._emit_changes(conn, changes, states_before)
            self._after_change(conn, err.ts)

    def _emit_changes(self, conn: Connection, changes: list[tuple], states: tuple[int, int]) -> None:
        """One `state` event per transition, each with the two states as they were right after it."""
        states_now = list(states)
        for change in changes:
            states_now[change[1]] = change[3]
            self.on_event("state", conn, change, (states_now[0], states_now[1]))

    def _is_reuse(self, conn: Connection, seg: Segment, from_client: bool) -> bool:
        """Does a pure SYN on a live tuple start a new incarnation? (two-sided-tcp.md, 'Port reuse')"""
        side = conn.c if from_client else conn.s
        if seg.seq == side.isn:
            return False  # a retransmission of the SYN we know
        if conn.c.state == TIME_WAIT or conn.s.state == TIME_WAIT:
            return True
        # a side that never sent a SYN has no ISN to differ from: its SYN is a simultaneous open
        return side.isn is not None and side.state in (CLOSED, SYN_SENT)

    def _bad_checksum(self, seg: Segment, conn: Connection | None) -> Connection | None:
        """A damaged segment: counted (by source, and on its connection if known), never tracked."""
        stats = self.stats
        stats.bad_checksum += 1
        by_source = stats.bad_checksum_from
        if seg.src in by_source or len(by_source) < 64:
            by_source[seg.src] = by_source.get(seg.src, 0) + 1
        if conn is None:
            stats.untracked_bad_checksum += 1
            return None
        conn.bad_checksum += 1
        zeek.note_bad_checksum(conn, seg.src == conn.c_addr and seg.sport == conn.c_port)
        if self.touched is not None:
            self.touched.add(conn)
        return conn

    def _count_only(self, conn: Connection, seg: Segment, from_client: bool, bogus: bool) -> Connection:
        """A packet counted on its connection that changes no state: late ones after the end, invalid flags."""
        side = conn.c if from_client else conn.s
        side.packets += 1
        side.ip_bytes += seg.ip_len
        side.payload += seg.payload
        side.last_ts = seg.ts
        if seg.payload and not bogus:
            side.last_data_ts = seg.ts  # a side that still sends after the end (the problems lens's half_open)
        conn.last = seg.ts
        if bogus:
            conn.bad_flags += 1
            self.stats.bad_flags += 1
        zeek.note_segment(conn, seg, from_client, retransmitted=False, gaps=(False, False), rst_obeyed=True)
        if self.touched is not None:
            self.touched.add(conn)
        return conn

    def _new(self, seg: Segment, key: bytes, pure_syn: bool, bogus: bool = False) -> Connection:
        stats = self.stats
        core = self.core
        if len(core.table) >= core.max_conns:
            self.evict_one(seg.ts)
        core.next_id += 1
        conn_id = core.next_id * self.shard_count + self.shard
        if pure_syn or bogus:
            client_is_sender = True
        else:
            client_is_sender = _guess_client_is_sender(seg)
        if client_is_sender:
            conn = self._connection(conn_id, self.shard, key, seg.vlan, seg.src, seg.sport, seg.dst, seg.dport, seg.ts)
        else:
            conn = self._connection(conn_id, self.shard, key, seg.vlan, seg.dst, seg.dport, seg.src, seg.sport, seg.ts)
            conn.flipped = bool(seg.flags & SYN)  # Zeek flips on a SYN/ACK seen first
        if not pure_syn and not bogus:
            conn.midstream = True
            stats.midstream += 1
            flags = seg.flags
            if flags & SYN and flags & ACK:
                # the SYN/ACK implies the client's SYN: the client is SYN_SENT, the server answers now
                conn.c.state = SYN_SENT
                conn.c.isn = (seg.ack - 1) & 0xFFFFFFFF
                conn.c.snd_nxt = seg.ack
            else:
                conn.c.state = ESTABLISHED
                conn.s.state = ESTABLISHED
        if conn.flipped:
            conn.history = "^"
        # into the table and the handshake pool, no timer entry yet: its first packet decides its deadline
        # (`segment` schedules it once applied)
        self._admit(core, conn)
        stats.started += 1
        due = self._tidy_due(core)
        if due & TIDY_POOL:
            core.handshakes = deque(k for k in core.handshakes if self._pooled(k))
        if due & TIDY_TIMERS:
            self._compact_timers()
        if self.on_event is not None:
            self.on_event("start", conn, None, None)
        return conn

    def _compact_timers(self) -> None:
        """Drop the timer entries of connections that left the table or moved their deadline: under a flood,
        evictions leave one behind per new connection, long before its time comes."""
        # the entries that are their connection's own are kept as they are (no new tuples: under a flood this runs
        # at a million connections, and a fresh list of fresh entries would double the heap's memory for a moment)
        core = self.core
        table = core.table
        core.timers = [entry for entry in core.timers
                       if (conn := table.get(entry[1])) is not None and conn.deadline == entry[0]]
        heapq.heapify(core.timers)

    # -- ends, timers, eviction ---------------------------------------------------------------------------
    def _after_change(self, conn: Connection, ts: float) -> None:
        if conn.ended is not None:
            return  # its timer is the end's (`_end` set it)
        if self._schedule(self.core, conn):  # both sides CLOSED: the timer is the end's
            self._end(conn, "reset" if conn.rst_by else "closed", ts)

    def _deadline(self, conn: Connection) -> float:
        if conn.ended is not None:
            return (conn.end_ts or conn.last) + self.config.linger
        return self._live_deadline(self.core, conn)

    def next_timer(self) -> float:
        """When the earliest timer entry is due (it may be a stale one: then nothing happens then), or inf."""
        timers = self.core.timers
        return timers[0][0] if timers else math.inf

    def advance(self, now: float) -> None:
        """Run every timer due at or before `now` (packet time for files, the clock when live)."""
        if now > self.now:
            self.now = now
        timers = self.core.timers
        table = self.core.table
        while timers and timers[0][0] <= now:
            when, key = heapq.heappop(timers)
            conn = table.get(key)
            if conn is None or when != conn.deadline:
                continue  # stale entry: the connection left the table or moved its deadline
            if conn.ended is not None:
                self._remove(conn)
                continue
            deadline = self._deadline(conn)
            if deadline > now:
                conn.deadline = deadline
                heapq.heappush(timers, (deadline, key))
                continue
            tw = conn.c.state == TIME_WAIT or conn.s.state == TIME_WAIT
            idle_side = any(side.state not in (TIME_WAIT, CLOSED) for side in (conn.c, conn.s))
            self._end(conn, "idle_timeout" if idle_side or not tw else "time_wait_expired", deadline)

    def _end(self, conn: Connection, reason: str, ts: float) -> None:
        if conn.ended is not None:
            return
        conn.ended = reason
        conn.end_ts = ts
        conn.pooled = False
        self._ended[conn.key] = conn
        stats = self.stats
        stats.ended += 1
        stats.end_reasons[reason] = stats.end_reasons.get(reason, 0) + 1
        if reason == "evicted":
            stats.evicted += 1
        if self.touched is not None:
            self.touched.add(conn)
        if self.on_event is not None:
            self.on_event("end", conn, None, None)
        if self.on_end is not None:
            self.on_end(conn)
        conn.deadline = self._deadline(conn)
        heapq.heappush(self.core.timers, (conn.deadline, conn.key))

    def _remove(self, conn: Connection) -> None:
        key = conn.key
        if self._ended.get(key) is conn:
            del self._ended[key]
        conn.pooled = False
        if self.table.get(key) is conn:
            del self.table[key]
            if self.on_remove is not None:
                self.on_remove(conn)
            if self.touched is not None:
                self.touched.discard(conn)
                self.removed.append(conn.id)  # type: ignore[union-attr]
        conn.deadline = -1.0  # invalidates its timer entries

    def _pooled(self, key: bytes) -> bool:
        """Is the connection on this key one of the handshake pool's?"""
        conn = self.table.get(key)
        return conn is not None and conn.pooled

    def evict_one(self, ts: float) -> None:
        """Make room: the oldest ended connection, else the oldest incomplete handshake, else the longest idle
        among the oldest entries. An established connection goes only when nothing else is left. (The compiled
        loop calls it as `core.make_room` when the table is full.)"""
        best = None
        if self._ended:
            best = next(iter(self._ended.values()))
        else:
            handshakes = self.core.handshakes
            while handshakes and not self._pooled(handshakes[0]):
                handshakes.popleft()
            if handshakes:
                best = self.table[handshakes.popleft()]
            else:
                best = min(islice(self.table.values(), EVICTION_SAMPLE), key=_last_seen, default=None)
        if best is None:
            return
        if best.ended is None:
            self._end(best, "evicted", ts)
        self._remove(best)
