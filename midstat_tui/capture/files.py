"""Reading capture files with pcapy-ng: pcap and pcapng (libpcap), `.gz` transparently, `-` for standard input
(gzip or not).

Batches come from `next_batch` (one C call per batch). A file cut off mid-packet makes libpcap fail the whole batch;
the reader then reopens the file, skips what it already delivered, and walks packet by packet up to the cut, so
everything before the damage is delivered, and `warning` says where the damage is.

A `.gz`, standard input, and a file the user midstat becomes may not read are fed to libpcap through a pipe by a
feeder process (capture.feed) from a descriptor opened once: never a temporary file.

`batches(frames=True)` (headless runs) reads a plain pcap or pcapng file with the compiled core's reader
(`_core.Reader`) instead: large blocks, batches that lie in them (`_core.Frames`: no Python object per packet), the
file's clock and a shard's share applied in C. Where that reader stops short of the end (anything it is not sure
libpcap reads alike, or damage), libpcap reads on from the packet it stopped at, so what is delivered, and what is
said of a damaged file, stay libpcap's. A capture filter, a feeder or a stream keep libpcap throughout.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

import pcapy

from midstat_tui.capture.batches import META, Packet, Share, split_batch
from midstat_tui.capture.clock import PacketClock
from midstat_tui.capture.feed import GZIP_MAGIC, Feed
from midstat_tui.errors import MidstatError
from midstat_tui.privileges import Target, can_open_as

try:
    from midstat_tui._core import READ_HANDOVER, Reader
except ImportError:  # no compiled core (or an older one): libpcap reads everything
    Reader = None
    READ_HANDOVER = 2

BATCH = 512
FRAMES_BATCH = 1024  # packets per batch of the compiled reader


def _describe_open_error(path: str, err: Exception) -> str:
    text = str(err)
    low = text.lower()
    if "no such file" in low:
        return f"{path}: no such file"
    if "permission denied" in low:
        return f"{path}: permission denied"
    if "is a directory" in low:
        return f"{path}: is a directory, not a capture file"
    if "truncated dump file" in low or "only got 0" in low:
        return f"{path}: empty or cut-off file: no capture header (not a pcap or pcapng capture)"
    if "unknown file format" in low or "bad dump file format" in low or "bad magic" in low:
        return f"{path}: not a pcap or pcapng capture (unknown file format)"
    return f"{path}: cannot read capture: {text}"


class FileSource:
    """Packets of one capture file, in batches of (timestamp, frame bytes)."""

    def __init__(self, path: str, bpf: str | None = None, user: Target | None = None) -> None:
        self.path = path
        self.bpf = bpf
        self.user = user  # whom a feeder process becomes (the user midstat gives root up to)
        self.warning: str | None = None
        self.delivered = 0
        self.stdin = path == "-"
        # a pipe, FIFO or terminal (`-r /dev/stdin`, `-r <(cat x.pcap)`): read once, never reopened
        self.stream = self.stdin or _is_stream(path)
        # when set, only one shard's packets are delivered (`delivered` still counts every packet read)
        self.share: Share | None = None
        # the file's one clock (capture.clock): late packets dated at the latest time read, and counted
        self.clock = PacketClock()
        # the indices of the late packets in the batch last delivered (without a share: core 0 hands them out)
        self.last_late: list[int] = []
        self._open_path = path
        self._fd: int | None = None       # a source read through a feeder: its descriptor, opened once
        self._gzip: bool | None = False   # the feeder decompresses (None: it looks at the first bytes)
        self._feed: Feed | None = None
        if self.stdin:  # a copy of the descriptor: the TUI then gives standard input back to the terminal
            self._fd, self._gzip = os.dup(0), None
        else:
            if not os.path.exists(path):
                raise MidstatError(f"{path}: no such file")
            if os.path.isdir(path):
                raise MidstatError(f"{path}: is a directory, not a capture file")
            if not os.access(path, os.R_OK):
                raise MidstatError(f"{path}: permission denied")
            if _is_gzip(path):
                try:
                    self._fd = os.open(path, os.O_RDONLY)
                except OSError as err:
                    raise MidstatError(f"{path}: {err.strerror}") from None
                self._gzip = True
            elif self.stream:  # a pipe or FIFO named by its path: read once through a feeder, which sniffs gzip
                try:
                    self._fd = os.open(path, os.O_RDONLY)
                except OSError as err:
                    raise MidstatError(f"{path}: {err.strerror}") from None
                self._gzip = None
        self._reader = self._open()
        self.datalink = self._reader.datalink()

    def _open(self) -> pcapy.Reader:
        if self._feed is not None:
            self._feed.close()  # a reopen: the previous pass is over
            self._feed = None
        path = self._open_path
        if self._fd is not None:
            self._feed = Feed(self._fd, None if self.stream else 0, self._gzip, self.user)
            path = self._feed.path
        try:
            reader = pcapy.open_offline(path)
        except pcapy.PcapError as err:
            self.close()
            raise MidstatError(_describe_open_error(self.path, err)) from None
        finally:
            if self._feed is not None:
                self._feed.opened()
        if self.bpf:
            try:
                reader.setfilter(self.bpf)
            except pcapy.PcapError as err:
                self.close()
                raise MidstatError(f"invalid capture filter {self.bpf!r}: {err}") from None
        return reader

    def hand_over(self, target: Target | None) -> None:
        """Before root is given up: make sure `target` can reopen what this source reads (seeking, recovery after
        damage). A file the user may not read stays open here, and each reopen is fed from that descriptor."""
        if target is None or self._fd is not None or self.stream or os.geteuid() != 0:
            return
        if can_open_as(self._open_path, target):
            return
        self.user = self.user or target
        try:
            self._fd = os.open(self._open_path, os.O_RDONLY)
        except OSError as err:
            raise MidstatError(f"{self.path}: {err.strerror}") from None

    def close(self) -> None:
        if self._feed is not None:
            self._feed.close()
            self._feed = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _stream_ended(self) -> None:
        """The reader met the end: a feeder that could not decompress everything is a damaged capture."""
        damage = self._feed.damage() if self._feed is not None else None
        if damage and self.warning is None:
            self.warning = (f"{self.path}: {damage}: read up to the last whole packet ({self.delivered} packets); "
                            "everything before the damage was processed")

    def batches(self, close_at_end: bool = True, frames: bool = False) -> Iterator[list[Packet]]:
        """The packets in batches. `frames`: read by the compiled reader where it can (a batch is then a
        `_core.Frames`, which indexes and slices as the list does, but takes no item assignment)."""
        try:
            if self.stream:
                yield from self._one_by_one(self._reader)
            else:
                reader = self._compiled_reader() if frames else None
                if reader is not None:
                    yield from self._read_compiled(reader)
                else:
                    yield from self._batched()
        finally:
            if close_at_end:
                self.close()

    def _compiled_reader(self):
        """The compiled core's reader of this file (its share, if it has one), or None where libpcap must read it:
        no compiled core, a filter, a feeder, a format or link type that reader leaves to libpcap."""
        if Reader is None or self.bpf or self._fd is not None or self.stream or self.delivered:
            return None
        share = self.share
        count, shard = (share.placer.count, share.shard) if share is not None else (1, 0)
        try:
            reader = Reader(self._open_path, count, shard, FRAMES_BATCH)
        except (ValueError, OSError):
            return None
        if reader.datalink != self.datalink:
            reader.close()
            return None
        reader.latest = self.clock.latest
        return reader

    def _read_compiled(self, reader) -> Iterator[list[Packet]]:
        share = self.share
        clock = self.clock
        self.last_late = []  # (only a stream's batches are handed out by core 0, and those are libpcap's)
        late_seen = 0
        try:
            while (batch := reader.next()) is not None:
                self.delivered = reader.delivered
                clock.latest = reader.latest
                late = reader.late - late_seen
                late_seen = reader.late
                if share is not None:
                    unplaced = batch.unplaced()
                    if unplaced:  # frames the compiled decoder cannot place: the Python decoder's word
                        placer, mine = share.placer, share.shard
                        drop = [i for i in unplaced if placer.shard_of_frame(*batch[i]) != mine]
                        if drop:
                            share.learn(batch, drop)  # their DNS answers, for this shard's names (engine.names)
                            batch, late_dropped = batch.drop(drop)
                            late -= late_dropped
                clock.late += late
                if len(batch):
                    yield batch
            self.delivered = reader.delivered
            clock.latest = reader.latest
            handover = reader.status == READ_HANDOVER
        finally:
            reader.close()
        if handover:
            yield from self._handover()
        else:
            self._stream_ended()

    def _handover(self) -> Iterator[list[Packet]]:
        """The compiled reader stopped at packet `delivered` (something it leaves to libpcap): libpcap reads on
        from there, and says what is wrong, if anything is."""
        reader = self._reader = self._open()
        skip = self.delivered
        while skip > 0:
            try:
                _, meta = reader.next_batch(min(skip, BATCH))
            except pcapy.PcapError as err:  # (never seen: the compiled reader leaves libpcap's refusals to it)
                self.warning = (f"{self.path}: capture cut off after packet {self.delivered}: {err}; everything "
                                "before the cut was processed")
                return
            if not meta:
                return
            skip -= len(meta) // META.size
        yield from self._batched()

    def open_reader(self) -> pcapy.Reader | None:
        """Another reader of the same packets (the filter applied), for a side scan such as the time range, that
        leaves this source's own reader alone; None for a source read through a feeder (standard input, a
        compressed file, a file only root may read): it has one pass at a time."""
        if self._fd is not None:
            return None
        try:
            reader = pcapy.open_offline(self._open_path)
            if self.bpf:
                reader.setfilter(self.bpf)
        except pcapy.PcapError:
            return None
        return reader

    @property
    def seekable(self) -> bool:
        return not self.stream

    def batches_from(self, index: int) -> Iterator[list[Packet]]:
        """The packets from packet number `index` on, read afresh (the file stays open for more seeks). With a
        share, `index` counts the packets of the share."""
        self._reader = self._open()
        self.delivered = 0
        self.warning = None
        self.clock.reset()  # a new pass: the packets skipped are dated (and counted) as they were before
        if self.share is not None:
            kept = 0
            for batch in self._batched():
                if kept >= index:
                    yield batch
                elif kept + len(batch) > index:
                    yield batch[index - kept:]
                    kept = index
                else:
                    kept += len(batch)
            return
        while self.delivered < index:
            _, meta = self._reader.next_batch(min(index - self.delivered, BATCH))
            if not meta:
                return
            self.delivered += len(meta) // META.size
            self.clock.late += len(self.clock.late_in_meta(meta))
        yield from self._batched()

    def _batched(self) -> Iterator[list[Packet]]:
        reader = self._reader
        while True:
            try:
                data, meta = reader.next_batch(BATCH)
            except pcapy.PcapError:
                yield from self._recover()
                return
            if not meta:
                self._stream_ended()
                return
            self.delivered += len(meta) // META.size
            late = self.clock.late_in_meta(meta)
            if not late:
                self.last_late = []
                yield split_batch(data, meta) if self.share is None else self.share.split(data, meta)
                continue
            batch = split_batch(data, meta)
            for i, ts in late:
                batch[i] = (ts, batch[i][1])
            yield self._mine(batch, [i for i, _ in late])

    def _recover(self) -> Iterator[list[Packet]]:
        """The batch that met the damage was lost: reread up to it, then packet by packet to the cut."""
        reader = self._open()
        skip = self.delivered
        while skip > 0:
            _, meta = reader.next_batch(min(skip, BATCH))
            if not meta:
                break
            skip -= len(meta) // META.size
        yield from self._one_by_one(reader)

    def _one_by_one(self, reader: pcapy.Reader) -> Iterator[list[Packet]]:
        batch: list[Packet] = []
        late: list[int] = []
        date = self.clock.date
        while True:
            try:
                header, frame = reader.next()
            except pcapy.PcapError as err:
                if batch:
                    self.delivered += len(batch)
                    yield self._mine(batch, late)
                damage = self._feed.damage() if self._feed is not None else None
                self.warning = (f"{self.path}: capture cut off after packet {self.delivered}: {err}"
                                f"{f' ({damage})' if damage else ''}; everything before the cut was processed")
                return
            if header is None:
                if batch:
                    self.delivered += len(batch)
                    yield self._mine(batch, late)
                    batch, late = [], []
                self._stream_ended()
                break
            sec, usec = header.getts()
            dated = date(sec, usec)
            if dated is None:
                batch.append((sec + usec * 1e-6, frame))
            else:
                late.append(len(batch))
                batch.append((dated, frame))
            if len(batch) >= BATCH:
                self.delivered += len(batch)
                yield self._mine(batch, late)
                batch, late = [], []
        if batch:
            self.delivered += len(batch)
            yield self._mine(batch, late)

    def _mine(self, batch: list[Packet], late: list[int]) -> list[Packet]:
        """This source's packets of a batch (its share's, if it has one), the late ones among them counted."""
        if self.share is None:
            self.clock.late += len(late)
            self.last_late = late
            return batch
        if not late:
            return self.share.select(batch)
        kept, late_kept = self.share.keep(batch, late)
        self.clock.late += late_kept
        return kept


def _is_stream(path: str) -> bool:
    """Is `path` something that can be read only once (a pipe, a FIFO, a character device)?"""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _is_gzip(path: str) -> bool:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # a pipe or FIFO: reading its first bytes would take them from libpcap
        with open(path, "rb") as fh:
            return fh.read(2) == GZIP_MAGIC
    except OSError:
        return False
