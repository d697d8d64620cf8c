"""The TUI on several cores: shard worker processes and core 0's merge, behind the pull interface of
`session.Session`.

Each worker owns a share of the connections (engine.placement decides from the decoded connection key): live, its own
capture handle, pre-filtered in the kernel (headless.open_live_share); from a file, the whole file read, keeping the
shard's share. Core 0 is a thread of the face's process: it merges what the shards send into one picture (changed
rows, added-up counters, rates, sparklines) that goes to the face as Ticks, as `session.Session` sends them
(`listen`, one out at a time until `delivered()`), or that the face pulls. A flow's full state history stays in
its shard and is fetched from there when the face asks for it (the id says which shard: id % shards).

Live, each shard sends its changes once a second on the clock. A file's shard runs a `Session` of its own (pacing,
pause, step, seek with checkpoints) on its share; core 0 gives them all one pacing anchor, so they play in step, and
turns pause, speed, step and seek into orders to every shard. After a seek it waits for every shard's full table
before handing the face the new picture.

When a live shard's capture stops (a lost interface), it keeps its table and goes on answering, so what was
captured stays browsable; the error is shown by the face.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from multiprocessing.connection import wait

from midstat_tui.capture.files import FileSource
from midstat_tui.capture.span import capture_span
from midstat_tui.engine.driver import NOT_STARTED, Driver, Rates, RowChanges, Tick
from midstat_tui.engine.flow_packets import FlowRef, FlowWatch, ShardWatches
from midstat_tui.engine.headless import (
    Job,
    add_stats,
    end_process,
    first_timestamp,
    open_live_share,
    start_export,
)
from midstat_tui.engine.names import NameMap
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.placement import Placer, Share, share_names
from midstat_tui.engine.records import ConnRow, counters, row_of, transition_dict
from midstat_tui.engine.session import SPARK_POINTS, Pulled, Session
from midstat_tui.errors import MidstatError
from midstat_tui.lifecycle import how_it_ended, start_worker
from midstat_tui.privileges import drop_to

REPLY_TIMEOUT = 1.0  # seconds the face waits for a shard to send one flow's history
RATE_SPAN = 0.5     # seconds of packet time a rate is measured over, at least
TICKS_QUEUED = 64   # a file shard's Ticks waiting for its pipe to core 0, at most
START_SLACK = 0.3    # seconds between the pacing anchor and the shards' first packet: time for them to start


def _detail(conn) -> tuple[ConnRow, dict, list[dict]] | None:
    if conn is None:
        return None
    return row_of(conn), counters(conn), [transition_dict(t) for t in conn.transitions]


def _open_shard(job: Job, shard: int, count: int, out, open_source) -> tuple | None:
    """A shard's source (opened as root), then the switch to the user, then its engine; an error goes to core 0."""
    try:
        source = open_source()
        drop_to(job.user)
        engine = Engine(source.datalink, job.config, checksums=job.checksum_policy(), shard=shard,
                        shard_count=count)
        share_names(source, engine)
        engine.load_stats, engine.pairs_every = job.metrics, 1.0  # --metrics: state pairs and load in the stats
    except MidstatError as exc:
        out.send(("fatal", shard, str(exc)))
        return None
    return source, engine


