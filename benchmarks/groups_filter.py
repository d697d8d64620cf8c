#!/usr/bin/env python3
"""Grouping and applying a new filter at 100k and 1M connections: the view's own work (view.ConnView), CPU time.

    python3 benchmarks/groups_filter.py [--sizes 100000 1000000] [--runs 5]

The rows are made up as benchmarks/tui_refresh.py makes them (addresses, ports, states at random). Prints the
median of --runs for: a new filter (set + recompute: every row evaluated), for a few filters; each grouping of the
rows the filter passes (view.groups); and one refresh with 1% of the rows changed while a filter and a grouping
are on. Target (issue #12): each within 250 ms at 1M rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.tui_refresh import BenchSession  # noqa: E402
from midstat_tui.conn_view import ConnView  # noqa: E402
from midstat_tui.engine.groups import GROUP_KEYS  # noqa: E402

FILTERS = ("dport 443 and not state time-wait", "net 192.168.0.0/16 and (sstate close-wait or cstate fin-wait-2)",
           "host 192.168.7.7 or sport 2000-3000", "zeek S1 and not ended")


def timed(fn, runs: int, before=None) -> float:
    times = []
    for _ in range(runs):
        if before is not None:
            before()
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1000


def measure(count: int, runs: int) -> dict[str, float]:
    session = BenchSession(count)
    view = ConnView()
    view.apply(session.pull())
    view.recompute()
    out: dict[str, float] = {}

    for text in FILTERS:
        def new_filter(text: str = text) -> None:
            view.set_query(text)
            view.recompute()
            view.order  # noqa: B018  (the connection table reads the ids shown, as a list)
        out[f"new filter: {text}"] = timed(new_filter, runs)
    view.set_query("")
    view.recompute()
    for key in GROUP_KEYS:
        out[f"group by {key} (no filter)"] = timed(lambda key=key: view.groups(key), runs)
    view.set_query(FILTERS[0])
    view.recompute()
    for key in ("server", "states"):
        out[f"group by {key} (filter {FILTERS[0]!r})"] = timed(lambda key=key: view.groups(key), runs)

    def refresh() -> None:  # as the grouped view refreshes: the connections are not on screen, not sorted
        view.apply(session.pull())
        view.recompute(sort=False)
        view.groups("server")
    # the pull's changes are made before each measured refresh (they are the engine thread's work, not the UI's)
    out["refresh, 1% changed, filter + group by server"] = timed(refresh, runs, session.prepare)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    results = {size: measure(size, args.runs) for size in args.sizes}
    names = list(results[args.sizes[0]])
    print("| | " + " | ".join(f"{s:,} rows, ms" for s in args.sizes) + " |")
    print("|---|" + "---:|" * len(args.sizes))
    for name in names:
        print(f"| {name} | " + " | ".join(f"{results[s][name]:.0f}" for s in args.sizes) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
