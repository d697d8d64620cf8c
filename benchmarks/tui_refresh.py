#!/usr/bin/env python3
"""UI-thread cost of one TUI refresh (pull the changes, merge, filter, sort, draw the visible lines) at 100k and
1M connections, headless (App.run_test).

    python3 benchmarks/tui_refresh.py [--sizes 100000 1000000] [--ticks 7] [--churn 1]

Each tick changes --churn percent of the rows (1%: a busy link in a second), then runs the app's own refresh and
renders every visible line of the table. With a churn over 1%, half the changed rows leave the table and as many
new ones arrive (a SYN flood against a full table: every new entry evicts one). Prints the median per tick with no
filter and with a filter keeping about 60%, and the one-off cost of applying a new filter and of sorting by
another column.
Targets (issue #4): a refresh under 50 ms at 100k, under 250 ms at 1M.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from midstat_tui.engine.records import ConnRow  # noqa: E402
from midstat_tui.engine.session import Pulled  # noqa: E402
from midstat_tui.ui.app import MidstatApp  # noqa: E402
from midstat_tui.ui.conn_table import ConnTable  # noqa: E402


class _Stats:
    def stats(self) -> dict:
        return {"active": 0, "evicted": 0}


class BenchSession:
    """Stands in for the engine's session: rows made up in memory, 1% of them changed per pull."""

    def __init__(self, count: int, seed: int = 1, churn: float = 1.0) -> None:
        self.churn = churn
        rng = random.Random(seed)
        self.rng = rng
        self.count = count
        self.name = f"synthetic-{count}"
        self.bpf = None
        self.live = False
        self.position = 1_000_000.0
        self.speed = 1.0
        self.paused = False
        self.at_end = False
        self.first_ts = 0.0
        self.error = None
        self.engine = _Stats()
        self._rates: dict = {}
        self.spark_active: deque = deque([count])
        self.spark_pps: deque = deque([0.0])
        self.rows = {i: self._row(i) for i in range(count)}
        self.next_id = count
        self.prepared: Pulled | None = None
        self.first_pull = True

    def _row(self, i: int) -> ConnRow:
        rng = self.rng
        c = bytes((10, i >> 16 & 255, i >> 8 & 255, i & 255))
        s = bytes((192, 168, rng.randrange(256), rng.randrange(256)))
        return ConnRow(i, 0, c, 1024 + i % 60000, s, rng.choice((80, 443, 22, 8080)), (), rng.choice((4, 4, 4, 6, 10)),
                       rng.choice((4, 4, 7, 0)), self.position - rng.random() * 3600, self.position - rng.random() * 60,
                       rng.randrange(1000), rng.randrange(1000), rng.randrange(10**6), rng.randrange(10**7), 0, 0, 0,
                       rng.random() / 10, "S1", "ShAD", False, None)

    def prepare(self) -> None:
        """Make the next pull's changes now, outside the measured refresh (they are the engine's work)."""
        self.prepared = self._next()

    def pull(self) -> Pulled:
        pulled, self.prepared = self.prepared or self._next(), None
        return pulled

    def _next(self) -> Pulled:
        if self.first_pull:
            self.first_pull = False
            return Pulled(self.position, {}, dict(self.rows), reset=True)
        self.position += 1.0
        changed: dict = {}
        picked = self.rng.sample(sorted(self.rows), int(self.count * self.churn / 100))
        replace = len(picked) // 2 if self.churn > 1 else 0
        for i in picked[:replace]:  # evicted, and a new connection in its place
            del self.rows[i]
            changed[i] = None
            self.next_id += 1
            self.rows[self.next_id] = changed[self.next_id] = self._row(self.next_id)
        for i in picked[replace:]:
            row = self.rows[i]._replace(last=self.position, packets_c2s=self.rows[i].packets_c2s + 1)
            self.rows[i] = changed[i] = row
        return Pulled(self.position, {}, changed)

    def connection(self, conn_id):
        return None

    def stop(self) -> None:
        pass


async def measure(count: int, ticks: int, query: str, churn: float) -> tuple[float, float, float]:
    """Median tick; then the one-off costs of typing a new filter and of sorting by another column."""
    app = MidstatApp(BenchSession(count, churn=churn), interval=None, show_load=False)  # type: ignore[arg-type]
    times = []
    async with app.run_test(size=(120, 40)) as pilot:
        if query:
            app.view.set_query(query)
        table = app.query_one(ConnTable)
        session = app.session
        for _ in range(ticks):
            session.prepare()  # type: ignore[attr-defined]
            start = time.process_time()
            app.tick()
            for y in range(table.size.height):
                table.render_line(y)
            times.append(time.process_time() - start)
            await pilot.pause()
        start = time.process_time()
        app.view.set_query("dport 443 and not state time-wait")
        app.tick()
        new_filter = time.process_time() - start
        start = time.process_time()
        app.view.sort_by("bytes_s2c")
        app.tick()
        new_sort = time.process_time() - start
    return statistics.median(times), new_filter, new_sort


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--ticks", type=int, default=7)
    parser.add_argument("--churn", type=float, default=1.0, help="percent of the rows changed per tick")
    args = parser.parse_args()
    print(f"{'connections':>12} {'tick, no filter':>16} {'tick, filter ~60%':>18} {'new filter':>11} "
          f"{'new sort column':>16}   (ms of UI-thread CPU, medians)")
    for count in args.sizes:
        plain, new_filter, new_sort = asyncio.run(measure(count, args.ticks, "", args.churn))
        filtered, _, _ = asyncio.run(measure(count, args.ticks, "state estab or dport 443", args.churn))
        print(f"{count:>12,} {plain * 1000:>16.1f} {filtered * 1000:>18.1f} {new_filter * 1000:>11.1f} "
              f"{new_sort * 1000:>16.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
