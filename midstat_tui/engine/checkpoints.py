"""An engine's whole state kept for time travel (engine.session seeks back to it), made and read back in slices.

pickle holds the interpreter lock for as long as one `dumps` or `loads` runs: a table of a million connections took
some 27 s in one call, and the face (another thread of the same process) could not answer a key meanwhile. So the
connections are pickled apart from the rest, CHUNK at a time, and the lock is given back between slices; the rest of
the engine is pickled with the tracker's references to connections (its table, the ended ones' order, the changed
set) written as keys, and put back from the connections by key.

`CheckpointBudget` says when a checkpoint is worth its price: what they have cost so far, plus the estimate for the
next one, must stay within a share of the replay's time (one expected to take under SMALL is always taken). A
replay that races through a flood takes none while its table is huge (seeking back then replays from an earlier
state: the time a replay takes, not more); a replay at a pace takes them as usual.
"""

from __future__ import annotations

import pickle
import time
from collections import OrderedDict
from dataclasses import dataclass

from midstat_tui.engine.pipeline import Engine

CHUNK = 2048            # connections per pickle slice (some 50 ms): the lock is given back between slices
SHARE = 0.1             # checkpoints may take this share of a replay's time
FIRST_GUESS = 30e-6     # seconds to keep one connection, until a checkpoint has measured it
SMALL = 0.005           # seconds: a checkpoint expected to take less is always taken


@dataclass
class Frozen:
    """An engine's state: the engine without its connections, and the connections in slices."""

    engine: bytes
    connections: list[bytes]
    size: int


def _yield_lock() -> None:
    time.sleep(0)  # lets another thread (the face) take the interpreter lock between slices


def freeze(engine: Engine) -> Frozen:
    """The engine's whole state, without its event sink (a face's callback is not part of it)."""
    tracker = engine.tracker
    table = tracker.table
    conns = list(table.values())
    slices = []
    for start in range(0, len(conns), CHUNK):
        slices.append(pickle.dumps(conns[start:start + CHUNK], protocol=pickle.HIGHEST_PROTOCOL))
        _yield_lock()
    ended, touched, sink = tracker._ended, tracker.touched, tracker.on_event
    # the export's hooks (engine.headless.start_export) are not part of the state either: a thawed engine has none
    hooks = (tracker.on_end, tracker.on_remove, engine.on_tick, engine.export_stats)
    # every ended and every changed connection is one of the table's (they are kept by key): written as keys
    tracker.table = {}
    tracker._ended = list(ended)  # type: ignore[assignment]
    tracker.touched = None if touched is None else [c.key for c in touched]  # type: ignore[assignment]
    tracker.on_event = tracker.on_end = tracker.on_remove = engine.on_tick = engine.export_stats = None
    try:
        head = pickle.dumps(engine, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        tracker.table, tracker._ended, tracker.touched, tracker.on_event = table, ended, touched, sink
        tracker.on_end, tracker.on_remove, engine.on_tick, engine.export_stats = hooks
    return Frozen(head, slices, len(conns))


def thaw(frozen: Frozen) -> Engine:
    """A new engine in the state `freeze` kept."""
    engine: Engine = pickle.loads(frozen.engine)
    table = {}
    for part in frozen.connections:
        for conn in pickle.loads(part):
            table[conn.key] = conn
        _yield_lock()
    tracker = engine.tracker
    tracker.table = table
    tracker._ended = OrderedDict((key, table[key]) for key in tracker._ended)
    if tracker.touched is not None:
        tracker.touched = {table[key] for key in tracker.touched}
    return engine


class CheckpointBudget:
    """Whether the next checkpoint fits: checkpoints cost at most SHARE of the time a replay has run."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._started = clock()
        self.spent = 0.0
        self.per_connection = FIRST_GUESS
        self.skipped = 0

    def allows(self, connections: int) -> bool:
        guess = connections * self.per_connection
        if guess <= SMALL:  # a small table: always worth it (a seek back then costs nothing)
            return True
        elapsed = self._clock() - self._started
        if self.spent + guess <= SHARE * (elapsed + guess):
            return True
        self.skipped += 1
        return False

    def paid(self, seconds: float, connections: int) -> None:
        self.spent += seconds
        if connections >= CHUNK:  # a measure worth learning from
            self.per_connection = seconds / connections
