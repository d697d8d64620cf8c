"""One shard's engine: a packet source's frames are decoded and fed to a tracker; a snapshot every second.

Files run on packet time (a snapshot for each second of packet time in which something happened, and the timers
fire on packet time); live capture (engine.headless, engine.session) runs its timers and snapshots on the clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from midstat_tui.decode import linktypes
from midstat_tui.decode.checksum import ChecksumPolicy, EverySource, address_text
from midstat_tui.decode.frame import FrameDecoder
from midstat_tui.decode.segment import IcmpError, Segment
from midstat_tui.engine.driver import Driver, Tick
from midstat_tui.engine.hints import stats_hints
from midstat_tui.engine.names import NameLearner
from midstat_tui.tcp.connection import _core
from midstat_tui.tcp.tracker import EventSink, Tracker, TrackerConfig

if TYPE_CHECKING:
    from midstat_tui.capture.clock import PacketClock

# the link types the compiled packet loop decodes (the others go through the Python decoder, packet by packet)
_LOOP_LINKS = frozenset({linktypes.DLT_EN10MB, linktypes.DLT_LINUX_SLL, linktypes.DLT_LINUX_SLL2})


@dataclass
class DecodeStats:
    packets: int = 0
    bytes: int = 0          # captured frame bytes
    tcp_packets: int = 0
    non_tcp: int = 0
    fragments: int = 0
    malformed: dict[str, int] = field(default_factory=dict)


# what every face reads at a moment: the time, the counters, and the connections in the table (engine.driver.Tick)
Snapshot = Tick


class Engine:
    def __init__(self, datalink: int, config: TrackerConfig | None = None, verify_checksums: bool = True,
                 on_event: EventSink | None = None, shard: int = 0, shard_count: int = 1,
                 fast_path: bool = True, compiled: bool | None = None, checksums: ChecksumPolicy | None = None,
                 names: bool = True) -> None:
        """`checksums` says how checksums are judged (the default: `verify`, or `ignore` if not verify_checksums);
        `names`: learn host names from the packets that carry them (engine.names)."""
        if checksums is None:
            checksums = ChecksumPolicy("verify" if verify_checksums else "ignore")
        self.checksums = checksums
        self.decoder = FrameDecoder(datalink, checksums.verify, fast_path)
        self.tracker = Tracker(config, shard=shard, shard_count=shard_count, on_event=on_event, compiled=compiled)
        self.tracker.offload_sources = checksums.offload_sources
        # the same addresses for the compiled loop: a length byte, then the address, each
        sources = checksums.offload_sources  # for the compiled loop: a length byte and the address each; 0: any
        self._offload_blob = b"\0" if isinstance(sources, EverySource) else b"".join(
            bytes((len(a),)) + a for a in sorted(sources))
        # the compiled core's packet loop takes the plain frames of live connections and new SYNs; the rest is `feed`
        self._run = _core.run if self.tracker.compiled and fast_path and datalink in _LOOP_LINKS else None
        self.decode_stats = DecodeStats()
        # host names (engine.names): the learner, and the list the compiled loop puts its candidate packets in
        self.names: NameLearner | None = NameLearner(datalink) if names else None
        self._name_frames: list | None = [] if names else None
        self.capture_stats: Callable[[], dict] | None = None
        # a capture file's clock (capture.clock): the file's late packets are counted there, on every shard alike;
        # the source's own, not part of a checkpoint (a seek rereads the file, which counts them again)
        self.clock: PacketClock | None = None
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.dirty = False
        # did the compiled loop's last call stop at a packet only `feed` takes (not at a time limit)?
        self.left_slow = False
        self._ended_seen = 0
        self._table_seen = 0  # the table's size at the last snapshot (a timer's removal changes nothing else)
        # export (IPFIX, metrics): called at each tick of the engine's clock; what `stats` adds under "ipfix";
        # whether `stats` counts the open connections by state pair and says this shard's load
        self.on_tick: Callable[[float], None] | None = None
        self.export_stats: Callable[[], dict] | None = None
        self.load_stats = False
        # how often (wall seconds) the state pairs are counted afresh, a walk over the table: 0 at every `stats`
        # (when an output prints the table of the same moment); metrics alone take them at most once a second
        self.pairs_every = 0.0
        self._pairs: dict[str, int] | None = None
        self._pairs_due = 0.0
        # the batch index of the packet being fed when the tracker reports an event (feed_batch, and the compiled
        # loop's changes; after a batch, its size): where live --write places a connection's choice
        self.at = 0

    def feed(self, ts: float, frame: bytes) -> None:
        stats = self.decode_stats
        stats.packets += 1
        stats.bytes += len(frame)
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts
        result = self.decoder.decode(ts, frame)
        self.dirty = True
        if type(result) is Segment:
            stats.tcp_packets += 1
            conn = self.tracker.segment(result)
            if result.payload and self.names is not None and conn is not None \
                    and conn.c.payload in (0, result.payload) and result.sport == conn.c_port \
                    and result.src == conn.c_addr:
                # the client's first data (or data not counted, its checksum bad: offloaded on the capturing host):
                # a ClientHello or an HTTP request may name the server
                self.names.tcp(ts, frame)
        elif type(result) is IcmpError:
            stats.non_tcp += 1
            self.tracker.icmp(result)
        elif result == "non_tcp" or result == "non_ip":
            stats.non_tcp += 1
            if self.names is not None:
                self.names.udp(ts, frame)  # a DNS answer may name addresses
        elif result == "fragment":
            stats.fragments += 1
        else:
            stats.malformed[result] = stats.malformed.get(result, 0) + 1

    def feed_run(self, batch: list[tuple[float, bytes]], index: int, limit: float = math.inf) -> int:
        """Feed batch[index:] through the compiled packet loop while it can take the packets (those before
        `limit`, of live connections, ...). Returns the index of the first packet it left to `feed` (len(batch)
        when it took them all; `left_slow` says whether it left that one for being one only `feed` takes). Without
        the compiled core it takes none."""
        run = self._run
        if run is None:
            self.left_slow = True
            return index
        tracker = self.tracker
        decode_stats = self.decode_stats
        stats = tracker.stats
        verify = self.decoder.verify_checksums
        dlt = self.decoder.dlt
        offload = self._offload_blob
        name_frames = self._name_frames
        while True:
            due = tracker.next_timer()
            if name_frames is None:
                reason, index, packets, frame_bytes, suspicious, odd, started, last_ts, conn, changes, before, \
                    offloaded = run(batch, index, limit if limit < due else due, tracker.core, verify, dlt, offload)
            else:
                reason, index, packets, frame_bytes, suspicious, odd, started, last_ts, conn, changes, before, \
                    offloaded = run(batch, index, limit if limit < due else due, tracker.core, verify, dlt, offload,
                                    name_frames)
                if name_frames:
                    self.names.take_frames(name_frames)  # type: ignore[union-attr]
            if packets:
                stats.started += started
                stats.offloaded_checksum += offloaded
                decode_stats.packets += packets
                decode_stats.bytes += frame_bytes
                decode_stats.tcp_packets += packets
                stats.segments += packets
                stats.suspicious_rst += suspicious
                stats.odd_rst += odd
                self.last_ts = last_ts
                if last_ts > tracker.now:
                    tracker.now = last_ts
                if last_ts > tracker.latest:
                    tracker.latest = last_ts
                self.dirty = True
            if reason != _CHANGED:
                self.left_slow = reason == _SLOW
                return index
            self.at = index
            tracker.changed(conn, changes, before, last_ts)
            index += 1

    def feed_batch(self, batch: list[tuple[float, bytes]]) -> None:
        """`feed` every packet of a batch, the compiled loop taking those it can."""
        index = 0
        size = len(batch)
        feed = self.feed
        while index < size:
            ts, frame = batch[index]
            self.at = index
            feed(ts, frame)
            index = self.feed_run(batch, index + 1)
        self.at = size

    def stats(self) -> dict:
        d = self.decode_stats
        t = self.tracker.stats
        out = {
            "packets": d.packets,
            "tcp_packets": d.tcp_packets,
            "bytes": d.bytes,
            "non_tcp": d.non_tcp,
            "fragments": d.fragments,
            "malformed": dict(d.malformed),
            "bad_checksum": t.bad_checksum,
            "bad_checksum_from": {address_text(a): n for a, n in t.bad_checksum_from.items()},
            "offloaded_checksum": t.offloaded_checksum,
            "checksum": self.checksums.describe(),
            "suspicious_rst": t.suspicious_rst,
            "odd_rst": t.odd_rst,
            "bad_flags": t.bad_flags,
            "icmp_errors": t.icmp_errors,
            "active": self.tracker.active,
            "in_table": len(self.tracker.table),
            "started": t.started,
            "ended": t.ended,
            "evicted": t.evicted,
            "midstream": t.midstream,
            "time_backwards": t.time_backwards + (self.clock.late if self.clock is not None else 0),
            "end_reasons": dict(t.end_reasons),
        }
        if self.capture_stats is not None:
            out["capture"] = self.capture_stats()
        if self.export_stats is not None:
            out["ipfix"] = self.export_stats()
        if self.load_stats:
            now = time.monotonic()
            if self._pairs is None or self.pairs_every <= 0 or now >= self._pairs_due:
                self._pairs = self.tracker.state_pairs()
                self._pairs_due = now + self.pairs_every
            out["state_pairs"] = dict(self._pairs)
            out["shards"] = [{"shard": self.tracker.shard, "packets": self.decode_stats.packets,
                              "bytes": self.decode_stats.bytes, "in_table": len(self.tracker.table)}]
        out["hints"] = stats_hints(out)
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["clock"] = None
        return state

    def snapshot(self, ts: float) -> Snapshot:
        self.mark_clean()
        return Tick(ts, self.stats(), connections=list(self.tracker.table.values()))

    def mark_clean(self) -> None:
        self.dirty = False
        self._ended_seen = self.tracker.stats.ended
        self._table_seen = len(self.tracker.table)

    def changed(self) -> bool:
        """Has anything happened since the last snapshot (a packet, or a timer that ended a connection)?"""
        return self.dirty or self.tracker.stats.ended != self._ended_seen

    def left_table(self) -> bool:
        """Has a connection left the table since the last snapshot with no packet and no end (an ended one whose
        linger time ran out)? Such a second is no snapshot of its own (`changed`), but the next one differs."""
        return len(self.tracker.table) != self._table_seen


_CHANGED = _core.STOP_CHANGED if _core is not None else -1
_SLOW = _core.STOP_SLOW if _core is not None else -1


def run_file(engine: Engine, batches: Iterable[list[tuple[float, bytes]]],
             on_snapshot: Callable[[Snapshot], None] | None = None, until: float | None = None,
             until_offset: float | None = None, halt=None) -> Snapshot:
    """Feed a capture through the engine on packet time (engine.driver); `on_snapshot` gets a snapshot at each
    second in which something changed. Returns the last snapshot (at `until`, if given).

    `halt`: anything with is_set() (a signal handler sets it); once set, reading stops at the next batch and the
    capture counts as ending there."""
    emit = None if on_snapshot is None else (lambda position, reset: on_snapshot(engine.snapshot(position)))
    return Driver(engine, emit).run_packets(batches, until=until, until_offset=until_offset, halt=halt)
