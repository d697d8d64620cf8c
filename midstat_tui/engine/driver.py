"""One driver: the loop that feeds an engine its packets and closes each second of its clock.

Every way midstat runs goes through it: a capture file headless (packet time, as fast as it can), a file in the TUI
(packet time, paced by engine.session, which also pauses, steps and seeks), live capture headless and in the TUI (the
wall clock), on one shard or as one shard among several. The driver owns the engine's clock:

- `start(ts)` sets it going at the first packet (or at a file's first packet, for a shard whose share starts later);
- `close_until(ts)` closes every second before the packet at `ts`: the tracker's timers run to that second, the
  export (IPFIX, metrics) hears of it, and `emit(position, reset)` is called; quiet stretches (no packet and no timer)
  are crossed in one step up to the next timer or to `ts`, so a day-long gap costs a few steps, not 86,400;
- `close_at(position)` closes one moment off the second grid: a file's end, a step's target, a seek's landing, a live
  tick (the clock's `now`);
- `run_packets` is a whole file on packet time, `run_wall` a live source on the clock.

Headless (`every_second=False`) only seconds in which something changed are emitted (the `--json` snapshots); the
TUI's sessions (`every_second=True`) emit each closed second (its header clock, rates and sparklines move on).

What an emit makes is a `Tick`: the moment, the counters, the row changes since the previous tick (or, after a seek,
every row: `reset`), the rates; a headless snapshot carries the table's connections instead of row changes.
`RowChanges` turns the tracker's touched/removed sets into row changes (a reused port's earlier incarnation kept for
its linger time); `Rates` turns two ticks' counters into rates. No UI import here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from midstat_tui.engine.collector import building
from midstat_tui.engine.records import ConnRow, connection_dict, departed_row, row_of
from midstat_tui.tcp.connection import Connection

if TYPE_CHECKING:
    from midstat_tui.engine.pipeline import Engine

RATE_SPAN = 0.5  # seconds of packet time a rate is measured over, at least
NOT_STARTED = -math.inf  # a shard's Tick position before its clock has started (a file's share not reached yet)

Packet = tuple[float, bytes]
Emit = Callable[[float, bool], None]


@dataclass
class Tick:
    """One closed second (or moment) of an engine's clock, as every face takes it."""

    position: float                                                   # packet time (files) or clock (live)
    stats: dict
    changes: dict[int, ConnRow | None] = field(default_factory=dict)  # id -> new row, None: left the table
    reset: bool = False                                               # after a seek: these rows are all of them
    rates: dict = field(default_factory=dict)
    names: object = None              # the host names learned (engine.names: the NameMap, or a shard's new pairs)
    connections: list | None = None   # headless: the table at this moment (a shard's: its records, as sent)
    warning: str | None = None                                        # a damaged file, a lost capture
    at_end: bool = False              # a file's shard has read its last packet
    first: float | None = None        # the first packet time the clock started from (None: not yet)
    seek: int = 0                     # a file's shard: which of core 0's seeks its table is of (shard_sessions)

    @property
    def ts(self) -> float:
        return self.position

    def to_json(self, connections: list[Connection] | None = None) -> dict:
        chosen = (self.connections or []) if connections is None else connections
        return {"ts": self.position, "stats": self.stats, "connections": [connection_dict(c) for c in chosen]}


