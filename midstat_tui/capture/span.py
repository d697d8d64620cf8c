"""The time range of a capture file: its first and last packet time, read ahead of the replay (timestamps only)."""

from __future__ import annotations

import threading

import pcapy

from midstat_tui.capture.batches import META

SCAN_BATCH = 4096


def capture_span(reader: pcapy.Reader, stop: threading.Event | None = None) -> tuple[float, float] | None:
    """(first, last) packet time of what `reader` yields, or None when it has no packet (or `stop` was set).
    A damaged tail ends the scan: the range is what can be read, as the replay reads it."""
    first: float | None = None
    last = 0.0
    while stop is None or not stop.is_set():
        try:
            _, meta = reader.next_batch(SCAN_BATCH)
        except pcapy.PcapError:
            break
        if not meta:
            break
        if first is None:
            sec, usec, _, _ = META.unpack_from(meta, 0)
            first = sec + usec * 1e-6
        sec, usec, _, _ = META.unpack_from(meta, len(meta) - META.size)
        last = sec + usec * 1e-6
    else:
        return None
    return None if first is None else (first, max(first, last))
