"""A capture run in the background for an interactive face: the engine works in its own thread, the face pulls.

Files are replayed on packet time at a chosen speed (0: as fast as possible), and can be paused, stepped one second
at a time and sought to any packet time (time travel): every CHECKPOINT_EVERY seconds of packet time the engine's
whole state is kept (engine.checkpoints: in slices, and only while checkpoints cost at most a tenth of the replay's
time), so seeking back restarts from the nearest checkpoint instead of the file's start.
Live capture runs on the clock; pausing a live session only freezes what the face shows.

The face is told of each second the engine closes: `listen(post)` gives it the engine's Ticks as they are made (the
changed rows since the last one, or after a seek all of them, the counters, the rates, where the replay is), `post`
called from the engine's thread (the TUI posts it as a message to its loop). One Tick is out at a time: until the face
says `delivered()`, what the engine makes meanwhile is kept and comes in the next one. A second in which PART_ROWS
connections or more have changed (a flood's) is handed over in parts, as of its last packet, before it closes.
`pull()` takes what is pending at once (tests, and faces that read on a timer). No UI import here.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from midstat_tui.capture.files import FileSource
from midstat_tui.capture.span import capture_span
from midstat_tui.engine.checkpoints import CheckpointBudget, Frozen, freeze, thaw
from midstat_tui.engine.driver import RATE_SPAN as DRIVER_RATE_SPAN
from midstat_tui.engine.driver import Driver, Rates, RowChanges, Tick
from midstat_tui.engine.flow_packets import FlowRef, FlowWatch, Tap, ring_on, seeded_watch
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.placement import share_names
from midstat_tui.engine.records import ConnRow, counters, row_of, transition_dict
from midstat_tui.engine.rowcols import merged, row_changes

CHECKPOINT_EVERY = 30.0   # seconds of packet time between kept engine states
MAX_CHECKPOINTS = 64
RATE_SPAN = DRIVER_RATE_SPAN  # seconds of packet time a rate is measured over, at least (engine.driver)
SPARK_POINTS = 300        # seconds of history kept for the sparklines
PART_ROWS = 100_000       # changed rows within a second from which they go to the face before the second closes

Packet = tuple[float, bytes]


# what the face pulls: the driver's Tick (the changed rows since its last pull, the counters, the rates)
Pulled = Tick


def merged_ticks(held: Tick | None, tick: Tick) -> Tick:
    """Two Ticks as one (a face that keeps what comes while it cannot show it): the later one's moment, counters
    and rates, the row changes of both (the later change of a connection wins; a reset replaces all before it)."""
    if held is None or tick.reset:
        return tick
    tick.changes, tick.reset = merged(held.changes, tick.changes), held.reset
    return tick


@dataclass
class _Checkpoint:
    position: float
    index: int          # packets consumed so far
    blob: Frozen        # the engine's state (engine.checkpoints)


class _Cursor:
    """A source's packets one at a time, or a run of them through the engine's compiled loop."""

    def __init__(self, batches: Iterator[list[Packet]]) -> None:
        self._batches = batches
        self._batch: list[Packet] = []
        self._pos = 0

    def __iter__(self) -> _Cursor:
        return self

    def __next__(self) -> Packet:
        while self._pos >= len(self._batch):
            self._batch = next(self._batches)
            self._pos = 0
        packet = self._batch[self._pos]
        self._pos += 1
        return packet

    def feed_run(self, engine: Engine, limit: float) -> int:
        """Feed what the compiled loop takes of the current batch's rest (packets before `limit`); how many."""
        start = self._pos
        self._pos = engine.feed_run(self._batch, start, limit)
        return self._pos - start


