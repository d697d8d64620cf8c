"""The one shard worker (issue #11): the process function every face runs on each of several cores.

`shard_worker` opens the shard's share as root (a file read whole keeping the share, a live handle pre-filtered in
the kernel, or the packets core 0 hands it from a once-only stream), gives up root, and runs the face's part on a
Driver, sending what it makes to core 0 through its `Link` (engine.shard_protocol: one envelope, one set of kinds).
A failure is one ERROR message with the line to show, whatever the face. What differs by face is a small strategy
object:

- `HeadlessShard`: the headless outputs' reports (headless.run_shard / run_live_shard on a sink that sends them:
  events, ticks, the end time asked of core 0, the last report and --summary rows);
- `TuiLiveShard`: every second of the clock its Tick of row changes; answers flow requests and watches;
- `TuiFileShard`: a paced Session on its share (pause, speed, step, seek ordered by core 0); each Tick it makes.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import traceback

from midstat_tui.capture.files import FileSource
from midstat_tui.engine import headless
from midstat_tui.engine.driver import NOT_STARTED, Driver, Tick
from midstat_tui.engine.headless import (
    HandedSource,
    Job,
    SignalFlag,
    Sink,
    keep_share,
    open_live_share,
    set_on_signals,
    start_export,
)
from midstat_tui.engine.names import NameMap
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.placement import share_names
from midstat_tui.engine.records import ConnRow, counters, row_of, transition_dict
from midstat_tui.engine.shard_protocol import (
    CLOCK,
    CONN,
    END,
    EOF,
    ERROR,
    EVENT,
    FRAMES,
    LAST,
    NAMES,
    PAUSE,
    QUIET,
    READY,
    REPLY,
    ROWS,
    ROWS_END,
    RUN_TO,
    SEEK,
    SPEED,
    STEP,
    STOPPED,
    TICK,
    UNTIMED,
    Link,
    send_message,
)
from midstat_tui.errors import MidstatError
from midstat_tui.privileges import drop_to

SUMMARY_CHUNK = 1024  # --summary records per message from a shard: core 0 holds about one chunk per shard
TICKS_QUEUED = 64     # a TUI file shard's Ticks waiting for its pipe to core 0, at most


def shard_worker(face: ShardFace, job: Job, shard: int, count: int, link: Link, stop, halt: SignalFlag | None,
                 packets=None) -> None:
    """One shard, in its own process: its share opened (as root), root given up, the face's part run."""
    face.prepare(job, halt)
    try:
        source = open_share(job, shard, count, packets)
        drop_to(job.user)
        face.run(job, shard, count, source, link, stop, halt)
    except MidstatError as exc:
        with contextlib.suppress(OSError):
            link.send(ERROR, UNTIMED, str(exc))
    except BaseException as exc:  # noqa: BLE001 - reported by core 0 with the shard's name
        last_line = traceback.format_exc().strip().splitlines()[-1]
        with contextlib.suppress(OSError):
            link.send(ERROR, UNTIMED, f"worker {shard} failed: {type(exc).__name__}: {exc} ({last_line})")
    finally:
        link.close()


def open_share(job: Job, shard: int, count: int, packets=None):
    """The shard's source: a live handle keeping its share, the packets core 0 hands it (`packets`), or the file
    read whole keeping its share (reopened as the user when seeking back)."""
    if job.interface is not None:
        return open_live_share(job, shard, count)
    if packets is not None:  # core 0 holds the source; this shard opens nothing
        return HandedSource(job.path, job.datalink, packets)
    source = FileSource(job.path, job.bpf, user=job.user)
    if count > 1:
        keep_share(source, shard, count, job.path)
    source.hand_over(job.user)
    return source


class ShardFace:
    """What a shard does with its share once it is open (as the user)."""

    def prepare(self, job: Job, halt: SignalFlag | None) -> None:
        """Before anything is opened (signal handling)."""

    def run(self, job: Job, shard: int, count: int, source, link: Link, stop, halt: SignalFlag | None) -> None:
        raise NotImplementedError


