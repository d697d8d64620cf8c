"""Checkpoints for time travel (engine.checkpoints): an engine frozen in slices and thawed goes on exactly as the
engine it was taken from; the budget keeps checkpoints within their share of a replay's time."""

from __future__ import annotations

import pytest

from midstat_tui.capture.files import FileSource
from midstat_tui.engine import checkpoints
from midstat_tui.engine.checkpoints import CheckpointBudget, freeze, thaw
from midstat_tui.engine.pipeline import Engine
from midstat_tui.engine.records import row_of
from midstat_tui.tcp.connection import COMPILED_AVAILABLE
from tests.helpers import FIXTURES, shared


def _packets(path) -> list[tuple[float, bytes]]:
    source = FileSource(str(path))
    return [p for batch in source.batches() for p in batch]


def _state(engine: Engine) -> tuple:
    tracker = engine.tracker
    rows = {key: row_of(conn) for key, conn in tracker.table.items()}
    stats = {k: v for k, v in engine.stats().items() if k != "hints"}
    return rows, stats, list(tracker._ended), sorted(tracker.core.timers), list(tracker.core.handshakes)


@pytest.mark.parametrize("compiled", [False, True] if COMPILED_AVAILABLE else [False])
@pytest.mark.parametrize("path", [FIXTURES / "mixed_traffic.pcap", shared("ndpi/tests/cfgs/default/pcap/synscan.pcap")])
def test_a_thawed_engine_goes_on_as_the_original(monkeypatch, compiled, path):
    monkeypatch.setattr(checkpoints, "CHUNK", 3)  # many slices, one connection split from the next
    packets = _packets(path)
    cut = len(packets) // 2
    whole = Engine(1, compiled=compiled)
    whole.tracker.track_changes()
    whole.feed_batch(packets[:cut])
    frozen = freeze(whole)
    assert len(frozen.connections) == -(-len(whole.tracker.table) // 3) and len(frozen.connections) > 1
    copy = thaw(frozen)
    assert _state(copy) == _state(whole)
    # the copy's connections are its own, and its indexes point at them, not at the original's
    for key, conn in copy.tracker._ended.items():
        assert copy.tracker.table[key] is conn and whole.tracker.table[key] is not conn
    assert {c.key for c in copy.tracker.touched} == {c.key for c in whole.tracker.touched}
    assert all(copy.tracker.table[c.key] is c for c in copy.tracker.touched)
    whole.feed_batch(packets[cut:])
    copy.feed_batch(packets[cut:])
    assert _state(copy) == _state(whole)


def test_the_budget_keeps_checkpoints_to_their_share():
    now = [0.0]
    budget = CheckpointBudget(clock=lambda: now[0])
    now[0] = 10.0
    assert budget.allows(1000)                  # 1,000 x 30 us = 30 ms of 10 s: fine
    budget.paid(0.5, 50_000)                    # measured: 10 us a connection
    assert budget.per_connection == pytest.approx(1e-5)
    assert not budget.allows(1_000_000)         # 10 s more, when 0.5 s of 10 s are spent: not now
    assert budget.skipped == 1
    assert budget.allows(400)                   # 4 ms: small ones are always taken
    now[0] = 200.0
    assert budget.allows(1_000_000)             # 10.5 s of 210 s: within a tenth
    assert budget.allows(0)
