"""Reading capture files with pcapy-ng: pcap and pcapng (libpcap), `.gz` transparently, `-` for standard input.

Batches come from `next_batch` (one C call per batch). A file cut off mid-packet makes libpcap fail the whole batch;
the reader then reopens the file, skips what it already delivered, and walks packet by packet up to the cut, so
everything before the damage is delivered, and `warning` says where the damage is.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tempfile
from collections.abc import Iterator

import pcapy

from midstat_tui.capture.batches import META, Packet, split_batch
from midstat_tui.errors import MidstatError
from midstat_tui.privileges import Target, can_open_as

BATCH = 512


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

    def __init__(self, path: str, bpf: str | None = None) -> None:
        self.path = path
        self.bpf = bpf
        self.warning: str | None = None
        self.delivered = 0
        self.stdin = path == "-"
        self._tmp: str | None = None
        self._open_path = path
        if not self.stdin:
            if not os.path.exists(path):
                raise MidstatError(f"{path}: no such file")
            if os.path.isdir(path):
                raise MidstatError(f"{path}: is a directory, not a capture file")
            if not os.access(path, os.R_OK):
                raise MidstatError(f"{path}: permission denied")
            if _is_gzip(path):
                self._open_path = self._gunzip(path)
        self._reader = self._open()
        self.datalink = self._reader.datalink()

    def _gunzip(self, path: str) -> str:
        fd, tmp = tempfile.mkstemp(prefix="midstat-", suffix=".pcap")
        self._tmp = tmp
        try:
            with gzip.open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError) as err:
            # a cut-off .gz still yields what was decompressed before the cut
            self.warning = f"{path}: compressed data is damaged ({err}); reading what could be decompressed"
        return tmp

    def _open(self) -> pcapy.Reader:
        try:
            reader = pcapy.open_offline(self._open_path)
        except pcapy.PcapError as err:
            self.close()
            raise MidstatError(_describe_open_error(self.path, err)) from None
        if self.bpf:
            try:
                reader.setfilter(self.bpf)
            except pcapy.PcapError as err:
                self.close()
                raise MidstatError(f"invalid capture filter {self.bpf!r}: {err}") from None
        return reader

    def hand_over(self, target: Target | None) -> None:
        """Before root is given up: make sure `target` can reopen what this source reads (seeking, recovery after
        damage). A file the user may not read is copied to a private temporary file the user owns."""
        if target is None or self.stdin or os.geteuid() != 0:
            return
        if self._tmp is None:
            if can_open_as(self._open_path, target):
                return
            fd, tmp = tempfile.mkstemp(prefix="midstat-", suffix=".pcap")
            with open(self._open_path, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            self._tmp = self._open_path = tmp
        os.chown(self._tmp, target.uid, target.gid)

    def close(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def batches(self, close_at_end: bool = True) -> Iterator[list[Packet]]:
        try:
            if self.stdin:
                yield from self._one_by_one(self._reader)
            else:
                yield from self._batched()
        finally:
            if close_at_end:
                self.close()

    @property
    def seekable(self) -> bool:
        return not self.stdin

    def batches_from(self, index: int) -> Iterator[list[Packet]]:
        """The packets from packet number `index` on, read afresh (the file stays open for more seeks)."""
        self._reader = self._open()
        self.delivered = 0
        self.warning = None
        while self.delivered < index:
            _, meta = self._reader.next_batch(min(index - self.delivered, BATCH))
            if not meta:
                return
            self.delivered += len(meta) // META.size
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
                return
            batch = split_batch(data, meta)
            self.delivered += len(batch)
            yield batch

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
        while True:
            try:
                header, frame = reader.next()
            except pcapy.PcapError as err:
                if batch:
                    self.delivered += len(batch)
                    yield batch
                self.warning = (f"{self.path}: capture cut off after packet {self.delivered}: {err}; "
                                "everything before the cut was processed")
                return
            if header is None:
                break
            sec, usec = header.getts()
            batch.append((sec + usec * 1e-6, frame))
            if len(batch) >= BATCH:
                self.delivered += len(batch)
                yield batch
                batch = []
        if batch:
            self.delivered += len(batch)
            yield batch


def _is_gzip(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(2) == b"\x1f\x8b"
    except OSError:
        return False
