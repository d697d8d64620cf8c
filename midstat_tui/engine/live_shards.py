"""Live capture on several cores for an interactive face: shard worker processes and core 0's merge, behind the
same pull interface as `session.Session`.

Each worker owns one capture handle in the kernel's fanout group (the kernel keeps both directions of a flow on one
handle), decodes and tracks its share, and once a second on the clock sends core 0 the rows that changed and its
counters. Core 0 is a thread of the face's process: it merges what the shards send into one snapshot (changes,
added-up counters, rates, sparklines) that the face pulls once a second. A flow's full state history stays in its
shard and is fetched from there when the face asks for it (the id says which shard: id % shards).

When a shard's capture stops (a lost interface), the shard keeps its table and goes on answering, so what was
captured stays browsable; the error is shown by the face.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from collections import deque
from multiprocessing.connection import wait

from midstat_tui.engine.multicore import Job, add_stats, end_process
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.session import SPARK_POINTS, Pulled
from midstat_tui.engine.views import ConnRow, counters, row_of, transition_dict
from midstat_tui.errors import MidstatError
from midstat_tui.privileges import drop_to

REPLY_TIMEOUT = 1.0  # seconds the face waits for a shard to send one flow's history


def _shard_worker(job: Job, shard: int, count: int, out, requests, stop, fanout_group: int) -> None:
    """One shard: capture, track, and every second send core 0 ("tick", shard, now, stats, changes)."""
    from midstat_tui.capture.live import LiveSource

    try:
        source = LiveSource(job.interface, job.bpf, snaplen=job.snaplen, promisc=job.promisc,
                            fanout_group=fanout_group, buffer_mib=job.buffer_mib)
        drop_to(job.user)
        engine = Engine(source.datalink, job.config, verify_checksums=job.verify_checksums, shard=shard,
                        shard_count=count)
    except MidstatError as exc:
        out.send(("fatal", shard, str(exc)))
        return
    engine.capture_stats = source.stats
    tracker = engine.tracker
    tracker.track_changes()
    by_id = {conn.id: conn for conn in tracker.table.values()}
    out.send(("ready", shard, engine.stats()))
    batches = source.batches()
    capturing = True
    next_tick = math.floor(time.time()) + 1.0
    try:
        while not stop.is_set():
            if capturing:
                batch = next(batches, None)
                if batch is None:
                    capturing = False
                    out.send(("stopped", shard, source.warning or f"capture on {job.interface} stopped"))
                else:
                    for ts, frame in batch:
                        engine.feed(ts, frame)
            else:
                stop.wait(0.1)
            now = time.time()
            if now >= next_tick:
                tracker.advance(now)
                changes: dict[int, ConnRow | None] = {}
                for conn in tracker.touched or ():
                    by_id[conn.id] = conn
                    changes[conn.id] = row_of(conn)
                for conn_id in tracker.removed or ():
                    by_id.pop(conn_id, None)
                    changes[conn_id] = None
                tracker.touched, tracker.removed = set(), []
                out.send(("tick", shard, now, engine.stats(), changes))
                next_tick = math.floor(now) + 1.0
            while requests.poll():
                req_id, conn_id = requests.recv()
                conn = by_id.get(conn_id)
                detail = None if conn is None else (row_of(conn), counters(conn),
                                                    [transition_dict(t) for t in conn.transitions])
                out.send(("reply", shard, req_id, detail))
    except (BrokenPipeError, EOFError):
        return  # core 0 is gone


class ShardedLiveSession:
    """The face's view of a live capture tracked by `count` shard processes (see the module's docstring)."""

    live = True
    speed = 1.0
    at_end = False
    first_ts = None

    def __init__(self, job: Job, count: int) -> None:
        self.job = job
        self.count = count
        self.name = job.interface or "?"
        self.bpf = job.bpf
        self.paused = False
        self.finished = False
        self.error: str | None = None
        self.position: float | None = None
        self.spark_active: deque[int] = deque(maxlen=SPARK_POINTS)
        self.spark_pps: deque[float] = deque(maxlen=SPARK_POINTS)
        self._rates: dict = {}
        self._stats: dict = {}
        self._lock = threading.Lock()
        self._replied = threading.Condition(self._lock)
        self._pending: dict[int, ConnRow | None] = {}
        self._shard_stats: list[dict] = [{} for _ in range(count)]
        self._shard_ts: list[float] = [0.0] * count
        self._published = 0.0
        self._prev: tuple[float, dict] | None = None
        self._replies: dict[int, object] = {}
        self._next_request = 0
        self._ctx = multiprocessing.get_context("fork")
        self._stop = self._ctx.Event()
        self._workers: list = []
        self._thread: threading.Thread | None = None

    # -- the face's side ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the shards and wait until every one has its handle open (an error there is raised here)."""
        group = os.getpid() & 0xFFFF
        for shard in range(self.count):
            out_parent, out_child = self._ctx.Pipe(duplex=False)
            req_parent, req_child = self._ctx.Pipe(duplex=False)
            process = self._ctx.Process(target=_shard_worker, name=f"midstat-shard-{shard}", daemon=True,
                                        args=(self.job, shard, self.count, out_child, req_parent, self._stop, group))
            process.start()
            out_child.close()
            req_parent.close()
            self._workers.append((out_parent, req_child, process))
        drop_to(self.job.user)  # core 0 opens nothing; each shard gave up root once its handle was open
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
            changes, self._pending = self._pending, {}
            return Pulled(self.position or 0.0, self._stats, changes, False, dict(self._rates))

    def connection(self, conn_id: int) -> tuple[ConnRow, dict, list[dict]] | None:
        """A flow's row, counters and full state history, asked of the shard that owns it."""
        shard = conn_id % self.count
        with self._lock:
            self._next_request += 1
            req_id = self._next_request
            try:
                self._workers[shard][1].send((req_id, conn_id))
            except OSError:
                return None
            self._replied.wait_for(lambda: req_id in self._replies, timeout=REPLY_TIMEOUT)
            return self._replies.pop(req_id, None)  # type: ignore[return-value]

    def toggle_pause(self) -> None:
        self.paused = not self.paused  # live: only the face freezes; the shards go on capturing

    def set_speed(self, speed: float) -> None:  # live capture has no replay speed
        pass

    def step(self, seconds: float = 1.0) -> None:
        pass

    def seek(self, target: float) -> None:
        pass

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
                        code = self._workers[shard][2].exitcode
                        self.error = f"shard {shard} died (exit status {code}); what it tracked is gone"
                    continue
                self._take(message)

    def _take(self, message: tuple) -> None:
        kind = message[0]
        with self._lock:
            if kind == "tick":
                _, shard, now, stats, changes = message
                self._pending.update(changes)
                self._shard_stats[shard] = stats
                self._shard_ts[shard] = now
                # one merged snapshot per second, once every shard has reported that second
                second = math.floor(min(self._shard_ts))
                if second > self._published:
                    self._published = second
                    self._publish(max(self._shard_ts))
            elif kind == "reply":
                self._replies[message[2]] = message[3]
                self._replied.notify_all()
            elif kind == "stopped":
                self.error = message[2]

    def _publish(self, position: float) -> None:
        stats = self._stats = add_stats(self._shard_stats)
        self.position = position
        prev = self._prev
        self._prev = (position, stats)
        if prev is not None and position > prev[0]:
            span = position - prev[0]
            self._rates = {
                "pps": (stats["packets"] - prev[1]["packets"]) / span,
                "bps": 8 * (stats["bytes"] - prev[1]["bytes"]) / span,
                "new_per_s": (stats["started"] - prev[1]["started"]) / span,
                "ended_per_s": (stats["ended"] - prev[1]["ended"]) / span,
                "load": [_cpu_share(process) for _, _, process in self._workers],
            }
        self.spark_active.append(stats["active"])
        self.spark_pps.append(self._rates.get("pps", 0.0))


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