class Driver:
    """One engine's clock: which second closes next, and what closing one does (see the module's doc)."""

    def __init__(self, engine: Engine, emit: Emit | None = None, *, every_second: bool = False) -> None:
        self.engine = engine          # a session replaces it when a seek restores a checkpoint
        self.emit = emit
        self.every_second = every_second
        self.next_tick: float | None = None
        # a shard among several (headless): called instead at a second whose only change is a connection that left
        # the table (`Engine.left_table`), so core 0 merges the next snapshot with this shard's table as it is then
        self.on_quiet_change: Callable[[float], None] | None = None

    def start(self, ts: float) -> None:
        """The clock starts at `ts`: its first second closes at the next whole second."""
        self.next_tick = math.floor(ts) + 1.0

    def started(self) -> bool:
        return self.next_tick is not None

    def _close(self, position: float, reset: bool = False) -> None:
        engine = self.engine
        if engine.on_tick is not None:
            engine.on_tick(position)
        if self.emit is not None and (self.every_second or reset or engine.changed()):
            self.emit(position, reset)
        elif self.on_quiet_change is not None and engine.left_table():
            self.on_quiet_change(position)
        else:
            engine.mark_clean()

    def close_until(self, ts: float, skip_quiet: bool = True) -> float:
        """Close every second up to `ts` (the time of the packet about to be fed, or the clock). Between seconds
        only timers can change anything, so quiet seconds are crossed in one step up to the next timer or `ts`
        (unless `skip_quiet` is off: a paced replay's clock shows each second it passes). Returns the next second
        to close."""
        next_tick = self.next_tick
        if next_tick is None:
            self.start(ts)
            return self.next_tick  # type: ignore[return-value]
        tracker = self.engine.tracker
        while next_tick <= ts:
            tracker.advance(next_tick)
            self._close(next_tick)
            next_tick += 1.0
            if skip_quiet:
                jump = math.floor(min(ts, tracker.next_timer()))
                if jump > next_tick:
                    next_tick = float(jump)
        self.next_tick = next_tick
        return next_tick

    def skip_until(self, ts: float) -> bool:
        """Cross every second up to `ts` closing none (a seek reading on to its target): the timers run, nothing
        is emitted or exported. True if a second was crossed."""
        if self.next_tick is None:
            self.start(ts)
            return False
        if ts < self.next_tick:
            return False
        whole = math.floor(ts)
        self.engine.tracker.advance(whole)
        self.next_tick = whole + 1.0
        return True

    def close_at(self, position: float, *, reset: bool = False, advance: bool = True) -> None:
        """Close the moment `position` (off the second grid): timers to there (unless `advance` is off: the end of a
        file, where nothing is due), the export, the emit; the next second is the one after it."""
        if advance:
            self.engine.tracker.advance(position)
        self._close(position, reset)
        self.next_tick = math.floor(position) + 1.0

    def finish(self, end: float) -> None:
        """The run is over: the timers run to `end` (all shards end together, at the latest shard's end), nothing
        is emitted (the last report is the caller's)."""
        self.engine.tracker.advance(end)

    # -- whole runs ----------------------------------------------------------------------------------------------
    def run_packets(self, batches: Iterable[list[Packet]], until: float | None = None,
                    until_offset: float | None = None, halt=None,
                    file_end: Callable[[], float | None] | None = None) -> Tick:
        """A capture on packet time, as fast as it can be read. Returns the last moment's snapshot (at `until` if
        given; `until_offset`: that many seconds after the first packet). `halt` (anything with is_set()): once set,
        reading stops at the next batch and the capture counts as ending there. `file_end()`, for one shard's share
        of a file: the file's last packet time; the seconds up to it are closed as one engine reading the whole
        file would (the shard's last packets counted in them: core 0 merges each second from every shard's
        latest), and the snapshot is at that time."""
        engine = self.engine
        tracker = engine.tracker
        feed = engine.feed
        feed_run = engine.feed_run
        stop_at = until
        stop_limit = math.inf  # the first packet time past stop_at
        next_tick = self.next_tick
        for batch in batches:
            if halt is not None and halt.is_set():
                break
            index = 0
            size = len(batch)
            while index < size:
                ts, frame = batch[index]
                if next_tick is None:
                    next_tick = self.close_until(ts)
                    if until_offset is not None:
                        stop_at = ts + until_offset
                if stop_at is not None:
                    if ts > stop_at:
                        tracker.advance(stop_at)
                        return engine.snapshot(stop_at)
                    stop_limit = math.nextafter(stop_at, math.inf)
                if ts >= next_tick:
                    next_tick = self.close_until(ts)
                limit = next_tick if next_tick < stop_limit else stop_limit
                if not engine.left_slow and engine.first_ts is not None:
                    # the compiled loop first (a batch's first packet, the first after a tick); Python feeds
                    # the packet it leaves (one of a kind only Python handles)
                    moved = feed_run(batch, index, limit)
                    if moved != index:
                        index = moved
                        continue
                feed(ts, frame)
                index = feed_run(batch, index + 1, limit)
        end = engine.last_ts if engine.last_ts is not None else 0.0
        if stop_at is not None:
            end = stop_at
            tracker.advance(stop_at)
        elif file_end is not None and self.next_tick is not None:
            later = file_end()
            if later is not None and later > end:
                self.close_until(later)
                end = later
        return engine.snapshot(end)

    def run_wall(self, batches: Iterable[list[Packet]], clock: Callable[[], float] = time.time, stop=None,
                 after_batch: Callable[[list[Packet], float], None] | None = None, guard=None) -> None:
        """A live source on the clock: each batch fed as it comes; once a second of the clock has passed, the moment
        `now` is closed. `stop` (is_set()) ends the reading before the next batch; `after_batch(batch, now)` runs
        after each; `guard`: a lock held while a batch is fed and its tick closed (a face reads meanwhile)."""
        self.start(clock())
        guard = guard if guard is not None else contextlib.nullcontext()
        for batch in batches:
            if stop is not None and stop.is_set():
                break
            with guard:
                self.engine.feed_batch(batch)
                now = clock()
                if now >= self.next_tick:  # type: ignore[operator]
                    self.close_at(now)
                if after_batch is not None:
                    after_batch(batch, now)

    def tick_wall(self, now: float) -> bool:
        """A live loop that feeds by itself: close `now` if a second of the clock has passed; whether it did."""
        if self.next_tick is None:
            self.start(now)
            return False
        if now < self.next_tick:
            return False
        self.close_at(now)
        return True


