#!/usr/bin/env python3
"""The TUI's row hand-off per changed row: the engine thread making a tick's row changes (`RowChanges.take`: a
dict of ConnRow; `ColumnRowChanges.take`: records filled by the compiled core) and the face applying them to the
connection view (`ConnView.catch_up` in slices of 10,000, as the app does), then one recompute (sort + filter +
problems). CPU time of the thread doing each, both ways alternating, medians.

    python3 benchmarks/row_handoff.py [--pcap benchmarks/data/synflood-1000000.pcap] [--packets 200000] [--runs 3]

The capture's first --packets packets are tracked first (every connection new: a flood's first tick), outside the
measure; then one take of all of them, and their application.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.conn_view import ConnView  # noqa: E402
from midstat_tui.engine.driver import RowChanges, Tick  # noqa: E402
from midstat_tui.engine.pipeline import Engine  # noqa: E402
from midstat_tui.engine.rowcols import ColumnRowChanges  # noqa: E402


def one(path: str, packets: int, columns: bool) -> tuple[float, float, float, int]:
    source = FileSource(path)
    engine = Engine(source.datalink, verify_checksums=False)
    engine.tracker.track_changes()
    fed = 0
    for batch in source.batches():
        batch = batch[:packets - fed]
        engine.feed_batch(batch)
        fed += len(batch)
        if fed >= packets:
            break
    rows = ColumnRowChanges() if columns else RowChanges()
    cpu = time.thread_time()
    changes = rows.take(engine, engine.last_ts or 0.0)
    take = time.thread_time() - cpu
    view = ConnView()
    view.take(Tick(engine.last_ts or 0.0, engine.stats(), changes))
    cpu = time.thread_time()
    while not view.catch_up(10_000):
        pass
    apply = time.thread_time() - cpu
    cpu = time.thread_time()
    view.recompute()
    recompute = time.thread_time() - cpu
    return take, apply, recompute, len(view.rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pcap", default=str(HERE / "data" / "synflood-1000000.pcap"))
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    got: dict[bool, list[tuple[float, float, float, int]]] = {False: [], True: []}
    for _ in range(args.runs):
        for columns in (False, True):
            got[columns].append(one(args.pcap, args.packets, columns))
            take, apply, recompute, rows = got[columns][-1]
            print(f"{'records' if columns else 'rows   '}: take {take:.3f} s, apply {apply:.3f} s, recompute "
                  f"{recompute:.3f} s ({rows} rows)", flush=True)
    for columns in (False, True):
        runs = got[columns]
        rows = runs[0][3]
        take, apply, recompute = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"median, {'records (compiled core)' if columns else 'Python rows'}: take {take * 1e6 / rows:.2f} µs "
              f"a row (engine thread), apply {apply * 1e6 / rows:.2f} µs a row (face), recompute "
              f"{recompute * 1000:.0f} ms at {rows} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
