"""The TUI's row hand-off at a SYN flood (issue #11, flood3): the compiled core fills the records without the
interpreter lock (the face's thread runs meanwhile), the engine files its connections by id only when asked, and the
connection view makes room once for a flood's two big pulls, finding its new rows without a look in its dict.

The flood: SYNs from distinct sources fed straight to a real engine (checksums zero, not verified)."""

from __future__ import annotations

import struct
import sys
import threading
import time

import numpy as np
import pytest

from midstat_tui.conn_view import ConnView
from midstat_tui.engine import rowcols
from midstat_tui.engine.driver import RowChanges, Tick
from midstat_tui.engine.pipeline import Engine
from midstat_tui.tcp.connection import COMPILED
from tests import table_pcap

pytestmark = pytest.mark.skipif(not rowcols.available() or not COMPILED,
                                reason="no compiled core (or MIDSTAT_PURE_PYTHON)")

_TEMPLATE = table_pcap._frame("10.0.0.1", 1024, "192.168.77.1", 80, table_pcap.S, 1, 0)
_SRC = 14 + 12  # the IPv4 source address in the frame
_SPORT = 14 + 20


def syns(first: int, count: int, t0: float) -> list[tuple[float, bytes]]:
    """SYNs from `count` distinct sources (10.x.y.z, numbered from `first`), 100 µs apart."""
    out = []
    frame = bytearray(_TEMPLATE)
    for i in range(first, first + count):
        struct.pack_into("!IH", frame, _SRC, 0x0A000000 + i, 1024 + (i & 0x7FFF))
        out.append((t0 + (i - first) * 1e-4, bytes(frame)))
    return out


def _engine() -> Engine:
    engine = Engine(1, verify_checksums=False)  # (link type 1: Ethernet)
    engine.tracker.track_changes()
    engine.tracker.touched = set()
    return engine


def test_row_cols_lets_other_threads_run() -> None:
    """With a switch interval of 5 s nothing else runs while this thread holds the interpreter lock: another
    thread's stamps taken during a row_cols call mean the call let go of the lock (it fills the records without
    it). The records are still the rows (test_row_columns.py checks them field by field)."""
    engine = _engine()
    engine.feed_batch(syns(0, 50_000, 1000.0))
    conns = list(engine.tracker.table.values())
    out = np.empty(len(conns), dtype=rowcols.ROW_DTYPE)
    stamps: list[float] = []
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            stamps.append(time.perf_counter())
            time.sleep(0)  # lets go of the lock at once: this thread never keeps the other waiting

    interval = sys.getswitchinterval()
    spinner = threading.Thread(target=spin)
    spinner.start()
    ran = []
    try:
        while len(stamps) < 10:
            time.sleep(0.001)
        sys.setswitchinterval(5.0)
        for _ in range(20):
            before = len(stamps)
            odd = rowcols._core.row_cols(conns, out, rowcols.ENDED_NAMES, rowcols.RST_NAMES)
            ran.append(len(stamps) - before)
            if ran[-1]:
                break
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        spinner.join()
    assert odd == 0 and out["id"].tolist() == [conn.id for conn in conns]
    assert ran[-1] > 0, ran


def test_connections_are_filed_by_id_when_asked() -> None:
    """A take files no connection by id (a flood's hundreds of thousands a tick); asking for `by_id` files every
    connection taken so far, a removal finds its connection, a reset starts afresh."""
    engine = _engine()
    changes = rowcols.ColumnRowChanges()
    engine.feed_batch(syns(0, 3000, 1000.0))
    first = changes.take(engine, 1001.0)
    engine.feed_batch(syns(3000, 2000, 1001.0))
    second = changes.take(engine, 1002.0)
    assert len(first) == 3000 and len(second) == 2000
    assert changes._by_id == {} and len(changes._unfiled) == 2  # nothing filed yet
    table = {conn.id: conn for conn in engine.tracker.table.values()}
    assert len(table) == 5000
    by_id = changes.by_id
    assert by_id.keys() == table.keys() and all(by_id[i] is table[i] for i in table)
    assert not changes._unfiled
    # the Python rows' RowChanges files the same connections
    plain = RowChanges()
    plain.take(engine, 1002.0, reset=True)
    assert plain.by_id.keys() == by_id.keys()
    engine.feed_batch(syns(5000, 10, 1002.0))
    changes.take(engine, 1003.0)
    assert len(changes._unfiled) == 1
    gone = next(iter(table))
    engine.tracker.removed = [gone]  # as the tracker says of a connection that left its table
    block = changes.take(engine, 1003.5)
    assert gone in block and block[gone] is None and gone not in changes.by_id and len(changes.by_id) == 5009
    changes.take(engine, 1004.0, reset=True)
    assert len(changes.by_id) == len(engine.tracker.table)