def _live_worker(job: Job, shard: int, count: int, out, requests, stop) -> None:
    """One live shard: capture its share, track, and every second of the clock send core 0 ("tick", shard, Tick:
    with the host names learned since the last tick)."""
    opened = _open_shard(job, shard, count, out, lambda: open_live_share(job, shard, count))
    if opened is None:
        return
    source, engine = opened
    engine.capture_stats = source.stats
    tracker = engine.tracker
    exporter = start_export(job, engine, shard) if job.ipfix is not None else None
    tracker.track_changes()
    rows = RowChanges()
    rows.by_id = {conn.id: conn for conn in tracker.table.values()}
    learned: list[tuple[str, str]] = []  # host names learned since the last tick (engine.names), for core 0
    if engine.names is not None:
        engine.names.on_learn = lambda ts, pairs: learned.extend(pairs)

    def emit(position: float, reset: bool) -> None:  # each second of the clock: this shard's Tick to core 0
        watches.send()  # the watched flows' frames first
        out.send(("tick", shard, Tick(position, engine.stats(), rows.take(engine, position), names=learned[:])))
        learned.clear()

    driver = Driver(engine, emit, every_second=True)
    out.send(("ready", shard, engine.stats()))
    watches = ShardWatches(engine, shard, out)  # the flow screens' watches (and the packet ring)
    batches = source.batches()
    capturing = True
    driver.start(time.time())
    try:
        while not stop.is_set():
            if capturing:
                batch = next(batches, None)
                if batch is None:
                    capturing = False
                    if not stop.is_set():  # (a capture ended by the order to stop is not a lost one)
                        out.send(("stopped", shard, source.warning or f"capture on {job.interface} stopped"))
                else:
                    engine.feed_batch(batch)
                    watches.tap.tap(batch)
            else:
                stop.wait(0.1)
            driver.tick_wall(time.time())
            while requests.poll():
                message = requests.recv()
                if watches.order(message):
                    continue
                req_id, conn_id = message
                out.send(("reply", shard, req_id, _detail(rows.by_id.get(conn_id))))
    except (BrokenPipeError, EOFError):
        return  # core 0 is gone
    finally:
        if exporter is not None:  # what is still open goes out (forced end)
            exporter.finish(tracker.table.values(), time.time())
            exporter.sender.close()


def _file_worker(job: Job, shard: int, count: int, out, requests, stop, speed: float,
                 anchor: tuple[float, float] | None) -> None:
    """One shard of a file replay: a Session on its share, driven by core 0's orders, its pulls sent on."""
    from midstat_tui.capture.files import FileSource

    def open_share() -> FileSource:
        from midstat_tui.decode.frame import LinkTypeError

        source = FileSource(job.path, job.bpf, user=job.user)
        try:
            source.share = Share(Placer(source.datalink, count), shard)
        except LinkTypeError as exc:
            source.close()
            raise MidstatError(f"{job.path}: {exc}") from None
        source.hand_over(job.user)  # seeking back reopens the file, as the user
        return source

    opened = _open_shard(job, shard, count, out, open_share)
    if opened is None:
        return
    source, engine = opened
    session = Session(engine, source, live=False, speed=speed, columns=False)  # its ticks merge as dicts
    if job.ipfix is not None:
        session.exporter = start_export(job, engine, shard)
    session.pace_anchor = anchor
    # the clock starts at the file's first packet, not this share's: a shard whose first packet comes later still
    # ticks the file's time meanwhile
    session.origin = anchor[1] if anchor is not None else None
    out.send(("ready", shard, engine.stats()))
    sending = threading.Lock()  # the sender thread sends the Ticks, this one the replies: one message at a time
    # the Ticks to send: the engine thread never sends itself (it holds the session's lock: blocked on a full pipe
    # once core 0 has stopped reading, it would hold up this thread's stop); bounded, the back pressure on the engine
    ticks: queue.Queue = queue.Queue(maxsize=TICKS_QUEUED)
    names_sent = 0

    def sender() -> None:
        while True:
            tick = ticks.get()
            try:
                with sending:
                    out.send(("tick", shard, tick))
            except (BrokenPipeError, EOFError, OSError):
                return  # core 0 is gone

    def send_tick(tick: Tick) -> None:
        """Each Tick the session makes (from its engine thread), as it is made: the same message as a live shard's,
        with where its clock is (NOT_STARTED before its first second) and whether it is at the end."""
        nonlocal names_sent
        names = tick.names
        # the host names go to core 0 when they grew (the whole map: a seek may have replaced it)
        tick.names = names.items() if isinstance(names, NameMap) and len(names) != names_sent else None
        if tick.names is not None:
            names_sent = len(names)  # type: ignore[arg-type]
        if tick.position == 0.0 and session.position is None:
            tick.position = NOT_STARTED
        while not stop.is_set():
            try:
                ticks.put(tick, timeout=0.1)
                break
            except queue.Full:
                continue
        session.delivered()  # every Tick goes: core 0 sees each second of every shard

    threading.Thread(target=sender, name="midstat-shard-send", daemon=True).start()
    session.listen(send_tick)
    session.start()
    try:
        while not stop.is_set():
            if requests.poll(0.05):
                order = requests.recv()
                kind = order[0]
                if kind == "conn":
                    reply = session.connection(order[2])
                    with sending:
                        out.send(("reply", shard, order[1], reply))
                elif kind == "pause":
                    session.set_paused(order[1], order[2])
                elif kind == "speed":
                    session.set_speed(order[1], order[2])
                elif kind == "step":
                    session.step_to(order[1])
                elif kind == "seek":
                    session.seek(order[1])
    except (BrokenPipeError, EOFError):
        pass  # core 0 is gone
    finally:
        session.stop()


