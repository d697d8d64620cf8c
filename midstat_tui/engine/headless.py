"""Headless runs over capture files, on one core or several.

A run is a number of shards. Each shard reads the whole file and keeps its share of the connections (decided by
engine.placement from the decoded connection key, mostly in C; a pipe or FIFO is read once, by core 0, which hands
each shard its packets), tracks them with its own engine, and reports what the faces need to a sink: events as they
happen, a snapshot at each second of packet time that changed something, and a last word at the end. With one shard
that sink writes the output directly; with several, each shard is a worker process that sends its reports through a
pipe, and core 0 (this process) merges them: events in packet-time order, snapshots per second (each shard's latest
state as of that second), counters added up.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import multiprocessing
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter

from midstat_tui import early_signals
from midstat_tui.capture.clock import PacketClock
from midstat_tui.capture.files import FileSource
from midstat_tui.decode.checksum import ChecksumPolicy
from midstat_tui.decode.frame import LinkTypeError
from midstat_tui.engine.departed import DepartedLog
from midstat_tui.engine.driver import Driver
from midstat_tui.engine.names import NameLookup
from midstat_tui.engine.pipeline import Engine, Snapshot
from midstat_tui.engine.placement import Placer, Share, share_names
from midstat_tui.engine.records import connection_dict, encode_json, record_text, row_of  # noqa: F401 - encode_json: cli
from midstat_tui.engine.shard_merge import ShardMerger, add_stats, merge_ticks  # noqa: F401 - the faces' names
from midstat_tui.engine.shard_protocol import (
    DEAD,
    ERROR,
    PACKETS,
    PACKETS_END,
    UNTIMED,
    ShardProcesses,
)
from midstat_tui.engine.share_filter import LINK_HEADERS, share_filter
from midstat_tui.errors import MidstatError
from midstat_tui.export.sender import Collector
from midstat_tui.output.events import event_record
from midstat_tui.output.plain import table_cells
from midstat_tui.privileges import Target, drop_to
from midstat_tui.problems import Lens
from midstat_tui.query import compile_query
from midstat_tui.tcp.connection import Connection
from midstat_tui.tcp.tracker import TrackerConfig


@dataclass
class Job:
    path: str
    bpf: str | None
    config: TrackerConfig
    verify_checksums: bool = True
    match: str | None = None
    until: float | None = None
    until_offset: float | None = None
    events: bool = False
    snapshots: bool = False
    summary: bool = False
    # --summary --json: each shard writes its connections' JSON text itself (in parallel); core 0 only joins them
    summary_json: bool = False
    # --json snapshots: each connection goes to the sink as its record's JSON text, not as a dict (--plain's table
    # reads the dict's fields)
    snapshot_json: bool = False
    # live capture: the interface and its settings (then `path` is unused); the kernel splits the flows
    interface: str | None = None
    snaplen: int = 262144
    promisc: bool = True
    buffer_mib: int = 32
    datalink: int = 1  # of the file: whether the share filter may speak of Ethernet and VLAN tags
    user: Target | None = None  # whom every process becomes once its handle or file is open (None: stay)
    checksums: ChecksumPolicy | None = None  # how checksums are judged (None: as verify_checksums says)
    # --problems: the last report carries the connections' rows (ConnRow), not their JSON records, for the lens
    rows: bool = False
    thresholds: dict[str, float] | None = None  # the problems lens's (--threshold), for `problem KIND` too
    # IPFIX export (export.flows): the collector (None: none), each shard its own exporting process with
    # observation domain ipfix_domain + shard; metrics: each shard's stats say its load and state pairs
    ipfix: Collector | None = None
    ipfix_domain: int = 1
    ipfix_source: str | None = None
    ipfix_active_timeout: float = 60.0
    metrics: bool = False
    # --write live: each shard chooses the connections (--match) as they change and sends their frames to the sink
    # (engine.live_write); core 0 writes them
    write: bool = False

    def checksum_policy(self) -> ChecksumPolicy:
        if self.checksums is not None:
            return self.checksums
        return ChecksumPolicy("verify" if self.verify_checksums else "ignore")


class Sink:
    """What a shard reports. The writer of the outputs is one; a pipe to core 0 is another."""

    # Does `last` take `everything` as an iterator, consumed once as it writes (else: a list)?
    streams_summary = False
    # Do `snapshot` and `last` take `conns` as an iterator, consumed (at most once) before they return?
    streams_snapshot = False

    def event(self, record: dict) -> None: ...

    def snapshot(self, ts: float, stats: dict, conns: list[dict]) -> None: ...

    def quiet(self, ts: float, stats: dict, conns: list[dict]) -> None:  # noqa: B027 - optional for sinks
        """A shard among several: its table at a second that is no snapshot of its own (a connection left it, nothing
        else happened); core 0 merges the next snapshot with it."""

    def last(self, ts: float, stats: dict, conns: list[dict], everything: list[dict], warning: str | None) -> None:
        ...

    def end_time(self, ts: float) -> float:
        """The shard read its last packet at `ts`: until when should its timers run? (All shards end together.)"""
        return ts

    def ready(self) -> None:  # noqa: B027 - optional for sinks
        """A live shard has its capture handle open."""

    def clock(self, now: float) -> None:  # noqa: B027 - optional for sinks
        """Live shards say what time it is even when quiet, so core 0 can give events out in order as they come."""

    def worker_lost(self, shard: int, reason: str) -> None:  # noqa: B027 - optional for sinks
        """Core 0: a worker died or failed (`reason` says how); the merge goes on with the others."""

    def names(self, ts: float, pairs: list[tuple[str, str]]) -> None:  # noqa: B027 - optional for sinks
        """A shard learned host names at packet time `ts`: (address text, name) pairs (engine.names)."""

    def frames(self, ts: float, chosen: int, frames: list, shard: int = 0) -> None:  # noqa: B027 - optional
        """--write live: a shard chose `chosen` more connections, and these are their frames since the last call
        (at the shard's clock `ts`)."""


_CONN_ID = attrgetter("id")


def _record_id(record: tuple) -> int:
    return record[1]


class _Reporter:
    """What one shard reports, whatever its source: the events of the wanted connections, every connection it
    started (for --summary: those still in the table and those that left it), and the dict form of a list."""

    def __init__(self, job: Job, sink: Sink) -> None:
        self.job = job
        self.sink = sink
        self.names = NameLookup()  # the term `name`: the names this shard learned (its engine's, once made)
        self.predicate = compile_query(job.match, Lens(thresholds=job.thresholds), self.names) if job.match else None
        # for --summary, the connections that left the table (wanted by --match), as their JSON text in a
        # temporary file (departed.py: a flood through a small table is millions of them); the table holds the others
        self.departed = DepartedLog()
        # what --summary keeps of a connection: its record's JSON text, or its table cells (tab-separated)
        self.summary_text = record_text if job.summary_json else table_cells
        self.exporter = None  # export.flows.FlowExporter, with --ipfix

    def wanted(self, conn: Connection, now: float | None = None) -> bool:
        """`now`: the moment the filter term `problem KIND` judges at (None: the connection's last packet)."""
        return self.predicate is None or self.predicate(row_of(conn), now)

    def on_event(self, kind: str, conn: Connection, change: tuple | None, states: tuple[int, int] | None) -> None:
        if self.wanted(conn):
            self.sink.event(event_record(kind, conn, change, states))

    def on_remove(self, conn: Connection) -> None:
        if self.wanted(conn):
            self.departed.add(conn.first, conn.id, self.summary_text(conn))

    def dicts(self, conns, now: float | None = None) -> Iterable:
        """A snapshot's connections as the sink takes them: their rows (--problems), their records' JSON texts
        (--json) or dicts; a list, or made one by one as the sink writes them if it streams (the texts of a million
        are never all in memory). `now`: the snapshot's moment, which the filter term `problem KIND` judges at."""
        if self.job.rows:
            return [row for row in map(row_of, conns) if self.predicate is None or self.predicate(row, now)]
        wanted = conns if self.predicate is None else (c for c in conns if self.wanted(c, now))
        made = (record_text if self.job.snapshot_json else connection_dict)
        if getattr(self.sink, "streams_snapshot", False):
            return map(made, wanted)
        return list(map(made, wanted))

    def engine(self, datalink: int, shard: int, count: int) -> Engine:
        job = self.job
        engine = Engine(datalink, job.config, checksums=job.checksum_policy(),
                        on_event=self.on_event if job.events else None, shard=shard, shard_count=count)
        if job.summary:
            engine.tracker.on_remove = self.on_remove
        if job.ipfix is not None:
            self.exporter = start_export(job, engine, shard)
        if engine.names is not None:
            engine.names.on_learn = self.sink.names  # core 0 owns the map the faces read (engine.names)
            self.names.target = engine.names.known
        engine.load_stats = job.metrics
        engine.pairs_every = 0.0 if job.snapshots else 1.0
        return engine

    def ticks(self) -> bool:
        """Does this shard report every second (a snapshot for the outputs, or stats for the metrics)?"""
        return self.job.snapshots or self.job.metrics

    def snapshot_dicts(self, snap: Snapshot) -> Iterable:
        # (--problems with --metrics: the rows every second, for the problems gauge, even where no report is written)
        wanted = self.job.snapshots or (self.job.rows and self.job.metrics)
        return self.dicts(snap.connections, snap.ts) if wanted else []

    def last(self, engine: Engine, end: float, warning: str | None) -> None:
        if self.exporter is not None:  # every connection still in the table goes out, then the queue is sent
            self.exporter.finish(engine.tracker.table.values(), end)
            self.exporter.sender.close()
        engine.pairs_every = 0.0  # the last report's figures are exact
        snap = engine.snapshot(end)
        if self.job.summary:  # every connection started, in the order they started; not the table at the end
            conns = snap.connections
            # `problem KIND` judges those still open at the end
            held = sorted(conns if self.predicate is None else (c for c in conns if self.wanted(c, snap.ts)),
                          key=_CONN_ID)
            text = self.summary_text
            # (first packet, id, text) in id order: merged as they are by core 0 and written in turn
            records: Iterable = ((c.first, c.id, text(c)) for c in held)
            if len(self.departed):
                records = heapq.merge(self.departed.records(), records, key=_record_id)
            try:
                # a sink that writes as it goes takes them one by one: the texts are never all in memory at once
                self.sink.last(snap.ts, snap.stats, [], records if self.sink.streams_summary else list(records),
                               warning)
            finally:
                self.departed.close()
        else:
            self.sink.last(snap.ts, snap.stats, self.dicts(snap.connections, snap.ts), [], warning)


def open_live_share(job: Job, shard: int, count: int):
    """A live shard's capture handle. Each shard has its own, seeing the whole link (no kernel fanout: its hash does
    not look at a packet as the decoder does); in the kernel, a BPF pre-filter drops the plain packets that hash to
    another shard (engine.share_filter), so only this shard's plain packets and the few others (MPLS, IPv6 extension
    headers, non-TCP...) are copied to it; then the decoded key decides (engine.placement). Each shard reads its
    packets in capture order, and all of them place every packet alike."""
    from midstat_tui.capture.live import LiveSource

    def open_with(bpf: str | None) -> LiveSource:
        return LiveSource(job.interface, bpf, snaplen=job.snaplen, promisc=job.promisc, buffer_mib=job.buffer_mib)

    source = None
    if count > 1:
        try:
            prefilter = share_filter(shard, count, vlan=job.datalink == 1, unplaced=True,
                                     header=LINK_HEADERS.get(job.datalink))
            source = open_with(" and ".join(f"({part})" for part in (job.bpf, prefilter) if part))
        except MidstatError:
            source = None  # a link the pre-filter cannot speak of: the decoded key alone decides, in user space
    if source is None:
        source = open_with(job.bpf)
    if count > 1:
        keep_share(source, shard, count, job.interface or "")
    return source


def keep_share(source: FileSource, shard: int, count: int, name: str) -> None:
    """From now on `source` delivers only the packets whose decoded key places them on `shard`."""
    try:
        source.share = Share(Placer(source.datalink, count), shard)
    except LinkTypeError as exc:
        source.close()
        raise MidstatError(f"{name}: {exc}") from None


def run_live_shard(job: Job, shard: int, count: int, sink: Sink, stop, source=None) -> None:
    """One shard of a live capture: `source` if given, else its own handle (open_live_share); timers and ticks on
    the clock; `stop` (anything with is_set()) ends it."""
    if source is None:
        source = open_live_share(job, shard, count)
        drop_to(job.user)
    sink.ready()
    report = _Reporter(job, sink)
    try:
        engine = report.engine(source.datalink, shard, count)
    except LinkTypeError as exc:
        raise MidstatError(f"{job.interface}: {exc}") from None
    share_names(source, engine)
    engine.capture_stats = source.stats

    def emit(position: float, reset: bool) -> None:
        snap = engine.snapshot(math.floor(position))
        sink.snapshot(snap.ts, snap.stats, report.snapshot_dicts(snap))

    chooser = None
    if job.write:  # --write: the connections chosen as they change, their frames to the sink (engine.live_write)
        from midstat_tui.engine.live_write import LiveChooser

        chooser = LiveChooser(engine, report.wanted, sink.frames, job.match)

    def after_batch(batch: list, now: float) -> None:
        if chooser is not None:
            chooser.tap(batch, now)  # (before the clock: core 0 takes them as of `now`)
        sink.clock(now)
        if stop.is_set():
            source.stop()

    # every second of the clock is a snapshot (when the outputs or the metrics want them), quiet or not
    driver = Driver(engine, emit if report.ticks() else None, every_second=True)
    driver.run_wall(source.batches(), after_batch=after_batch)
    now = time.time()
    end = max(now, sink.end_time(now))
    driver.finish(end)
    report.last(engine, end, source.warning)


def run_shard(job: Job, shard: int, count: int, sink: Sink, source: FileSource | None = None,
              halt: SignalFlag | None = None) -> None:
    """One shard's whole run (in this process); `source` if the caller opened the file already. Once `halt` is set
    (Ctrl-C, SIGTERM), it stops reading and reports what it has, as if the capture ended there."""
    if source is None:
        source = FileSource(job.path, job.bpf, user=job.user)
        if count > 1:
            keep_share(source, shard, count, job.path)
        source.hand_over(job.user)
        drop_to(job.user)
    report = _Reporter(job, sink)

    def emit(position: float, reset: bool) -> None:  # a second of packet time in which something changed
        snap = engine.snapshot(position)
        sink.snapshot(snap.ts, snap.stats, report.snapshot_dicts(snap))

    try:
        engine = report.engine(source.datalink, shard, count)
    except LinkTypeError as exc:
        source.close()
        raise MidstatError(f"{job.path}: {exc}") from None
    share_names(source, engine)
    engine.clock = source.clock  # the file's late packets, counted where it is read (capture.clock)
    driver = Driver(engine, emit if report.ticks() else None)
    if count > 1 and report.ticks():
        def quiet(position: float) -> None:  # only a connection left the table: core 0 needs the table as it is now
            snap = engine.snapshot(position)
            sink.quiet(snap.ts, snap.stats, report.snapshot_dicts(snap))
        driver.on_quiet_change = quiet
    try:
        clock = getattr(source, "clock", None)  # it sees every packet of the file, before this shard's share

        def file_end() -> float | None:  # the file's last packet time, where this shard's share may end sooner
            return clock.latest / 1e6 if count > 1 and clock is not None and clock.latest >= 0 else None

        # a file's own reader: its batches straight from the file's blocks (capture.files: the compiled reader)
        batches = source.batches(frames=True) if isinstance(source, FileSource) else source.batches()
        last = driver.run_packets(batches, until=job.until, until_offset=job.until_offset, halt=halt,
                                  file_end=file_end)
    except KeyboardInterrupt:  # Ctrl-C where nobody set a halt flag: report what was read, as a capture ending here
        last = engine.snapshot(engine.last_ts or 0.0)
    source.close()  # (ends its feeder, if reading stopped before the end of a .gz)
    if threading.current_thread() is threading.main_thread():
        # reading is over: from here on this shard only reports, which an interrupt must not cut in half (the
        # command puts its own handlers back once the output is out)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    end = max(last.ts, sink.end_time(last.ts))
    driver.finish(end)
    report.last(engine, end, source.warning)


def start_export(job: Job, engine: Engine, shard: int):
    """This shard's IPFIX exporting process: its own socket and sequence stream, observation domain
    job.ipfix_domain + shard (RFC 7011 allows one per exporting process), fed by the tracker's ends and the
    engine's ticks."""
    from midstat_tui.export.flows import FlowExporter
    from midstat_tui.export.sender import Sender

    sender = Sender(job.ipfix, job.ipfix_domain + shard, source=job.ipfix_source)  # type: ignore[arg-type]
    exporter = FlowExporter(sender, job.ipfix_active_timeout, shard)
    tracker = engine.tracker
    exporter.attach(tracker)
    engine.on_tick = lambda now: exporter.tick(now, tracker.table.values())
    engine.export_stats = sender.stats
    return exporter


# -- several shards: worker processes (engine.shard_worker) and core 0's merge ------------------------------------
class SignalFlag:
    """An on/off flag, shared with forked workers, that a signal handler may set: one byte of shared memory and no
    lock. (A multiprocessing Event takes a lock in set() and is_set(): a handler interrupting is_set() on the same
    thread would wait for itself forever.)"""

    def __init__(self) -> None:
        self._byte = multiprocessing.get_context("fork").RawValue("b", 0)

    def set(self) -> None:
        self._byte.value = 1

    def is_set(self) -> bool:
        return bool(self._byte.value)


def set_on_signals(flag: SignalFlag) -> None:
    """Ctrl-C and SIGTERM set `flag`: whoever reads packets looks at it between batches, stops, and reports."""

    def on_signal(signum: int, frame: object) -> None:
        flag.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    if early_signals.HELD:  # Ctrl-C or SIGTERM while midstat was still starting
        flag.set()


@dataclass
class HandedPipe:
    """A worker's end of the pipe core 0 hands it its packets through (`reader`), and the ends of every shard's such
    pipe it inherited when forked (`foreign`): it closes those at once, so that a dead shard's pipe breaks (core 0 goes
    on with the others) and its own pipe ends if core 0 stops handing out."""

    reader: object
    foreign: list


class HandedSource:
    """A shard's packets as core 0 reads them from a source that can be read only once (a pipe, a FIFO: see
    `_dispatch`), in batches; the source's damage warning comes with the end."""

    def __init__(self, path: str, datalink: int, packets: HandedPipe) -> None:
        self.path = path
        self.datalink = datalink
        self.warning: str | None = None
        for end in packets.foreign:
            end.close()
        self._packets = packets.reader
        self.clock = PacketClock()  # its late packets, as core 0's clock found them

    def batches(self) -> Iterator[list]:
        while True:
            try:
                kind, _, payload = self._packets.recv()
            except EOFError:
                self.warning = f"{self.path}: core 0 stopped handing packets out"
                return
            if kind == PACKETS_END:
                self.warning = payload
                return
            batch, late = payload
            self.clock.late += late
            yield batch

    def close(self) -> None:
        self._packets.close()


def _dispatch(source: FileSource, batches, placer: Placer, outs: list, halt: SignalFlag) -> None:
    """Core 0 reads a once-only source and hands each shard its packets (placed as the file shards place theirs)."""
    warning = None
    try:
        for batch in batches:
            if halt.is_set():
                break
            parts = placer.split(batch)
            late = [0] * len(parts)
            if source.last_late:  # the late packets core 0's clock dated: each counted by the shard that gets it
                marks = placer.marks(batch)
                for i in source.last_late:
                    late[marks[i]] += 1
            for shard, (out, part, n) in enumerate(zip(outs, parts, late, strict=True)):
                if part and out is not None:
                    try:
                        out.send((PACKETS, UNTIMED, (part, n)))
                    except OSError:  # that shard is gone (core 0's merge says so): the others go on
                        out.close()
                        outs[shard] = None
        warning = source.warning
    except OSError as exc:  # the source failed as it was read
        warning = f"{source.path}: {exc.strerror or exc}"
    finally:
        source.close()
    for out in outs:
        if out is not None:
            with contextlib.suppress(OSError):
                out.send((PACKETS_END, UNTIMED, warning))
            out.close()


def first_timestamp(path: str, user: Target | None = None) -> float | None:
    source = FileSource(path, user=user)
    try:
        for batch in source.batches(close_at_end=False):
            return batch[0][0] if batch else None
        return None
    finally:
        source.close()


def run_sharded(job: Job, count: int, sink: Sink, stop: SignalFlag | None = None, on_ready=None,
                halt: SignalFlag | None = None, source: FileSource | None = None) -> None:
    """Run `count` shard workers and hand `sink` their merged reports, as if one engine had made them.
    Live, `stop` ends the capture, and `on_ready` runs once every shard's handle is open. Files: Ctrl-C or SIGTERM
    set `halt` (made here unless given): every shard stops reading and reports what it has; the merge goes on.
    `source`: a file that can be read only once (a pipe, a FIFO), opened already: core 0 reads it and hands each
    shard its packets."""
    from midstat_tui.engine.shard_worker import HeadlessShard, shard_worker

    batches = None
    placer = None
    if source is not None:
        try:
            placer = Placer(source.datalink, count)
        except LinkTypeError as exc:
            source.close()
            raise MidstatError(f"{job.path}: {exc}") from None
        batches = source.batches()
        first_batch = next(batches, None)
        batches = chain([first_batch] if first_batch else [], batches)
        first = first_batch[0][0] if first_batch else None
    elif job.until_offset is not None:
        first = first_timestamp(job.path, job.user)
    if job.until_offset is not None:  # an offset from the first packet of the file, not of each shard's share
        job.until = None if first is None else first + job.until_offset
        job.until_offset = None
    if stop is None:
        stop = SignalFlag()
    if halt is None:
        halt = SignalFlag()
    workers = ShardProcesses(count)
    handed = [workers.ctx.Pipe(duplex=False) for _ in range(count)] if source is not None else []
    outs = [packets_out for _, packets_out in handed]
    face = HeadlessShard()
    workers.start(shard_worker,
                  lambda shard, link: (face, job, shard, count, link, stop, halt,
                                       HandedPipe(handed[shard][0], [end for pipe in handed
                                                       for end in pipe if end is not handed[shard][0]])
                                       if handed else None),
                  lambda shard: [handed[shard][0]] if handed else [])
    drop_to(job.user)  # core 0 opens nothing more; each worker gives up root after opening its own handle
    if source is not None:
        threading.Thread(target=_dispatch, args=(source, batches, placer, outs, halt), name="midstat-dispatch",
                         daemon=True).start()

    handlers = {}
    if job.interface is None and threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        set_on_signals(halt)

    def lost(shard: int, reason: str) -> None:
        sink.worker_lost(shard, f"{reason}; its share of the connections is missing from the output")

    merger = ShardMerger(workers, lost)
    try:
        if job.interface is not None:
            for shard in range(count):
                for _, _, _, kind, payload in merger.stream(shard):
                    if kind in (ERROR, DEAD):  # before every handle is open: nothing to save yet
                        raise MidstatError(payload)
            if on_ready is not None:
                on_ready()
        merger.headless(job, sink)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        workers.end()
