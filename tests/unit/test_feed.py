"""capture.feed through FileSource: a .gz is reread from any packet (a seek feeds it afresh), and no feeder is left
once the source is closed, whether it was read to the end or not."""

from __future__ import annotations

import os

from midstat_tui.capture.files import FileSource
from tests.helpers import children, shared

GZ = str(shared("zeek/Traces/echo-connections.pcap.gz"))


def _children() -> set[int]:
    return set(children(os.getpid()))


def _feeders(before: set[int]) -> list[int]:
    """This process's children that were not there `before` (other tests may have left children of their own)."""
    return sorted(_children() - before)


def test_a_gz_is_reread_from_any_packet():
    before = _children()
    source = FileSource(GZ)
    everything = [p for batch in source.batches(close_at_end=False) for p in batch]
    assert len(everything) == 82_582 and source.warning is None
    again = [p for batch in source.batches_from(50_000) for p in batch]
    assert again == everything[50_000:]
    source.close()
    assert _feeders(before) == []


def test_a_source_closed_early_leaves_no_feeder():
    before = _children()
    source = FileSource(GZ)
    first = next(iter(source.batches(close_at_end=False)))
    assert first and _feeders(before)  # the feeder is still writing: more than a pipe holds is left
    source.close()
    assert _feeders(before) == []