def test_a_flood_makes_room_once_and_reads_as_python_rows() -> None:
    """A flood's first pull into an empty view makes room for twice its new rows: the second pull as big fits
    without a grow (a grow at a million rows copies some 100 MB while the face waits). Two pulls that change rows
    already there (ids lower than the newest, in the touched set's order) make no room ahead. Throughout, the view
    shows what a view fed the same changes as Python rows shows: rows, order, problems. The new rows' records are
    kept by reference (RecordStore's borrowed segments), copied once written again; a new row's id is known new
    without a look in the view's dict (above the highest id when its pull began)."""
    engine = _engine()
    made, python = rowcols.ColumnRowChanges(), RowChanges()
    views = {True: ConnView(), False: ConnView()}
    n = 20_000

    def step(position: float) -> dict[bool, int]:
        touched = set(engine.tracker.touched or ())  # (each take clears it: both read the same one)
        rows = python.take(engine, position)
        engine.tracker.touched = touched
        recs = made.take(engine, position)
        sizes = {}
        for columns, changes in ((True, recs), (False, rows)):
            view = views[columns]
            view.take(Tick(position, engine.stats(), changes))
            while not view.catch_up(3_000):
                pass
            sizes[columns] = len(view._ids)
            view.recompute()
        return sizes

    class Looked(dict):  # the view's id -> slot dict, counting the looks in it
        looks = 0

        def get(self, key, default=None):
            Looked.looks += 1
            return super().get(key, default)

    views[True]._slot = Looked()
    engine.feed_batch(syns(0, n, 1000.0))
    first = step(1003.0)[True]
    assert first >= 2 * n  # room ahead
    assert views[True]._recs.borrowed == n  # the new rows' records kept by reference (flood4), not copied
    engine.feed_batch(syns(n, n, 1003.0))
    assert step(1006.0)[True] == first  # fitted
    assert views[True]._recs.borrowed == 2 * n
    assert Looked.looks == 0  # every id new: above the highest before its pull (flood4), none looked up
    engine.feed_batch(syns(n // 2, n, 1006.0))  # SYNs again on half the first pull's tuples and the second's
    engine.feed_batch(syns(0, n // 4, 1007.0))
    assert step(1010.0)[True] == first
    assert Looked.looks >= n  # rows already there are found in the dict
    a, b = views[True], views[False]
    assert len(a.rows) == len(b.rows) == 2 * n
    assert a.order == b.order
    assert a.problem_counts == b.problem_counts and a.problem_counts["unanswered_syn"] == 2 * n
    for conn_id in a.order[:: 997]:
        assert a.rows[conn_id] == b.rows[conn_id]


def test_a_reset_pull_starts_a_new_record_store_that_borrows_it() -> None:
    """After a seek every row comes again (a reset pull): the view starts a new record store, so the pull's records
    are kept by reference rather than copied over the old ones, and the rows read as before the reset."""
    engine = _engine()
    made = rowcols.ColumnRowChanges()
    view = ConnView()
    n = 12_000
    engine.feed_batch(syns(0, n, 1000.0))
    view.take(Tick(1003.0, engine.stats(), made.take(engine, 1003.0)))
    while not view.catch_up(4_000):
        pass
    view.recompute()
    before = {conn_id: view.rows[conn_id] for conn_id in view.order[::101]}
    old = view._recs
    view.take(Tick(1004.0, engine.stats(), made.take(engine, 1004.0, reset=True), reset=True))
    while not view.catch_up(4_000):
        pass
    view.recompute()
    assert view._recs is not old and view._recs.borrowed == n
    assert len(view.rows) == n
    for conn_id, row in before.items():
        assert view.rows[conn_id] == row
