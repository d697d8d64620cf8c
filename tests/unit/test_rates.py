"""Per-connection rates (view.ConnView: bytes/s each way over the last RATE_WINDOW seconds, in packet time), fed by
the real engine over a real capture one second at a time, checked against the byte counters at both ends of the
window."""

from __future__ import annotations

import math

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.conn_view import RATE_WINDOW, ConnView
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.records import row_of
from midstat_tui.engine.session import Pulled
from tests.helpers import shared

CAPTURE = shared("ndpi/tests/cfgs/default/pcap/reddit.pcap")  # 14 s of HTTPS to many servers


def _ticks(path):
    """(t, {id: row}) once a second of packet time, from the engine fed packet by packet."""
    source = FileSource(str(path))
    engine = Engine(source.datalink, verify_checksums=False)
    tick = None
    for batch in source.batches():
        for ts, frame in batch:
            if tick is None:
                tick = math.floor(ts) + 1.0
            while ts >= tick:
                yield tick, {c.id: row_of(c) for c in engine.snapshot(tick).connections}
                tick += 1.0
            engine.feed(ts, frame)
    yield tick, {c.id: row_of(c) for c in engine.snapshot(tick).connections}


def test_rates_are_the_bytes_of_the_last_seconds():
    view = ConnView()
    history: list[tuple[float, dict]] = []
    checked = 0
    busy = 0
    held: set[int] = set()
    for t, rows in _ticks(CAPTURE):
        changes = {i: row for i, row in rows.items()}
        changes.update({i: None for i in held - rows.keys()})
        held = set(rows)
        view.apply(Pulled(t, {}, changes))
        view.recompute()
        history.append((t, rows))
        if len(history) <= RATE_WINDOW + 1:
            continue
        then = history[-1 - int(RATE_WINDOW)][1]
        for conn_id, row in rows.items():
            old = then.get(conn_id)
            for key, field in (("rate_c2s", "bytes_c2s"), ("rate_s2c", "bytes_s2c")):
                expected = (getattr(row, field) - (getattr(old, field) if old else 0)) / RATE_WINDOW
                assert view.rate(key, conn_id) == pytest.approx(expected), (t, conn_id, key)
                checked += 1
                busy += expected > 0
    assert checked > 100 and busy > 10


def test_sorting_by_a_rate_gives_the_top_talkers():
    view = ConnView()
    for t, rows in list(_ticks(CAPTURE))[:9]:
        view.apply(Pulled(t, {}, dict(rows)))
    view.sort_by("rate_s2c", reverse=True)
    view.recompute()
    rates = [view.rate("rate_s2c", i) for i in view.order]
    assert rates == sorted(rates, reverse=True) and rates[0] > 0


def test_rates_start_afresh_after_a_seek():
    view = ConnView()
    ticks = list(_ticks(CAPTURE))
    for t, rows in ticks[:8]:
        view.apply(Pulled(t, {}, dict(rows)))
    assert any(view.rate("rate_s2c", i) > 0 for i in view.rows)
    t, rows = ticks[9]
    view.apply(Pulled(t, {}, dict(rows), reset=True))  # a seek: the rows come afresh, their bytes are no news
    assert all(view.rate(k, i) == 0 for i in view.rows for k in ("rate_c2s", "rate_s2c"))


def test_a_pull_applied_in_slices_gives_the_same_rates():
    """A big pull is applied a slice at a time (view.catch_up): the rates are those of the pull applied at once."""
    whole, sliced = ConnView(), ConnView()
    for t, rows in list(_ticks(CAPTURE))[:10]:
        whole.apply(Pulled(t, {}, dict(rows)))
        sliced.take(Pulled(t, {}, dict(rows)))
        while not sliced.catch_up(3):
            pass
    assert whole.rows.keys() == sliced.rows.keys()
    rates = [(whole.rate(k, i), sliced.rate(k, i)) for i in whole.rows for k in ("rate_c2s", "rate_s2c")]
    assert all(a == pytest.approx(b) for a, b in rates) and any(a > 0 for a, _ in rates)
