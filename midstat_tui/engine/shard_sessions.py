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
import os
import threading
import time
from collections import deque

from midstat_tui.capture.files import FileSource
from midstat_tui.capture.span import capture_span
from midstat_tui.engine.driver import NOT_STARTED, Rates, Tick
from midstat_tui.engine.flow_packets import FlowRef, FlowWatch
from midstat_tui.engine.headless import Job, first_timestamp
from midstat_tui.engine.names import NameMap
from midstat_tui.engine.records import ConnRow
from midstat_tui.engine.rowcols import merged
from midstat_tui.engine.session import SPARK_POINTS, Pulled
from midstat_tui.engine.shard_merge import ShardMerger
from midstat_tui.engine.shard_protocol import (
    CONN,
    DEAD,
    ERROR,
    PAUSE,
    READY,
    REPLY,
    RUN_TO,
    SEEK,
    SPEED,
    STEP,
    STOPPED,
    TICK,
    UNTIMED,
    UNWATCH,
    WATCH,
    WATCHED,
    WATCHING,
    ShardProcesses,
)
from midstat_tui.engine.shard_worker import ShardFace, TuiFileShard, TuiLiveShard, shard_worker
from midstat_tui.errors import MidstatError
from midstat_tui.privileges import drop_to

REPLY_TIMEOUT = 1.0  # seconds the face waits for a shard to send one flow's history
RATE_SPAN = 0.5     # seconds of packet time a rate is measured over, at least
START_SLACK = 0.3    # seconds between the pacing anchor and the shards' first packet: time for them to start


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
        self.error: str | None = None     # the one line the face shows: a worker lost, a capture stopped
        self.stopped: str | None = None   # why the capture (live) or the replay stopped: every shard's worker gone
        self.position: float | None = None
        self.spark_active: deque[int] = deque(maxlen=SPARK_POINTS)
        self.spark_pps: deque[float] = deque(maxlen=SPARK_POINTS)
        self._rates: dict = {}
        self._stats: dict = {}
        self._lock = threading.Lock()
        self._replied = threading.Condition(self._lock)
        self._pending: dict[int, ConnRow | None] = {}
        self._reset = False
        self._names = NameMap()  # core 0's: the host names every shard learned (engine.names)
        self._rate = Rates()
        self._replies: dict[int, object] = {}
        self._next_request = 0
        self._workers = ShardProcesses(count)
        self._stop = self._workers.ctx.Event()
        self._merger = ShardMerger(self._workers, self._on_lost)  # the shards' latest Ticks, the lost ones
        self._thread: threading.Thread | None = None
        self._listener = None      # the face's: each merged Tick, from core 0's thread (session.Session.listen)
        self._outstanding = False  # a Tick is out to the face, not delivered yet
        self._news = False         # core 0 published a moment (or the end, an error) the face has not been sent

    def _face(self, shard: int) -> ShardFace:
        """What each shard worker does with its share (engine.shard_worker)."""
        raise NotImplementedError

    # -- the face's side ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the shards and wait until every one has its handle or file open (an error there is raised here)."""
        self._workers.start(shard_worker, lambda shard, link: (self._face(shard), self.job, shard, self.count, link,
                                                               self._stop, None))
        drop_to(self.job.user)  # core 0 opens nothing; each shard gave up root once its handle or file was open
        try:
            for shard, pipe in enumerate(self._workers.pipes):
                try:
                    kind, _, payload = pipe.recv() if pipe.poll(30) else (ERROR, UNTIMED, f"worker {shard} did not "
                                                                                           f"start")
                except (EOFError, OSError):  # (the same line as headless: "worker N died (exit status 3)")
                    kind, payload = DEAD, self._workers.died(shard)
                if kind != READY:
                    raise MidstatError(payload)
                self._merger.take(shard, Tick(NOT_STARTED, payload))  # type: ignore[arg-type]
        except MidstatError:
            self.stop()
            raise
        self._stats = self._merger.stats()
        self._thread = threading.Thread(target=self._merge, name="midstat-core0", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._workers.end(grace=3)  # they see the stop event within a poll interval
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
            if not self._workers.order(shard, CONN, UNTIMED, (req_id, conn_id)):
                return None
            self._replied.wait_for(lambda: req_id in self._replies, timeout=REPLY_TIMEOUT)
            return self._replies.pop(req_id, None)  # type: ignore[return-value]


    # -- core 0 -------------------------------------------------------------------------------------------------
    def _merge(self) -> None:
        """Core 0's thread: each shard's messages as they come, merged into what the face is sent."""
        self._merger.watch()
        try:
            for shard, kind, _, payload in self._merger.arrivals(self._stop):
                if kind in (DEAD, ERROR):
                    self._merger.lose(shard, payload)  # type: ignore[arg-type]
                    continue
                with self._lock:
                    if kind == REPLY:
                        req_id, details = payload  # type: ignore[misc]
                        self._replies[req_id] = details
                        self._replied.notify_all()
                    elif kind == STOPPED:
                        self.error = self.stopped = payload  # type: ignore[assignment]
                        self._news = True
                        self._notify()
                    else:
                        self._take(shard, kind, payload)
                        self._notify()
        finally:
            self._merger.end()

    def _on_lost(self, shard: int, reason: str) -> None:
        """A shard's worker died or failed (the same line as headless: "worker N died (killed by signal 9
        (SIGKILL))"): what it last reported stays, the others go on."""
        if self._stop.is_set():
            return
        with self._lock:
            self.error = f"{reason}: its connections stay as it last reported them; the other shards go on"
            if len(self._merger.lost) >= self.count:  # the last one: nothing captures any more
                self.stopped = self.error = f"{reason}: every shard's worker is gone"
            self._lost(shard)
            if self._rates.get("load"):  # the header says it dead at once, not at the next rates
                self._rates = {**self._rates, "load": self._marked(self._rates["load"])}
            self._news = True
            self._notify()

    @property
    def dead(self) -> set[int]:
        """The shards whose worker died or failed."""
        return set(self._merger.lost)

    def _take(self, shard: int, kind: str, payload) -> None:
        raise NotImplementedError

    def _lost(self, shard: int) -> None:
        """A shard died (the lock is held): the merged picture goes on without it."""

    def _marked(self, loads: list) -> list[float | None]:
        """Each shard's share of a core, None for a shard whose worker is gone (the header says it dead)."""
        lost = self._merger.lost
        return [None if shard in lost else load for shard, load in enumerate(loads)]

    def _publish(self, position: float, loads: list[float]) -> None:
        stats = self._stats = self._merger.stats()  # the counters of the shards' latest Ticks
        self.position = position
        self._news = True
        if self._rate.update(position, stats, self._marked(loads)):  # type: ignore[arg-type]  # none at the start, after a seek back, or over a short span
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

    def _face(self, shard: int) -> ShardFace:
        return TuiLiveShard()

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
                    self._workers.order(shard, WATCH, UNTIMED, ref)
        return watch

    def unwatch(self, watch: FlowWatch) -> None:
        with self._lock:
            if self._watches.get(watch.key) is watch:
                del self._watches[watch.key]
                for shard in range(self.count):
                    if shard not in self.dead:
                        self._workers.order(shard, UNWATCH, UNTIMED, watch.key)

    def _take(self, shard: int, kind: str, payload) -> None:
        if kind in (WATCHING, WATCHED):
            watch = self._watches.get(payload[0])
            if watch is None:
                return
            if kind == WATCHED:
                for ts, frame in payload[1]:
                    watch.add(ts, frame)
            else:
                _, watch.datalink, seen, ring = payload
                if seen:
                    watch.seed(seen, ring)
            return
        if kind != TICK:
            return
        tick = payload
        self._pending = merged(self._pending, tick.changes)
        self._names.merge(tick.names)
        self._merger.take(shard, Tick(tick.position, tick.stats))  # (its rows are in _pending: not kept twice)
        self._shard_ts[shard] = tick.position
        # one merged snapshot per second, once every shard still alive has reported that second
        dead = self.dead
        second = math.floor(min(t for i, t in enumerate(self._shard_ts) if i not in dead))
        if second > self._published:
            self._published = second
            self._publish(max(self._shard_ts), [_cpu_share(p) for p in self._workers.processes])


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
        self._seek_number = 0  # of the last seek ordered: the shards' tables of an earlier one are not awaited
        self._file_first = first_timestamp(job.path, job.user)
        self.span: tuple[float, float] | None = None
        self._start_anchor: tuple[float, float] | None = None
        self._synced_end = False  # every shard has run its timers to the file's last packet
        self._end_at: float | None = None  # the file's last packet, which every shard's timers run on to
        # each shard's (moment, counters) ahead of the picture's moment: added up only once the picture gets there
        # (at --speed 0 the shards run apart, and a shard's counters of a later second with the picture's moment of
        # an earlier one made rates of half or twice the traffic)
        self._ahead: list[deque[tuple[float, dict]]] = [deque() for _ in range(count)]

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

    def _face(self, shard: int) -> ShardFace:
        if shard == 0:
            self._start_anchor = self._anchor(self._file_first, START_SLACK)
        return TuiFileShard(self.speed, self._start_anchor)

    def _anchor(self, position: float | None, slack: float = 0.0) -> tuple[float, float] | None:
        """One pacing anchor for every shard: this wall-clock moment stands for packet time `position`."""
        return None if position is None else (time.monotonic() + slack, position)

    def _orders(self, kind: str, ts: float = UNTIMED, payload: object = None) -> None:
        for shard in range(self.count):
            self._workers.order(shard, kind, ts, payload)

    def toggle_pause(self) -> None:
        with self._lock:
            self.paused = not self.paused
            self._orders(PAUSE, UNTIMED, (self.paused, self._anchor(self.position)))

    def set_speed(self, speed: float) -> None:
        with self._lock:
            self.speed = max(0.0, speed)
            self._orders(SPEED, UNTIMED, (self.speed, self._anchor(self.position)))

    def step(self, seconds: float = 1.0) -> None:
        """While paused: every shard replays the next `seconds` of packet time (from the file's first packet when
        no second has been played yet, as one engine steps)."""
        with self._lock:
            base = self.position if self.position is not None else self._file_first
            if self.paused and base is not None:
                self._orders(STEP, base + seconds)

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
        self._seek_number += 1
        # the shards play on from there in step, from now (the anchor they had would have them race to catch up)
        self._orders(SEEK, target, (self._seek_number, self._anchor(target)))

    def _take(self, shard: int, kind: str, payload) -> None:
        if kind != TICK:
            return
        pulled = payload
        at_end, first_ts, error = pulled.at_end, pulled.first, pulled.warning
        shard_position = None if pulled.position == NOT_STARTED else pulled.position
        if pulled.names:
            self._names.merge(pulled.names)  # type: ignore[arg-type]
        if shard in self._awaiting:
            if not pulled.reset or pulled.seek != self._seek_number:
                return  # from before the last seek: the full table that follows replaces it
            self._awaiting.discard(shard)
            self._seeking = merged(self._seeking, pulled.changes)
            if not self._awaiting:  # (a seek forgot the rates when it was asked; the file's end keeps them)
                self._pending, self._reset, self._seeking = self._seeking, True, {}
        elif self._awaiting:  # a shard there already, playing on while the others seek: its changes since
            self._seeking = merged(self._seeking, pulled.changes)
        else:
            self._pending = merged(self._pending, pulled.changes)
        if shard_position is None or pulled.reset or self._awaiting:  # no clock yet, a seek's table: as it comes
            self._ahead[shard].clear()
            self._merger.take(shard, Tick(pulled.position, pulled.stats))  # (the rows: in _pending, not twice)
        else:
            self._ahead[shard].append((shard_position, pulled.stats))
        self._positions[shard] = shard_position  # None until the shard's clock has started: not 1970
        self._ends[shard] = at_end
        self._firsts[shard] = first_ts
        self._loads[shard] = (pulled.rates.get("load") or [0.0])[0]
        if error and error != self.error:
            self.error, self._news = error, True
        firsts = [f for f in self._firsts if f is not None]
        self.first_ts = min(firsts) if firsts else None
        ends = all(self._ends)
        dead = self.dead
        if not ends:
            self._synced_end, self._end_at = False, None
        elif not self._synced_end and not self._awaiting:
            # a shard stops at its own last packet; the file ends at the last of all: every shard's timers run on
            # to there, as one engine's would (their changes come as any second's: the table is not sent again)
            known = {p for i, p in enumerate(self._positions) if p is not None and i not in dead}
            self._synced_end = True
            if len(known) > 1:
                self._end_at = max(known)
                for i, p in enumerate(self._positions):
                    if p is not None and p < self._end_at and i not in dead:
                        self._workers.order(i, RUN_TO, self._end_at)
        caught_up = self._end_at is None or all(p is None or p >= self._end_at or i in dead
                                                for i, p in enumerate(self._positions))
        at_end = ends and self._synced_end and not self._awaiting and caught_up
        if at_end != self.at_end:
            self.at_end, self._news = at_end, True
        # the picture is as of the slowest shard still playing (all of them at the end: the last packet)
        playing = [p for i, (p, end) in enumerate(zip(self._positions, self._ends, strict=True))
                   if p is not None and not end and i not in dead]
        known = [p for p in self._positions if p is not None]
        position = min(playing) if playing else max(known, default=None)
        if any(p is None and not end and i not in dead
               for i, (p, end) in enumerate(zip(self._positions, self._ends, strict=True))):
            position = None  # a shard whose clock has not started yet: its rows of the first second are to come
        if position is not None:
            self._counters_at(position)
        if position is None or (position == self.position and not self._reset):
            # no clock yet, or the slowest shard has not reached its next second: the counters only (the rows of a
            # shard ahead wait in _pending; sent at the earlier moment, the face would hold the full one back)
            self._stats = self._merger.stats()
        elif not self._awaiting:
            self._publish(position, list(self._loads))

    def _counters_at(self, position: float) -> None:
        """Each shard's latest counters of a moment at or before `position` (a dead shard's: its last) for the
        merger to add up."""
        dead = self.dead
        for shard, ahead in enumerate(self._ahead):
            latest = None
            while ahead and (shard in dead or ahead[0][0] <= position):
                latest = ahead.popleft()
            if latest is not None:
                self._merger.take(shard, Tick(latest[0], latest[1]))


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
