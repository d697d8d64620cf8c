"""The connections that left the table, kept for `--summary` as their record's JSON text, not as live objects.

Under a SYN flood with a small `--max-conns`, a million connections pass through a thousand-entry table, and
`--summary` must still list every one at the end. Held as `Connection` objects they took 2.8 GB. Here each is
encoded when it leaves (its summary cannot change any more) and written, one line, to an anonymous temporary file:
created unlinked (O_TMPFILE where the kernel has it), so nothing is left behind whatever ends the process. Memory
keeps 24 bytes a connection (id, first packet time, offset) to give them back in the order they started. Should
the file fail (a full disk), the texts stay in memory instead: slower to fill up, never lost.
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Iterator


def _anonymous_file():
    """An unlinked temporary file in $TMPDIR, else /var/tmp or /tmp (midstat may have become a user who cannot
    write to the $TMPDIR of the root who started it)."""
    error: OSError | None = None
    for folder in (None, "/var/tmp", "/tmp"):
        try:
            return tempfile.TemporaryFile(prefix="midstat-departed-", dir=folder)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            error = exc
    assert error is not None
    raise error


class DepartedLog:
    def __init__(self) -> None:
        self._file = None
        self._size = 0
        self._ids = array("q")
        self._firsts = array("d")
        self._offsets = array("q")     # where each text starts in the file
        self._in_memory: list[tuple[float, int, str]] = []  # after a failed write

    def __len__(self) -> int:
        return len(self._ids) + len(self._in_memory)

    def add(self, first: float, conn_id: int, text: str) -> None:
        data = text.encode() + b"\n"
        if not self._in_memory:
            try:
                if self._file is None:
                    self._file = _anonymous_file()
                self._file.write(data)
            except OSError:
                self._in_memory.append((first, conn_id, text))
                return
            self._ids.append(conn_id)
            self._firsts.append(first)
            self._offsets.append(self._size)
            self._size += len(data)
            return
        self._in_memory.append((first, conn_id, text))

    def records(self) -> Iterator[tuple[float, int, str]]:
        """(first packet, id, JSON text) of each, ordered by id (within one tracker, also by first packet)."""
        if self._file is not None:
            self._file.flush()
            fd = self._file.fileno()
            ids, firsts, offsets = self._ids, self._firsts, self._offsets
            ends = offsets[1:]
            ends.append(self._size)
            from_file = ((firsts[i], ids[i], os.pread(fd, ends[i] - offsets[i] - 1, offsets[i]).decode())
                         for i in sorted(range(len(ids)), key=ids.__getitem__))
        else:
            from_file = iter(())
        if not self._in_memory:
            yield from from_file
        else:
            import heapq

            yield from heapq.merge(from_file, sorted(self._in_memory, key=lambda r: r[1]), key=lambda r: r[1])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
