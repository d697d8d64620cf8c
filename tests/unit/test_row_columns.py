"""The rows the compiled core fills as records (engine.rowcols) are the Python rows (engine.records.row_of), field
for field, for every connection of real captures, at the end and at every second on the way (the TUI's ticks); and
their problems signals are problems.signals of those rows."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.engine import rowcols
from midstat_tui.engine.driver import Driver, RowChanges
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.records import ConnRow, row_of
from midstat_tui.problems import NONE, signals
from midstat_tui.tcp.connection import COMPILED
from tests.helpers import FIXTURES, shared

pytestmark = pytest.mark.skipif(not rowcols.available() or not COMPILED,
                                reason="no compiled core (or MIDSTAT_PURE_PYTHON)")

CAPTURES = [
    FIXTURES / "mixed_traffic.pcap",
    FIXTURES / "lossy_transfer.pcap",
    FIXTURES / "vlan_close.pcap",
    FIXTURES / "ipv6_close.pcap",
    FIXTURES / "midstream.pcap",
    FIXTURES / "refused.pcap",
    FIXTURES / "unreachable.pcap",  # a SYN answered by ICMP host unreachable: refused (problems.signals)
    FIXTURES / "reset_by_client.pcap",
    shared("ndpi/tests/cfgs/default/pcap/synscan.pcap"),
    shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap"),
    shared("zeek/Traces/tcp/ssh-dups.pcap"),
    shared("zeek/Traces/mixed-vlan-mpls.pcap"),
    shared("arkime/tests/pcap/wireshark-retrans.pcap"),
    shared("zeek/Traces/ftp/ipv6.pcap"),
]


def same(a: ConnRow, b: ConnRow) -> list[str]:
    """The fields that differ, in value or type (NaN equal to NaN)."""
    out = []
    for name, x, y in zip(ConnRow._fields, a, b, strict=True):
        if type(x) is not type(y):
            out.append(f"{name}: {x!r} ({type(x).__name__}) != {y!r} ({type(y).__name__})")
        elif x != y and not (isinstance(x, float) and math.isnan(x) and math.isnan(y)):
            out.append(f"{name}: {x!r} != {y!r}")
    return out


def check(conns: list) -> int:
    recs, odd = rowcols.records_of(conns)
    rows = rowcols.rows_of_records(recs)
    sig, some = rowcols.signals_of(recs)
    checked = 0
    for i, conn in enumerate(conns):
        if odd[i]:
            continue
        expected = row_of(conn)
        assert not same(rows[i], expected), (conn.id, same(rows[i], expected))
        want = signals(expected)
        assert bool(some[i]) == (want is not NONE) or all(math.isnan(x) for x in want), (conn.id, want)
        np.testing.assert_array_equal(sig[i], np.array(want, dtype=np.float64))
        checked += 1
    return checked


def captures() -> list[Path]:
    found = [p for p in CAPTURES if p.exists()]
    assert len(found) == len(CAPTURES), set(CAPTURES) - set(found)
    return found


def _replayed(path, columns: bool):
    """A session of `path` at `--speed 0` (rows as records made in C, or as Python rows), once it reached the end."""
    import time

    from midstat_tui.engine.session import Session

    source = FileSource(str(path))
    session = Session(Engine(source.datalink), source, live=False, speed=0.0, columns=columns)
    session.start()
    deadline = time.monotonic() + 30
    while not session.at_end and time.monotonic() < deadline:
        time.sleep(0.01)
    return session


@pytest.mark.parametrize("path", captures(), ids=lambda p: p.name)
def test_records_equal_python_rows_every_second(path: Path) -> None:
    source = FileSource(str(path))
    engine = Engine(source.datalink, verify_checksums=False)
    engine.tracker.track_changes()
    checked = 0

    def emit(position: float, reset: bool) -> None:
        nonlocal checked
        checked += check(list(engine.tracker.touched or ()))
        RowChanges().take(engine, position)  # clears the touched set, as a session's tick does

    driver = Driver(engine, emit, every_second=True)
    driver.run_packets(source.batches())
    checked += check(list(engine.tracker.table.values()))
    assert checked > 0


def test_every_capture_at_the_end() -> None:
    """Every connection of every shared capture (the ones that open), at the end of its file."""
    total = 0
    paths = sorted(p for p in shared("").rglob("*") if p.suffix in (".pcap", ".pcapng", ".trace"))
    for path in paths:
        try:
            source = FileSource(str(path))
            engine = Engine(source.datalink, verify_checksums=False)
            for batch in source.batches():
                engine.feed_batch(batch)
        except Exception:  # noqa: BLE001
            continue
        total += check(list(engine.tracker.table.values()))
    assert total > 1000


def test_the_record_store_keeps_records_by_slot_across_chunks() -> None:
    """The view's records by slot, in chunks of 2**16: what is put at any slot (several chunks at once, a chunk
    added as it grows) is what is taken back, as one plain array would hold it."""
    rng = np.random.default_rng(11)
    size = 3 * (1 << rowcols.RecordStore.SHIFT) + 123
    store = rowcols.RecordStore()
    store.ensure(size // 2)
    plain = np.zeros(size, dtype=rowcols.ROW_DTYPE)
    for round_ in range(4):
        if round_ == 2:
            store.ensure(size)
        top = size // 2 if round_ < 2 else size
        slots = rng.choice(top, size=5000, replace=False).astype(np.int64)
        recs = np.zeros(len(slots), dtype=rowcols.ROW_DTYPE)
        recs["id"] = rng.integers(0, 1 << 40, len(slots))
        recs["first"] = rng.random(len(slots))
        recs["c_addr"] = [bytes(rng.integers(0, 256, 16, dtype=np.uint8)) for _ in range(len(slots))]
        store.put(slots, recs)
        plain[slots] = recs
        _reads_as(store, plain, rng, top)


@pytest.mark.parametrize("path", [FIXTURES / "mixed_traffic.pcap", shared("zeek/Traces/tcp/ssh-dups.pcap")],
                         ids=lambda p: p.name)
def test_a_sessions_block_reads_as_the_dict_of_rows_it_stands_for(path: Path) -> None:
    """A session's pull as a RowBlock (several ticks' changes kept as parts, a connection changed in more than one)
    reads as the dict of rows a session without records hands over; it survives a pickle (a shard's pipe)."""
    import pickle


    pulled = {}
    for columns in (True, False):
        session = _replayed(path, columns)
        pulled[columns] = session.pull().changes
        session.stop()
    block, rows = pulled[True], pulled[False]
    assert isinstance(block, rowcols.RowBlock) and isinstance(rows, dict)
    assert len(block.parts) > 1 and len(block) >= len(rows) > 0
    for name, got in (("block", dict(block.items())), ("pickled", dict(pickle.loads(pickle.dumps(block)).items())),
                      ("merged into a dict", {**{}, **block})):
        assert got.keys() == rows.keys(), name
        for conn_id, row in rows.items():
            assert (got[conn_id] is None) == (row is None), name
            if row is not None:
                assert not same(got[conn_id], row), (name, conn_id, same(got[conn_id], row))


def test_groups_asked_between_slices_code_the_records_as_they_come() -> None:
    """A view asked for its groups between the slices of a records pull (a grouped view while a flood arrives)
    codes each slice's new rows as they come: its groups, labels and filter matches are those of a view fed the
    same changes as Python rows."""

    from midstat_tui.conn_view import ConnView

    path = shared("ndpi/tests/cfgs/default/pcap/1kxun.pcap")
    views = {}
    for columns in (True, False):
        session = _replayed(path, columns)
        view = views[columns] = ConnView()
        view.groups("server")  # grouped before anything arrived
        view.take(session.pull())
        while not view.catch_up(97):
            view.recompute(sort=False)
            view.groups("client-host")
        view.recompute()
        session.stop()
    made, python = views[True], views[False]
    for grouping in ("server", "server-host", "client-host", "vlan", "zeek"):
        # (the codes' order may differ: a connection that came and went between two pulls is coded only when its
        # changes arrive as parts; a group with no connection is not shown)
        a, b = made.groups(grouping), python.groups(grouping)
        shown = [{label: tuple(float(t.columns[k][i]) for k in sorted(t.columns)) for i, label in enumerate(t.labels)}
                 for t in (a, b)]
        assert shown[0] == shown[1] and shown[0], grouping
    counts = []
    for text in ("net 10.0.0.0/8", "net 192.168.0.0/16 and port 80", "not host 192.168.2.126"):
        made.set_query(text)
        python.set_query(text)
        made.recompute()
        python.recompute()
        # the same rows in the same sort (rows that tie on the sort key may come in another order: the slots
        # differ where a connection came and went between two pulls)
        assert sorted(made.order) == sorted(python.order), text
        assert [made.rows[i].first for i in made.order] == [python.rows[i].first for i in python.order], text
        counts.append(len(made.order))
    assert max(counts) > 0 and min(counts) < len(made.rows)  # the filters pass some rows and drop some



def _reads_as(store, plain, rng, top: int) -> None:
    """The store reads as the plain array: 3,000 random slots taken at once, 50 of them one by one."""
    probe = rng.choice(top, size=3000, replace=False).astype(np.int64)
    assert store.take(probe).tolist() == plain[probe].tolist()
    for slot in probe[:50].tolist():
        assert store.one(slot) == plain[slot].item()

def _random_records(rng: np.random.Generator, count: int) -> np.ndarray:
    recs = np.zeros(count, dtype=rowcols.ROW_DTYPE)
    recs["id"] = rng.integers(0, 1 << 40, count)
    recs["first"] = rng.random(count)
    recs["c_port"] = rng.integers(0, 1 << 16, count)
    return recs


def test_the_record_store_borrows_a_floods_records_and_never_writes_them() -> None:
    """Large puts on fresh slots that follow each other are kept by reference (no copy); writing one of those
    slots again copies its segment first, so the array handed over is never changed; small puts, puts on slots used
    before and slots that skip are copied; every take and one() reads as one plain array would hold it."""
    rng = np.random.default_rng(5)
    shift = rowcols.RecordStore.SHIFT
    size = 2 * (1 << shift) + 777
    store = rowcols.RecordStore()
    store.ensure(size)
    plain = np.zeros(size, dtype=rowcols.ROW_DTYPE)
    big = _random_records(rng, 30_000)  # a pull's records, applied in slices as the view does
    kept = big.copy()
    top = 0
    for start in range(0, len(big), 10_000):
        part = big[start:start + 10_000]
        slots = np.arange(top, top + len(part), dtype=np.int64)
        store.put(slots, part)
        plain[slots] = part
        top += len(part)
    assert store.borrowed == len(big)
    small = _random_records(rng, 100)  # too few to borrow
    slots = np.arange(top, top + 100, dtype=np.int64)
    store.put(slots, small)
    plain[slots] = small
    top += 100
    assert store.borrowed == len(big)
    for _ in range(3):  # rows written again: in borrowed segments, in chunks, several at once
        slots = rng.choice(top, size=2000, replace=False).astype(np.int64)
        recs = _random_records(rng, len(slots))
        store.put(slots, recs)
        plain[slots] = recs
        _reads_as(store, plain, rng, top)
    assert store.borrowed == 0  # each segment was written again: copied
    assert big.tolist() == kept.tolist()  # the array handed over is unchanged
    later = _random_records(rng, 5000)  # fresh slots past a gap: borrowed, the gap reads as zeros
    slots = np.arange(top + 10, top + 5010, dtype=np.int64)
    store.put(slots, later)
    plain[slots] = later
    assert store.borrowed == 5000
    probe = np.arange(top - 5, top + 5015, dtype=np.int64)
    assert store.take(probe).tolist() == plain[probe].tolist()


def test_the_record_store_copies_what_it_borrowed_of_an_array_mostly_not_borrowed() -> None:
    """After a pull (`settle`), segments borrowed from an array less than half of which was borrowed are copied
    (the rest of the array could be kept alive by them); an array mostly borrowed stays borrowed."""
    rng = np.random.default_rng(6)
    store = rowcols.RecordStore()
    store.ensure(1 << 17)
    mostly = _random_records(rng, 8000)
    store.put(np.arange(0, 6000, dtype=np.int64), mostly[:6000])
    store.settle()
    assert store.borrowed == 6000
    thin = _random_records(rng, 8000)
    store.put(np.arange(6000, 8000, dtype=np.int64), thin[:2000])
    assert store.borrowed == 8000
    store.settle()
    assert store.borrowed == 6000
    probe = np.arange(0, 8000, dtype=np.int64)
    assert store.take(probe).tolist() == np.concatenate([mostly[:6000], thin[:2000]]).tolist()
