"""Big tables and Python's cyclic garbage collector.

A full pass of the collector looks at every container object alive: with a million connection rows (named tuples,
which the collector keeps tracking) one pass took 0.5-1.2 s, during which no other thread runs, so the face answered
no key (benchmarks/tui_flood.py). The rows and the engine's connections hold no reference cycles: a replaced row is
freed at once by its reference count. So, with a big table, what is alive is set aside (`gc.freeze`) and later passes
look only at what came after; with a small table again, it is given back to the collector. While a big batch of rows
is built at once, the collector waits until it is built.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

BIG = 100_000  # rows from which what is alive is set aside


def settle(rows: int) -> None:
    """After a table reached `rows` rows: set what is alive aside when that is big, give it back when small."""
    if rows >= BIG:
        gc.freeze()
    elif rows < BIG // 2 and gc.get_freeze_count():
        gc.unfreeze()


@contextlib.contextmanager
def building(rows: int) -> Iterator[None]:
    """Around building `rows` new rows at once: no collector pass in the middle of a big batch (each would look at
    everything built so far), and the batch set aside once built."""
    if rows < BIG or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.freeze()
