"""The one way headless output leaves midstat: every byte written, or a one-line error.

`sys.stdout` loses output in two ways this class cannot: unbuffered (`PYTHONUNBUFFERED=1`, `python -u`) a text
write is one `write(2)`, and a short write into a pipe drops the rest without a word; and a failing write (a full
disk, `/dev/full`, an I/O error) surfaces as a traceback from wherever the output happened to be flushed. Here every
write loops until the kernel has taken every byte (short writes, EINTR, a non-blocking descriptor's EAGAIN), and a
failure becomes a `MidstatError` (exit 2) naming the cause. A reader that went away (EPIPE: `| head`) is not an
error of ours: `ReaderGone` (a BrokenPipeError) lets the command end quietly, as before.
"""

from __future__ import annotations

import errno
import os
import select

from midstat_tui.errors import MidstatError

BUFFER = 1 << 16  # bytes held before they are written (a snapshot is written whole at the next flush anyway)


class ReaderGone(BrokenPipeError):
    """The reader of the output closed its end (EPIPE)."""


class OutputStream:
    """A text stream over a file descriptor: `write` and `flush` as a TextIO has them, each write complete."""

    def __init__(self, fd: int, name: str = "standard output") -> None:
        self.fd = fd
        self.name = name
        self._pending: list[bytes] = []
        self._size = 0
        self.written = 0  # bytes the kernel has taken

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "surrogateescape")
        self._pending.append(data)
        self._size += len(data)
        if self._size >= BUFFER:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending, self._size = [], 0
        write_all(self.fd, data, self.name)
        self.written += len(data)

    def fileno(self) -> int:
        return self.fd


def write_all(fd: int, data: bytes, name: str = "standard output") -> None:
    """Write every byte of `data` to `fd`, or raise: ReaderGone on EPIPE, MidstatError (status 2) otherwise."""
    view = memoryview(data)
    while view:
        try:
            done = os.write(fd, view)
        except InterruptedError:
            continue
        except BlockingIOError:  # a non-blocking descriptor (inherited so): wait until it can take more
            select.select([], [fd], [])
            continue
        except BrokenPipeError:
            raise ReaderGone(errno.EPIPE, "the reader of the output went away") from None
        except OSError as exc:
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
            raise MidstatError(f"cannot write the output to {name}: {reason}; the output is incomplete") from None
        view = view[done:]