class _ShardedSession:
    """What both kinds share: the workers, their start and stop, flow requests, core 0's merging thread."""

    live = False

    def __init__(self, job: Job, count: int, name: str) -> None:
        self.job = job
        self.count = count
        self.name = name
        self.bpf = job.bpf
        self.speed = 1.0
        self.paused = False
        self.at_end = False
        self.finished = False
        self.first_ts: float | None = None
        self.error: str | None = None
        self.position: float | None = None
        self.spark_active: deque[int] = deque(maxlen=SPARK_POINTS)
        self.spark_pps: deque[float] = deque(maxlen=SPARK_POINTS)
        self._rates: dict = {}
        self._stats: dict = {}
        self._lock = threading.Lock()
        self._replied = threading.Condition(self._lock)
        self._pending: dict[int, ConnRow | None] = {}
        self._reset = False
        self._shard_stats: list[dict] = [{} for _ in range(count)]
        self._names = NameMap()  # core 0's: the host names every shard learned (engine.names)
        self._rate = Rates()
        self._replies: dict[int, object] = {}
        self._next_request = 0
        self._ctx = multiprocessing.get_context("fork")
        self._stop = self._ctx.Event()
        self._workers: list = []
        self._thread: threading.Thread | None = None
        self._listener = None      # the face's: each merged Tick, from core 0's thread (session.Session.listen)
        self._outstanding = False  # a Tick is out to the face, not delivered yet
        self._news = False         # core 0 published a moment (or the end, an error) the face has not been sent
        self.dead: set[int] = set()  # shards whose worker died: the others go on; the face shows the error

    def _worker_args(self, shard: int) -> tuple:
        raise NotImplementedError

    def _worker_target(self):
        raise NotImplementedError

    # -- the face's side ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the shards and wait until every one has its handle or file open (an error there is raised here)."""
        for shard in range(self.count):
            out_parent, out_child = self._ctx.Pipe(duplex=False)
            req_parent, req_child = self._ctx.Pipe(duplex=False)
            process = start_worker(self._ctx, self._worker_target(),
                                   (self.job, shard, self.count, out_child, req_parent, self._stop,
                                    *self._worker_args(shard)), f"midstat-shard-{shard}")
            out_child.close()
            req_parent.close()
            self._workers.append((out_parent, req_child, process))
        drop_to(self.job.user)  # core 0 opens nothing; each shard gave up root once its handle or file was open
        try:
            for shard, (pipe, _, _) in enumerate(self._workers):
                message = pipe.recv() if pipe.poll(30) else ("fatal", shard, f"shard {shard} did not start")
                if message[0] == "fatal":
                    raise MidstatError(message[2])
                self._shard_stats[shard] = message[2]
        except (EOFError, MidstatError) as exc:
            self.stop()
            raise MidstatError(str(exc) if isinstance(exc, MidstatError) else "a shard worker died starting") \
                from None
        self._stats = add_stats(self._shard_stats)
        self._thread = threading.Thread(target=self._merge, name="midstat-core0", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for _, _, process in self._workers:
            process.join(timeout=3)  # they see the stop event within a poll interval
            end_process(process)
        if self._thread is not None:
            self._thread.join(timeout=3)
        self.finished = True

    def pull(self) -> Pulled:
        with self._lock:
            return self._drain()

    def _drain(self) -> Pulled:
        changes, self._pending = self._pending, {}
        reset, self._reset = self._reset, False
        return Pulled(self.position or 0.0, self._stats, changes, reset, dict(self._rates), self._names,
                      at_end=self.at_end, first=self.first_ts, warning=self.error)

    def listen(self, listener) -> None:
        """From now on each merged Tick goes to `listener` (from core 0's thread), one at a time: the next once the
        face has called `delivered()` (session.Session.listen)."""
        if listener is None:  # (the face is leaving)
            self._listener = None
            return
        with self._lock:
            self._listener, self._outstanding, self._news = listener, False, True
            self._notify()

    def delivered(self) -> None:
        with self._lock:
            self._outstanding = False
            self._notify()

    def _notify(self) -> None:
        """(The lock held.) What core 0 has merged goes to the face, unless a Tick is out already (then the next
        one takes it)."""
        if self._listener is None or self._outstanding or not self._news:
            return
        self._outstanding, self._news = True, False
        self._listener(self._drain())

    def connection(self, conn_id: int) -> tuple[ConnRow, dict, list[dict]] | None:
        """A flow's row, counters and full state history, asked of the shard that owns it."""
        shard = conn_id % self.count
        with self._lock:
            self._next_request += 1
            req_id = self._next_request
            if not self._order(shard, self._request(req_id, conn_id)):
                return None
            self._replied.wait_for(lambda: req_id in self._replies, timeout=REPLY_TIMEOUT)
            return self._replies.pop(req_id, None)  # type: ignore[return-value]

    def _request(self, req_id: int, conn_id: int) -> tuple:
        return (req_id, conn_id)

    def _order(self, shard: int, order: tuple) -> bool:
        try:
            self._workers[shard][1].send(order)
        except OSError:
            return False
        return True

    # -- core 0 -------------------------------------------------------------------------------------------------
    def _merge(self) -> None:
        pipes = {pipe: shard for shard, (pipe, _, _) in enumerate(self._workers)}
        while pipes and not self._stop.is_set():
            for pipe in wait(list(pipes), timeout=0.2):
                shard = pipes[pipe]  # type: ignore[index]
                try:
                    message = pipe.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    del pipes[pipe]  # type: ignore[arg-type]
                    if not self._stop.is_set():
                        how = how_it_ended(self._workers[shard][2])
                        with self._lock:
                            self.dead.add(shard)
                            self.error = (f"shard {shard} died ({how}): its connections stay as it last "
                                          f"reported them; the other shards go on")
                            self._lost(shard)
                            self._news = True
                            self._notify()
                    continue
                with self._lock:
                    if message[0] == "reply":
                        self._replies[message[2]] = message[3]
                        self._replied.notify_all()
                    elif message[0] == "stopped":
                        self.error = message[2]
                        self._news = True
                        self._notify()
                    else:
                        self._take(message)
                        self._notify()

    def _take(self, message: tuple) -> None:
        raise NotImplementedError

    def _lost(self, shard: int) -> None:
        """A shard died (the lock is held): the merged picture goes on without it."""

    def _publish(self, position: float, loads: list[float]) -> None:
        stats = self._stats = add_stats(self._shard_stats)  # the counters of the shards' latest Ticks
        self.position = position
        self._news = True
        if self._rate.update(position, stats, loads):  # none at the start, after a seek back, or over a short span
            self._rates = self._rate.rates
            self.spark_active.append(stats["active"])
            self.spark_pps.append(self._rates["pps"])
        elif not self._rate.rates:
            self._rates = {}


class ShardedLiveSession(_ShardedSession):
    """A live capture tracked by `count` shard processes, each with its own handle keeping its share
    (headless.open_live_share)."""

    live = True

    def __init__(self, job: Job, count: int) -> None:
        super().__init__(job, count, job.interface or "?")
        self._shard_ts: list[float] = [0.0] * count
        self._published = 0.0
        self._watches: dict[bytes, FlowWatch] = {}  # the flow screens' (core 0 keeps their packets)

    def _worker_target(self):
        return _live_worker

    def _worker_args(self, shard: int) -> tuple:
        return ()

    def toggle_pause(self) -> None:
        self.paused = not self.paused  # live: only the face freezes; the shards go on capturing

    def set_speed(self, speed: float) -> None:  # live capture has no replay speed
        pass

    def step(self, seconds: float = 1.0) -> None:
        pass

    def seek(self, target: float) -> None:
        pass

    def watch(self, ref: FlowRef) -> FlowWatch:
        """Keep the flow's packets from now on, and its packet ring before that: every shard is asked, the one that
        holds it answers (flow_packets.ShardWatches), its frames come once a second."""
        job = self.job
        watch = FlowWatch(ref, job.datalink, job.config, job.checksum_policy())
        with self._lock:
            self._watches[ref.key] = watch
            for shard in range(self.count):
                if shard not in self.dead:
                    self._order(shard, ("watch", ref))
        return watch

    def unwatch(self, watch: FlowWatch) -> None:
        with self._lock:
            if self._watches.get(watch.key) is watch:
                del self._watches[watch.key]
                for shard in range(self.count):
                    if shard not in self.dead:
                        self._order(shard, ("unwatch", watch.key))

    def _take(self, message: tuple) -> None:
        if message[0] == "watching" or message[0] == "watched":
            watch = self._watches.get(message[2])
            if watch is None:
                return
            if message[0] == "watched":
                for ts, frame in message[3]:
                    watch.add(ts, frame)
            else:
                _, _, _, watch.datalink, seen, ring = message
                if seen:
                    watch.seed(seen, ring)
            return
        if message[0] != "tick":
            return
        _, shard, tick = message
        self._pending.update(tick.changes)
        self._names.merge(tick.names)
        self._shard_stats[shard] = tick.stats
        self._shard_ts[shard] = tick.position
        # one merged snapshot per second, once every shard still alive has reported that second
        second = math.floor(min(t for i, t in enumerate(self._shard_ts) if i not in self.dead))
        if second > self._published:
            self._published = second
            self._publish(max(self._shard_ts), [_cpu_share(p) for _, _, p in self._workers])


class ShardedFileSession(_ShardedSession):
    """A capture file replayed by `count` shard processes, each a Session on its share, in step."""

    def __init__(self, job: Job, count: int, speed: float = 1.0) -> None:
        super().__init__(job, count, job.path)
        self.speed = speed
        self._positions: list[float | None] = [None] * count
        self._ends: list[bool] = [False] * count
        self._firsts: list[float | None] = [None] * count
        self._loads: list[float] = [0.0] * count
        self._awaiting: set[int] = set()   # shards whose full table after a seek has not come yet
        self._seeking: dict[int, ConnRow | None] = {}
        self._file_first = first_timestamp(job.path, job.user)
        self.span: tuple[float, float] | None = None
        self._start_anchor: tuple[float, float] | None = None
        self._synced_end = False  # every shard has run its timers to the file's last packet

    def _worker_target(self):
        return _file_worker

    def start(self) -> None:
        # the capture's time range, read on the side; the file is opened here, before root is given up
        reader = None
        try:
            with open(self.job.path, "rb") as fh:
                compressed = fh.read(2) == b"\x1f\x8b"
            if not compressed:  # a compressed file has no second pass for free: no range until the end
                source = FileSource(self.job.path, self.job.bpf)
                reader = source.open_reader()
                source.close()
        except (OSError, MidstatError):
            pass  # the shards say what is wrong with the file
        super().start()
        if reader is not None:
            threading.Thread(target=self._scan_span, args=(reader,), name="midstat-span", daemon=True).start()

    def _scan_span(self, reader) -> None:
        # the range is a convenience: without it the face shows less
        with contextlib.suppress(Exception):
            self.span = capture_span(reader, self._stop)

    def _worker_args(self, shard: int) -> tuple:
        if shard == 0:
            self._start_anchor = self._anchor(self._file_first, START_SLACK)
        return (self.speed, self._start_anchor)

    def _anchor(self, position: float | None, slack: float = 0.0) -> tuple[float, float] | None:
        """One pacing anchor for every shard: this wall-clock moment stands for packet time `position`."""
        return None if position is None else (time.monotonic() + slack, position)

    def _request(self, req_id: int, conn_id: int) -> tuple:
        return ("conn", req_id, conn_id)

    def _orders(self, order: tuple) -> None:
        for shard in range(self.count):
            self._order(shard, order)

    def toggle_pause(self) -> None:
        with self._lock:
            self.paused = not self.paused
            self._orders(("pause", self.paused, self._anchor(self.position)))

    def set_speed(self, speed: float) -> None:
        with self._lock:
            self.speed = max(0.0, speed)
            self._orders(("speed", self.speed, self._anchor(self.position)))

    def step(self, seconds: float = 1.0) -> None:
        with self._lock:
            if self.paused and self.position is not None:
                self._orders(("step", self.position + seconds))

    def seek(self, target: float) -> None:
        with self._lock:
            self._rate.forget()  # rates count afresh from where the seek lands
            self._rates = {}
            self.spark_active.clear()  # the sparklines too: the seconds before the seek are of another time
            self.spark_pps.clear()
            self._seek_all(target)

    def _lost(self, shard: int) -> None:
        self._ends[shard] = True  # nothing more will come from it: it neither holds the others back nor is awaited
        if shard in self._awaiting:
            self._awaiting.discard(shard)
            if not self._awaiting:
                self._pending, self._reset, self._seeking = self._seeking, True, {}

    def _seek_all(self, target: float) -> None:
        self._awaiting = set(range(self.count)) - self.dead
        self._seeking = {}
        self._orders(("seek", target))

    def _take(self, message: tuple) -> None:
        if message[0] != "tick":
            return
        _, shard, pulled = message
        at_end, first_ts, error = pulled.at_end, pulled.first, pulled.warning
        shard_position = None if pulled.position == NOT_STARTED else pulled.position
        if pulled.names:
            self._names.merge(pulled.names)  # type: ignore[arg-type]
        if self._awaiting:
            if not pulled.reset:
                return  # from before the seek: the full table that follows replaces it
            if shard in self._awaiting:
                self._awaiting.discard(shard)
                self._seeking.update(pulled.changes)
                if not self._awaiting:  # (a seek forgot the rates when it was asked; the file's end keeps them)
                    self._pending, self._reset, self._seeking = self._seeking, True, {}
        else:
            self._pending.update(pulled.changes)
        self._shard_stats[shard] = pulled.stats
        self._positions[shard] = shard_position  # None until the shard's clock has started: not 1970
        self._ends[shard] = at_end
        self._firsts[shard] = first_ts
        self._loads[shard] = (pulled.rates.get("load") or [0.0])[0]
        if error and error != self.error:
            self.error, self._news = error, True
        firsts = [f for f in self._firsts if f is not None]
        self.first_ts = min(firsts) if firsts else None
        ends = all(self._ends)
        if not ends:
            self._synced_end = False
        elif not self._synced_end and not self._awaiting:
            # a shard stops at its own last packet; the file ends at the last of all: every shard's timers run
            # to there, as one engine's would (the picture comes whole again, like after a seek)
            known = {p for p in self._positions if p is not None}
            if len(known) == 1:
                self._synced_end = True  # all at one time already (a seek past the end): nothing to catch up
            elif known:
                self._synced_end = True
                self._seek_all(max(known))
        at_end = ends and self._synced_end and not self._awaiting
        if at_end != self.at_end:
            self.at_end, self._news = at_end, True
        # the picture is as of the slowest shard still playing (all of them at the end: the last packet)
        playing = [p for i, (p, end) in enumerate(zip(self._positions, self._ends, strict=True))
                   if p is not None and not end and i not in self.dead]
        known = [p for p in self._positions if p is not None]
        position = min(playing) if playing else max(known, default=None)
        if position is None:
            self._stats = add_stats(self._shard_stats)  # no clock yet: the counters, no time
        elif not self._awaiting:
            self._publish(position, list(self._loads))


_CPU_SEEN: dict[int, tuple[float, float]] = {}


def _cpu_share(process) -> float:
    """The share of one core a shard used since the last call (from /proc: user + system ticks)."""
    try:
        with open(f"/proc/{process.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    now = time.monotonic()
    last = _CPU_SEEN.get(process.pid)
    _CPU_SEEN[process.pid] = (cpu, now)
    if last is None or now <= last[1]:
        return 0.0
    return min(1.0, (cpu - last[0]) / (now - last[1]))
