"""Core 0's merger (issue #11): the shards' message streams (engine.shard_protocol) turned into merged Ticks, for
every face that runs on several cores.

`ShardMerger` holds what is common: the workers (ShardProcesses), each shard's latest Tick, the shards lost (a
worker that died, was killed or failed: said once, with the same line for every face, while the others go on), and
the kill watch. Two ways to consume the streams:

- `headless(job, sink)`: the shards' streams heap-merged in packet-time order; a snapshot per second (each shard's
  latest Tick of that second merged, `merge_ticks`), events held until no shard can send an earlier one, then the
  end: the common end time (END) for every shard's last timers, the last reports and the --summary rows merged as
  they come (headless.Sink);
- `arrivals(stop)`: the messages as they come from any shard (the TUI's sessions, engine.shard_sessions, which
  merge the latest Ticks into the Ticks they hand the face).
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import wait
from typing import TYPE_CHECKING

from midstat_tui.engine.driver import Tick
from midstat_tui.engine.hints import stats_hints
from midstat_tui.engine.shard_protocol import (
    CLOCK,
    DEAD,
    END,
    EOF,
    ERROR,
    EVENT,
    FINAL,
    FRAMES,
    LAST,
    NAMES,
    QUIET,
    ROWS,
    ROWS_END,
    TICK,
    ShardProcesses,
)
from midstat_tui.errors import MidstatError

if TYPE_CHECKING:
    from midstat_tui.engine.headless import Job, Sink


def add_stats(parts: list[dict]) -> dict:
    """Counters of several shards added up (nested dicts too); live, each handle's own capture counters are kept
    too, under `capture_shards`."""
    total = _sum_stats(parts)
    if any("capture" in part for part in parts):
        total["capture_shards"] = [part["capture"] for part in parts if "capture" in part]
    if any("shards" in part for part in parts):  # each shard's load, side by side (metrics)
        total["shards"] = [load for part in parts for load in part.get("shards", ())]
    if parts:
        total["hints"] = stats_hints(total)  # from the sums, not one shard's
    return total


def merge_ticks(ticks: list[Tick], position: float) -> Tick:
    """Core 0's merge of the shards' Ticks of one moment (each shard's latest): counters added up, rows and
    connections side by side (a connection lives in one shard), the first warning, at the end once all are."""
    changes: dict = {}
    for tick in ticks:
        changes.update(tick.changes)
    with_conns = [tick.connections for tick in ticks if tick.connections is not None]
    warnings = [tick.warning for tick in ticks if tick.warning]
    return Tick(position, add_stats([tick.stats for tick in ticks]), changes,
                connections=[c for conns in with_conns for c in conns] if with_conns else None,
                warning=warnings[0] if warnings else None, at_end=bool(ticks) and all(t.at_end for t in ticks))


def _sum_stats(parts: list[dict]) -> dict:
    total: dict = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                total[key] = _sum_stats([total.get(key, {}), value])
            elif isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
            else:
                total.setdefault(key, value)
    return total


class ShardMerger:
    """Core 0 of a run on several shards: their streams in, merged Ticks (and, headless, the outputs' order) out.
    `on_lost(shard, line)` is told once of each shard lost, from whichever thread found it."""

    def __init__(self, workers: ShardProcesses, on_lost: Callable[[int, str], None]) -> None:
        self.workers = workers
        self.count = workers.count
        self.latest: list[Tick | None] = [None] * self.count  # each shard's latest Tick
        self.lost: dict[int, str] = {}  # shards whose worker died or failed: why
        self.over = threading.Event()   # the merge is over: nothing more is lost
        self._on_lost = on_lost
        self._losing = threading.Lock()

    # -- what every face shares ---------------------------------------------------------------------------------
    def watch(self) -> None:
        """A worker killed while core 0 waits on another one's pipe is lost at once, not when its turn comes."""
        self.workers.watch_for_kills(self.lose, self.over)

    def lose(self, shard: int, reason: str) -> None:
        with self._losing:
            if shard in self.lost or self.over.is_set():
                return
            self.lost[shard] = reason
        self._on_lost(shard, reason)

    def take(self, shard: int, tick: Tick) -> None:
        self.latest[shard] = tick

    def stats(self) -> dict:
        """The counters of the shards' latest Ticks, added up."""
        return add_stats([tick.stats for tick in self.latest if tick is not None])

    def merged(self, position: float) -> Tick:
        return merge_ticks([tick for tick in self.latest if tick is not None], position)

    def end(self) -> None:
        self.over.set()

    # -- as messages come (the TUI) -------------------------------------------------------------------------------
    def arrivals(self, stop, timeout: float = 0.2) -> Iterator[tuple[int, str, float, object]]:
        """(shard, kind, ts, payload) of each message as it comes from any shard, until every pipe has ended or
        `stop` is set; a pipe's end is one DEAD message (unless stopping)."""
        pipes = {pipe: shard for shard, pipe in enumerate(self.workers.pipes)}
        while pipes and not stop.is_set():
            for pipe in wait(list(pipes), timeout=timeout):
                shard = pipes[pipe]  # type: ignore[index]
                try:
                    kind, ts, payload = pipe.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    del pipes[pipe]  # type: ignore[arg-type]
                    if not stop.is_set():
                        yield shard, DEAD, float("-inf"), self.workers.died(shard)
                    continue
                yield shard, kind, ts, payload

    # -- in packet-time order (headless) -------------------------------------------------------------------------
    def stream(self, shard: int) -> Iterator[tuple]:
        """A worker's reports as heap items (ts, events first, shard, kind, payload), up to its next FINAL one. A
        worker that is gone (its pipe's end: killed, crashed) yields one DEAD item, ordered first so that core 0
        hears of it at once, and nothing more."""
        pipe = self.workers.pipes[shard]
        while True:
            try:
                kind, ts, payload = pipe.recv()
            except (EOFError, OSError):
                yield float("-inf"), 0, shard, DEAD, self.workers.died(shard)
                return
            yield ts, 0 if kind == EVENT else 1, shard, kind, payload
            if kind in FINAL:
                return

    def headless(self, job: Job, sink: Sink) -> None:
        """The headless outputs' merge. Each shard reports in its own packet-time order, so merging the shards'
        streams keeps packet-time order, and an event is given out as soon as no shard can still send an earlier
        one. The exception is a shard's end: it runs its last timers only once every shard is done and the common
        end time is known, so from the first shard's end on, later events are held until those last timers have
        run."""
        self.watch()
        try:
            self._headless(job, sink)
        finally:
            self.end()

    def _headless(self, job: Job, sink: Sink) -> None:
        count, lost, lose, live = self.count, self.lost, self.lose, job.interface is not None
        held: list[tuple[float, int, int, object]] = []  # a heap: (ts, shard, arrival, record)
        arrivals = 0
        first_end = float("inf")
        pending_tick: float | None = None
        ends: dict[int, float] = {}
        lasts: dict[int, tuple] = {}

        def flush_tick() -> None:
            merged = self.merged(pending_tick)  # type: ignore[arg-type]
            sink.snapshot(merged.position, merged.stats, merged.connections or [])

        for ts, _, shard, kind, payload in heapq.merge(*(self.stream(shard) for shard in range(count))):
            if kind in (ERROR, DEAD):
                lose(shard, payload)
                continue
            if pending_tick is not None and ts > pending_tick:
                flush_tick()
                pending_tick = None
            if kind == EVENT:
                if live:
                    sink.event(payload)  # every shard's clock keeps the merge moving, so order holds as it goes
                else:
                    heapq.heappush(held, (ts, shard, arrivals, payload))
                    arrivals += 1
            elif kind == TICK:
                self.take(shard, payload)
                pending_tick = ts
            elif kind == QUIET:  # no snapshot of its own: the next one takes this shard's table as it is now
                self.take(shard, payload)
            elif kind == NAMES:
                if live:
                    sink.names(ts, payload)
                else:  # held with the events, so each event line names what one core would have known by then
                    heapq.heappush(held, (ts, shard, arrivals, _Names(payload)))
                    arrivals += 1
            elif kind == EOF:
                ends[shard] = payload
                first_end = min(first_end, payload)
            elif kind == FRAMES:  # --write live: a shard's chosen connections' frames
                sink.frames(ts, payload[0], payload[1], shard)
            elif kind == CLOCK:  # live: every shard is past `ts` now
                sink.clock(ts)
            release = min(ts, first_end)
            while held and held[0][0] <= release:
                _release(sink, heapq.heappop(held)[3])
        if pending_tick is not None:
            flush_tick()
        # every shard has read its share: run all their timers to the same end, then take their last reports
        if len(lost) == count:
            raise MidstatError(lost[0])
        end = job.until if job.until is not None else max(ends.values(), default=0.0)
        for shard in range(count):
            if shard not in lost:
                self.workers.order(shard, END, end)
        for shard in range(count):
            if shard in lost:
                continue
            for _, _, _, kind, payload in self.stream(shard):
                if kind in (ERROR, DEAD):
                    lose(shard, payload)
                    break
                if kind == EVENT:
                    heapq.heappush(held, (payload["ts"], shard, arrivals, payload))
                    arrivals += 1
                elif kind == CLOCK:
                    continue
                elif kind == NAMES:
                    sink.names(0.0, payload)
                elif kind == LAST:
                    lasts[shard] = payload
                    break
        if not lasts:
            raise MidstatError(lost[min(lost)])
        while held:
            _release(sink, heapq.heappop(held)[3])
        parts = [lasts[i] for i in sorted(lasts)]
        ts = max(p[0] for p in parts)
        stats = add_stats([p[1] for p in parts])
        conns = [c for p in parts for c in p[2]]
        # each shard sends its --summary records in order (first packet, id): merged as they come, never all held
        streams_of_rows = [self.rows(shard) for shard in sorted(lasts)]
        everything: Iterable = heapq.merge(*streams_of_rows, key=_first_and_id)
        warnings = [p[3] for p in parts if p[3]]
        try:
            sink.last(ts, stats, conns, everything if getattr(sink, "streams_summary", False) else list(everything),
                      warnings[0] if warnings else None)
        finally:
            for rows in streams_of_rows:
                rows.close()

    def rows(self, shard: int) -> Iterator:
        """A shard's --summary records, chunk by chunk as it sends them after its last report."""
        pipe = self.workers.pipes[shard]
        while True:
            try:
                kind, _, payload = pipe.recv()
            except (EOFError, OSError):
                self.lose(shard, self.workers.died(shard, " while sending its connections"))
                return
            if kind == ROWS:
                yield from payload
            elif kind == ROWS_END:
                return
            elif kind == ERROR:
                self.lose(shard, payload)
                return


def _first_and_id(record: tuple) -> tuple[float, int]:
    return record[0], record[1]


class _Names(list):
    """Host names a shard learned (engine.names), held in the merge's order with the events."""


def _release(sink: Sink, item) -> None:
    if type(item) is _Names:
        sink.names(0.0, item)
    else:
        sink.event(item)