class Session:
    def __init__(self, engine: Engine, source, *, live: bool, speed: float = 1.0,
                 clock: Callable[[], float] = time.time, columns: bool = True) -> None:
        """`columns`: the changed rows go to the face as records made in C when the compiled core runs
        (engine.rowcols.RowBlock), else as a dict of ConnRow."""
        self.engine = engine
        self.source = source
        self.live = live
        self.speed = speed
        self.clock = clock
        self.name = getattr(source, "path", "?")
        self.bpf: str | None = getattr(source, "bpf", None)
        self.paused = False
        self.at_end = False               # a file replay has read its last packet
        self.finished = False             # the engine thread is over
        self.error: str | None = None
        self.position: float | None = None
        self.first_ts: float | None = None
        self.spark_active: deque[int] = deque(maxlen=SPARK_POINTS)
        self.spark_pps: deque[float] = deque(maxlen=SPARK_POINTS)
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._pending: Mapping[int, ConnRow | None] = {}
        self._reset = False
        # the connections by id, and reused ports' earlier incarnations (engine.driver; as records: engine.rowcols)
        self._rows: RowChanges = row_changes(engine, columns)
        self._rates: dict = {}
        self._rate = Rates()
        # the engine's clock: each closed second is published (`_publish`) for the face
        self._driver = Driver(engine, self._publish, every_second=True)
        self._checkpoints: list[_Checkpoint] = []
        self._index = 0
        self._step_until: float | None = None
        self._step_span: float | None = None
        self._seek_to: float | None = None
        self._run_to: float | None = None  # at the end of the file: the timers run on to there (`run_to`)
        self._seek_number = 0
        self.landed = 0  # the number of the last seek done (`seek`)
        self._speed_changed = False
        self._thread: threading.Thread | None = None
        self._listener: Callable[[Tick], None] | None = None  # the face's: each Tick, from the engine thread
        self._outstanding = False  # a Tick is out to the face, not delivered yet
        self._missed = False       # something was made while it was out
        # (monotonic wall time, packet time) the pacing counts from; None: from the first packet played. Shards of
        # one file share theirs, so that they play in step.
        self.pace_anchor: tuple[float, float] | None = None
        # packet time the replay clock starts from before this session's first packet (a file's shard: the file's
        # first packet, so that a shard whose share starts later still ticks, and shows, the file's time)
        self.origin: float | None = None
        # (first, last) packet time of the whole capture once a side scan has read it (files); None until then
        self.span: tuple[float, float] | None = None
        self.span_scanned = False
        self._opened = False
        # --ipfix: the engine's exporter (engine.headless.start_export). A file replay exports as it plays
        # forward; once a seek goes back, what is open goes out (forced end) and the export stops there
        # (`export_stopped`; the restored engine has no exporter): a record already sent is never sent again
        self.exporter = None
        self.export_stopped = False
        engine.tracker.track_changes()
        if not live:  # a file's late packets are counted where it is read (capture.clock), for every pass
            engine.clock = getattr(source, "clock", None)
        self.tap = Tap(engine.decoder.dlt)  # live: the packets of the flows whose screen is open
        if live:
            ring_on()  # and the last packets of every connection (flow_packets.RING_PACKETS)
        if live and hasattr(source, "stats"):
            engine.capture_stats = source.stats  # received / dropped counters of the capture handle
        self._stats: dict = engine.stats()
        # the engine as it was before any packet: seeking before the first checkpoint starts over from it (a copy
        # keeps what the engine was made with, such as its shard)
        self._origin_blob: Frozen | None = None if live or not getattr(source, "seekable", False) else \
            freeze(engine)
        self._budget = CheckpointBudget()
        self._part_at: float | None = None  # the last packet time a part of a long second was handed over at

    # -- the face's side ----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="midstat-engine", daemon=True)
        self._thread.start()
        if not self.live and getattr(self.source, "seekable", False) and hasattr(self.source, "open_reader"):
            threading.Thread(target=self._scan_span, name="midstat-span", daemon=True).start()

    def _scan_span(self) -> None:
        try:
            reader = self.source.open_reader()
            if reader is not None:
                self.span = capture_span(reader, self._stop)
        except Exception:  # noqa: BLE001 - the range is a convenience: without it the face shows less
            pass
        finally:
            self.span_scanned = True

    def stop(self) -> None:
        self._stop.set()
        if hasattr(self.source, "stop"):
            self.source.stop()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.finish_export()

    def finish_export(self) -> None:
        """The face is closing: every connection still open goes out (forced end), then the queue is sent."""
        exporter, self.exporter = self.exporter, None
        if exporter is None:
            return
        with self._lock:
            if not self.export_stopped:
                tracker = self.engine.tracker
                exporter.finish(tracker.table.values(), max(tracker.now, self.engine.last_ts or 0.0))
        exporter.sender.close()

    def pull(self) -> Pulled:
        """The changes since the last pull. Never waits for the engine: while it is busy (a seek, a long batch)
        this returns no changes, and the next pull gets them."""
        if not self._lock.acquire(timeout=0.02):
            return self._tick({}, False)
        try:
            return self._drain()
        finally:
            self._lock.release()

    def listen(self, listener: Callable[[Tick], None] | None) -> None:
        """From now on each Tick goes to `listener` (called from the engine's thread) as it is made, one at a time:
        the next once the face has called `delivered()`."""
        if listener is None:  # (the face is leaving: no wait for the engine, which may be in a long seek)
            self._listener = None
            return
        with self._lock:
            self._listener = listener
            self._outstanding = False
        self._notify()

    def delivered(self) -> None:
        """The face has taken the last Tick: what was made meanwhile goes out now."""
        with self._lock:
            self._outstanding = False
            self._notify(news=False)

    def _notify(self, news: bool = True) -> None:
        """Something new for the face (`news`: a closed second, the end of the file, an error): the Tick goes out,
        or is kept for the next one while one is out."""
        with self._lock:
            self._missed = self._missed or news
            listener = self._listener
            if listener is None or self._outstanding or not self._missed:
                return
            self._outstanding, self._missed = True, False
            listener(self._drain())

    def _drain(self) -> Tick:
        changes, self._pending = self._pending, {}
        reset, self._reset = self._reset, False
        return self._tick(changes, reset)

    def _tick(self, changes: dict, reset: bool) -> Tick:
        position = self.position or 0.0
        if self._part_at is not None and self._part_at > position:  # within a long second: its part's moment
            position = self._part_at
        return Pulled(position, self._stats, changes, reset, dict(self._rates), self._names(),
                      at_end=self.at_end, first=self.first_ts, warning=self.error)

    def _names(self) -> object:
        names = self.engine.names
        return None if names is None else names.known

    def connection(self, conn_id: int) -> tuple[ConnRow, dict, list[dict]] | None:
        """A flow's current row, its full counters and its state history, fetched from the engine."""
        if not self._lock.acquire(timeout=0.05):
            return None
        try:
            conn = self._rows.by_id.get(conn_id)
            if conn is None:
                return None
            return row_of(conn), counters(conn), [transition_dict(t) for t in conn.transitions]
        finally:
            self._lock.release()

    def watch(self, ref: FlowRef) -> FlowWatch | None:
        """Live: keep every packet of this flow from now on (bounded: FlowWatch); None for a file (its packets are
        read from the file again)."""
        if not self.live:
            return None
        with self._lock:  # between two batches: the ring ends where the watch starts
            return self.tap.watch(seeded_watch(self.engine, ref))

    def unwatch(self, watch: FlowWatch) -> None:
        self.tap.unwatch(watch)

    def toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    def set_paused(self, paused: bool, anchor: tuple[float, float] | None = None) -> None:
        with self._wake:
            self.paused = paused
            self.pace_anchor = anchor if anchor is not None else self.pace_anchor
            self._wake.notify_all()

    def set_speed(self, speed: float, anchor: tuple[float, float] | None = None) -> None:
        with self._wake:
            self.speed = max(0.0, speed)
            self.pace_anchor = anchor if anchor is not None else self.pace_anchor
            self._speed_changed = True
            self._wake.notify_all()

    def step_to(self, target: float) -> None:
        """While paused: replay up to packet time `target`, then stay paused."""
        with self._wake:
            if self.paused:
                self._step_until = target
                self._wake.notify_all()

    def run_to(self, target: float) -> None:
        """At the end of the file (a shard's share of it): the clock and the timers run on to packet time `target`
        (the file's last packet, where a later shard ends), and what changed goes to the face as ever."""
        with self._wake:
            self._run_to = target
            self._wake.notify_all()

    def step(self, seconds: float = 1.0) -> None:
        """While paused: replay the next `seconds` of packet time, then stay paused."""
        with self._wake:
            if self.paused:
                self._step_span = seconds
                self._wake.notify_all()

    def seek(self, target: float, anchor: tuple[float, float] | None = None, number: int = 0) -> None:
        """`anchor`: the pacing from there on (a file's shards: core 0's, the same for all); `number`: the seek's,
        on the Ticks its table comes in (`landed`)."""
        with self._wake:
            self._seek_to = target
            self._seek_number = number
            self.pace_anchor = anchor if anchor is not None else self.pace_anchor
            self._wake.notify_all()

    # -- the engine thread ---------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if self.live:
                self._run_live()
            else:
                self._run_file()
        except Exception as exc:  # noqa: BLE001 - shown by the face; tracked data stays browsable
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.finished = True
            self._notify()

    def _run_live(self) -> None:
        def after_batch(batch: list[Packet], now: float) -> None:
            self.tap.tap(batch)
            if self.first_ts is None and self.engine.first_ts is not None:
                self.first_ts = self.engine.first_ts

        self._driver.run_wall(self.source.batches(), clock=self.clock, stop=self._stop, after_batch=after_batch,
                              guard=self._lock)
        if self.source.warning:
            self.error = self.source.warning

    def _packets(self, start: int) -> _Cursor:
        """The packets from number `start` on. The first time from the source as opened; after that, read afresh
        (the first reader may be at the end of the file already)."""
        if start or self._opened:
            return _Cursor(self.source.batches_from(start))
        self._opened = True
        if isinstance(self.source, FileSource):  # the compiled reader where it can (as headless runs read)
            return _Cursor(self.source.batches(close_at_end=False, frames=True))
        return _Cursor(self.source.batches(close_at_end=False))

    def _run_file(self) -> None:
        packets = self._packets(0)
        pending: Packet | None = None
        driver = self._driver
        if self.origin is not None:
            driver.start(self.origin)
            self.first_ts = self.origin
        pace: tuple[float, float] | None = None  # (wall, packet time) the pacing counts from
        while not self._stop.is_set():
            with self._wake:
                if self._seek_to is not None:
                    target, self._seek_to = self._seek_to, None
                    self.landed = self._seek_number
                    packets, pending = self._seek(target, packets, pending)
                    pace = None
                    continue
                if self._run_to is not None:
                    target, self._run_to = self._run_to, None
                    if self.at_end and driver.started() and (self.position is None or target > self.position):
                        driver.close_at(target)
                    continue
                stepping = self._step_until is not None or self._step_span is not None
                if not stepping and (self.paused or self.at_end):
                    pace = None
                    self._wake.wait(0.1)
                    continue
            if pending is None:
                pending = next(packets, None)
                if pending is None:
                    with self._lock:
                        end = self.engine.last_ts
                        for known in (self.position, self.origin):
                            if known is not None and (end is None or known > end):
                                end = known
                        if end is not None:  # a share with no packet and no origin has no time to show
                            driver.close_at(end, advance=False)
                        self._step_until = self._step_span = None
                        self.at_end = True
                        if self.source.warning:
                            self.error = self.source.warning  # a damaged file: what was read stays browsable
                        self._notify()
                    continue
            ts, frame = pending
            if self._step_span is not None:
                with self._lock:
                    base = self.position if self.position is not None else ts
                    self._step_until, self._step_span = base + self._step_span, None
            if self._speed_changed:
                pace, self._speed_changed = None, False
            if self.speed > 0 and not stepping:
                now = time.monotonic()
                if pace is None:
                    pace = self.pace_anchor or (now, ts)
                delay = pace[0] + (ts - pace[1]) / self.speed - now
                if delay > 0:
                    with self._wake:
                        # waiting for the next packet: the replay clock still ticks, and timers fire on it
                        clock = pace[1] + (now - pace[0]) * self.speed
                        if driver.started():  # each second the clock passes, quiet or not (the sparklines)
                            driver.close_until(clock, skip_quiet=False)
                        self._wake.wait(min(delay, 0.1))
                    continue
            with self._lock:
                if self._step_until is not None and ts > self._step_until:
                    driver.close_at(self._step_until)
                    self._step_until = None
                    continue
                next_tick = self._feed(ts, frame, publish=True)
                pending = None
                if not stepping:  # the packets already due (all of them at --speed 0) up to the next tick, at once
                    limit = next_tick
                    if self.speed > 0 and pace is not None:
                        limit = min(limit, pace[1] + (time.monotonic() - pace[0]) * self.speed)
                    self._index += packets.feed_run(self.engine, limit)
                    if len(self.engine.tracker.touched or ()) >= PART_ROWS:
                        self._publish_part()

    def _feed(self, ts: float, frame: bytes, publish: bool) -> float:
        """One packet, after closing the one-second ticks before it (`publish`: each one published; else crossed
        quietly, a checkpoint kept on the way). Returns the next tick."""
        driver = self._driver
        if not driver.started():
            driver.start(ts)
            self.first_ts = ts
        elif publish:
            driver.close_until(ts)
        elif driver.skip_until(ts):
            self._maybe_checkpoint()
        self.engine.feed(ts, frame)
        self._index += 1
        return driver.next_tick  # type: ignore[return-value]

    def _seek(self, target: float, packets: _Cursor, pending: Packet | None) -> tuple[_Cursor, Packet | None]:
        """Move the replay to packet time `target`: forward by reading on, back from the nearest checkpoint."""
        self._rate.forget()  # rates count afresh from where the seek lands
        self._rates = {}
        self._part_at = None
        self.spark_active.clear()  # the sparklines too: the seconds before the seek are of another time
        self.spark_pps.clear()
        driver = self._driver
        # where the engine is: its last packet, or later when its timers have run on (a seek past the end)
        now = self.engine.last_ts
        if self.position is not None and (now is None or self.position > now):
            now = self.position
        if now is not None and target < now and self.source.seekable:
            if self.exporter is not None and not self.export_stopped:  # the export ends where the replay was
                self.exporter.finish(self.engine.tracker.table.values(), now)
                self.export_stopped = True
            candidates = [cp for cp in self._checkpoints if cp.position <= target]
            if candidates:
                restore = candidates[-1]
                self.engine = thaw(restore.blob)
                self.engine.clock = getattr(self.source, "clock", None)
                share_names(self.source, self.engine)  # a shard's learner of shard 0's DNS answers: the new one
                self._index = restore.index
                driver.engine = self.engine
                driver.start(restore.position)
            else:  # before the first checkpoint (before the first packet, even): from the very start
                self.engine = self._fresh_engine()
                self.engine.clock = getattr(self.source, "clock", None)
                share_names(self.source, self.engine)  # a shard's learner of shard 0's DNS answers: the new one
                self._index = 0
                driver.engine = self.engine
                driver.next_tick = None
                if self.origin is not None:
                    driver.start(self.origin)
            packets, pending = self._packets(self._index), None
        self.at_end = False
        while True:
            if pending is None:
                pending = next(packets, None)
                if pending is None:
                    self.at_end = True
                    break
            ts, frame = pending
            if ts > target:
                break
            next_tick = self._feed(ts, frame, publish=False)
            pending = None
            self._index += packets.feed_run(self.engine, min(next_tick, math.nextafter(target, math.inf)))
        driver.close_at(target, reset=True)
        return packets, pending

    def _fresh_engine(self) -> Engine:
        if self._origin_blob is not None:
            return thaw(self._origin_blob)
        old = self.engine
        engine = Engine(old.decoder.dlt, old.tracker.config, checksums=old.checksums,
                        shard=old.tracker.shard, shard_count=old.tracker.shard_count)
        engine.tracker.track_changes()
        return engine

    def _publish(self, position: float, reset: bool = False) -> None:
        """Under the lock, at each second the driver closes: hand the changes since the last publish to the face,
        keep the rates and a checkpoint."""
        engine = self.engine
        self._part_at = None  # (the second's close is past its parts)
        changes = self._rows.take(engine, position, reset)
        if reset:
            self._pending = changes
            self._reset = True
            self._rate.forget()
        else:
            self._pending = merged(self._pending, changes)
        self.position = position
        stats = self._stats = engine.stats()
        if self.exporter is not None and "ipfix" not in stats:  # a seek went back: the export stopped there
            self.export_stopped = True
            stats["ipfix"] = {**self.exporter.sender.stats(), "stopped": True}
        self._rate.update(position, stats)
        self._rates = self._rate.rates
        self.spark_active.append(stats["active"])
        if "pps" in self._rates:  # no rate yet: no bar, rather than a made-up zero
            self.spark_pps.append(self._rates["pps"])
        self._maybe_checkpoint()
        self._notify()

    def _publish_part(self) -> None:
        """Under the lock, within a long second (a flood's hundreds of thousands of changed rows): the changes so far
        go to the face now, as of the last packet, so that it applies them while the engine goes on; the second's
        close hands over the rest (its rates, sparklines and checkpoint are the second's, as ever)."""
        engine = self.engine
        position = engine.last_ts
        if position is None or (self.position is not None and position <= self.position):
            return
        self._pending = merged(self._pending, self._rows.take(engine, self.position or position))
        self._stats = engine.stats()
        self._part_at = position
        self._notify()

    def _maybe_checkpoint(self) -> None:
        """Keep the engine's state every CHECKPOINT_EVERY seconds of packet time, labelled with its last packet."""
        position = self.engine.last_ts
        if self.live or position is None or not self.source.seekable:
            return
        if self._checkpoints and position - self._checkpoints[-1].position < CHECKPOINT_EVERY:
            return
        if self._checkpoints and position <= self._checkpoints[-1].position:
            return
        size = len(self.engine.tracker.table)
        if not self._budget.allows(size):
            return  # not worth its price now (engine.checkpoints): a seek back replays from an earlier state
        started = time.monotonic()
        blob = freeze(self.engine)
        self._budget.paid(time.monotonic() - started, size)
        self._checkpoints.append(_Checkpoint(position, self._index, blob))
        if len(self._checkpoints) > MAX_CHECKPOINTS:
            del self._checkpoints[1::2]  # keep every other one: still spread over the whole file
