"""The engine's entry points, one per face: the CLI parses its arguments into a `Job` and calls one of these.

- `open_file` / `open_live`: a capture opened (as root, before it is given up); `check_link`: its link type;
- `checksum_policy`: how checksums are judged (live: the capturing host's addresses and offload, asked now);
- `tracker_config`: the tracker's settings from the options' values (`--timeout STATE=SEC` parsed and checked);
- `resolve_at`: `--at` given as a time of day, placed on the capture's first packet's day;
- `run_headless_file` / `run_headless_live`: a headless run to a sink (engine.headless.Sink), on one core or
  several: the run path is chosen here (a file each shard reads, a once-only stream core 0 hands out, a live
  handle per shard), and every path runs on engine.driver;
- `tui_session`: the session the TUI pulls its Ticks from (engine.session on one core, engine.shard_sessions on
  several), not started yet.

No UI import here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from midstat_tui.capture.span import capture_span
from midstat_tui.decode.checksum import ChecksumPolicy
from midstat_tui.decode.frame import FrameDecoder, LinkTypeError
from midstat_tui.engine.headless import (
    Job,
    SignalFlag,
    Sink,
    first_timestamp,
    run_live_shard,
    run_shard,
    run_sharded,
    start_export,
)
from midstat_tui.engine.pipeline import Engine
from midstat_tui.errors import MidstatError
from midstat_tui.limits import MAX_SECONDS, checked_number
from midstat_tui.privileges import Target, can_open_as, drop_to
from midstat_tui.tcp.states import parse_state
from midstat_tui.tcp.tracker import TrackerConfig
from midstat_tui.timespec import TimeSpecError, parse_goto


def parse_timeout(item: str) -> tuple[int, float]:
    """`STATE=SECONDS` (a state's name in any case, e.g. ESTABLISHED=3600, syn-sent=30) -> (state, seconds)."""
    name, sep, value = item.partition("=")
    try:
        if not sep:
            raise ValueError
        seconds = float(value)
        state = parse_state(name)
    except ValueError:
        raise MidstatError(f"--timeout {item!r}: expected STATE=SECONDS, e.g. ESTABLISHED=3600") from None
    return state, checked_number("--timeout", seconds, 0, MAX_SECONDS, item)


def tracker_config(time_wait: float, linger: float, max_conns: int, timeouts: Iterable[str] = ()) -> TrackerConfig:
    """The tracker's settings: `timeouts` are `STATE=SECONDS` items, each replacing that state's idle timeout."""
    config = TrackerConfig(time_wait=time_wait, linger=linger, max_conns=max_conns)
    for item in timeouts:
        state, seconds = parse_timeout(item)
        config.idle_timeouts[state] = seconds
    return config


def check_link(source, name: str) -> None:
    """A capture whose link type the decoder takes, or a one-line error naming it (the capture closed)."""
    try:
        FrameDecoder(source.datalink)
    except LinkTypeError as exc:
        source.close()
        raise MidstatError(f"{name}: {exc}") from None


def open_file(path: str, bpf: str | None, user: Target | None):
    """A capture file (or `-`, a pipe, a FIFO) opened and its filter compiled: a bad file or filter is said once,
    at once."""
    from midstat_tui.capture.files import FileSource

    return FileSource(path, bpf, user=user)


def open_live(job: Job):
    """The interface's capture handle (the TUI and one-core runs track on it; several shards open their own)."""
    from midstat_tui.capture.live import LiveSource

    return LiveSource(job.interface, job.bpf, snaplen=job.snaplen, promisc=job.promisc, buffer_mib=job.buffer_mib)


def checksum_policy(mode: str, interface: str | None) -> ChecksumPolicy:
    """Live: the capturing host's own addresses and the interface's offload feature, asked now, while the handle
    opens (as root, in the capture's network namespace). A file has no host to ask."""
    if interface is None or mode == "ignore":
        return ChecksumPolicy(mode, interface=interface)
    from midstat_tui.capture.host import host_addresses, tx_checksum_offload, virtual_link

    return ChecksumPolicy(mode, host_addresses(), interface, tx_checksum_offload(interface), virtual_link(interface))


def resolve_at(text: str, source, forms: str) -> float:
    """A time of day (`HH:MM:SS`, UTC, on the first packet's day) or a date and time, as the TUI's `g` reads it."""
    if source.stream:
        raise MidstatError(f"--at {text!r}: a time of day needs the capture's first packet before it is read; from "
                           "a pipe, give +SECONDS from the first packet or epoch seconds")
    reader = source.open_reader()
    span = capture_span(reader) if reader is not None else None
    first, last = span if span is not None else (first_timestamp(source.path), None)
    if first is None:
        raise MidstatError(f"--at {text!r}: {source.path} holds no packet")
    try:
        return parse_goto(text, first, last)
    except TimeSpecError as exc:
        raise MidstatError(f"--at: {exc}") from None


def run_headless_file(job: Job, cores: int, sink: Sink, source, halt: SignalFlag) -> None:
    """A capture file to `sink`: on one core in this process; on several, shard workers merged by core 0 (each
    opens the file itself, or, from a once-only stream, core 0 reads it and hands each shard its packets)."""
    if cores > 1 and source.stream:
        run_sharded(job, cores, sink, halt=halt, source=source)
    elif cores > 1:
        source.close()  # each worker opens the file itself (then gives up root: job.user)
        run_sharded(job, cores, sink, halt=halt)
    else:
        source.hand_over(job.user)
        drop_to(job.user)
        run_shard(job, 0, 1, sink, source=source, halt=halt)


def run_headless_live(job: Job, cores: int, sink: Sink, source, stop: SignalFlag,
                      on_ready: Callable[[], None]) -> None:
    """A live capture to `sink` until `stop`: on one core on `source`; on several, one handle per shard (opened by
    each, keeping its share), merged by core 0. `on_ready` once every handle is open (root given up)."""
    if cores > 1:
        source.close()  # the handle said the interface and the filter are fine; the shards open their own
        run_sharded(job, cores, sink, stop, on_ready=on_ready)
    else:
        drop_to(job.user)
        on_ready()
        run_live_shard(job, 0, 1, sink, stop, source=source)


def _flow_reader(job: Job):
    """The capture file once more, for the flow screens (engine.flow_packets), opened now and handed to the user
    midstat becomes when only root may read it; None where the user can open it later (the flow screen does, when
    it is first asked: a compressed file's feeder is not started for nothing) or it cannot be read again."""
    from midstat_tui.engine.flow_packets import FlowReader

    if job.user is None or os.geteuid() != 0 or can_open_as(job.path, job.user):
        return None
    try:
        reader = FlowReader(job.path, job.config, job.checksum_policy(), user=job.user, bpf=job.bpf)
        reader.hand_over(job.user)
    except MidstatError:
        return None
    return reader


def tui_session(job: Job, cores: int, source, speed: float):
    """The TUI's session, not started. A file is replayed by `cores` shard processes (one is one share: all of it),
    played in step and merged by core 0 in this process (`source` is closed: each shard opens its own): the engine
    never holds the app's interpreter lock. Live capture on several cores: a handle each, merged the same way. Live
    on one core, and a once-only stream whatever `cores` says (it cannot be read again to seek): the engine in a
    thread of this process, over `source`."""
    live = job.interface is not None
    # a file's flows are read again when their screen opens: opened now, while root may still read the file
    flow_reader = None if live or source.stream else _flow_reader(job)
    if (cores > 1 and live) or not (live or source.stream):
        from midstat_tui.engine.shard_sessions import ShardedFileSession, ShardedLiveSession

        source.close()
        if live:
            return ShardedLiveSession(job, cores)
        sharded = ShardedFileSession(job, cores, speed=speed)
        sharded.flow_reader = flow_reader
        return sharded
    from midstat_tui.engine.session import Session

    if not live:
        source.hand_over(job.user)  # seeking back reopens the file, as the user
    drop_to(job.user)
    try:
        engine = Engine(source.datalink, job.config, checksums=job.checksum_policy())
    except LinkTypeError as exc:
        raise MidstatError(f"{source.path}: {exc}") from None
    if job.metrics:  # the stats say the state pairs and the load (once a second at most)
        engine.load_stats, engine.pairs_every = True, 1.0
    session = Session(engine, source, live=live, speed=speed)
    session.flow_reader = flow_reader
    if job.ipfix is not None:
        session.exporter = start_export(job, engine, 0)
    return session
