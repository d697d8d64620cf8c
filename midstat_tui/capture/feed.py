"""A byte stream handed to libpcap through a pipe: gzip decompressed on the fly, root-only files, standard input.

libpcap reads only files it opens itself, and cannot read gzip. Writing the decompressed capture to a temporary
file (as midstat once did) filled `$TMPDIR` with whatever a small gzip bomb expands to, once per worker, left the
file behind on Ctrl-C, and a root-only capture copied for the user lay readable by any process of that user.
Instead, a feeder process writes the stream into a pipe and libpcap opens the pipe's read end as `/dev/fd/N`:
nothing touches the disk, memory stays at one chunk, and a reader that stops early (not a capture at all, Ctrl-C,
a seek) closes the pipe, which ends the feeder. The source is an already-open descriptor, read with `pread` from
the start (a regular file: every reopen for a seek or a damage recovery feeds it afresh, even after root is given
up) or read once (standard input).

A process, not a thread: pcapy holds the GIL while libpcap waits on the pipe, so a feeding thread would never run.
The feeder dies with its parent (PR_SET_PDEATHSIG), ignores the terminal's Ctrl-C (its reader stops it), gives up
root like every midstat process, and says through its exit status whether the gzip stream was whole.
"""

from __future__ import annotations

import contextlib
import os
import signal
import zlib
from collections.abc import Iterator

from midstat_tui.lifecycle import die_with_parent, from_main_thread
from midstat_tui.privileges import Target, drop_to

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
DONE, CUT, CORRUPT, FAILED = 0, 10, 11, 12  # the feeder's exit statuses
DAMAGE = {
    CUT: "the compressed data ends early (a cut-off .gz)",
    CORRUPT: "the compressed data is corrupt",
    FAILED: "reading or decompressing it failed",
}


class Feed:
    """One pass over `fd` (from `offset` with pread, or read on when `offset` is None), as a pipe for libpcap.
    `gzip`: decompress; None: decide from the first two bytes."""

    def __init__(self, fd: int, offset: int | None, gzip: bool | None, user: Target | None = None) -> None:
        parent, main_thread = os.getpid(), from_main_thread()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the feeder's exit status is what the parent sees
            status = FAILED
            try:
                os.close(read_end)
                die_with_parent(parent, main_thread)
                signal.signal(signal.SIGINT, signal.SIG_IGN)   # the reader stops on Ctrl-C and closes the pipe
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                drop_to(user, imports=False)
                status = _produce(fd, offset, gzip, write_end)
            except BaseException:  # noqa: BLE001 - said by the exit status
                pass
            os._exit(status)
        os.close(write_end)
        self.pid: int | None = pid
        self._read_end: int | None = read_end
        self.status: int | None = None
        self.path = f"/dev/fd/{read_end}"

    def opened(self) -> None:
        """libpcap has opened the pipe (its own descriptor): ours is no longer needed."""
        if self._read_end is not None:
            os.close(self._read_end)
            self._read_end = None

    def damage(self) -> str | None:
        """Once the reader met the end of the stream: what went wrong feeding it, or None."""
        self._reap(block=True)
        return DAMAGE.get(self.status or DONE)

    def close(self) -> None:
        """Stop feeding (the reader is done with it, early or not) and reap the feeder."""
        self.opened()
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        self._reap(block=True)

    def _reap(self, block: bool) -> None:
        if self.pid is None:
            return
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid:
            self.pid = None
            self.status = os.waitstatus_to_exitcode(status)


def _raw(fd: int, offset: int | None) -> Iterator[bytes]:
    position = offset
    while True:
        chunk = os.read(fd, CHUNK) if position is None else os.pread(fd, CHUNK, position)
        if not chunk:
            return
        if position is not None:
            position += len(chunk)
        yield chunk


def _write(out: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(out, view):]


def _produce(fd: int, offset: int | None, gzip: bool | None, out: int) -> int:
    chunks = _raw(fd, offset)
    try:
        if gzip is None:  # standard input: the first bytes say; they are passed on either way
            head = b""
            for chunk in chunks:
                head += chunk
                if len(head) >= 2:
                    break
            gzip = head[:2] == GZIP_MAGIC
            chunks = _prepend(head, chunks)
        if not gzip:
            for chunk in chunks:
                _write(out, chunk)
            return DONE
        return _gunzip(chunks, out)
    except BrokenPipeError:
        return DONE  # the reader stopped: not ours to judge


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def _gunzip(chunks: Iterator[bytes], out: int) -> int:
    """Every byte that can be decompressed is passed on, up to a cut or a corrupt block; a gzip file of several
    members (concatenated) is read whole; bytes after the last member that are not gzip are ignored (as gzip -d)."""
    inflater = zlib.decompressobj(31)
    pending = False  # a member has begun and not yet ended
    try:
        for chunk in chunks:
            data = chunk
            while data:
                pending = True
                _write(out, inflater.decompress(data, CHUNK))
                if inflater.eof:
                    pending = False
                    data = inflater.unused_data
                    if not data.startswith(GZIP_MAGIC[: len(data)]):
                        return DONE
                    inflater = zlib.decompressobj(31)
                else:
                    data = inflater.unconsumed_tail
        if pending and not inflater.eof:  # the input ended inside a member: what is decoded so far comes out
            _write(out, inflater.flush())
    except zlib.error:
        with contextlib.suppress(zlib.error):
            _write(out, inflater.flush())
        return CORRUPT
    return CUT if pending and not inflater.eof else DONE