class RowChanges:
    """The row changes a face is told at each tick, from the tracker's touched/removed sets; the connections by id
    (for a flow's details) and the earlier incarnations of reused ports, kept for their linger time."""

    def __init__(self) -> None:
        self.by_id: dict[int, Connection] = {}
        self.departed: dict[int, ConnRow] = {}

    def take(self, engine: Engine, position: float, reset: bool = False) -> dict[int, ConnRow | None]:
        """The changes since the last take (after a seek, `reset`: every row there is at `position`)."""
        tracker = engine.tracker
        changes: dict[int, ConnRow | None] = {}
        if reset:
            self.by_id = {conn.id: conn for conn in tracker.table.values()}
            with building(len(tracker.table)):
                for conn in tracker.table.values():
                    changes[conn.id] = row_of(conn)
            changes.update(self.departed_at(position))
        else:
            touched = tracker.touched or ()
            by_id = self.by_id
            with building(len(touched)):  # a flood's hundreds of thousands of rows at once (engine.collector)
                for conn in touched:
                    by_id[conn.id] = conn
                    changes[conn.id] = row_of(conn)
            changes.update(self.removed(tracker))
        self.done(tracker, position)
        return changes

    def departed_at(self, position: float) -> dict[int, ConnRow]:
        """After a seek: the earlier incarnations, replaced on their tuple, still in their linger time there."""
        return {conn_id: row for conn_id, row in self.departed.items()
                if conn_id not in self.by_id and row.first <= position and row.end_ts <= position}

    def removed(self, tracker) -> dict[int, ConnRow | None]:
        """The connections that left the table since the last take: gone (None), or, for a port reuse's earlier
        incarnation, its last row, which stays on the face until its linger time is over (after a seek too:
        `departed` keeps it)."""
        out: dict[int, ConnRow | None] = {}
        for conn_id in tracker.removed or ():
            row = out[conn_id] = departed_row(self.by_id.pop(conn_id, None), tracker.now, tracker.config.linger)
            if row is not None:
                self.departed[conn_id] = row
        return out

    def done(self, tracker, position: float) -> None:
        """A take's end: the incarnations past their linger time let go, the tracker's sets started afresh."""
        linger = tracker.config.linger
        for conn_id in [i for i, row in self.departed.items() if row.end_ts + linger <= position]:
            del self.departed[conn_id]
        tracker.touched = set()
        tracker.removed = []


class Rates:
    """Rates between two ticks' counters (packets, bits, new and ended connections per second of the clock), over
    at least RATE_SPAN seconds; none at the start or after a seek back (a rate counts afresh from there). The load:
    the shards' (core 0 knows them), or this thread's share of a core over the same span."""

    def __init__(self) -> None:
        self.rates: dict = {}
        self._prev: tuple[float, dict, float, float] | None = None

    def forget(self) -> None:
        self._prev, self.rates = None, {}

    def update(self, position: float, stats: dict, loads: list[float] | None = None) -> bool:
        """Take a tick's counters; True when new rates were made (else `rates` stays the last ones, or none)."""
        cpu = time.thread_time()
        wall = time.monotonic()
        prev = self._prev
        if prev is None or position < prev[0]:
            self._prev = (position, stats, cpu, wall)
            self.rates = {}
            return False
        span = position - prev[0]
        if span < RATE_SPAN:  # the last bit of a file: a small count over a short span is no rate
            return False
        self._prev = (position, stats, cpu, wall)
        p_stats = prev[1]
        if loads is None:
            loads = [min(1.0, (cpu - prev[2]) / max(wall - prev[3], 1e-6))]
        self.rates = {
            "pps": (stats["packets"] - p_stats["packets"]) / span,
            "bps": 8 * (stats["bytes"] - p_stats["bytes"]) / span,
            "new_per_s": (stats["started"] - p_stats["started"]) / span,
            "ended_per_s": (stats["ended"] - p_stats["ended"]) / span,
            "load": loads,
        }
        return True
