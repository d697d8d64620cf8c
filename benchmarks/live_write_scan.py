#!/usr/bin/env python3
"""Live --write's once-a-second judgement of the terms that move without an event (`problem`, `suspicious`, `zeek`,
`name`) over a big table: the SYN flood's connections tracked by one engine (no capture), then the chooser's ticks,
each timed (CPU, process_time): with the per-tick budget (engine.live_write.SCAN_BUDGET) and without it (the whole
table every tick, as before the budget). Prints the longest tick and the ticks a whole round of the table takes.

    python3 benchmarks/live_write_scan.py [--conns 1000000] [--match 'problem unanswered_syn']
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from midstat_tui.capture.files import FileSource  # noqa: E402
from midstat_tui.engine import live_write  # noqa: E402
from midstat_tui.engine.live_write import LiveChooser  # noqa: E402
from midstat_tui.engine.pipeline import Engine  # noqa: E402
from midstat_tui.engine.records import row_of  # noqa: E402
from midstat_tui.problems import Lens  # noqa: E402
from midstat_tui.query import compile_query  # noqa: E402
from midstat_tui.tcp.tracker import TrackerConfig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conns", type=int, default=1_000_000)
    parser.add_argument("--match", default="problem unanswered_syn")
    args = parser.parse_args()
    source = FileSource(str(HERE / "data" / "synflood-1000000.pcap"))
    engine = Engine(source.datalink, TrackerConfig(max_conns=args.conns + 1), checksums=None)
    packets = 0
    for batch in source.batches():
        engine.feed_batch(list(itertools.islice(batch, args.conns - packets)))
        packets += len(batch)
        if packets >= args.conns:
            break
    predicate = compile_query(args.match, Lens())
    chooser = LiveChooser(engine, lambda conn, now: predicate(row_of(conn), now), lambda *a: None, args.match)
    now = engine.tracker.now + 5.0  # the flood's SYNs unanswered for 3 s and more: every one is chosen
    table = len(engine.tracker.table)
    for label, budget in (("budgeted", live_write.SCAN_BUDGET), ("whole table each tick", float("inf"))):
        live_write.SCAN_BUDGET = budget
        chooser._round, chooser._round_at, chooser.choices, chooser.chosen = [], 0, {}, 0
        ticks = []
        while True:
            start = time.process_time()
            chooser._tick(now)
            ticks.append(time.process_time() - start)
            if chooser._round_at >= len(chooser._round):
                break
        print(f"{label}: {table} connections, a round in {len(ticks)} ticks, longest tick {max(ticks) * 1e3:.0f} ms "
              f"(median {statistics.median(ticks) * 1e3:.0f} ms) "
              f"CPU, {sum(ticks):.2f} s in all, {chooser.chosen} chosen")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