# -- headless ------------------------------------------------------------------------------------------------------
class HeadlessShard(ShardFace):
    """The headless outputs' reports, sent to core 0 (headless.Sink over the link)."""

    def prepare(self, job: Job, halt: SignalFlag | None) -> None:
        if job.interface is None and halt is not None:  # a file's shard stops reading on SIGINT (the terminal's)
            set_on_signals(halt)                         # and reports what it has

    def run(self, job: Job, shard: int, count: int, source, link: Link, stop, halt: SignalFlag | None) -> None:
        # (looked up on the module when run: a test may put a failing one in its place)
        if job.interface is not None:
            headless.run_live_shard(job, shard, count, LinkSink(link), stop, source=source)
        else:
            headless.run_shard(job, shard, count, LinkSink(link), source, halt)


class LinkSink(Sink):
    """A headless shard's reports, as messages to core 0."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.pipe = link.out  # (the reports go one at a time, from one thread: straight to the pipe)

    def end_time(self, ts: float) -> float:
        send_message(self.pipe, (EOF, ts, ts))  # at its own last packet time, in the merge's order
        kind, end, _ = self.link.order()  # type: ignore[misc]
        assert kind == END
        return end

    def clock(self, now: float) -> None:
        send_message(self.pipe, (CLOCK, now, None))

    def ready(self) -> None:
        send_message(self.pipe, (READY, UNTIMED, None))

    def event(self, record: dict) -> None:
        send_message(self.pipe, (EVENT, record["ts"], record))

    def snapshot(self, ts: float, stats: dict, conns: list[dict]) -> None:
        send_message(self.pipe, (TICK, ts, Tick(ts, stats, connections=conns)))

    def quiet(self, ts: float, stats: dict, conns: list[dict]) -> None:
        send_message(self.pipe, (QUIET, ts, Tick(ts, stats, connections=conns)))

    def names(self, ts: float, pairs: list[tuple[str, str]]) -> None:
        send_message(self.pipe, (NAMES, ts, pairs))

    def frames(self, ts: float, chosen: int, frames: list, shard: int = 0) -> None:
        send_message(self.pipe, (FRAMES, ts, (chosen, frames)))

    streams_summary = True  # --summary's records follow the last report in chunks, as the shard reads them back

    def last(self, ts, stats, conns, everything, warning) -> None:
        send_message(self.pipe, (LAST, UNTIMED, (ts, stats, conns, warning)))
        chunk: list = []
        for record in everything:
            chunk.append(record)
            if len(chunk) == SUMMARY_CHUNK:
                send_message(self.pipe, (ROWS, UNTIMED, chunk))
                chunk = []
        send_message(self.pipe, (ROWS, UNTIMED, chunk))
        send_message(self.pipe, (ROWS_END, UNTIMED, None))


# -- the TUI -------------------------------------------------------------------------------------------------------
def _engine(job: Job, source, shard: int, count: int) -> Engine:
    engine = Engine(source.datalink, job.config, checksums=job.checksum_policy(), shard=shard, shard_count=count)
    share_names(source, engine)
    engine.load_stats, engine.pairs_every = job.metrics, 1.0  # --metrics: state pairs and load in the stats
    return engine


def _detail(conn) -> tuple[ConnRow, dict, list[dict]] | None:
    if conn is None:
        return None
    return row_of(conn), counters(conn), [transition_dict(t) for t in conn.transitions]


class TuiLiveShard(ShardFace):
    """A live shard of the TUI: capture its share, track, and every second of the clock send core 0 its Tick (row
    changes since the last, with the host names learned since)."""

    def run(self, job: Job, shard: int, count: int, source, link: Link, stop, halt: SignalFlag | None) -> None:
        from midstat_tui.engine.flow_packets import ShardWatches
        from midstat_tui.engine.rowcols import row_changes  # (numpy: the TUI's; a headless worker never loads it)

        engine = _engine(job, source, shard, count)
        engine.capture_stats = source.stats
        tracker = engine.tracker
        exporter = start_export(job, engine, shard) if job.ipfix is not None else None
        tracker.track_changes()
        rows = row_changes(engine, columns=True)  # records made in C when it can: core 0 passes them on as they are
        rows.by_id = {conn.id: conn for conn in tracker.table.values()}
        learned: list[tuple[str, str]] = []  # host names learned since the last tick (engine.names), for core 0
        if engine.names is not None:
            engine.names.on_learn = lambda ts, pairs: learned.extend(pairs)

        def emit(position: float, reset: bool) -> None:  # each second of the clock: this shard's Tick to core 0
            watches.send()  # the watched flows' frames first
            link.send(TICK, position, Tick(position, engine.stats(), rows.take(engine, position), names=learned[:]))
            learned.clear()

        driver = Driver(engine, emit, every_second=True)
        link.send(READY, UNTIMED, engine.stats())
        watches = ShardWatches(engine, link)  # the flow screens' watches (and the packet ring)
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
                            link.send(STOPPED, UNTIMED, source.warning or f"capture on {job.interface} stopped")
                    else:
                        engine.feed_batch(batch)
                        watches.tap.tap(batch)
                else:
                    stop.wait(0.1)
                driver.tick_wall(time.time())
                while (order := link.order(0)) is not None:
                    kind, _, payload = order
                    if kind == CONN:
                        req_id, conn_id = payload
                        link.send(REPLY, UNTIMED, (req_id, _detail(rows.by_id.get(conn_id))))
                    else:
                        watches.order(kind, payload)
        except (BrokenPipeError, EOFError):
            return  # core 0 is gone
        finally:
            if exporter is not None:  # what is still open goes out (forced end)
                exporter.finish(tracker.table.values(), time.time())
                exporter.sender.close()


class TuiFileShard(ShardFace):
    """A shard of a TUI file replay: a Session on its share, paced from `anchor` (wall-clock moment, packet time:
    the same for every shard, so they play in step), driven by core 0's orders; each Tick it makes is sent on."""

    def __init__(self, speed: float, anchor: tuple[float, float] | None) -> None:
        self.speed = speed
        self.anchor = anchor

    def run(self, job: Job, shard: int, count: int, source, link: Link, stop, halt: SignalFlag | None) -> None:
        from midstat_tui.engine.session import Session

        engine = _engine(job, source, shard, count)
        session = Session(engine, source, live=False, speed=self.speed)  # its rows as records (engine.rowcols)
        if job.ipfix is not None:
            session.exporter = start_export(job, engine, shard)
        session.pace_anchor = self.anchor
        # the clock starts at the file's first packet, not this share's: a shard whose first packet comes later
        # still ticks the file's time meanwhile
        session.origin = self.anchor[1] if self.anchor is not None else None
        link.send(READY, UNTIMED, engine.stats())
        # the Ticks to send: the engine thread never sends itself (it holds the session's lock: blocked on a full
        # pipe once core 0 has stopped reading, it would hold up this thread's stop); bounded, the back pressure on
        # the engine
        ticks: queue.Queue = queue.Queue(maxsize=TICKS_QUEUED)
        names_sent = 0

        def sender() -> None:
            while True:
                tick = ticks.get()
                try:
                    link.send(TICK, tick.position, tick)
                except (BrokenPipeError, EOFError, OSError):
                    return  # core 0 is gone

        def send_tick(tick: Tick) -> None:
            """Each Tick the session makes (from its engine thread), as it is made: the same message as a live
        shard's, with where its clock is (NOT_STARTED before its first second) and whether it is at the end."""
            nonlocal names_sent
            names = tick.names
            # the host names go to core 0 when they grew (the whole map: a seek may have replaced it)
            tick.names = names.items() if isinstance(names, NameMap) and len(names) != names_sent else None
            if tick.names is not None:
                names_sent = len(names)  # type: ignore[arg-type]
            tick.seek = session.landed  # which seek its table is of: core 0 waits for the last one's
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
                order = link.order(0.05)
                if order is None:
                    continue
                kind, ts, payload = order
                if kind == CONN:
                    req_id, conn_id = payload
                    link.send(REPLY, UNTIMED, (req_id, session.connection(conn_id)))
                elif kind == PAUSE:
                    session.set_paused(*payload)
                elif kind == SPEED:
                    session.set_speed(*payload)
                elif kind == STEP:
                    session.step_to(ts)
                elif kind == SEEK:  # (core 0's number for it, its pacing anchor)
                    session.seek(ts, payload[1], payload[0])
                elif kind == RUN_TO:
                    session.run_to(ts)
        except (BrokenPipeError, EOFError):
            pass  # core 0 is gone
        finally:
            session.stop()
