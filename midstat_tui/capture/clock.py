"""One clock for the packets of a capture file, whichever shard tracks them.

A packet dated before one read earlier in the file (a clock stepped back, captures merged out of order) is *late*:
it is dated at the latest time read so far, and counted. This is done where the file is read, over every packet
of the file, before a shard keeps its share: so a far-future packet moves every shard's clock (not only the clock of
the shard that owns it), and the count is the same on one core and on several (each shard counts the late packets
it keeps; every packet is kept by exactly one shard). Each pass over the file (a seek in the TUI) starts a new clock.

Times are compared as whole microseconds (what libpcap hands out), and a late packet gets the float of the latest
packet's time, made as every packet's is (sec + usec * 1e-6): equal to that packet's own timestamp.
"""

from __future__ import annotations

try:
    from midstat_tui._core import in_order as _in_order
except ImportError:  # no compiled core: numpy finds the common case too
    _in_order = None

_NONE: list[tuple[int, float]] = []


def _float(micro: int) -> float:
    sec, usec = divmod(micro, 1_000_000)
    return sec + usec * 1e-6


class PacketClock:
    """The latest time read so far in one pass over a file, and how many packets came dated before it."""

    __slots__ = ("latest", "late")

    def __init__(self) -> None:
        self.latest = -1   # whole microseconds; -1: nothing read yet
        self.late = 0      # late packets among those delivered (the caller counts: it knows which it keeps)

    def reset(self) -> None:
        self.latest = -1
        self.late = 0

    def late_in_meta(self, meta: bytes) -> list[tuple[int, float]]:
        """The late packets of a `next_batch` result, as (index, time to date it at); moves the clock past them.
        The common case (no packet earlier than the one before it) costs one pass in C (a few array operations a
        batch without the compiled core)."""
        if _in_order is not None:
            latest = _in_order(meta, self.latest)
            if latest >= 0:
                self.latest = latest
                return _NONE
        import numpy as np  # (here: a run that never meets a late packet does not load numpy)

        fields = np.frombuffer(meta, dtype=np.uint32).reshape(-1, 4)
        if not len(fields):
            return _NONE
        micros = fields[:, 0].astype(np.int64) * 1_000_000 + fields[:, 1]
        latest = self.latest
        if micros[0] >= latest and (len(micros) == 1 or bool((micros[1:] >= micros[:-1]).all())):
            self.latest = int(micros[-1])
            return _NONE
        before = np.maximum.accumulate(np.concatenate(([latest], micros[:-1])))
        late = np.flatnonzero(micros < before)
        self.latest = max(latest, int(micros.max()))
        return [(int(i), _float(int(before[i]))) for i in late]

    def date(self, sec: int, usec: int) -> float | None:
        """One packet read on its own (a stream, the walk to a cut): None if it is on time, else the time to date it
        at; moves the clock past it."""
        micro = sec * 1_000_000 + usec
        if micro >= self.latest:
            self.latest = micro
            return None
        return _float(self.latest)
