"""The connections that left the table, kept for `--summary` as text (their record's JSON, or their table cells),
not as live objects.

Under a SYN flood with a small `--max-conns`, a million connections pass through a thousand-entry table, and
`--summary` must still list every one at the end. Held as `Connection` objects they took 2.8 GB. Here each is
encoded when it leaves (its summary cannot change any more) and written, one line, to an anonymous temporary file:
created unlinked (O_TMPFILE where the kernel has it), so nothing is left behind whatever ends the process. Memory
keeps 24 bytes a connection (id, first packet time, offset) to give them back in the order they started. Should
the file fail (a full disk), the texts stay in memory instead: slower to fill up, never lost.
"""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Iterator
from itertools import islice


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


_CHUNK = 2048  # texts written at a time


class DepartedLog:
    """Texts (ASCII, as engine.records.record_text and output.plain.table_cells write them; one line each) with their
    connection's id and first packet time."""

    def __init__(self) -> None:
        self._file = None
        self._size = 0                 # bytes handed to the file so far, pending ones included
        self._ids = array("q")
        self._firsts = array("d")
        self._offsets = array("q")     # where each text starts in the file
        self._pending: list[str] = []  # the last texts, not written yet
        self._in_memory: list[tuple[float, int, str]] = []  # after a failed write, and any text not ASCII
        self._failed = False

    def __len__(self) -> int:
        return len(self._ids) + len(self._in_memory)

    def add(self, first: float, conn_id: int, text: str) -> None:
        if self._failed or not text.isascii():
            self._in_memory.append((first, conn_id, text))
            return
        self._ids.append(conn_id)
        self._firsts.append(first)
        self._offsets.append(self._size)
        self._size += len(text) + 1
        self._pending.append(text)
        if len(self._pending) >= _CHUNK:
            self._write()

    def _write(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            if self._file is None:
                self._file = _anonymous_file()
            self._file.write(("\n".join(pending) + "\n").encode())
            self._file.flush()
        except OSError:
            # the file is full or gone: these texts and every later one stay in memory
            self._failed = True
            n = len(pending)
            keep = len(self._ids) - n
            self._in_memory.extend(zip(self._firsts[keep:], self._ids[keep:], pending, strict=True))
            del self._ids[keep:], self._firsts[keep:], self._offsets[keep:]

    def records(self) -> Iterator[tuple[float, int, str]]:
        """(first packet, id, JSON text) of each, ordered by id (within one tracker, also by first packet)."""
        self._write()
        from_file: Iterator[tuple[float, int, str]] = iter(())
        if self._file is not None and self._ids:
            from_file = self._read_back()
        if not self._in_memory:
            yield from from_file
        else:
            import heapq

            yield from heapq.merge(from_file, sorted(self._in_memory, key=lambda r: r[1]), key=lambda r: r[1])

    def _read_back(self) -> Iterator[tuple[float, int, str]]:
        ids, firsts, offsets = self._ids, self._firsts, self._offsets
        count = len(ids)
        # under a flood the oldest leave first: the file is usually in id order already, and then read straight
        in_order = all(a < b for a, b in zip(ids, islice(ids, 1, None), strict=False))
        order = range(count) if in_order else sorted(range(count), key=ids.__getitem__)
        # a buffered reader of its own: a seek within its buffer is no system call
        with open(self._file.fileno(), "rb", closefd=False) as reader:
            reader.seek(0)
            for i in order:
                if not in_order:
                    reader.seek(offsets[i])
                yield firsts[i], ids[i], reader.readline()[:-1].decode()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
