"""The table's view takes a pull's changes a slice at a time when asked (a flood's pull holds hundreds of thousands of
rows): sliced or whole, it ends with the same rows in the same order; a reset drops what was queued before it."""

from __future__ import annotations

from midstat_tui.capture.files import FileSource
from midstat_tui.conn_view import ConnView
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.records import row_of
from midstat_tui.engine.session import Pulled
from tests.helpers import shared

SCAN = shared("ndpi/tests/cfgs/default/pcap/synscan.pcap")  # some 2,000 connections


def _pulls() -> list[Pulled]:
    """The scan's rows in two pulls: the first half of its packets, then the rest (rows updated and new)."""
    source = FileSource(str(SCAN))
    packets = [p for batch in source.batches() for p in batch]
    engine = Engine(source.datalink)
    engine.tracker.track_changes()
    pulls = []
    for part in (packets[:len(packets) // 2], packets[len(packets) // 2:]):
        engine.feed_batch(part)
        pulls.append(Pulled(part[-1][0], {}, {c.id: row_of(c) for c in engine.tracker.touched}))
        engine.tracker.touched = set()
    return pulls


def _whole(pulls: list[Pulled]) -> ConnView:
    view = ConnView()
    for pulled in pulls:
        view.apply(pulled)
    view.recompute()
    return view


def test_sliced_equals_whole():
    pulls = _pulls()
    assert len(pulls[0].changes) > 500 and len(pulls[1].changes) > 500
    whole = _whole(pulls)
    sliced = ConnView()
    for pulled in pulls:
        sliced.take(pulled)
    assert sliced.behind == sum(len(p.changes) for p in pulls)
    steps = 0
    while not sliced.catch_up(97):
        steps += 1
        assert sliced.behind == sum(len(p.changes) for p in pulls) - 97 * steps
        assert len(sliced.rows) <= 97 * steps
    assert steps >= 10 and sliced.behind == 0
    sliced.recompute()
    assert sliced.rows == whole.rows and sliced.order == whole.order and sliced.now == whole.now


def test_a_reset_drops_what_was_queued_before_it():
    first, second = _pulls()
    view = ConnView()
    view.take(first)
    view.catch_up(10)
    view.take(Pulled(second.position, {}, second.changes, reset=True))
    assert view.catch_up()
    view.recompute()
    assert set(view.rows) == set(second.changes)


def test_the_order_as_an_array_and_as_a_list_agree():
    """The table reads the order through id_at/index_of/shown_count (no list of every id); they answer as the
    list does, after a filter, a re-sort and rows let go (a slot of last time's order given to another row)."""
    pulls = _pulls()
    view = _whole(pulls)
    for query, sort in (("", "age"), ("state syn-sent", "server"), ("not ended", "pkts_c2s")):
        view.set_query(query)
        view.sort_by(sort)
        view.recompute()
        order = view.order
        assert view.shown_count == len(order) > 0
        for i in (0, len(order) // 2, len(order) - 1):
            assert view.id_at(i) == order[i] and view.index_of(order[i]) == i
        assert view.index_of(-5) is None
    gone = view.order[:100]
    view.apply(Pulled(view.now + 1, {}, dict.fromkeys(gone)))  # let go: their slots are free for new rows
    view.recompute()
    assert not set(gone) & set(view.order) and view.shown_count == len(view.order)
    assert sorted(view.order) == sorted(i for i, r in view.rows.items() if r.ended is None)
